"""Ordinary image files, annotation masks and the class-folder loader."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ._base import (
    DataLoadError,
    Dataset,
    FailureLog,
    check_size,
    resize,
    resize_mask,
    stack,
    to_grey,
    to_unit,
)
from ._medical import dicom_pixels, nifti_slice, read_dicom, read_nifti

#: File name endings read by :func:`load_image_folder` (case-insensitive).
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm",
    ".dcm", ".dicom", ".nii", ".nii.gz",
)


def _kind(path):
    name = str(path).lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".dcm", ".dicom")):
        return "dicom"
    return "pillow"


def _pillow_array(path):
    """Pixel array of an image file in its own dtype: (H, W) or (H, W, 3)."""
    with Image.open(path) as im:
        im.load()  # decode now so truncated files fail here
        if im.mode in ("1", "L", "F") or im.mode.startswith("I;16"):
            return np.asarray(im)
        if im.mode == "I":
            # Pillow holds 16-bit images in 32-bit mode "I".
            array = np.asarray(im)
            fits16 = array.size and array.min() >= 0 and array.max() <= 65535
            return array.astype(np.uint16) if fits16 else array
        if im.mode == "LA":
            return np.asarray(im.getchannel("L"))
        return np.asarray(im.convert("RGB"))


def read_scan(path, window=None, slice_index=None, axis=2):
    """Read any supported image as float32 in ``[0, 1]``.

    Returns the grey image and its original ``(H, W)``. ``window``,
    ``slice_index`` and ``axis`` apply to DICOM and NIfTI files only.
    """
    kind = _kind(path)
    if kind == "dicom":
        image, shape, _ = read_dicom(path, window, slice_index)
        return image, shape
    if kind == "nifti":
        return read_nifti(path, window, slice_index, axis)
    image = to_grey(to_unit(_pillow_array(path)))
    return image, image.shape


def read_mask(path, shape, size, slice_index=None, axis=2):
    """Read a lesion annotation as a bool mask of ``size`` x ``size``.

    Mask images (nonzero = lesion) must have the image's original ``shape``;
    YOLO ``.txt`` box files are rasterised directly at the output size.
    """
    if str(path).lower().endswith(".txt"):
        return yolo_mask(path, (size, size) if size else shape)
    kind = _kind(path)
    if kind == "dicom":
        pixels = dicom_pixels(path, slice_index)[0]
    elif kind == "nifti":
        pixels = nifti_slice(path, slice_index, axis)[0]
    else:
        pixels = _pillow_array(path)
    mask = (pixels != 0).any(axis=-1) if pixels.ndim == 3 else pixels != 0
    if mask.shape != tuple(shape):
        raise DataLoadError(f"{path}: mask shape {mask.shape} differs from image shape {tuple(shape)}")
    return resize_mask(mask, size)


def yolo_mask(path, shape):
    """Rasterise a YOLO label file into a bool mask of ``shape``.

    Each line is ``class cx cy w h`` in coordinates normalised to the image;
    every pixel that a box overlaps is marked. An empty file is an empty mask.
    """
    h, w = shape
    mask = np.zeros((h, w), bool)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    text = Path(path).read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            _, cx, cy, bw, bh = (float(v) for v in line.split())
        except ValueError:
            raise DataLoadError(
                f"{path}, line {number}: expected 'class cx cy w h', got {line.strip()!r}"
            ) from None
        x0, x1 = (cx - bw / 2) * w, (cx + bw / 2) * w
        y0, y1 = (cy - bh / 2) * h, (cy + bh / 2) * h
        mask |= (cols + 1 > x0) & (cols < x1) & (rows + 1 > y0) & (rows < y1)
    return mask


def _annotation(image_path, mask_suffix):
    """The mask image or YOLO file belonging to ``image_path``, if any."""
    stem = image_path.name[: -len(_suffix(image_path))]
    for candidate in sorted(image_path.parent.glob(f"{glob.escape(stem)}{mask_suffix}.*")):
        if candidate.name.lower().endswith(IMAGE_SUFFIXES):
            return candidate
    boxes = image_path.with_name(stem + ".txt")
    return boxes if boxes.is_file() else None


def _suffix(path):
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix


def _read_with_mask(path, annotation, size):
    image, shape = read_scan(path)
    mask = None
    if annotation is not None:
        try:
            mask = read_mask(annotation, shape, size)
        except (DataLoadError, ImportError):
            raise
        except Exception as exc:  # name the annotation, not the image
            raise DataLoadError(f"cannot read {annotation}: {exc}") from exc
    return resize(image, size), shape, mask


def load_image_folder(
    root, modality="image", size=64, classes=None, mask_suffix="_mask", on_error="raise"
):
    """Load images sorted into one subfolder per class.

    Parameters
    ----------
    root : path-like
        Folder with one subfolder per class holding PNG, JPEG, TIFF, BMP,
        PGM/PPM/PBM/PNM (read with Pillow), DICOM ``.dcm`` or NIfTI files.
    modality : str, default 'image'
        Key of the images in the result.
    size : int or None, default 64
        Output side length: images are converted to grey, scaled to
        ``[0, 1]`` by their dtype range and resized bilinearly (masks by
        nearest neighbour), ignoring the aspect ratio. None keeps the native
        size, which must then be the same for all images.
    classes : list of str, optional
        Subfolders to load, in label order; defaults to all non-hidden
        subfolders sorted by name.
    mask_suffix : str, default '_mask'
        An image ``name{mask_suffix}.png`` (any image suffix) beside
        ``name.png`` is its lesion mask (nonzero = lesion) and is not
        loaded as an image. Failing that, a YOLO file ``name.txt`` with
        lines ``class cx cy w h`` (normalised) is rasterised to a box mask.
    on_error : {'raise', 'skip'}
        Raise :class:`DataLoadError` for an unreadable image or annotation,
        or skip the image and warn once about all skipped files.

    Returns
    -------
    Dataset
        ``masks[modality]`` is None when no image has an annotation;
        otherwise images without one get an empty mask.

    Raises
    ------
    DataLoadError
        If ``root`` has no class folders, a class folder has no images, or a
        file is unreadable with ``on_error='raise'``.
    """
    size = check_size(size)
    failures = FailureLog(on_error)
    root = Path(root)
    if not root.is_dir():
        raise DataLoadError(f"{root} is not a folder")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataLoadError(f"{root} has no class subfolders")
    classes = list(classes)

    images, masks, shapes, paths, labels = [], [], [], [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DataLoadError(f"class folder {folder} does not exist")
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.name.lower().endswith(IMAGE_SUFFIXES)
            and not p.name[: -len(_suffix(p))].endswith(mask_suffix)
        )
        if not files:
            raise DataLoadError(f"class folder {folder} has no images")
        for path in files:
            annotation = _annotation(path, mask_suffix) if mask_suffix else None
            result = failures.read(path, _read_with_mask, path, annotation, size)
            if result is None:
                continue
            image, shape, mask = result
            images.append(image)
            shapes.append(shape)
            masks.append(mask)
            paths.append(os.fspath(path))
            labels.append(label)
    failures.warn()
    if not images:
        raise DataLoadError(f"no image in {root} could be read")
    stacked = stack(images, "images")
    if all(m is None for m in masks):
        mask_array = None
    else:
        empty = np.zeros(stacked.shape[1:], bool)
        mask_array = np.stack([empty if m is None else m for m in masks])
    return Dataset(
        X={modality: stacked},
        y=np.asarray(labels, dtype=np.int64),
        masks={modality: mask_array},
        original_shapes={modality: shapes},
        paths={modality: paths},
        classes=classes,
    )
