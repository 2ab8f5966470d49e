"""Pickle-free, checksummed persistence of fitted pymdbn estimators.

A model file is one ``.npz`` archive (written by :func:`numpy.savez`, read with
``allow_pickle=False``) holding the estimator's arrays under the keys ``a0``,
``a1``, ... and a JSON header under ``__meta__``::

    {"format": "pymdbn-model", "format_version": 1, "pymdbn_version": "...",
     "estimator": "MDBN", "params": {...constructor parameters...},
     "state": {...JSON part of the fitted state...},
     "arrays": [{"name": "pathways/brain/0/W", "key": "a0", "shape": [256, 64],
                 "dtype": "<f4", "sha256": "..."}, ...]}

Loading never executes code from the file: the estimator class is looked up in a
fixed list (RBM, DBN, MDBN, EarlyFusionDBN, ModalityScaler), constructed from the
decoded parameters, and given the arrays after their shapes, dtypes and SHA-256
digests were checked against the manifest. Files are written to a temporary file in
the target directory and moved into place with :func:`os.replace`, so a crash never
leaves a half-written model under the final name.
"""

import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from pymdbn._version import __version__

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "pymdbn-model"
FORMAT_VERSION = 1
_META = "__meta__"
_TRAIN = "__train__/"  # prefix of the training-state arrays of a checkpoint
_DTYPE_KINDS = "biufU"  # no objects, no void/structured records


def _registry():
    from pymdbn.dbn import DBN
    from pymdbn.mdbn import MDBN
    from pymdbn.preprocessing import ModalityScaler
    from pymdbn.presets import EarlyFusionDBN
    from pymdbn.rbm import RBM

    return {cls.__name__: cls for cls in (RBM, DBN, MDBN, EarlyFusionDBN, ModalityScaler)}


# -- JSON ---------------------------------------------------------------------------
def to_json(value):
    """Plain JSON types from NumPy scalars/arrays and tuples; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_params(params):
    """Constructor parameters as JSON, keeping tuples and nested estimators."""
    def enc(name, v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, tuple):
            return {"__tuple__": [enc(name, x) for x in v]}
        if isinstance(v, list):
            return [enc(name, x) for x in v]
        if isinstance(v, dict):
            return {"__dict__": [[enc(name, k), enc(name, x)] for k, x in v.items()]}
        if isinstance(v, BaseEstimator) and type(v).__name__ in _registry():
            return {"__estimator__": type(v).__name__,
                    "params": encode_params(v.get_params(deep=False))}
        if isinstance(v, (np.random.RandomState, np.random.Generator)):
            return None  # a generator object cannot be stored; the fitted state is
        raise ValueError(f"parameter {name!r}: cannot store a {type(v).__name__} "
                         "in a model file")
    return {k: enc(k, v) for k, v in params.items()}


def decode_params(params):
    """Inverse of :func:`encode_params`."""
    registry = _registry()

    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if isinstance(v, dict):
            if "__tuple__" in v:
                return tuple(dec(x) for x in v["__tuple__"])
            if "__dict__" in v:
                return {dec(k): dec(x) for k, x in v["__dict__"]}
            if "__estimator__" in v:
                if v["__estimator__"] not in registry:
                    raise ValueError(f"unknown estimator {v['__estimator__']!r} in file")
                return registry[v["__estimator__"]](**decode_params(v["params"]))
            raise ValueError("malformed parameter encoding in model file")
        return v
    return {k: dec(v) for k, v in params.items()}


# -- state of each estimator ----------------------------------------------------------
_RBM_ARRAYS = ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_",
               "velocity_components_", "velocity_hidden_", "velocity_visible_")


def get_state(est):
    """(arrays, meta) of a fitted estimator: flat dict of ndarrays and a JSON dict."""
    from pymdbn.rbm import RBM

    if isinstance(est, RBM):
        arrays = {name: getattr(est, name) for name in _RBM_ARRAYS}
        meta = {"seed": est.seed_, "n_steps": est.n_steps_, "history": est.history_,
                "n_features_in": est.n_features_in_}
        if hasattr(est, "feature_names_in_"):
            arrays["feature_names_in_"] = est.feature_names_in_.astype(str)
        return arrays, meta
    return est._get_state()


def set_state(est, arrays, meta):
    """Restore what :func:`get_state` returned onto an estimator built from its params."""
    from pymdbn.rbm import RBM

    if isinstance(est, RBM):
        for name in _RBM_ARRAYS:
            setattr(est, name, np.ascontiguousarray(arrays[name]))
        if "feature_names_in_" in arrays:
            est.feature_names_in_ = arrays["feature_names_in_"].astype(object)
        est.seed_, est.n_steps_ = int(meta["seed"]), int(meta["n_steps"])
        est.n_features_in_ = int(meta["n_features_in"])
        est.history_ = [{k: (float("nan") if v is None else v) for k, v in h.items()}
                        for h in meta["history"]]
        return est
    return est._set_state(arrays, meta)


def nest(prefix, arrays):
    """Prefix the keys of a state's arrays (for estimators that contain others)."""
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unnest(prefix, arrays):
    """The arrays stored under ``prefix/``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


# -- files --------------------------------------------------------------------------
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _digest(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def save(estimator, path, train_state=None):
    """Write a fitted estimator to ``path`` as one checksummed ``.npz`` file, atomically.

    Parameters
    ----------
    estimator : RBM, DBN, MDBN, EarlyFusionDBN or ModalityScaler
        A fitted estimator.
    path : str or os.PathLike
        Destination; written exactly as given (no suffix is added).
    train_state : tuple (arrays, meta) or None
        Optimiser state stored alongside, making the file a resumable checkpoint.

    Returns
    -------
    path : str
    """
    if type(estimator).__name__ not in _registry():
        raise ValueError(f"cannot save a {type(estimator).__name__}")
    check_is_fitted(estimator)
    arrays, state = get_state(estimator)
    if train_state is not None:
        arrays = {**arrays, **{_TRAIN + k: v for k, v in train_state[0].items()}}
        state = {**state, "train_state": train_state[1]}
    stored, manifest = {}, []
    for i, (name, arr) in enumerate(arrays.items()):
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind not in _DTYPE_KINDS:
            raise ValueError(f"array {name!r} has unsupported dtype {arr.dtype}")
        stored[f"a{i}"] = arr
        manifest.append({"name": name, "key": f"a{i}", "shape": list(arr.shape),
                         "dtype": arr.dtype.str, "sha256": _digest(arr)})
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "pymdbn_version": __version__, "estimator": type(estimator).__name__,
              "params": encode_params(estimator.get_params(deep=False)),
              "state": to_json(state), "arrays": manifest}
    stored[_META] = np.array(json.dumps(header, allow_nan=False))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **stored)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _read(path):
    """Header and verified arrays of a model file."""
    try:
        # Open the file here so that it is closed even when np.load fails on it.
        with open(path, "rb") as f:
            return _read_open(f)
    except (OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile,
            json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable pymdbn model file ({exc!r})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid pymdbn model file: {exc}") from None


def _read_open(f):
    npz = np.load(f, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive")
    with npz:
        if _META not in npz.files:
            raise ValueError("no metadata")
        header = json.loads(str(npz[_META][()]))
        if header.get("format") != FORMAT_NAME:
            raise ValueError(f"format {header.get('format')!r} is not {FORMAT_NAME!r}")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {header.get('format_version')!r} is not "
                             f"supported (this pymdbn reads version {FORMAT_VERSION})")
        keys = {e["key"] for e in header["arrays"]}
        if set(npz.files) != keys | {_META}:
            raise ValueError("the archive's arrays do not match its manifest")
        arrays = {}
        for entry in header["arrays"]:
            arr = npz[entry["key"]]
            if (list(arr.shape) != entry["shape"] or arr.dtype.str != entry["dtype"]
                    or arr.dtype.kind not in _DTYPE_KINDS):
                raise ValueError(f"array {entry['name']!r} is {arr.dtype.str} "
                                 f"{list(arr.shape)}, the manifest says "
                                 f"{entry['dtype']} {entry['shape']}")
            if _digest(arr) != entry["sha256"]:
                raise ValueError(f"checksum mismatch in array {entry['name']!r}")
            arrays[entry["name"]] = arr
    return header, arrays


def load(path, return_train_state=False):
    """Restore an estimator written by :func:`save` (or an estimator's ``save``).

    Parameters
    ----------
    path : str or os.PathLike
    return_train_state : bool, default=False
        Also return the checkpoint's training state ``(arrays, meta)``, or None.

    Returns
    -------
    estimator
        Of the class recorded in the file, fitted.

    Raises
    ------
    ValueError
        If the file is not a pymdbn model file, has another format version, is
        truncated, or an array's shape, dtype or SHA-256 differs from the manifest.
    """
    header, arrays = _read(os.fspath(path))
    registry = _registry()
    if header["estimator"] not in registry:
        raise ValueError(f"{path}: unknown estimator {header['estimator']!r}")
    est = registry[header["estimator"]](**decode_params(header["params"]))
    state = dict(header["state"])
    train_meta = state.pop("train_state", None)
    model = {k: v for k, v in arrays.items() if not k.startswith(_TRAIN)}
    set_state(est, model, state)
    if not return_train_state:
        return est
    if train_meta is None:
        return est, None
    train = {k[len(_TRAIN):]: v for k, v in arrays.items() if k.startswith(_TRAIN)}
    return est, (train, train_meta)


class SaveMixin:
    """Adds :meth:`save` to an estimator that implements ``_get_state``/``_set_state``."""

    def save(self, path):
        """Write the fitted model to ``path`` (see :func:`pymdbn.io.save`).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        path : str
        """
        return save(self, path)
