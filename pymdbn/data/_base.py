"""Result type, errors and helpers shared by the loaders."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .._matmul import matmul


class DataLoadError(ValueError):
    """A file could not be read or decoded; the message names the file."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images loaded from disk, in the layout of :func:`pymdbn.data.make_phantoms`.

    Attributes
    ----------
    X : dict of str to ndarray
        Modality name -> float32 images of shape ``(N, size, size)`` in
        ``[0, 1]``.
    y : ndarray
        int64 labels of shape ``(N,)``, indices into ``classes``; -1 where
        unlabelled.
    masks : dict of str to ndarray or None
        Modality name -> bool lesion masks of shape ``(N, size, size)``, or
        None for a modality without annotations.
    original_shapes : dict of str to list of tuple of int
        Modality name -> ``(H, W)`` of each image before resizing.
    paths : dict of str to list of str
        Modality name -> source of each image.
    classes : list of str
        Class names; ``classes[k]`` is the name of label ``k``.
    patient_ids : list of str or None
        Patient identifier of each row, where the source has one.
    """

    X: dict
    y: np.ndarray
    masks: dict
    original_shapes: dict
    paths: dict
    classes: list
    patient_ids: list | None = None

    def __len__(self):
        return len(self.y)

    @property
    def modalities(self):
        """tuple of str: The modality names."""
        return tuple(self.X)


class FailureLog:
    """Collects unreadable files according to ``on_error``.

    With ``'raise'`` the first failure raises :class:`DataLoadError`; with
    ``'skip'`` failures are collected and reported by one warning.
    """

    def __init__(self, on_error):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.failed = []

    def read(self, path, reader, *args, **kwargs):
        """Return ``reader(*args, **kwargs)``, or None if it failed and failures are skipped."""
        try:
            return reader(*args, **kwargs)
        except ImportError:
            raise
        except Exception as exc:  # decoders raise many unrelated types
            error = exc if isinstance(exc, DataLoadError) else DataLoadError(f"cannot read {path}: {exc}")
            if self.on_error == "raise":
                raise error from exc
            self.failed.append(str(path))
            return None

    def warn(self, stacklevel=3):
        """Emit one warning summarising the skipped files, if any."""
        if self.failed:
            shown = ", ".join(self.failed[:3])
            more = f" and {len(self.failed) - 3} more" if len(self.failed) > 3 else ""
            warnings.warn(
                f"skipped {len(self.failed)} unreadable file(s): {shown}{more}",
                UserWarning,
                stacklevel=stacklevel,
            )


def check_size(size):
    """Validate an output size: a positive int, or None to keep the native size."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    return int(size)


def to_unit(array):
    """Scale an image array to float32 in ``[0, 1]`` by its dtype range.

    Integers map their full dtype range; booleans map to 0 and 1; floats
    already in ``[0, 1]`` are kept, other floats are min-max scaled.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return ((array.astype(np.float64) - info.min) / (info.max - info.min)).astype(np.float32)
    array = array.astype(np.float32)
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0.0 and hi <= 1.0:
        return array
    return (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)


# ITU-R 601 luma weights.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_grey(array):
    """Collapse ``(H, W, 3|4)`` colour (alpha ignored) to ``(H, W)`` luma (ITU-R 601)."""
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return matmul(array[..., :3], LUMA)
    if array.ndim == 3 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim != 2:
        raise DataLoadError(f"expected a 2-D grey or colour image, got shape {array.shape}")
    return array


def resize(image, size):
    """Bilinear resize of a float image to ``size`` x ``size`` (None keeps it)."""
    if size is None or image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    out = Image.fromarray(image.astype(np.float32)).resize((size, size), Image.BILINEAR)
    return np.asarray(out, dtype=np.float32)


def resize_mask(mask, size):
    """Nearest-neighbour resize of a boolean mask (None keeps it)."""
    if size is None or mask.shape == (size, size):
        return mask.astype(bool, copy=False)
    out = Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST)
    return np.asarray(out) > 0


def stack(images, what):
    """Stack equally shaped 2-D arrays; explain a shape mismatch (``size=None``)."""
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ValueError(f"{what} have different shapes {sorted(shapes)}; pass size= to resize them")
    return np.stack(images)
