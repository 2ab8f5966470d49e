"""CSV manifests that pair scans of several modalities into patients."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from ._base import DataLoadError, Dataset, FailureLog, check_size, resize, stack
from ._images import read_mask, read_scan

_REQUIRED = ("patient_id", "modality", "path", "label")


def _read_rows(csv_path):
    try:
        with open(csv_path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise ValueError(
                    f"{csv_path}: manifest lacks columns {missing}; "
                    f"expected header patient_id,modality,path,label[,mask_path]"
                )
            rows = [
                {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataLoadError(f"cannot read manifest {csv_path}: {exc}") from exc
    if not rows:
        raise DataLoadError(f"manifest {csv_path} has no rows")
    return rows


def _class_names(raw, classes):
    """Map label strings to indices: integers stay, names index ``classes``."""
    if classes is not None and len(set(classes)) != len(list(classes)):
        raise ValueError(f"classes must be distinct names, got {list(classes)}")
    try:
        values = {s: int(s) for s in raw}
    except ValueError:
        names = sorted(raw) if classes is None else list(classes)
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ValueError(f"labels {unknown} are not in classes {names}") from None
        return {s: names.index(s) for s in raw}, names
    if min(values.values()) < 0:
        raise ValueError(f"integer labels must be >= 0, got {sorted(set(values.values()))}")
    n = max(values.values()) + 1
    names = [str(k) for k in range(n)] if classes is None else list(classes)
    if len(names) < n:
        raise ValueError(f"{len(names)} classes given but labels go up to {n - 1}")
    return values, names


def load_manifest(
    csv_path,
    size=64,
    modalities=None,
    require_all=True,
    classes=None,
    window=None,
    slice_index=None,
    axis=2,
    on_error="raise",
):
    """Load a multimodal dataset described by a CSV manifest.

    Parameters
    ----------
    csv_path : path-like
        CSV with header ``patient_id,modality,path,label[,mask_path]`` and one
        row per scan. Paths are relative to the CSV's folder (absolute paths
        are kept). Files may be any format :func:`load_image_folder` reads;
        masks may also be YOLO ``.txt`` box files. An empty ``mask_path``
        means no annotation.
    size : int or None, default 64
        Output side length; None keeps native sizes (equal per modality).
    modalities : sequence of str, optional
        Modalities to load, in this order; defaults to all in the manifest,
        in order of first appearance.
    require_all : bool, default True
        If true, a patient lacking one of ``modalities`` is an error;
        otherwise such patients are dropped with one warning listing them.
    classes : list of str, optional
        Label order for textual labels (default: sorted names), or names for
        integer labels (default ``'0'``, ``'1'``, ...).
    window, slice_index, axis
        Passed to the DICOM and NIfTI readers; see :func:`load_dicom` and
        :func:`load_nifti`.
    on_error : {'raise', 'skip'}
        Raise :class:`DataLoadError` for an unreadable scan or mask, or drop
        the patient and warn once about all skipped files.

    Returns
    -------
    Dataset
        One row per patient, in order of first appearance, with
        ``patient_ids``; ``masks[m]`` is None for a modality without any
        ``mask_path`` (otherwise scans without one get an empty mask).

    Raises
    ------
    ValueError
        For a malformed manifest, a patient with conflicting labels or
        duplicate modalities, requested modalities absent from the
        manifest, or missing modalities when ``require_all``.
    DataLoadError
        For unreadable files with ``on_error='raise'``, or when no patient
        is left.
    """
    size = check_size(size)
    failures = FailureLog(on_error)
    csv_path = Path(csv_path)
    rows = _read_rows(csv_path)
    label_of, names = _class_names({r["label"] for r in rows}, classes)

    patients, labels = {}, {}
    for number, row in enumerate(rows, 2):  # line 1 is the header
        pid, modality = row["patient_id"], row["modality"]
        if not pid or not modality or not row["path"]:
            raise ValueError(f"{csv_path}, line {number}: patient_id, modality and path must be set")
        label = label_of[row["label"]]
        if labels.setdefault(pid, label) != label:
            raise ValueError(
                f"patient {pid!r} has inconsistent labels {names[labels[pid]]!r} and {row['label']!r}"
            )
        scans = patients.setdefault(pid, {})
        if modality in scans:
            raise ValueError(f"patient {pid!r} has more than one {modality!r} scan")
        scans[modality] = row

    present = list(dict.fromkeys(r["modality"] for r in rows))
    if modalities is None:
        modalities = present
    else:
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        absent = [m for m in modalities if m not in present]
        if absent:
            raise ValueError(f"modalities {absent} are not in the manifest, which has {present}")
    incomplete = {
        pid: [m for m in modalities if m not in scans]
        for pid, scans in patients.items()
        if any(m not in scans for m in modalities)
    }
    if incomplete:
        listing = "; ".join(f"{pid}: {', '.join(ms)}" for pid, ms in incomplete.items())
        if require_all:
            raise ValueError(f"{len(incomplete)} patient(s) lack modalities ({listing})")
        warnings.warn(
            f"dropped {len(incomplete)} patient(s) lacking modalities ({listing})",
            UserWarning,
            stacklevel=2,
        )

    base = csv_path.parent
    with_masks = {m: any(s[m].get("mask_path") for s in patients.values() if m in s) for m in modalities}
    loaded = []
    for pid, scans in patients.items():
        if pid in incomplete:
            continue
        record = {}
        for m in modalities:
            row = scans[m]
            path = base / row["path"]
            mask_path = base / row["mask_path"] if row.get("mask_path") else None
            result = failures.read(
                path, _read_scan_and_mask, path, mask_path, size, window, slice_index, axis
            )
            if result is None:
                break  # never keep a patient with a missing scan
            record[m] = (*result, os.fspath(path))
        else:
            loaded.append((pid, record))
    failures.warn()
    if not loaded:
        raise DataLoadError(f"no patient in {csv_path} could be loaded")

    X, masks, shapes, paths = {}, {}, {}, {}
    for m in modalities:
        X[m] = stack([rec[m][0] for _, rec in loaded], f"{m!r} images")
        shapes[m] = [rec[m][1] for _, rec in loaded]
        paths[m] = [rec[m][3] for _, rec in loaded]
        if with_masks[m]:
            empty = np.zeros(X[m].shape[1:], bool)
            masks[m] = np.stack([empty if rec[m][2] is None else rec[m][2] for _, rec in loaded])
        else:
            masks[m] = None
    return Dataset(
        X=X,
        y=np.array([labels[pid] for pid, _ in loaded], dtype=np.int64),
        masks=masks,
        original_shapes=shapes,
        paths=paths,
        classes=names,
        patient_ids=[pid for pid, _ in loaded],
    )


def _read_scan_and_mask(path, mask_path, size, window, slice_index, axis):
    if not path.is_file():
        raise DataLoadError(f"{path} does not exist")
    image, shape = read_scan(path, window, slice_index, axis)
    mask = None
    if mask_path is not None:
        if not mask_path.is_file():
            raise DataLoadError(f"mask {mask_path} does not exist")
        try:
            mask = read_mask(mask_path, shape, size, slice_index, axis)
        except (DataLoadError, ImportError):
            raise
        except Exception as exc:  # name the mask, not the scan
            raise DataLoadError(f"cannot read {mask_path}: {exc}") from exc
    return resize(image, size), tuple(shape), mask
