"""Data: synthetic phantoms and loaders for real imaging data.

:func:`make_phantoms` (:mod:`pymdbn.data.phantoms`) generates multimodal cancer
phantoms with ground-truth lesion masks; it loads on first use, so the loaders
do not import scipy.fft. The loaders return :class:`Dataset` objects.

Every loader converts images to grey float32 in ``[0, 1]`` (by dtype
range, or by window for DICOM and NIfTI), resizes them to ``size`` x
``size`` and returns the layout of :func:`make_phantoms`:
``X`` and ``masks`` keyed by modality, labels ``y``, plus provenance
(``original_shapes``, ``paths``, ``classes``, ``patient_ids``).

``classes`` are the class names and ``y`` indexes them: a folder's subfolder
names, a manifest's label values (or ``classes=`` for integer labels), and
for MedMNIST files, DICOM and NIfTI, which carry no names, ``classes=`` or the
label values as strings (``'0'``, ``'1'``, ...). Fit a model on the names,
``model.fit(ds.X, np.asarray(ds.classes)[ds.y])``, and its ``classes_``, its
model file and every report keep them; :func:`pymdbn.metrics.positive_class`
then tells which class is positive.

DICOM and NIfTI support needs the optional extras ``pymdbn[dicom]``
(pydicom) and ``pymdbn[nifti]`` (nibabel).
"""

from ._base import DataLoadError, Dataset
from ._images import IMAGE_SUFFIXES, load_image_folder, yolo_mask
from ._manifest import load_manifest
from ._medical import load_dicom, load_medmnist_npz, load_nifti

__all__ = [
    "CLASSES",
    "IMAGE_SUFFIXES",
    "MODALITIES",
    "Phantoms",
    "make_phantoms",
    "DataLoadError",
    "Dataset",
    "load_dicom",
    "load_image_folder",
    "load_manifest",
    "load_medmnist_npz",
    "load_nifti",
    "yolo_mask",
]

# The phantom generator imports scipy.fft, which the loaders do not need.
_PHANTOM_NAMES = ("CLASSES", "MODALITIES", "Phantoms", "make_phantoms")


def __getattr__(name):
    if name in _PHANTOM_NAMES:
        from pymdbn.data import phantoms

        return getattr(phantoms, name)
    raise AttributeError(f"module 'pymdbn.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
