"""Pickle-free, checksummed persistence of fitted pymdbn estimators.

A model file is one ZIP archive, every member stored uncompressed:

``header.json``
    UTF-8 JSON::

        {"format": "pymdbn-model", "format_version": 2, "pymdbn_version": "...",
         "estimator": "MDBN", "params": {...constructor parameters...},
         "state": {...JSON part of the fitted state...},
         "arrays": [{"name": "pathways/brain/0/W", "key": "a0", "shape": [256, 64],
                     "dtype": "<f4", "sha256": "...", "object": false}, ...]}

``header.sha256``
    The SHA-256 (hex) of the exact bytes of ``header.json``. The header lists the
    SHA-256 of every array, so this one digest covers the whole file.

``a0.npy``, ``a1.npy``, ...
    The arrays, in NumPy's ``.npy`` format (C order, no pickled objects). A
    classifier's labels are stored as the array ``__classes__``, so ``classes_``
    comes back with its dtype and values (ints stay ints, strings strings); arrays
    of Python str or int objects are stored as ``U`` or ``int64`` with
    ``"object": true`` and restored as object arrays.

The digests detect corruption and edits made without recomputing them (a reversed
``classes``, a changed ``clip``); they are not a signature: anyone who can write the
file can recompute them, so load models only from sources you trust as much as the
data they are applied to.

Loading never executes code from the file and checks everything before reading any
array data: the member list must be exactly the header, its digest and the arrays of
the manifest (no unknown, missing, duplicate or compressed member); the header is
verified against its digest before any field is used, then checked field by field;
each member's size and ``.npy`` header (shape, dtype, memory order) must agree with
the manifest, the total size must stay under :data:`MAX_TOTAL_BYTES`, and every
array's shape must be the one the estimator's hyperparameters and fitted state imply.
Only then are the arrays read, one at a time, and compared with their SHA-256.
The estimator class is looked up by name among the registered ones (RBM, ConvRBM,
DBN, MDBN, EarlyFusionDBN, ModalityScaler: each registers itself with :func:`register`
where it is defined, so this module imports no model), constructed from the decoded
parameters (unknown ones rejected) and its hyperparameters are validated as ``fit``
validates them. Layer specs (:class:`~pymdbn.Conv`, :class:`~pymdbn.Pool`) are stored
as ``{"__layer__": spec.to_json()}`` and the shapes of a convolutional pathway's arrays
follow from its specs and image shape (a pooling layer stores none). Every failure is a ``ValueError`` that names the file and the field or array at
fault.

Files are written with :func:`pymdbn._atomic.atomic_write`: a crash or an interrupt
never leaves a half-written model under the final name.
"""

import collections
import hashlib
import importlib
import json
import math
import os
import re
import zipfile
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from pymdbn._atomic import atomic_write
from pymdbn._version import __version__
from pymdbn.layers import Conv, Pool, conv_output_shape, image_shape3, pool_output_shape

__all__ = ["save", "load", "register", "FORMAT_NAME", "FORMAT_VERSION", "MAX_HEADER_BYTES",
           "MAX_TOTAL_BYTES"]

FORMAT_NAME = "pymdbn-model"
FORMAT_VERSION = 2  # 2: JSON header member with its own SHA-256 (1: header in __meta__.npy)

#: Largest ``header.json`` accepted, in bytes. The header holds the parameters, the
#: manifest (about 200 bytes per array) and the training histories (about 100 bytes
#: per epoch and layer): a few kB to a few hundred kB for real models. The cap bounds
#: what ``json.loads`` can be made to allocate.
MAX_HEADER_BYTES = 4 << 20

#: Largest total size of the arrays of one file, in bytes (8 GiB). The largest preset
#: network on 256x256 scans of three modalities, (512, 256) units per pathway, holds
#: about 0.4 GB of float32 weights, and a checkpoint with Adam's state four times that;
#: the cap leaves five times more, and stops a file that declares more memory than
#: any real model needs before anything is allocated. Raise it (``pymdbn.io.
#: MAX_TOTAL_BYTES = ...``) to load a larger model you trust.
MAX_TOTAL_BYTES = 8 << 30

HEADER_MEMBER = "header.json"
DIGEST_MEMBER = "header.sha256"
_OLD_META = "__meta__.npy"  # format version 1
_TRAIN = "__train__/"  # prefix of the training-state arrays of a checkpoint
_CLASSES = "__classes__"  # the exact class labels of a classifier
_DTYPE_KINDS = "biufU"  # no objects, no void/structured records
_KEY = re.compile(r"a[0-9]{1,9}\Z")
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_HEADER_KEYS = {"format", "format_version", "pymdbn_version", "estimator", "params",
                "state", "arrays"}
# The estimators' dtype parameter values ('bfloat16' stores float32 arrays).
_DTYPES = ("float32", "float64", "bfloat16")

_ENTRY_KEYS = {"name", "key", "shape", "dtype", "sha256", "object"}


class _Invalid(ValueError):
    """A model file that fails a check (the message is prefixed with the path)."""


#: Estimator name -> class, filled by :func:`register` as the classes are defined.
_REGISTRY = {}
#: Modules whose import registers the stock estimators; :func:`load` imports them on
#: first use, so loading works without the caller importing a model first.
_PROVIDERS = ("pymdbn.models", "pymdbn.models.conv_rbm", "pymdbn.preprocessing")


def register(cls):
    """Class decorator: let :func:`save` and :func:`load` handle ``cls`` by name.

    The class implements ``_get_state()`` -> ``(arrays, meta)`` and
    ``_set_state(arrays, meta)``, and its file layout has a checker in this module
    (files are checked against what the hyperparameters imply before any array is
    read). A subclass is not registered by inheriting: it would be saved under its
    own name with no checker for it.
    """
    if cls.__name__ not in _CHECKS:
        raise ValueError(f"pymdbn.io has no file checker for {cls.__name__!r}")
    _REGISTRY[cls.__name__] = cls
    return cls


def _registry():
    if len(_REGISTRY) < len(_CHECKS):
        for module in _PROVIDERS:
            importlib.import_module(module)
    return _REGISTRY


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
        if isinstance(v, (Conv, Pool)):  # a layer spec of a convolutional pathway
            d = v.to_json()
            if isinstance(v, Conv):
                d["params"] = {str(k): enc(f"{name}: {v!r}", x) for k, x in v.params.items()}
            return {"__layer__": d}
        if type(v).__name__ == "ImageAugmenter" and type(v).__module__ == "pymdbn.augment":
            # an estimator's augment parameter: stored by its parameters
            return {"__augmenter__": encode_params(v.get_params(deep=False))}
        if isinstance(v, BaseEstimator) and type(v).__name__ in _registry():
            return {"__estimator__": type(v).__name__,
                    "params": encode_params(v.get_params(deep=False))}
        if isinstance(v, (np.random.RandomState, np.random.Generator)):
            return None  # a generator object cannot be stored; the fitted state is
        raise ValueError(f"parameter {name!r}: cannot store a {type(v).__name__} "
                         "in a model file")
    return {k: enc(k, v) for k, v in params.items()}


def decode_params(params, cls=None):
    """Inverse of :func:`encode_params`.

    Parameters
    ----------
    params : dict
        Encoded parameters.
    cls : type or None
        When given, every name must be a constructor parameter of ``cls``.

    Raises
    ------
    ValueError
        On a malformed encoding, an unknown estimator or an unknown parameter.
    """
    registry = _registry()

    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if isinstance(v, dict):
            if set(v) == {"__tuple__"} and isinstance(v["__tuple__"], list):
                return tuple(dec(x) for x in v["__tuple__"])
            if set(v) == {"__dict__"} and isinstance(v["__dict__"], list):
                if not all(isinstance(p, list) and len(p) == 2 for p in v["__dict__"]):
                    raise ValueError("malformed dict parameter in model file")
                out = {}
                for k, x in v["__dict__"]:
                    k = dec(k)
                    if not isinstance(k, (str, int, float, bool, tuple)) and k is not None:
                        raise ValueError(f"unhashable dict key {k!r} in model file")
                    out[k] = dec(x)
                return out
            if set(v) == {"__augmenter__"}:
                from pymdbn.augment import ImageAugmenter

                aug = ImageAugmenter(**decode_params(v["__augmenter__"], ImageAugmenter))
                try:
                    aug._validate_params()
                except ValueError as exc:
                    raise ValueError(f"malformed augmenter in model file: {exc}") from None
                return aug
            if set(v) == {"__layer__"}:
                return _decode_layer(v["__layer__"], dec)
            if set(v) == {"__estimator__", "params"}:
                name = v["__estimator__"]
                if not isinstance(name, str) or name not in registry:
                    raise ValueError(f"unknown estimator {name!r} in file")
                return registry[name](**decode_params(v["params"], registry[name]))
            raise ValueError("malformed parameter encoding in model file")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise ValueError(f"malformed parameter value {v!r} in model file")

    if not isinstance(params, dict):
        raise ValueError(f"parameters must be a JSON object, got {type(params).__name__}")
    if cls is not None:
        unknown = sorted(set(params) - set(cls().get_params(deep=False)))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameters {unknown}")
    return {k: dec(v) for k, v in params.items()}


def _decode_layer(d, dec):
    """The :class:`~pymdbn.layers.Conv` or :class:`~pymdbn.layers.Pool` that
    ``{"__layer__": spec.to_json()}`` encodes, every field checked (ValueError)."""
    def positive(x):
        return isinstance(x, int) and not isinstance(x, bool) and x >= 1

    if not isinstance(d, dict) or d.get("type") not in ("conv", "pool"):
        raise ValueError(f"malformed layer spec {d!r} in model file")
    if d["type"] == "pool":
        if (set(d) != {"type", "size", "mode"} or not positive(d["size"])
                or d["mode"] not in ("max", "avg")):
            raise ValueError(f"malformed Pool spec {d!r} in model file")
        return Pool(d["size"], d["mode"])
    kernel = d.get("kernel_size")
    if (set(d) != {"type", "filters", "kernel_size", "params"} or not positive(d["filters"])
            or not isinstance(kernel, list) or len(kernel) != 2
            or not all(positive(k) for k in kernel) or not isinstance(d["params"], dict)):
        raise ValueError(f"malformed Conv spec {d!r} in model file")
    allowed = set(_registry()["ConvRBM"]().get_params(deep=False)) - {"filters", "kernel_size"}
    unknown = sorted(set(d["params"]) - allowed)
    if unknown:
        raise ValueError(f"Conv spec in model file sets {unknown[0]!r}, which is not a "
                         "ConvRBM parameter")
    return Conv(d["filters"], tuple(kernel), **{k: dec(x) for k, x in d["params"].items()})


# -- state of each estimator ----------------------------------------------------------
def get_state(est):
    """(arrays, meta) of a fitted estimator: flat dict of ndarrays and a JSON dict."""
    return est._get_state()


def set_state(est, arrays, meta):
    """Restore what :func:`get_state` returned onto an estimator built from its params."""
    return est._set_state(arrays, meta)


def nest(prefix, arrays):
    """Prefix the keys of a state's arrays (for estimators that contain others)."""
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unnest(prefix, arrays):
    """The arrays stored under ``prefix/``, with the prefix removed."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


# -- consistency of a file's shapes with its hyperparameters ---------------------------
# Each checker receives the decoded parameters, the JSON state and the manifest's
# {name: (shape, dtype)} of the estimator's arrays (prefix removed, as the estimator's
# _set_state sees them), and raises _Invalid naming the first array or field that does
# not fit. They run before any array data is read.
def _int(value, what, low=0):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise _Invalid(f"{what} must be an int >= {low}, got {value!r}")
    return int(value)


def _sizes(value, what):
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)  # one layer, as scikit-learn's hidden_layer_sizes
    if not isinstance(value, (tuple, list)) or not value:
        raise _Invalid(f"{what} must be a non-empty tuple of int, got {value!r}")
    return tuple(_int(v, f"{what} entries", 1) for v in value)


def _obj(value, what, keys=None):
    if not isinstance(value, dict):
        raise _Invalid(f"{what} must be a JSON object, got {type(value).__name__}")
    if keys is not None:
        missing = sorted(set(keys) - set(value))
        if missing:
            raise _Invalid(f"{what} lacks {missing}")
    return value


def _list(value, what):
    if not isinstance(value, list):
        raise _Invalid(f"{what} must be a list, got {type(value).__name__}")
    return value


class _Arrays:
    """The manifest's shapes and dtypes, with checks that name the offending array."""

    def __init__(self, shapes, prefix=""):
        self.shapes, self.prefix, self.seen = shapes, prefix, set()

    def sub(self, prefix):
        names = {k[len(prefix) + 1:]: v for k, v in self.shapes.items()
                 if k.startswith(prefix + "/")}
        self.seen.update(f"{prefix}/{k}" for k in names)
        return _Arrays(names, f"{self.prefix}{prefix}/")

    def has(self, name):
        return name in self.shapes

    def expect(self, name, shape, kinds="f", dtype=None):
        """Check array ``name`` has ``shape`` (None entries: any size); returns its dtype."""
        full = self.prefix + name
        if name not in self.shapes:
            raise _Invalid(f"array {full!r} is missing")
        self.seen.add(name)
        actual, dt = self.shapes[name]
        if len(actual) != len(shape) or any(e is not None and a != e
                                            for a, e in zip(actual, shape)):
            want = tuple("any" if e is None else e for e in shape)
            raise _Invalid(f"array {full!r} has shape {actual}, the model's "
                           f"hyperparameters imply {want}")
        if dtype == "bfloat16":  # float32 master weights, bfloat16 products
            dtype = "float32"
        if dt.kind not in kinds or (dtype is not None and dt != np.dtype(dtype)):
            want = np.dtype(dtype).name if dtype is not None else f"kind {kinds!r}"
            raise _Invalid(f"array {full!r} has dtype {dt.name}, expected {want}")
        return dt

    def done(self):
        extra = sorted(set(self.shapes) - self.seen)
        if extra:
            raise _Invalid(f"unexpected array {self.prefix + extra[0]!r}")


def _check_rbm(params, state, arrays, n_features=None, dtype=None):
    n = _int(params.get("n_components"), "RBM n_components", 1)
    state = _obj(state, "RBM state", ("seed", "n_steps", "history", "n_features_in"))
    f = _int(state["n_features_in"], "RBM n_features_in", 1)
    _int(state["seed"], "RBM seed")
    _int(state["n_steps"], "RBM n_steps")
    if not all(isinstance(h, dict) for h in _list(state["history"], "RBM history")):
        raise _Invalid("RBM history must be a list of objects")
    if n_features is not None and f != n_features:
        raise _Invalid(f"RBM n_features_in is {f}, the layer below has {n_features} units")
    dtype = params.get("dtype") if dtype is None else dtype
    if dtype not in (None, *_DTYPES):
        raise _Invalid(f"RBM dtype {dtype!r} is not one of {_DTYPES}")
    dt = arrays.expect("components_", (n, f), dtype=dtype)
    for name, shape in [("intercept_hidden_", (n,)), ("intercept_visible_", (f,)),
                        ("h_samples_", (None, n)), ("velocity_components_", (n, f)),
                        ("velocity_hidden_", (n,)), ("velocity_visible_", (f,))]:
        arrays.expect(name, shape, dtype=dt)
    if arrays.has("feature_names_in_"):
        arrays.expect("feature_names_in_", (f,), kinds="U")
    arrays.done()
    return n


def _specs(value, what):
    """Layer specs of a pathway: ints (dense units), Conv and Pool, convolutional and
    pooling ones first (as :func:`pymdbn.layers.layer_specs` requires)."""
    if isinstance(value, (Conv, Pool)):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not any(isinstance(v, (Conv, Pool))
                                                        for v in value):
        return _sizes(value, what)
    specs, dense = [], False
    for i, v in enumerate(value):
        if isinstance(v, (Conv, Pool)):
            if dense:
                raise _Invalid(f"{what}[{i}] is {v!r} after a dense layer")
            specs.append(v)
        else:
            specs.append(_int(v, f"{what} entries", 1))
            dense = True
    return tuple(specs)


def _dbn_sizes(params, what):
    """Layer specs of a DBN: ``hidden_layers`` with the ``layer_params`` overrides of
    dense layers' ``n_components``; a Conv's ``filters`` and ``kernel_size`` come from
    its spec only (the stored conv layers are described by the specs)."""
    sizes = _specs(params.get("hidden_layers"), f"{what} hidden_layers")
    overrides = params.get("layer_params")
    if overrides is None:
        return sizes
    if (not isinstance(overrides, list) or len(overrides) != len(sizes)
            or not all(isinstance(o, dict) for o in overrides)):
        raise _Invalid(f"{what} layer_params must be a list of {len(sizes)} dicts")
    out = []
    for i, (o, s) in enumerate(zip(overrides, sizes)):
        if isinstance(s, Conv):
            for key, want in (("filters", s.filters), ("kernel_size", s.kernel_size)):
                if key not in o:
                    continue
                got = _kernel(o[key], what) if key == "kernel_size" else o[key]
                if got != want:
                    raise _Invalid(f"{what} layer_params[{i}] sets {key} {o[key]!r}, the "
                                   f"layer's spec is {s!r}")
            out.append(s)
        elif isinstance(s, Pool):
            out.append(s)
        else:
            out.append(_int(o.get("n_components", s), f"{what} layer_params n_components", 1))
    return tuple(out)


def _kernel(value, what):
    """(kh, kw) of a kernel_size parameter: an int or a pair of ints."""
    pair = (value, value) if isinstance(value, Integral) and not isinstance(value, bool) \
        else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise _Invalid(f"{what} kernel_size must be an int or a pair, got {value!r}")
    return tuple(_int(k, f"{what} kernel_size entries", 1) for k in pair)


def _stack_shapes(specs, image_shape, n_features, what):
    """Walk a pathway: per spec, the shape of its weight matrix W (None for a pool)
    and its input image shape (None for a dense layer); and the width of the top.

    ``image_shape`` is the input's (H, W[, C]) for a convolutional stack (None for a
    dense one, which starts from ``n_features``)."""
    layers, n_in = [], n_features
    shape = None
    if any(isinstance(s, (Conv, Pool)) for s in specs):
        try:
            shape = image_shape3(image_shape, f"{what} image shape")
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"{what}: {exc}") from None
        if n_features is not None and math.prod(shape) != n_features:
            raise _Invalid(f"{what}: image shape {shape} has {math.prod(shape)} pixels, "
                           f"the input {n_features} features")
    for i, spec in enumerate(specs):
        try:
            if isinstance(spec, Conv):
                kh, kw = spec.kernel_size
                layers.append(((kh * kw * shape[2], spec.filters), shape))
                shape = conv_output_shape(shape, spec.kernel_size, spec.filters)
            elif isinstance(spec, Pool):
                layers.append((None, shape))
                shape = pool_output_shape(shape, spec.size)
            else:
                if shape is not None:
                    n_in, shape = math.prod(shape), None
                layers.append(((n_in, spec), None))
                n_in = spec
        except ValueError as exc:
            raise _Invalid(f"{what} layer {i} {spec!r}: {exc}") from None
    return layers, (n_in if shape is None else math.prod(shape))


def _check_classes(n_classes):
    if n_classes < 2:
        raise _Invalid(f"a classifier needs at least 2 classes, the file has {n_classes}")


def _check_conv_rbm(params, state, arrays, image_shape=None, dtype=None):
    n = _int(params.get("filters"), "ConvRBM filters", 1)
    kh, kw = _kernel(params.get("kernel_size"), "ConvRBM")
    state = _obj(state, "ConvRBM state", ("seed", "n_steps", "history", "n_features_in",
                                          "image_shape"))
    shape = tuple(_int(s, "ConvRBM image_shape entries", 1)
                  for s in _list(state["image_shape"], "ConvRBM image_shape"))
    if len(shape) != 3:
        raise _Invalid(f"ConvRBM image_shape must be (H, W, C), got {list(shape)}")
    if image_shape is not None and shape != tuple(image_shape):
        raise _Invalid(f"ConvRBM image_shape is {shape}, the layer below gives "
                       f"{tuple(image_shape)}")
    if kh > shape[0] or kw > shape[1]:
        raise _Invalid(f"a {kh}x{kw} ConvRBM filter does not fit {shape} images")
    if _int(state["n_features_in"], "ConvRBM n_features_in", 1) != math.prod(shape):
        raise _Invalid(f"ConvRBM n_features_in is {state['n_features_in']}, its images "
                       f"{shape} have {math.prod(shape)} pixels")
    _int(state["seed"], "ConvRBM seed")
    _int(state["n_steps"], "ConvRBM n_steps")
    if not all(isinstance(h, dict) for h in _list(state["history"], "ConvRBM history")):
        raise _Invalid("ConvRBM history must be a list of objects")
    dtype = params.get("dtype") if dtype is None else dtype
    if dtype not in (None, *_DTYPES):
        raise _Invalid(f"ConvRBM dtype {dtype!r} is not one of {_DTYPES}")
    c = shape[2]
    dt = arrays.expect("components_", (n, kh, kw, c), dtype=dtype)
    for name, s in [("intercept_hidden_", (n,)), ("intercept_visible_", (c,)),
                    ("velocity_components_", (n, kh, kw, c)), ("velocity_hidden_", (n,)),
                    ("velocity_visible_", (c,))]:
        arrays.expect(name, s, dtype=dt)
    arrays.done()
    return n


def _check_dbn(params, state, arrays, n_features=None):
    specs = _dbn_sizes(params, "DBN")
    conv = any(isinstance(s, (Conv, Pool)) for s in specs)
    dtype = params.get("dtype")
    if dtype not in _DTYPES:
        raise _Invalid(f"DBN dtype {dtype!r} is not one of {_DTYPES}")
    state = _obj(state, "DBN state", ("n_features_in", "rbms"))
    f = _int(state["n_features_in"], "DBN n_features_in", 1)
    if n_features is not None and f != n_features:
        raise _Invalid(f"DBN n_features_in is {f}, the input has {n_features} features")
    image_shape = state.get("image_shape")
    if conv:
        if image_shape is None:
            raise _Invalid("a convolutional DBN's state lacks its image_shape")
        image_shape = tuple(_int(s, "DBN image_shape entries", 1)
                            for s in _list(image_shape, "DBN image_shape"))
        if len(image_shape) != 3:
            raise _Invalid(f"DBN image_shape must be (H, W, C), got {list(image_shape)}")
        given = params.get("image_shape")
        if given is not None:
            try:
                given = image_shape3(given, "DBN image_shape parameter")
            except (TypeError, ValueError) as exc:
                raise _Invalid(str(exc)) from None
            if given != image_shape:
                raise _Invalid(f"DBN image_shape {image_shape} differs from the parameter "
                               f"{params['image_shape']!r}")
    elif image_shape is not None:
        raise _Invalid("a DBN without convolutional layers has an image_shape")
    layers, n_out = _stack_shapes(specs, image_shape, f, "DBN")
    models = [i for i, s in enumerate(specs) if not isinstance(s, Pool)]
    rbms = _list(state["rbms"], "DBN rbms")
    if len(rbms) != len(models):
        raise _Invalid(f"the file has {len(rbms)} RBMs, hidden_layers {len(models)}")
    registry = _registry()
    for j, (rbm, i) in enumerate(zip(rbms, models)):
        spec, (w_shape, shape) = specs[i], layers[i]
        rbm = _obj(rbm, f"DBN rbms[{j}]", ("params", "state"))
        kind = "ConvRBM" if isinstance(spec, Conv) else "RBM"
        if rbm.get("estimator", "RBM") != kind:
            raise _Invalid(f"DBN rbms[{j}] is a {rbm.get('estimator')!r}, hidden_layers[{i}] "
                           f"{spec!r} needs a {kind}")
        rbm_params = decode_params(rbm["params"], registry[kind])
        sub = arrays.sub(f"rbm{j}")
        if kind == "ConvRBM":
            got = (rbm_params.get("filters"), _kernel(rbm_params.get("kernel_size"), "ConvRBM"))
            if got != (spec.filters, spec.kernel_size):
                raise _Invalid(f"ConvRBM {j} has {got[0]!r} filters of {got[1]}, the DBN's "
                               f"hidden_layers[{i}] is {spec!r}")
            _check_conv_rbm(rbm_params, rbm["state"], sub, shape, dtype)
        else:
            if rbm_params.get("n_components") != spec:
                raise _Invalid(f"RBM {j} has {rbm_params.get('n_components')!r} units, "
                               f"the DBN's hidden_layers {spec}")
            _check_rbm(rbm_params, rbm["state"], sub, w_shape[0], dtype)
    for i, (w_shape, _) in enumerate(layers):
        layer = arrays.sub(f"layer{i}")
        if w_shape is not None:  # a pooling layer stores no array
            layer.expect("W", w_shape, dtype=dtype)
            layer.expect("b", w_shape[1:], dtype=dtype)
        layer.done()
    if arrays.has("feature_names_in_"):
        arrays.expect("feature_names_in_", (f,), kinds="U")
    if arrays.has("classes_"):
        arrays.expect("classes_", (None,), kinds=_DTYPE_KINDS)
        n_classes = arrays.shapes["classes_"][0][0]
        _check_classes(n_classes)
        out = arrays.sub("output")
        out.expect("W", (n_out, n_classes), dtype=dtype)
        out.expect("b", (n_classes,), dtype=dtype)
        out.done()
        _list(state.get("fine_tune_history"), "DBN fine_tune_history")
    elif any(k.startswith("output/") for k in arrays.shapes):
        raise _Invalid("the file has an output layer but no classes_")
    arrays.done()
    return n_out


def _image_shapes(value, modalities, what):
    shapes = _obj(value, what)
    if sorted(shapes) != sorted(modalities):
        raise _Invalid(f"{what} has modalities {sorted(shapes)}, expected "
                       f"{sorted(modalities)}")
    return {m: tuple(_int(s, f"{what}[{m!r}] entries", 1) for s in _list(shapes[m], what))
            for m in modalities}


def _check_scaler(params, state, arrays):
    for name in ("per_feature", "per_image"):
        if not isinstance(params.get(name), bool):
            raise _Invalid(f"ModalityScaler {name} must be a bool, got "
                           f"{params.get(name)!r}")
    state = _obj(state, "ModalityScaler state", ("modalities", "shapes", "n_samples_seen"))
    mods = _list(state["modalities"], "ModalityScaler modalities")
    if not mods or not all(isinstance(m, str) for m in mods) or len(set(mods)) != len(mods):
        raise _Invalid(f"ModalityScaler modalities must be distinct names, got {mods!r}")
    shapes = _image_shapes(state["shapes"], mods, "ModalityScaler shapes")
    _int(state["n_samples_seen"], "ModalityScaler n_samples_seen", 1)
    ranges = state.get("data_range") or {}
    for m, r in _obj(ranges, "ModalityScaler data_range").items():
        if (m not in mods or not isinstance(r, list) or len(r) != 2
                or not all(isinstance(v, Real) and not isinstance(v, bool) for v in r)):
            raise _Invalid(f"ModalityScaler data_range[{m!r}] must be [min, max] of a "
                           "known modality")
    for m in mods:
        shape = shapes[m] if params["per_feature"] else ()
        arrays.expect(f"{m}/mean", shape)
        arrays.expect(f"{m}/scale", shape)
    arrays.done()
    return mods, shapes


def _check_early_fusion(params, state, arrays):
    DBN = _registry()["DBN"]
    state = _obj(state, "EarlyFusionDBN state", ("scaler", "dbn", "dbn_params"))
    scaler = {"per_feature": params.get("per_feature"), "per_image": params.get("per_image")}
    mods, shapes = _check_scaler(scaler, state["scaler"], arrays.sub("scaler"))
    dbn_params = decode_params(state["dbn_params"], DBN)
    given = params.get("dbn")
    if isinstance(given, DBN) and given.get_params(deep=False) != dbn_params:
        raise _Invalid("the fitted DBN's parameters differ from the estimator's dbn")
    n_features = sum(math.prod(shapes[m]) for m in mods)
    dbn = arrays.sub("dbn")
    _check_dbn({**DBN().get_params(deep=False), **dbn_params}, state["dbn"], dbn, n_features)
    if not dbn.has("classes_"):
        raise _Invalid("array 'dbn/classes_' is missing")
    arrays.done()


def _mdbn_sizes(params):
    """Per modality, then the joint stack, the layer sizes the parameters imply."""
    default = _registry()["MDBN"].DEFAULT_MODALITIES
    mods = default if params.get("modalities") is None else params["modalities"]
    if not isinstance(mods, dict) or not mods or not all(isinstance(m, str) for m in mods):
        raise _Invalid(f"MDBN modalities must be a dict name -> sizes, got {mods!r}")
    extra = params.get("pathway_params") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise _Invalid("MDBN pathway_params must be a dict of dicts")

    def stack(name, sizes):
        p = {"hidden_layers": sizes, "layer_params": None, **extra.get(name, {})}
        return _dbn_sizes(p, f"MDBN pathway {name!r}")
    pathways = {m: stack(m, _specs(s, f"MDBN modality {m!r}")) for m, s in mods.items()}
    if params.get("fusion") == "joint":
        joint = stack("joint", _sizes(params.get("joint_units"), "MDBN joint_units"))
    elif params.get("fusion") == "concat":
        joint = ()
    else:
        raise _Invalid(f"MDBN fusion {params.get('fusion')!r} is not 'joint' or 'concat'")
    return pathways, joint


def _check_mdbn(params, state, arrays, encoded_params):
    pathways, joint = _mdbn_sizes(params)
    dtype = params.get("dtype")
    if dtype not in _DTYPES:
        raise _Invalid(f"MDBN dtype {dtype!r} is not one of {_DTYPES}")
    state = _obj(state, "MDBN state", ("modalities", "clip", "meta", "depths", "n_joint"))
    meta = _obj(state["meta"], "MDBN meta",
                ("classes", "image_shapes", "params", "dtype", "per_feature", "per_image",
                 "n_samples_seen", "joint_visible_bias", "history", "pretrain_history",
                 "seed"))
    # The estimator is rebuilt from meta['params']: it must be the header's.
    if meta["params"] != encoded_params:
        raise _Invalid("the MDBN's stored parameters differ from the file's params")
    mods = list(pathways)
    if state["modalities"] != mods:
        raise _Invalid(f"MDBN modalities {state['modalities']!r}, the parameters {mods}")
    if state["depths"] != {m: len(s) for m, s in pathways.items()}:
        raise _Invalid(f"MDBN depths {state['depths']!r} do not fit the parameters")
    if state["n_joint"] != len(joint):
        raise _Invalid(f"MDBN has {state['n_joint']!r} joint layers, the parameters "
                       f"{len(joint)}")
    clip = params.get("clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, Real)):
        raise _Invalid(f"MDBN clip must be a number or None, got {clip!r}")
    if state["clip"] != (None if clip is None else float(clip)):
        raise _Invalid(f"MDBN clip {state['clip']!r} differs from the parameter {clip!r}")
    for key in ("dtype", "per_feature", "per_image", "fusion"):
        if meta.get(key) != params.get(key) or (key in ("per_feature", "per_image")
                                                 and not isinstance(meta[key], bool)):
            raise _Invalid(f"MDBN meta {key} {meta.get(key)!r} differs from the parameter "
                           f"{params.get(key)!r}")
    classes = _list(meta["classes"], "MDBN classes")
    _check_classes(len(classes))
    if not all(isinstance(c, (str, int, float)) for c in classes):
        raise _Invalid("MDBN classes must be strings or numbers")
    shapes = _image_shapes(meta["image_shapes"], mods, "MDBN image_shapes")
    _int(meta["n_samples_seen"], "MDBN n_samples_seen", 1)
    _int(meta["seed"], "MDBN seed")
    _list(meta["history"], "MDBN history")
    _obj(meta["pretrain_history"], "MDBN pretrain_history")
    if meta.get("data_range") is not None:
        ranges = _obj(meta["data_range"], "MDBN data_range")
        if sorted(ranges) != sorted(mods) or not all(
                isinstance(r, list) and len(r) == 2 for r in ranges.values()):
            raise _Invalid("MDBN data_range must hold [min, max] per modality")
    widths, dims = [], []  # dims: the W shape of each layer with parameters
    for m in mods:
        layers, top = _stack_shapes(pathways[m], shapes[m], math.prod(shapes[m]),
                                    f"MDBN pathway {m!r}")
        for i, (w_shape, _) in enumerate(layers):
            layer = arrays.sub(f"pathways/{m}/{i}")
            if w_shape is not None:  # a pooling layer stores no array
                layer.expect("W", w_shape, dtype=dtype)
                layer.expect("b", w_shape[1:], dtype=dtype)
                dims.append(w_shape)
            layer.done()
        widths.append(top)
        scaler = arrays.sub(f"scalers/{m}")
        shape = shapes[m] if params.get("per_feature") else ()
        scaler.expect("mean", shape)
        scaler.expect("scale", shape)
        scaler.expect("per_image", (), kinds="b")
        scaler.done()
    n_in = sum(widths)
    bias = meta["joint_visible_bias"]
    if joint:
        if not isinstance(bias, list) or len(bias) != n_in or not all(
                isinstance(v, Real) and not isinstance(v, bool) for v in bias):
            raise _Invalid(f"MDBN joint_visible_bias must list {n_in} numbers")
    elif bias is not None:
        raise _Invalid("MDBN joint_visible_bias must be null without joint layers")
    for i, size in enumerate(joint):
        layer = arrays.sub(f"joint/{i}")
        layer.expect("W", (n_in, size), dtype=dtype)
        layer.expect("b", (size,), dtype=dtype)
        layer.done()
        dims.append((n_in, size))
        n_in = size
    out = arrays.sub("output")
    out.expect("W", (n_in, len(classes)), dtype=dtype)
    out.expect("b", (len(classes),), dtype=dtype)
    out.done()
    arrays.done()
    return dims, n_in


def _check_mdbn_train(params, dims, code, n_classes, train_meta, arrays):
    """A checkpoint's optimiser state must fit the network it resumes.

    ``dims`` are the W shapes of the pathway and joint layers with parameters in the
    order of the network's parameters (pathways in fusion order, then joint; a conv
    layer's is (kh * kw * C, filters), a pool has none), ``code`` the
    width of the fused code the output layer reads.
    """
    meta = _obj(train_meta, "checkpoint state",
                ("epoch", "t", "best_loss", "no_improve", "stopped", "n_slots", "has_best"))
    for key in ("epoch", "t", "no_improve", "n_slots"):
        _int(meta[key], f"checkpoint {key}")
    if not isinstance(meta["stopped"], bool) or not isinstance(meta["has_best"], bool):
        raise _Invalid("checkpoint stopped/has_best must be bools")
    dtype = params.get("dtype")
    layers = dims if params.get("fine_tune") else []  # else only the output is trained
    shapes = [s for w in layers for s in (w, w[1:])]
    shapes += [(code, n_classes), (n_classes,)]
    per = 1 if params.get("optimizer") == "sgd" else 2
    if meta["n_slots"] != per * len(shapes):
        raise _Invalid(f"checkpoint has {meta['n_slots']} optimiser slots, the network "
                       f"needs {per * len(shapes)}")
    for i in range(meta["n_slots"]):
        arrays.expect(f"slot{i}", shapes[i // per], dtype=dtype)
    if meta["has_best"]:
        for i, shape in enumerate(shapes):
            arrays.expect(f"best{i}", shape, dtype=dtype)
    arrays.done()


def _check_consistency(name, params, encoded, state, shapes):
    """Raise _Invalid unless the manifest's shapes are those the estimator implies.

    ``params`` are the decoded constructor parameters (defaults filled in here),
    ``encoded`` the header's, ``shapes`` the manifest's {name: (shape, dtype)}.
    """
    full = {**_registry()[name]().get_params(deep=False), **params}
    state = dict(state)
    train_meta = state.pop("train_state", None)
    model = {k: v for k, v in shapes.items() if not k.startswith(_TRAIN) and k != _CLASSES}
    train = {k[len(_TRAIN):]: v for k, v in shapes.items() if k.startswith(_TRAIN)}
    if _CLASSES in shapes:
        classes_shape, _ = shapes[_CLASSES]
        if len(classes_shape) != 1:
            raise _Invalid(f"array {_CLASSES!r} must be 1-D, got shape {classes_shape}")
    arrays = _Arrays(model)
    if name != "MDBN":
        _CHECKS[name](full, state, arrays)
    else:  # the only estimator that writes checkpoints
        dims, n_in = _check_mdbn(full, state, arrays, encoded)
        if train_meta is not None:
            _check_mdbn_train(full, dims, n_in, len(state["meta"]["classes"]), train_meta,
                              _Arrays(train, _TRAIN))
            return
    if train_meta is not None or train:
        raise _Invalid(f"a {name} file cannot hold a training state")


#: Estimator name -> the checker of its file layout (see :func:`register`). All take
#: (params, state, arrays) but MDBN's, which also checks a checkpoint's training state
#: and is called on its own in :func:`_check_consistency`.
_CHECKS = {"RBM": _check_rbm, "ConvRBM": _check_conv_rbm, "DBN": _check_dbn,
           "ModalityScaler": _check_scaler, "EarlyFusionDBN": _check_early_fusion,
           "MDBN": _check_mdbn}


# -- files --------------------------------------------------------------------------
def _digest(arr):
    # SHA-256 of the C-order bytes, hashed in place (tobytes would copy the array).
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8)).hexdigest()


def _storable(name, arr):
    """(array to write, is_object): object arrays of str or int are stored as U or int64."""
    arr = np.asarray(arr, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    if arr.dtype.kind == "O":
        items = arr.ravel().tolist()
        if all(isinstance(v, str) for v in items):
            return np.ascontiguousarray(arr.astype(str) if items else arr.astype("U1")), True
        if all(isinstance(v, Integral) and not isinstance(v, bool) for v in items):
            return np.ascontiguousarray(arr.astype(np.int64)), True
    if arr.dtype.kind not in _DTYPE_KINDS:
        raise ValueError(f"array {name!r} has unsupported dtype {arr.dtype}")
    return arr, False


def save(estimator, path, train_state=None):
    """Write a fitted estimator to ``path`` as one checksummed model file, atomically.

    Parameters
    ----------
    estimator : RBM, ConvRBM, DBN, MDBN, EarlyFusionDBN or ModalityScaler
        A fitted estimator.
    path : str or os.PathLike
        Destination; written exactly as given (no suffix is added).
    train_state : tuple (arrays, meta) or None
        Optimiser state stored alongside, making the file a resumable checkpoint.

    Returns
    -------
    path : str

    Raises
    ------
    ValueError
        If the estimator is not one of the classes above or holds a value a model
        file cannot store (a parameter of another type, an array of objects).
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    OSError
        If the file cannot be written; ``path`` is then left as it was and no
        temporary file remains (the same holds for ``KeyboardInterrupt``).
    """
    if type(estimator).__name__ not in _registry():
        raise ValueError(f"cannot save a {type(estimator).__name__}")
    check_is_fitted(estimator)
    arrays, state = get_state(estimator)
    if hasattr(estimator, "classes_"):
        # The labels exactly (dtype and values), whatever JSON the state keeps them in.
        arrays = {**arrays, _CLASSES: estimator.classes_}
    if train_state is not None:
        arrays = {**arrays, **{_TRAIN + k: v for k, v in train_state[0].items()}}
        state = {**state, "train_state": train_state[1]}
    stored, manifest = {}, []
    for i, (name, arr) in enumerate(arrays.items()):
        arr, is_object = _storable(name, arr)
        stored[f"a{i}"] = arr
        manifest.append({"name": name, "key": f"a{i}", "shape": list(arr.shape),
                         "dtype": arr.dtype.str, "sha256": _digest(arr),
                         "object": is_object})
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "pymdbn_version": __version__, "estimator": type(estimator).__name__,
              "params": encode_params(estimator.get_params(deep=False)),
              "state": to_json(state), "arrays": manifest}
    header_bytes = json.dumps(header, allow_nan=False).encode("utf-8")
    path = os.fspath(path)
    with atomic_write(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(HEADER_MEMBER, header_bytes)
            zf.writestr(DIGEST_MEMBER, hashlib.sha256(header_bytes).hexdigest())
            for key, arr in stored.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
    return path


def _read_member(zf, info, limit):
    """The bytes of a small member, never more than ``limit``."""
    if info.file_size > limit:
        raise _Invalid(f"member {info.filename!r} is {info.file_size} bytes, more than "
                       f"the {limit} allowed")
    with zf.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise _Invalid(f"member {info.filename!r} is larger than its declared size")
    return data


def _check_header(header):
    """The header's fields, type by type; returns the manifest entries."""
    _obj(header, "the header")
    if header.get("format") != FORMAT_NAME:
        raise _Invalid(f"format {header.get('format')!r} is not {FORMAT_NAME!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise _Invalid(f"format version {header.get('format_version')!r} is not "
                       f"supported (this pymdbn reads version {FORMAT_VERSION})")
    if set(header) != _HEADER_KEYS:
        raise _Invalid(f"the header's fields are {sorted(header)}, expected "
                       f"{sorted(_HEADER_KEYS)}")
    if not isinstance(header["estimator"], str) or header["estimator"] not in _registry():
        raise _Invalid(f"unknown estimator {header['estimator']!r}")
    _obj(header["params"], "params")
    _obj(header["state"], "state")
    entries = _list(header["arrays"], "the manifest")
    names, keys = set(), set()
    for i, e in enumerate(entries):
        _obj(e, f"manifest entry {i}")
        if set(e) != _ENTRY_KEYS:
            raise _Invalid(f"manifest entry {i} has fields {sorted(e)}, expected "
                           f"{sorted(_ENTRY_KEYS)}")
        if not isinstance(e["name"], str) or e["name"] in names:
            raise _Invalid(f"manifest entry {i}: bad or repeated name {e['name']!r}")
        if not isinstance(e["key"], str) or not _KEY.match(e["key"]) or e["key"] in keys:
            raise _Invalid(f"manifest entry {e['name']!r}: bad or repeated key {e['key']!r}")
        names.add(e["name"])
        keys.add(e["key"])
        if not isinstance(e["shape"], list):
            raise _Invalid(f"array {e['name']!r}: shape must be a list")
        for s in e["shape"]:
            _int(s, f"array {e['name']!r}: shape entries")
        if not isinstance(e["dtype"], str) or not isinstance(e["object"], bool):
            raise _Invalid(f"array {e['name']!r}: bad dtype or object flag")
        try:
            dtype = np.dtype(e["dtype"])
        except (TypeError, ValueError):
            raise _Invalid(f"array {e['name']!r}: unknown dtype {e['dtype']!r}") from None
        if dtype.kind not in _DTYPE_KINDS or dtype.str != e["dtype"] or (
                e["object"] and dtype.kind not in "iU"):
            raise _Invalid(f"array {e['name']!r} has unsupported dtype {e['dtype']!r}")
        if not isinstance(e["sha256"], str) or not _SHA.match(e["sha256"]):
            raise _Invalid(f"array {e['name']!r}: malformed sha256")
    return entries


def _read_open(f):
    """Header and verified arrays of an open model file (see the module notes)."""
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as exc:
        raise _Invalid(f"not a pymdbn model file (not a ZIP archive: {exc})") from None
    with zf:
        infos = zf.infolist()
        members = [i.filename for i in infos]
        if len(set(members)) != len(members):
            # Counter, not members.count: a forged directory may list 1e5 entries.
            dup = sorted(m for m, c in collections.Counter(members).items() if c > 1)
            raise _Invalid(f"the archive repeats member {dup[0]!r}")
        by_name = {i.filename: i for i in infos}
        if HEADER_MEMBER not in by_name and _OLD_META in by_name:
            raise _Invalid(f"format version 1 is not supported (this pymdbn reads version "
                           f"{FORMAT_VERSION}); load it with the pymdbn that wrote it, or "
                           "refit the model")
        if HEADER_MEMBER not in by_name or DIGEST_MEMBER not in by_name:
            raise _Invalid("not a pymdbn model file (no header)")
        for info in infos:
            # Only stored members: a member can then never expand beyond the bytes
            # it occupies in the file (no zip bomb), and save writes nothing else.
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise _Invalid(f"member {info.filename!r} is compressed or encrypted; "
                               "pymdbn model files store members uncompressed")
        # Stored members occupy their size in the file: a central directory that
        # declares more than the file holds is forged or truncated.
        if sum(i.file_size for i in infos) > os.fstat(f.fileno()).st_size:
            raise _Invalid("the archive declares more data than the file holds "
                           "(truncated or forged)")
        digest = _read_member(zf, by_name[DIGEST_MEMBER], 64).decode("ascii", "replace")
        raw = _read_member(zf, by_name[HEADER_MEMBER], MAX_HEADER_BYTES)
        if hashlib.sha256(raw).hexdigest() != digest:
            raise _Invalid("the header does not match its SHA-256 (edited or corrupt)")
        try:
            header = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise _Invalid("the header nests too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise _Invalid(f"the header is not JSON ({exc})") from None
        entries = _check_header(header)
        expected = {f"{e['key']}.npy" for e in entries} | {HEADER_MEMBER, DIGEST_MEMBER}
        unknown, missing = sorted(set(members) - expected), sorted(expected - set(members))
        if unknown:
            raise _Invalid(f"unknown member {unknown[0]!r} (not in the manifest)")
        if missing:
            raise _Invalid(f"member {missing[0]!r} of the manifest is missing")
        total = sum(math.prod(e["shape"]) * np.dtype(e["dtype"]).itemsize for e in entries)
        if total > MAX_TOTAL_BYTES:
            raise _Invalid(f"the arrays declare {total} bytes, more than "
                           f"pymdbn.io.MAX_TOTAL_BYTES ({MAX_TOTAL_BYTES})")
        for e in entries:  # every .npy header before any data
            _check_npy_header(zf, by_name[f"{e['key']}.npy"], e)
        shapes = {e["name"]: (tuple(e["shape"]), np.dtype(e["dtype"])) for e in entries}
        registry = _registry()
        name = header["estimator"]
        params = decode_params(header["params"], registry[name])
        _check_consistency(name, params, header["params"], header["state"], shapes)
        arrays = {}
        for e in entries:
            with zf.open(by_name[f"{e['key']}.npy"]) as member:
                arr = np.lib.format.read_array(member, allow_pickle=False)
            if list(arr.shape) != e["shape"] or arr.dtype.str != e["dtype"]:
                raise _Invalid(f"array {e['name']!r} changed while it was read")
            if _digest(arr) != e["sha256"]:
                raise _Invalid(f"checksum mismatch in array {e['name']!r}")
            arrays[e["name"]] = arr.astype(object) if e["object"] else arr
    return header, params, arrays


def _check_npy_header(zf, info, entry):
    """The member's .npy header and size agree with the manifest entry."""
    fmt = np.lib.format
    with zf.open(info) as member:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(member)
        else:
            raise _Invalid(f"array {entry['name']!r}: .npy version {version} is not "
                           "supported")
        offset = member.tell()
    if dtype.hasobject or list(shape) != entry["shape"] or dtype.str != entry["dtype"]:
        raise _Invalid(f"array {entry['name']!r} is {dtype.str} {list(shape)}, the "
                       f"manifest says {entry['dtype']} {entry['shape']}")
    if fortran:
        raise _Invalid(f"array {entry['name']!r} is in Fortran order; pymdbn writes C order")
    size = offset + math.prod(shape) * dtype.itemsize
    if info.file_size != size:
        raise _Invalid(f"array {entry['name']!r}: member is {info.file_size} bytes, its "
                       f"header implies {size}")


# Errors the checks above can meet in a malformed file; each becomes a ValueError
# naming the file. (Decoding a constructed header can raise any of these.)
_MALFORMED = (OSError, EOFError, KeyError, TypeError, IndexError, AttributeError,
              OverflowError, RecursionError, UnicodeError, NotImplementedError,
              zipfile.BadZipFile, zipfile.LargeZipFile, ValueError)


def _read(path):
    """Header, decoded parameters and verified arrays of a model file."""
    try:
        # Open the file here so that it is closed whatever fails inside.
        with open(path, "rb") as f:
            return _read_open(f)
    except (_Invalid, ValueError) as exc:  # ours, and decode_params' on bad encodings
        raise ValueError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise
    except _MALFORMED as exc:
        raise ValueError(f"{path}: not a readable pymdbn model file ({exc!r})") from None


def load(path, return_train_state=False, device="cpu"):
    """Restore an estimator written by :func:`save` (or an estimator's ``save``).

    Every part of the file is checked before it is used (see :mod:`pymdbn.io`):
    nothing is allocated for an array before its size, ``.npy`` header and shape
    were found consistent with the verified header and the estimator's
    hyperparameters.

    Parameters
    ----------
    path : str or os.PathLike
    return_train_state : bool, default=False
        Also return the checkpoint's training state ``(arrays, meta)``, or None.
    device : {'cpu', 'cuda'}, default='cpu'
        Where the loaded model computes (its ``device``), whatever device it was
        trained on: a model trained on a GPU loads and predicts on a machine without
        one. The arrays are NumPy arrays either way.

    Returns
    -------
    estimator
        Of the class recorded in the file, fitted, with ``classes_`` (classifiers)
        of the same dtype and values as when it was saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the file, if it is not a pymdbn model file or has another format
        version; if it is truncated, its header differs from its SHA-256 or is
        malformed (wrong JSON types, unknown parameters), a member is unknown,
        missing, repeated or compressed, an array's ``.npy`` header, size or
        SHA-256 differs from the manifest, the arrays exceed
        :data:`MAX_TOTAL_BYTES`, or an array's shape is not the one the
        hyperparameters imply.
    """
    path = os.fspath(path)
    header, params, arrays = _read(path)
    registry = _registry()
    try:
        est = registry[header["estimator"]](**params)
        _validate_params(est)
        state = dict(header["state"])
        train_meta = state.pop("train_state", None)
        classes = arrays.pop(_CLASSES, None)
        model = {k: v for k, v in arrays.items() if not k.startswith(_TRAIN)}
        set_state(est, model, state)
        for inner in [getattr(est, "dbn_", None), *getattr(est, "rbms_", []),
                      *getattr(getattr(est, "dbn_", None), "rbms_", [])]:
            _validate_params(inner)  # the estimators rebuilt from the state's parameters
        _restore_classes(est, classes)
        if callable(getattr(est, "to", None)):
            est.to(device)
    except _Invalid as exc:
        raise ValueError(f"{path}: {exc}") from None
    except _MALFORMED as exc:
        raise ValueError(f"{path}: inconsistent pymdbn model file ({exc!r})") from None
    if not return_train_state:
        return est
    if train_meta is None:
        return est, None
    train = {k[len(_TRAIN):]: v for k, v in arrays.items() if k.startswith(_TRAIN)}
    return est, (train, train_meta)


def _validate_params(est):
    """The estimator's own hyperparameter constraints, as ``fit`` checks them."""
    if est is not None and hasattr(est, "_parameter_constraints"):
        try:
            est._validate_params()
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"invalid {type(est).__name__} parameter: {exc}") from None


def _restore_classes(est, classes):
    """Give a classifier the labels exactly as saved, after checking they agree."""
    has = hasattr(est, "classes_")
    if classes is None and not has:
        return
    if classes is None or not has:
        raise _Invalid("the class labels are missing" if has else
                       f"a {type(est).__name__} without classes holds class labels")
    if classes.ndim != 1 or np.asarray(est.classes_).tolist() != classes.tolist():
        raise _Invalid(f"the class labels {classes.tolist()!r} differ from the model's "
                       f"{np.asarray(est.classes_).tolist()!r}")
    est.classes_ = classes
    if hasattr(est, "dbn_"):  # EarlyFusionDBN shares its DBN's labels
        est.dbn_.classes_ = classes


class SaveMixin:
    """Adds :meth:`save` to an estimator that implements ``_get_state``/``_set_state``
    (register the class with :func:`register` too)."""

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
