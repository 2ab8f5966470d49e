"""Loaders for real imaging data, returning :class:`Dataset` objects.

Every loader converts images to grey float32 in ``[0, 1]`` (by dtype
range, or by window for DICOM and NIfTI), resizes them to ``size`` x
``size`` and returns the layout of :func:`pymdbn.datasets.make_phantoms`:
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
    "IMAGE_SUFFIXES",
    "DataLoadError",
    "Dataset",
    "load_dicom",
    "load_image_folder",
    "load_manifest",
    "load_medmnist_npz",
    "load_nifti",
    "yolo_mask",
]
