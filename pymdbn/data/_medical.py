"""DICOM, NIfTI and MedMNIST readers and loaders."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._matmul import matmul
from ._base import (
    LUMA,
    DataLoadError,
    Dataset,
    FailureLog,
    check_size,
    resize,
    stack,
    to_grey,
    to_unit,
)


def _optional(module, extra):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed to read these files; install it with `pip install pymdbn[{extra}]`"
        ) from exc


def _select_slice(volume, slice_index, axis, path):
    """Pick one 2-D slice of ``volume`` along ``axis``; None or 'middle' is the centre."""
    n = volume.shape[axis]
    if slice_index is None or slice_index == "middle":
        index = n // 2
    elif isinstance(slice_index, (int, np.integer)) and -n <= slice_index < n:
        index = int(slice_index)
    else:
        raise DataLoadError(f"{path}: slice_index {slice_index!r} is not 'middle' or an index below {n}")
    return np.take(volume, index, axis=axis)


def _apply_window(values, window, path):
    """Map ``values`` through a (center, width) window onto ``[0, 1]``."""
    center, width = window
    if width <= 0:
        raise DataLoadError(f"{path}: window width must be positive, got {width}")
    return np.clip((values - (center - width / 2)) / width, 0, 1).astype(np.float32)


def _percentile_window(values):
    lo, hi = np.percentile(values, [1, 99])
    return (lo + hi) / 2, max(hi - lo, np.finfo(np.float32).eps)


def _check_window(window):
    if window is None or window == "auto":
        return window
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be None, 'auto' or (center, width), got {window!r}") from None
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return center, width


def dicom_pixels(path, slice_index=None):
    """Stored pixel values of one DICOM frame and the dataset header."""
    pydicom = _optional("pydicom", "dicom")
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise DataLoadError(f"{path}: DICOM file has no pixel data")
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = _select_slice(pixels, slice_index, 0, path)
    return pixels, ds


def read_dicom(path, window=None, slice_index=None):
    """Read one DICOM image as float32 in ``[0, 1]``.

    Returns the image, its shape before resizing and the PatientID.
    """
    pixels, ds = dicom_pixels(path, slice_index)
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        image = to_grey(to_unit(pixels))
    elif window is None:
        # Scale the stored bit depth, which is what the detector produced.
        bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
        lo = -(2 ** (bits - 1)) if int(ds.get("PixelRepresentation", 0)) == 1 else 0
        image = np.clip((pixels.astype(np.float64) - lo) / (2**bits - 1), 0, 1).astype(np.float32)
    else:
        values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1)
        values += float(ds.get("RescaleIntercept", 0) or 0)
        if window == "auto":
            if "WindowCenter" in ds and "WindowWidth" in ds:
                window = (_first(ds.WindowCenter), _first(ds.WindowWidth))
            else:
                window = _percentile_window(values)
        image = _apply_window(values, window, path)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        image = 1 - image  # MONOCHROME1 displays low values as white
    return image, image.shape, str(ds.get("PatientID", ""))


def _first(value):
    """First number of a possibly multi-valued DICOM element."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0]
    return float(value)


def nifti_slice(path, slice_index=None, axis=2):
    """One slice of a NIfTI volume, rotated so the second voxel axis points up.

    Returns the float32 slice and the whole volume (for volume-wide windows).
    """
    nib = _optional("nibabel", "nifti")
    volume = np.asarray(nib.load(os.fspath(path)).get_fdata(dtype=np.float32))
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim == 3:
        if not -3 <= axis < 3:
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        plane = _select_slice(volume, slice_index, axis, path)
    elif volume.ndim == 2:
        plane = volume
    else:
        raise DataLoadError(f"{path}: expected a 2-D or 3-D volume, got shape {volume.shape}")
    return np.rot90(plane), volume


def read_nifti(path, window=None, slice_index=None, axis=2):
    """Read one NIfTI slice as float32 in ``[0, 1]``; returns the image and its shape.

    ``window=None`` min-max scales by the whole volume, ``'auto'`` uses its
    1st and 99th percentiles, a pair is an explicit (center, width).
    """
    plane, volume = nifti_slice(path, slice_index, axis)
    if window is None:
        lo, hi = float(volume.min()), float(volume.max())
        window = ((lo + hi) / 2, hi - lo) if hi > lo else (lo, 1.0)
    elif window == "auto":
        window = _percentile_window(volume)
    image = _apply_window(plane, window, path)
    return image, image.shape


def _file_list(paths, suffixes, what):
    """Files from a directory (matching ``suffixes``, or all) or an explicit list."""
    if isinstance(paths, (str, os.PathLike)):
        root = Path(paths)
        if root.is_dir():
            files = sorted(
                p
                for p in root.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.name != "DICOMDIR"
                and (suffixes is None or p.name.lower().endswith(suffixes))
            )
            if not files:
                raise DataLoadError(f"no {what} files found in {root}")
            return files
        paths = [paths]
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError(f"no {what} files given")
    return files


def _labels(labels, n, classes):
    """Labels array and class names for ``n`` images; -1 when unlabelled."""
    if labels is None:
        return np.full(n, -1, np.int64), list(classes or [])
    y = np.broadcast_to(np.asarray(labels, dtype=np.int64), (n,)).copy()
    if classes is None:
        # No names in the source: the label values as strings, '0', '1', ... (a
        # model fitted on them has classes_ '0', '1'; pass classes= to name them).
        classes = [str(k) for k in range(int(y.max()) + 1)]
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names, got {classes}")
    if y.min() < 0 or y.max() >= len(classes):
        raise ValueError(f"labels must lie in [0, {len(classes)}), got {sorted(set(y.tolist()))}")
    return y, list(classes)


def _volume_dataset(files, labels, classes, modality, size, failures, read):
    if labels is not None and not np.isscalar(labels) and len(labels) != len(files):
        raise ValueError(f"got {len(labels)} labels for {len(files)} files")
    y_all, classes = _labels(labels, len(files), classes)
    images, shapes, kept, ids = [], [], [], []
    for i, path in enumerate(files):
        result = failures.read(path, read, path)
        if result is None:
            continue
        image, shape, *patient = result
        images.append(resize(image, size))
        shapes.append(tuple(shape))
        kept.append(i)
        ids.extend(patient)
    failures.warn(stacklevel=4)
    if not images:
        raise DataLoadError(f"none of the {len(files)} files could be read")
    return Dataset(
        X={modality: stack(images, "images")},
        y=y_all[kept],
        masks={modality: None},
        original_shapes={modality: shapes},
        paths={modality: [str(files[i]) for i in kept]},
        classes=classes,
        patient_ids=ids or None,
    )


def load_dicom(
    paths,
    modality="image",
    size=64,
    labels=None,
    classes=None,
    window=None,
    slice_index=None,
    on_error="raise",
):
    """Load 2-D DICOM images (one per file) with pydicom.

    Needs the optional extra: ``pip install pymdbn[dicom]``.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        A directory (all its regular files except hidden ones and
        ``DICOMDIR``, in name order), one file, or a list of files.
    modality : str, default 'image'
        Key of the images in the result.
    size : int or None, default 64
        Output side length; bilinear resize. None keeps the native size,
        which must then be the same for all files.
    labels : int or sequence of int, optional
        One label for all files or one per file (only with a list of
        files). Without labels ``y`` is -1.
    classes : list of str, optional
        Class names; defaults to ``'0'``, ``'1'``, ... up to the largest label.
    window : None, 'auto' or (float, float), default None
        None scales the stored values by their bit depth (``BitsStored``).
        Otherwise rescale slope and intercept are applied first (e.g. to
        Hounsfield units) and the values are windowed: ``'auto'`` uses the
        header's WindowCenter/WindowWidth, or the 1st-99th percentile when
        absent; a pair gives (center, width). MONOCHROME1 images are
        inverted so that bright always means high signal.
    slice_index : int, 'middle' or None
        Frame of multi-frame files; None means the middle frame.
    on_error : {'raise', 'skip'}
        Raise :class:`DataLoadError` for an unreadable file, or skip it and
        warn once about all skipped files.

    Returns
    -------
    Dataset
        ``masks[modality]`` is None; ``patient_ids`` holds the PatientID tags.
    """
    size, window = check_size(size), _check_window(window)
    failures = FailureLog(on_error)
    files = _file_list(paths, None, "DICOM")
    return _volume_dataset(
        files, labels, classes, modality, size, failures,
        lambda p: read_dicom(p, window, slice_index),
    )


def load_nifti(
    paths,
    modality="image",
    size=64,
    labels=None,
    classes=None,
    window=None,
    slice_index=None,
    axis=2,
    on_error="raise",
):
    """Load one slice per NIfTI volume with nibabel.

    Needs the optional extra: ``pip install pymdbn[nifti]``.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        A directory (its ``.nii`` and ``.nii.gz`` files, in name order), one
        file, or a list of files.
    modality : str, default 'image'
        Key of the images in the result.
    size : int or None, default 64
        Output side length; bilinear resize. None keeps the native size.
    labels : int or sequence of int, optional
        One label for all files or one per file. Without labels ``y`` is -1.
    classes : list of str, optional
        Class names; defaults to ``'0'``, ``'1'``, ... up to the largest label.
    window : None, 'auto' or (float, float), default None
        None min-max scales by the whole volume, ``'auto'`` windows to its
        1st-99th percentiles, a pair gives (center, width) in voxel units
        (after the header's scl_slope and scl_inter).
    slice_index : int, 'middle' or None
        Slice along ``axis``; None means the middle slice. 2-D images are
        used as they are.
    axis : int, default 2
        Voxel axis to slice across (2 is axial for RAS-oriented volumes).
        Slices are rotated by 90 degrees so the next voxel axis points up.
    on_error : {'raise', 'skip'}
        Raise :class:`DataLoadError` for an unreadable file, or skip it and
        warn once about all skipped files.

    Returns
    -------
    Dataset
        ``masks[modality]`` is None and ``patient_ids`` is None.
    """
    size, window = check_size(size), _check_window(window)
    failures = FailureLog(on_error)
    files = _file_list(paths, (".nii", ".nii.gz"), "NIfTI")
    return _volume_dataset(
        files, labels, classes, modality, size, failures,
        lambda p: read_nifti(p, window, slice_index, axis),
    )


def load_medmnist_npz(path, split="train", modality="image", size=None, classes=None):
    """Load one split of a MedMNIST ``.npz`` file.

    Parameters
    ----------
    path : path-like
        File with arrays ``{split}_images`` of shape ``(N, H, W)`` or
        ``(N, H, W, 3)`` and ``{split}_labels`` of shape ``(N,)`` or
        ``(N, 1)``, for splits ``train``, ``val`` and ``test``.
    split : {'train', 'val', 'test'}
        Which split to load.
    modality : str, default 'image'
        Key of the images in the result.
    size : int or None, default None
        Output side length; None keeps the native size.
    classes : list of str, optional
        Class names; defaults to ``'0'``, ``'1'``, ... up to the largest label.

    Returns
    -------
    Dataset
        Colour images converted to grey; ``paths`` entries read
        ``'{path}:{split}_images[i]'``; ``masks[modality]`` is None.

    Raises
    ------
    DataLoadError
        If the file cannot be read or lacks the split's arrays.
    ValueError
        For an unknown split or multi-label (``(N, K)``, K > 1) labels.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    size = check_size(size)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {f"{split}_images", f"{split}_labels"} - set(npz.files)
            if missing:
                raise DataLoadError(f"{path}: missing arrays {sorted(missing)}; found {npz.files}")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    except DataLoadError:
        raise
    except Exception as exc:
        raise DataLoadError(f"cannot read {path}: {exc}") from exc
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{path}: expected one label per image, got labels of shape {labels.shape}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (3, 4))):
        raise DataLoadError(f"{path}: expected images of shape (N, H, W[, 3]), got {images.shape}")
    if len(images) != len(labels):
        raise DataLoadError(f"{path}: {len(images)} images but {len(labels)} labels")
    grey = to_unit(images)
    if grey.ndim == 4:
        grey = matmul(grey[..., :3], LUMA)
    y, classes = _labels(labels, len(labels), classes)
    shape = tuple(images.shape[1:3])
    X = grey if size is None else np.stack([resize(im, size) for im in grey])
    return Dataset(
        X={modality: X.astype(np.float32, copy=False)},
        y=y,
        masks={modality: None},
        original_shapes={modality: [shape] * len(y)},
        paths={modality: [f"{path}:{split}_images[{i}]" for i in range(len(y))]},
        classes=classes,
    )
