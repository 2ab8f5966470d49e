"""Batched LRP through a (multimodal) deep belief network given as a dict.

The network is the layout of ``MDBN.to_dict()``::

    {'modalities': [names in fusion order],
     'pathways': {name: [{'W': (n_in, n_out), 'b': (n_out,)}, ...]},
     'joint': [{'W', 'b'}, ...],            # possibly empty
     'output': {'W': (n_code, K), 'b': (K,)},
     'clip': float or None,
     'scalers': {name: {'mean', 'scale',    # scalars or per-feature arrays
                        'per_image'}},      # optional bool: normalise each image first
     'meta': {'image_shapes': {name: [H, W] or [D]}, 'classes': [...],
              'data_range': {name: [min, max]} (optional), ...}}

A pathway may start with convolutional and pooling layers (:mod:`pymdbn.layers`)::

    {'type': 'conv', 'W': (kh*kw*C, F), 'b': (F,), 'shape': (H, W, C), 'kernel': (kh, kw)}
    {'type': 'pool', 'size': p, 'mode': 'max' or 'avg', 'shape': (H, W, C)}

(``shape`` is the layer's input, channels-last and flattened to (n, H*W*C)); they come
before the pathway's dense layers. Joint and output layers are dense.

Forward: the models' own pass (:class:`pymdbn.models.network.Network`): every dense
pathway and joint layer computes ``sigma(clip(a W + b))``, a convolution the same on
its im2col matrix (``sigma(clip(im2col(a) W + b))``, (n*Ho*Wo, F) read as (n,
Ho*Wo*F)), a pooling layer the window max or mean (no sigmoid); the fused code is the
concatenation of the pathway tops in ``modalities`` order and the logits are ``code
W_out + b_out`` (through the joint layers, if any). The backward pass applies one rule
per dense or convolutional layer (a :class:`~pymdbn.lrp.composites.Composite`) with the
backend's ``lrp_dense``; relevance passes the sigmoids unchanged. The forward
pre-activations are kept and handed to the epsilon rule, so explaining costs one
forward pass plus one matrix product per layer.

Convolutions and pooling, as zennit (Anders et al. 2021) treats ``Conv2d``,
``MaxPool2d`` and ``AvgPool2d``:

- A convolution is the dense layer of its unrolled (Toeplitz) matrix. Every output
  ``(image, position, filter)`` has its own input patch, a row of ``im2col(x)``, so a
  rule on the convolution is the dense rule on the patch matrix followed by ``col2im``,
  which adds each patch entry's relevance back to the pixel it copied::

      R_cols = lrp_dense(im2col(x), W, b, R.reshape(n*Ho*Wo, F), z, rule)
      R_x    = col2im(R_cols)

  This is what zennit's rules compute on ``Conv2d`` (valid padding, stride 1): the
  denominators are per output, the numerators per (input, output) pair. A ZBox
  rule on a convolution takes its bounds per input pixel (H*W*C entries, or scalars),
  as zennit's ``ZBox`` takes input-shaped bounds; each output's bounds are those of
  its patch. The patch matrix is rebuilt in the backward pass rather than kept from
  the forward pass (it is kh*kw times the input); the rule may write its result over
  it. Composites give a convolution the role of its position, as a dense layer: the
  first convolutional or dense layer of a pathway is its ``'input'`` layer.
- Max pooling passes each window's relevance to its first maximal input (row-major),
  the rest of the window gets none: zennit gives ``MaxPool2d`` no rule, so its
  gradient routes the relevance to the argmax (winner takes all).
- Average pooling uses zennit's ``Norm`` rule, ``R_i = x_i R_j / (p^2 (m_j + eps
  sign(m_j)))`` with ``m_j`` the window mean, i.e. ``x_i R_j / (sum_window x + p^2 eps
  sign)``, and ``eps = 1e-6``, the stabilizer of zennit's ``layer_map_base``.
- Pooling layers have no rule of their own and do not count as rule layers; the
  border a pooling window does not reach gets no relevance.

Where this differs from zennit: zennit's composites pass their ``stabilizer`` argument
on to ``Norm``, here the average-pooling stabilizer is always 1e-6 (their common
default); explained against a reference, pooling layers route relevance by the input's
own activations (the reference's differences enter only the Epsilon layers); and a
ZBox input rule whose bounds are derived from the model (:func:`zbox_bounds`) on a
pathway that starts with pooling gets the pixel bounds pooled the same way (window max
of ``low`` and of ``high`` for max pooling, window means for average pooling), the
bounds of the first rule layer's input, where zennit would need them given.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from pymdbn import backend
from pymdbn.backend import ops
from pymdbn.lrp.composites import Composite, get_composite
from pymdbn.lrp.explanation import Explanation, shares_from_totals
from pymdbn.lrp.rules import Epsilon, Rule, ZBox
from pymdbn.models.network import Network, conv_chunk, propagate
from pymdbn.preprocessing import standardize

__all__ = ["explain", "explain_model", "zbox_bounds"]

# Stabilizer of zennit's Norm rule on average pooling (zennit.composites.layer_map_base).
_POOL_STABILIZER = 1e-6


# --------------------------------------------------------------------- network
def _ints(value: Any, k: int, what: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``k`` positive ints, else ValueError naming ``what``."""
    try:
        items = list(value)
    except TypeError:
        items = None
    if (items is None or len(items) != k
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                       for v in items)):
        raise ValueError(f"{what} must be {k} positive ints, got {value!r}")
    return tuple(int(v) for v in items)


def _arrays(layer: Mapping[str, Any], where: str, dtype: np.dtype,
            shape: str = "(n_in, n_out)") -> tuple[np.ndarray, np.ndarray]:
    try:
        w, b = layer["W"], layer["b"]
    except (TypeError, KeyError):
        raise ValueError(f"{where} must be a dict with 'W' and 'b'") from None
    w = np.ascontiguousarray(w, dtype=dtype)
    b = np.ascontiguousarray(b, dtype=dtype)
    if w.ndim != 2 or b.shape != (w.shape[1],):
        raise ValueError(f"{where}: W must be {shape} and b (n_out,), got "
                         f"{w.shape} and {b.shape}")
    return w, b


def _conv_layer(layer: Mapping[str, Any], where: str, dtype: np.dtype) -> dict[str, Any]:
    """A validated convolutional layer dict, with its output shape ``'out'``."""
    w, b = _arrays(layer, where, dtype, "(kh*kw*C, F)")
    for key in ("shape", "kernel"):
        if key not in layer:
            raise ValueError(f"{where}: a conv layer needs 'shape' (H, W, C) and 'kernel' "
                             f"(kh, kw), it lacks {key!r}")
    shape = _ints(layer["shape"], 3, f"{where}['shape'] (H, W, C)")
    kernel = _ints(layer["kernel"], 2, f"{where}['kernel'] (kh, kw)")
    (h, wd, c), (kh, kw) = shape, kernel
    if kh > h or kw > wd:
        raise ValueError(f"{where}: a {kh}x{kw} kernel does not fit its {h}x{wd} input")
    if w.shape[0] != kh * kw * c:
        raise ValueError(f"{where}: W has {w.shape[0]} rows, a {kh}x{kw} kernel on {c} "
                         f"channel(s) needs kh*kw*C = {kh * kw * c}")
    return {"type": "conv", "W": w, "b": b, "shape": shape, "kernel": kernel,
            "out": (h - kh + 1, wd - kw + 1, w.shape[1])}


def _pool_layer(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A validated pooling layer dict, with its output shape ``'out'``."""
    for key in ("size", "mode", "shape"):
        if key not in layer:
            raise ValueError(f"{where}: a pool layer needs 'size', 'mode' and 'shape' "
                             f"(H, W, C), it lacks {key!r}")
    p = layer["size"]
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
        raise ValueError(f"{where}['size'] must be a positive int, got {p!r}")
    p = int(p)
    mode = layer["mode"]
    if mode not in ("max", "avg"):
        raise ValueError(f"{where}: pool mode must be 'max' or 'avg', got {mode!r}")
    h, wd, c = _ints(layer["shape"], 3, f"{where}['shape'] (H, W, C)")
    if p > h or p > wd:
        raise ValueError(f"{where}: a {p}x{p} pool does not fit its {h}x{wd} input")
    return {"type": "pool", "size": p, "mode": mode, "shape": (h, wd, c),
            "out": (h // p, wd // p, c)}


def _width(layer: Mapping[str, Any]) -> int:
    """Units at a validated layer's output."""
    return math.prod(layer["out"]) if "out" in layer else layer["W"].shape[1]


def _layer_list(entries: Any, where: str, dtype: np.dtype,
                spatial: bool = False) -> list[dict[str, Any]]:
    """Validated layer dicts: dense ``{'type': 'dense', 'W', 'b'}``, and with
    ``spatial`` (pathways) conv and pool dicts, which also carry their output shape."""
    layers = []
    for k, layer in enumerate(entries):
        here = f"{where}[{k}]"
        kind = layer.get("type", "dense") if isinstance(layer, Mapping) else "dense"
        if kind in ("conv", "pool") and not spatial:
            raise ValueError(f"{here}: {kind} layers may only start a pathway; "
                             f"{where.split('[')[0]} layers are dense")
        if kind == "conv":
            out = _conv_layer(layer, here, dtype)
        elif kind == "pool":
            out = _pool_layer(layer, here)
        elif kind == "dense":
            w, b = _arrays(layer, here, dtype)
            out = {"type": "dense", "W": w, "b": b}
        else:
            raise ValueError(f"{here}: unknown layer type {kind!r}; expected 'conv', 'pool' "
                             f"or a dense layer (no 'type')")
        if layers:
            below = layers[-1]
            if out["type"] != "dense":
                if below["type"] == "dense":
                    raise ValueError(f"{here}: a {out['type']} layer after a dense layer; "
                                     f"conv and pool layers come before the dense ones")
                if tuple(below["out"]) != out["shape"]:
                    raise ValueError(f"{here}: its input shape {out['shape']} differs from "
                                     f"the output shape {tuple(below['out'])} of the layer "
                                     f"below")
            elif out["W"].shape[0] != _width(below):
                raise ValueError(f"{here}: W has {out['W'].shape[0]} rows but the layer "
                                 f"below has {_width(below)} units")
        layers.append(out)
    return layers


def _weights_dtype(model: Mapping[str, Any]) -> np.dtype:
    """float32 when every weight is float32, else float64."""
    arrays = [model["output"]["W"], *(layer["W"] for layer in model.get("joint") or [])]
    for layers in model["pathways"].values():
        arrays.extend(layer["W"] for layer in layers
                      if isinstance(layer, Mapping) and layer.get("type") != "pool"
                      and "W" in layer)
    if all(np.asarray(a).dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class _Network:
    """The validated, contiguous arrays of a model dict, in one dtype. Layers are dicts
    with a ``'type'`` ('dense', 'conv' or 'pool'); conv and pool ones also carry their
    output shape ``'out'`` and their shapes as tuples."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        try:
            modalities = [str(m) for m in model["modalities"]]
            pathways, output = model["pathways"], model["output"]
        except (TypeError, KeyError) as exc:
            raise ValueError(f"model dict lacks {exc}; expected the layout of "
                             f"MDBN.to_dict()") from None
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"model needs distinct modality names, got {modalities}")
        missing = [m for m in modalities if m not in pathways]
        if missing:
            raise ValueError(f"model has no pathway for modalities {missing}")
        self.dtype = _weights_dtype(model)
        self.modalities = modalities
        self.pathways = {}
        for m in modalities:
            layers = _layer_list(pathways[m], f"pathways[{m!r}]", self.dtype, spatial=True)
            if not layers:
                raise ValueError(f"pathways[{m!r}] has no layers")
            self.pathways[m] = layers
        self.code_slices, start = {}, 0
        for m in modalities:
            width = _width(self.pathways[m][-1])
            self.code_slices[m] = slice(start, start + width)
            start += width
        self.joint = _layer_list(model.get("joint") or [], "joint", self.dtype)
        if self.joint and self.joint[0]["W"].shape[0] != start:
            raise ValueError(f"joint[0]: W has {self.joint[0]['W'].shape[0]} rows but the "
                             f"fused code has {start} units")
        (out,) = _layer_list([output], "output", self.dtype)
        self.w_out, self.b_out = out["W"], out["b"]
        top = self.joint[-1]["W"].shape[1] if self.joint else start
        if self.w_out.shape[0] != top:
            raise ValueError(f"output: W has {self.w_out.shape[0]} rows but the layer below "
                             f"has {top} units")
        clip = model.get("clip")
        self.clip = None if clip is None else float(clip)

        # The pathways run in _pathway_forward (propagate); the Network fuses and runs the head.
        self.network = Network({m: [] for m in modalities}, modalities,
                               [{"W": layer["W"], "b": layer["b"]} for layer in self.joint],
                               {"W": self.w_out, "b": self.b_out}, self.clip)
        self.meta = dict(model.get("meta") or {})
        self.scalers = dict(model.get("scalers") or {})

    def to(self, device: str) -> _Network:
        """The network's arrays on ``device`` (the forward and backward passes follow)."""
        self.pathways = backend.to_device(self.pathways, device)
        self.joint = backend.to_device(self.joint, device)
        self.w_out, self.b_out = backend.to_device((self.w_out, self.b_out), device)
        n = self.network
        n.joint, n.output = backend.to_device((n.joint, n.output), device)
        return self

    def n_features(self, m: str) -> int:
        first = self.pathways[m][0]
        return first["W"].shape[0] if first["type"] == "dense" else math.prod(first["shape"])

    def image_shape(self, m: str) -> tuple[int, ...] | None:
        """``meta['image_shapes'][m]``; without one, the input shape of a pathway that
        starts with a conv or pool layer, (H, W) for one channel, else (H, W, C)."""
        shape = (self.meta.get("image_shapes") or {}).get(m)
        if shape is not None:
            return tuple(int(s) for s in shape)
        first = self.pathways[m][0]
        if first["type"] == "dense":
            return None
        h, w, c = first["shape"]
        return (h, w) if c == 1 else (h, w, c)


# ---------------------------------------------------------------- preprocessing
def _per_feature(value: Any, n: int, what: str) -> np.ndarray:
    """A scalar or per-feature array as a float64 array broadcastable to (n,)."""
    a = np.asarray(value, dtype=np.float64)
    if a.size == 1:
        return a.reshape(())
    if a.size != n:
        raise ValueError(f"{what} has {a.size} entries, expected 1 or {n}")
    return a.reshape(n)


def _scaler(net: _Network, m: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of modality ``m``; identity when the model has no scaler."""
    entry = net.scalers.get(m)
    if entry is None:
        return np.zeros(()), np.ones(())
    n = net.n_features(m)
    mean = _per_feature(entry["mean"], n, f"scalers[{m!r}]['mean']")
    scale = _per_feature(entry["scale"], n, f"scalers[{m!r}]['scale']")
    # A sum is finite unless some entry is not (or it overflows: then check each).
    finite = all(np.isfinite(a.sum()) or np.isfinite(a).all() for a in (mean, scale))
    if not (finite and scale.min() > 0):
        raise ValueError(f"scalers[{m!r}] needs finite means and positive scales")
    return mean, scale


def zbox_bounds(model: Mapping[str, Any], modality: str) -> tuple[np.ndarray, np.ndarray]:
    """ZBox bounds of a modality's z-scored input, per feature.

    ``low = (data_min - mean) / scale`` and ``high = (data_max - mean) /
    scale`` with the fitted scaler's ``mean`` and ``scale``; the data range
    is ``model['meta']['data_range'][modality]`` when present (scalars or
    per-feature arrays), else [0, 1], the range of the loaders' and
    phantoms' images.

    Returns
    -------
    low, high : ndarray of float64, shape (n_features,)
    """
    net = model if isinstance(model, _Network) else _Network(model)
    if modality not in net.pathways:
        raise ValueError(f"unknown modality {modality!r}; the model has {net.modalities}")
    n = net.n_features(modality)
    lo, hi = (net.meta.get("data_range") or {}).get(modality, (0.0, 1.0))
    lo = _per_feature(lo, n, f"meta['data_range'][{modality!r}][0]")
    hi = _per_feature(hi, n, f"meta['data_range'][{modality!r}][1]")
    mean, scale = _scaler(net, modality)
    low = np.broadcast_to((lo - mean) / scale, (n,)).copy()
    high = np.broadcast_to((hi - mean) / scale, (n,)).copy()
    return low, high


def _inputs(net: _Network, X: Any, scale: bool) -> tuple[dict[str, np.ndarray], dict, int]:
    """Validated inputs as C-contiguous (N, D) arrays, their shapes and N."""
    if not isinstance(X, Mapping):
        if len(net.modalities) != 1:
            raise ValueError(f"X must be a dict modality -> array for the modalities "
                             f"{net.modalities}")
        X = {net.modalities[0]: X}
    unknown = [k for k in X if k not in net.pathways]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r} in X; the model has {net.modalities}")
    missing = [m for m in net.modalities if m not in X]
    if missing:
        raise ValueError(f"X lacks modalities {missing}")
    flat, shapes, n = {}, {}, None
    for m in net.modalities:
        x = np.asarray(X[m])
        shapes[m] = x.shape
        d, image = net.n_features(m), net.image_shape(m)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"X[{m!r}] must have shape (N, ...) with N >= 1, got {x.shape}")
        if x.ndim > 2 and image is not None and x.shape[1:] != image:
            raise ValueError(f"X[{m!r}] has images of shape {x.shape[1:]}, the model expects "
                             f"{image}")
        if math.prod(x.shape[1:]) != d:
            raise ValueError(f"X[{m!r}] has {math.prod(x.shape[1:])} features per sample "
                             f"(shape {x.shape}), the model expects {d}")
        if n is None:
            n = x.shape[0]
        elif x.shape[0] != n:
            raise ValueError(f"modalities differ in sample count: {n} vs {x.shape[0]} for {m!r}")
        if x.dtype.kind not in "biuf":
            raise ValueError(f"X[{m!r}] must be numeric, got dtype {x.dtype}")
        x = x.reshape(n, d)
        if scale:  # one compiled pass in the compute dtype, NaN/infinity checked in it
            mean, sd = _scaler(net, m)
            per_image = bool((net.scalers.get(m) or {}).get("per_image", False))
            x = standardize(m, x, mean, sd, net.dtype, per_image=per_image)
        else:
            x = np.ascontiguousarray(x, dtype=net.dtype)
            # A sum is finite unless some entry is not (or it overflows: then check each).
            if not np.isfinite(x.sum()) and not np.isfinite(x).all():
                raise ValueError(f"X[{m!r}] contains NaN or infinite values")
        flat[m] = x
    return flat, shapes, n


def _reference_inputs(net: _Network, reference: Any, scale: bool) -> dict[str, np.ndarray] | None:
    """The reference as validated (1, D) inputs, or None."""
    if reference is None:
        return None
    if not isinstance(reference, Mapping):
        if len(net.modalities) != 1:
            raise ValueError(f"reference must be a dict modality -> array for the modalities "
                             f"{net.modalities}")
        reference = {net.modalities[0]: reference}
    single = {}
    for m, r in reference.items():
        r = np.asarray(r)
        image = net.image_shape(m) if m in net.pathways else None
        if r.ndim == 1 or (image is not None and r.shape == image):
            r = r[None]  # one sample given without its sample axis
        single[m] = r
    try:
        flat, _, n = _inputs(net, single, scale)
    except ValueError as exc:
        raise ValueError(f"reference: {exc}") from None
    if n != 1:
        raise ValueError(f"reference must hold one sample per modality, got {n}")
    return flat


def _targets(net: _Network, target: Any, n: int) -> np.ndarray | None:
    """Explicit targets as (N,) int64 class indices; None to explain the prediction."""
    if target is None:
        return None
    k = net.w_out.shape[1]
    t = np.asarray(target)
    if t.dtype.kind in "US":  # class labels, looked up in meta['classes']
        if net.meta.get("classes") is None:
            raise ValueError("target given as a label but the model has no meta['classes']")
        classes = [str(c) for c in net.meta["classes"]]
        bad = [v for v in np.atleast_1d(t).tolist() if v not in classes]
        if bad:
            raise ValueError(f"target label {bad[0]!r} is not a class; classes are {classes}")
        t = np.vectorize(classes.index, otypes=[np.int64])(t)
    elif t.dtype.kind not in "iu":
        raise ValueError(f"target must be a class index (int) or an array of N of them, "
                         f"got {target!r}")
    if t.ndim == 0:
        t = np.full(n, int(t), dtype=np.int64)
    if t.shape != (n,):
        raise ValueError(f"target must be one class or one per sample ({n}), got shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"target class indices must be in [0, {k}), got {t.min()}..{t.max()}")
    return t.astype(np.int64, copy=False)


def _pool_bounds(layers: list[dict[str, Any]], low: np.ndarray,
                 high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input bounds pushed through pooling layers: window max of each bound for max
    pooling (``max x`` lies between them), window means for average pooling."""
    for layer in layers:
        args = (layer["shape"], layer["size"], layer["mode"])
        low = ops.pool_forward(np.ascontiguousarray(low[None], dtype=np.float64), *args)[0]
        high = ops.pool_forward(np.ascontiguousarray(high[None], dtype=np.float64), *args)[0]
    return low, high


def _resolve(rule: Rule, net: _Network, m: str, pools: list[dict[str, Any]] = ()) -> Rule:
    """Bind a ZBox without bounds to the modality's z-scored data range, pooled through
    the pooling layers ``pools`` below the rule's layer."""
    if isinstance(rule, ZBox) and not rule.bound:
        low, high = zbox_bounds(net, m)
        if pools:
            low, high = _pool_bounds(pools, low, high)
        return rule.with_bounds(low, high)
    return rule


def _pathway_rules(composite: Composite, net: _Network, m: str) -> list[Rule | None]:
    """One rule per layer of pathway ``m``: the first conv or dense layer gets the
    'input' rule, the others the 'hidden' rule, pooling layers None."""
    rules, pools = [], []
    for layer in net.pathways[m]:
        if layer["type"] == "pool":
            rules.append(None)
            if len(rules) == len(pools) + 1:  # no rule layer yet: pools below the first
                pools.append(layer)
        elif len(rules) == len(pools):
            rules.append(_resolve(composite.rule("input", m), net, m, pools))
        else:
            rules.append(composite.rule("hidden", m))
    return rules


# ----------------------------------------------------------------------- engine
def _pathway_forward(layers, x, clip):
    """A pathway's forward pass (the models' :func:`~pymdbn.models.network.propagate`):
    its top activation and, per layer, (input, pre-activation) for conv and dense layers,
    shaped (n, units), and (input, output) for pooling layers. A convolution's im2col
    matrix is not kept (the backward pass rebuilds it)."""
    recorded = []
    top = propagate(x, layers, clip, recorded, keep_patches=False)
    steps = [(x_in, a) if z is None else (x_in, z.reshape(len(x_in), -1))
             for x_in, z, a in recorded]
    return top, steps


def _forward(net, x):
    """The network's forward pass keeping what the rules need: per layer, its input and
    pre-activation (pathways by name, then the joint stack), the output layer's input
    and the logits."""
    tops, steps = {}, {}
    for m in net.modalities:
        tops[m], steps[m] = _pathway_forward(net.pathways[m], x[m], net.clip)
    joint = []
    top, logits = net.network.head(net.network.fuse(tops), joint)
    return dict(pathways=steps, joint=[(s[0], s[1]) for s in joint], output=(top, logits))


def _totals(r):
    """Each row's relevance sum and absolute sum in float64, shape (n, 2), as
    ``lrp_dense(..., totals=True)`` returns them."""
    xp = backend.namespace(r)
    r64 = r.astype(np.float64)
    return xp.stack([r64.sum(axis=1), xp.abs(r64).sum(axis=1)], axis=1)


def _stabilize(z, eps):
    """``z + eps sign(z)`` with sign(0) = +1 (zennit's stabilizer)."""
    xp = backend.namespace(z)
    return z + xp.where(z >= 0, z.dtype.type(eps), z.dtype.type(-eps))


def _pool_relevance(layer, x, y, r):
    """Relevance through a pooling layer with input ``x`` and output ``y``: winner takes
    all for max pooling, zennit's ``Norm`` rule for average pooling."""
    xp = backend.namespace(r)
    args = (layer["shape"], layer["size"], layer["mode"])
    r = xp.ascontiguousarray(r)
    if layer["mode"] == "max":
        return ops.pool_backward(r, x, *args)
    s = xp.ascontiguousarray(r / _stabilize(y, _POOL_STABILIZER))
    return x * ops.pool_backward(s, x, *args)


def _patch_bounds(rule, layer, dtype):
    """A ZBox's per-pixel bounds as im2col rows, (Ho*Wo, kh*kw*C) each, on the host."""
    d = math.prod(layer["shape"])
    try:
        low = np.broadcast_to(np.asarray(rule.low, dtype=dtype), (d,))
        high = np.broadcast_to(np.asarray(rule.high, dtype=dtype), (d,))
    except ValueError:
        raise ValueError(f"ZBox bounds do not fit a conv layer with {d} input pixels "
                         f"(H*W*C of {layer['shape']}); give scalars or one bound per "
                         f"pixel") from None
    return tuple(ops.im2col(np.ascontiguousarray(v[None]), layer["shape"], layer["kernel"])
                 for v in (low, high))


def _conv_zbox(rule, layer, cols, z, r):
    """ZBox on a convolution's patch matrix: each output's bounds are its patch's. The
    kernel's zbox rule where every patch has the same bounds, else the rule written as
    three epsilon-form products over one denominator ``z^B``."""
    if not rule.bound:
        raise ValueError("ZBox has no bounds: pass low/high, or explain through "
                         "pymdbn.lrp.explain, which derives them from the model")
    low, high = _patch_bounds(rule, layer, cols.dtype)
    if (low == low[0]).all() and (high == high[0]).all():
        return rule.with_bounds(low[0], high[0]).apply(cols, layer["W"], layer["b"], r, z=z)
    xp, device = backend.namespace(cols), backend.device_of(cols)
    w, b = layer["W"], layer["b"]
    low, high = backend.to_device((low, high), device)
    wp, wn, zero = xp.maximum(w, 0), xp.minimum(w, 0), xp.zeros_like(b)
    shift = ops.affine(low, wp, zero, False) + ops.affine(high, wn, zero, False)
    n = len(cols) // len(low)
    zb = (z.reshape(n, len(low), -1) - shift[None]).reshape(len(cols), -1)
    if not rule.use_bias:
        zb -= b
    zb = xp.ascontiguousarray(zb)

    def part(a, weights):  # a * ((r / stab(zb)) weights^T), written over a
        return ops.lrp_dense(a, weights, zero, r, "epsilon", rule.stabilizer, 0.25, 1.0, 0.0,
                             None, None, True, zb, False, True)

    out = part(cols, w)
    out -= part(xp.tile(low, (n, 1)), wp)
    out -= part(xp.tile(high, (n, 1)), wn)
    return out


def _conv_relevance(layer, rule, x, z, r, ref):
    """Relevance through a convolution: the rule on its im2col matrix, then col2im, a
    chunk of images at a time (``conv_chunk``, as the forward pass at inference): the
    rules act on each patch row alone, and the whole batch's matrix (10.8 MB per 128x128
    image at the preset's second layer) took more than 24 GB for 766 images."""
    xp = backend.namespace(x)
    w, b = layer["W"], layer["b"]
    if ref is not None and isinstance(rule, Epsilon):
        x, z, b = x - ref[0], z - ref[1], xp.zeros_like(b)
    n, f = len(x), w.shape[1]
    rows = layer["out"][0] * layer["out"][1]  # output positions per image
    r, z = r.reshape(n, -1), z.reshape(n, -1)
    chunk = conv_chunk(rows, w.shape[0], w.dtype.itemsize)
    parts = []
    for s in range(0, n, chunk):
        cols = ops.im2col(xp.ascontiguousarray(x[s:s + chunk]), layer["shape"], layer["kernel"])
        rc = xp.ascontiguousarray(r[s:s + chunk]).reshape(len(cols), f)
        zc = xp.ascontiguousarray(z[s:s + chunk]).reshape(len(cols), f)
        if isinstance(rule, ZBox):
            r_cols = _conv_zbox(rule, layer, cols, zc, rc)
        else:  # cols is this call's own: the epsilon rule may write its result over it
            r_cols = rule.apply(cols, w, b, rc, z=zc, overwrite_x=True)
        r_img = ops.col2im(r_cols, layer["shape"], layer["kernel"])
        parts.append(r_img.reshape(len(rc) // rows, -1))
    if not parts:
        return xp.zeros((0, math.prod(layer["shape"])), dtype=x.dtype)
    return parts[0] if len(parts) == 1 else xp.concatenate(parts)


def _backward(layers, rules, steps, r, record, totals=False, overwrite_input=False,
              refs=None):
    """Relevance down a stack of layers; ``record`` collects it top-down. With
    ``totals``, also the row sums and absolute row sums of the bottom relevance; with
    ``overwrite_input``, the bottom relevance may be written over the stack's input
    (dense bottom layers only; a convolution writes over its own im2col matrix).
    ``steps``: per layer, its (input, pre-activation) ((input, output) for pooling);
    ``refs``: the same for the reference, used by Epsilon rules (pooling ignores it)."""
    last = len(layers) - 1
    sums = None
    refs = [None] * len(layers) if refs is None else refs
    for k, (layer, rule, (x, z), ref) in enumerate(zip(layers[::-1], rules[::-1], steps[::-1],
                                                       refs[::-1])):
        kind = layer["type"]
        if kind == "pool":
            r = _pool_relevance(layer, x, z, r)
        elif kind == "conv":
            r = _conv_relevance(layer, rule, x, z, r, ref)
        else:
            w, b = layer["W"], layer["b"]
            owned = overwrite_input
            if ref is not None and isinstance(rule, Epsilon):
                # Differences from the reference: z - z_ref = (x - x_ref) W, the bias cancels.
                x, z, b, owned = x - ref[0], z - ref[1], backend.namespace(b).zeros_like(b), True
            # The arrays are the validated network's and the forward pass's own: no checks.
            if totals and k == last:
                r, sums = rule.apply(x, w, b, r, z=z, return_totals=True, overwrite_x=owned)
            else:
                r = rule.apply(x, w, b, r, z=z)
        if totals and k == last and sums is None:
            sums = _totals(r)  # the input relevance (after col2im), not the patch rows
        if record is not None:
            record.append(r)
    return (r, sums) if totals else r


def _explain_batch(net, rules, x, target, record_layers, owned=False, ref=None):
    """Explain one chunk; returns the arrays that make up an Explanation. ``ref``: the
    reference's forward pass (:func:`_forward` of its one sample) or None."""
    fw = _forward(net, x)
    top, logits = fw["output"]
    xp = backend.namespace(logits)

    rows = xp.arange(len(logits))
    t = xp.argmax(logits, axis=1) if target is None else backend.to_device(
        target, backend.device_of(logits))
    r_out = xp.zeros_like(logits)
    out_ref = ref is not None and isinstance(rules["output"], Epsilon)
    # Against a reference, the explained quantity is the logit's difference from its own.
    r_out[rows, t] = logits[rows, t] - (ref["output"][1][0, t] if out_ref else 0)

    joint_rec = [r_out] if record_layers else None
    if out_ref:
        r = rules["output"].apply(top - ref["output"][0], net.w_out, xp.zeros_like(net.b_out),
                                  r_out, z=logits - ref["output"][1])
    else:
        r = rules["output"].apply(top, net.w_out, net.b_out, r_out, z=logits)
    if joint_rec is not None:
        joint_rec.append(r)
    code_r = _backward(net.joint, rules["joint"], fw["joint"], r, joint_rec,
                       refs=None if ref is None else ref["joint"])

    relevance, totals, path_rec = {}, {}, {}
    for m in net.modalities:
        steps = fw["pathways"].pop(m)  # frees this pathway's activations early
        r_top = xp.ascontiguousarray(code_r[:, net.code_slices[m]])
        rec = [r_top] if record_layers else None
        relevance[m], totals[m] = _backward(net.pathways[m], rules["pathways"][m], steps,
                                            r_top, rec, totals=True, overwrite_input=owned,
                                            refs=None if ref is None else ref["pathways"][m])
        del steps
        if rec is not None:
            path_rec[m] = rec[::-1]
    layers = {"pathways": path_rec, "joint": joint_rec[::-1]} if record_layers else None
    return dict(relevance=relevance, totals=totals, logits=logits, target=t.astype(np.int64),
                code_relevance=code_r, layers=layers, explained=r_out[rows, t])


def _concat(chunks: list[Any]) -> Any:
    """Concatenate per-chunk results along the sample axis, nested containers too."""
    first = chunks[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: _concat([c[k] for c in chunks]) for k in first}
    if isinstance(first, list):
        return [_concat([c[i] for c in chunks]) for i in range(len(first))]
    return first if len(chunks) == 1 else np.concatenate(chunks, axis=0)


def _shares(totals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each entry over the sum of all entries; NaN where that sum is 0."""
    total = np.sum(list(totals.values()), axis=0)
    nonzero = total != 0
    out = {}
    for m, v in totals.items():
        share = np.full(total.shape, np.nan)
        np.divide(v, total, out=share, where=nonzero)
        out[m] = share
    return out


def _run(net: _Network, x: dict[str, np.ndarray], shapes: dict, n: int, target: Any,
         composite: Any, return_layers: bool, batch_size: Any, owned: bool,
         reference: dict[str, np.ndarray] | None = None, device: str = "cpu",
         dtype: str | None = None) -> Explanation:
    """``owned``: ``x`` holds this call's own z-scored copies, which the input layers'
    relevance may overwrite. ``reference``: validated (1, D) inputs or None. ``device``:
    where the passes run; the inputs go there once, each chunk's results come back.
    ``dtype``: 'bfloat16' runs the products with bfloat16 operands."""
    composite = get_composite(composite)
    backend.check_device(device)
    with backend.matmul_precision(backend.precision_of(dtype), device):
        return _run_passes(net, x, shapes, n, target, composite, return_layers, batch_size,
                           owned, reference, device)


#: Layer activations that :func:`explain` holds per chunk of samples by default (each
#: layer's output, pre-activation and relevance): a 128x128 slice through
#: ``presets.conv_pathway(128)`` has 1.2 M of them, and 766 slices at once took 13 GB.
_EXPLAIN_BYTES = 256 << 20


def _default_batch_size(net: _Network, n: int) -> int:
    """All ``n`` samples at once unless their activations would pass _EXPLAIN_BYTES
    (dense pathways: thousands of samples per chunk)."""
    units = sum(_width(layer) for m in net.modalities for layer in net.pathways[m])
    per_sample = 3 * np.dtype(net.dtype).itemsize * max(units, 1)
    return max(1, min(n, _EXPLAIN_BYTES // per_sample))


def _run_passes(net, x, shapes, n, target, composite, return_layers, batch_size, owned,
                reference, device):
    """The passes of :func:`_run`, in the product precision it set."""
    if device != "cpu":
        net.to(device)
        x, reference = backend.to_device((x, reference), device)
        owned = True  # the uploads are this call's own copies
    if batch_size is None:
        batch_size = _default_batch_size(net, n)
    elif not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    t = _targets(net, target, n)
    rules = {
        "output": composite.rule("output"),
        "joint": [composite.rule("joint")] * len(net.joint),
        "pathways": {
            m: _pathway_rules(composite, net, m) for m in net.modalities
        },
    }
    ref = None if reference is None else _forward(net, reference)
    chunks = []
    # Several chunks: each one's temporaries reuse the last one's buffers (one chunk has
    # nothing to reuse, and one patient's latency would pay for the handler's switch).
    with backend.array_pool() if batch_size < n else contextlib.nullcontext():
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            whole = start == 0 and batch_size >= n
            chunk = _explain_batch(net, rules,
                                   x if whole else {m: x[m][rows] for m in net.modalities},
                                   None if t is None else t[rows], return_layers, owned, ref)
            chunks.append(chunk if device == "cpu" else backend.to_device(chunk, "cpu"))
    out = chunks[0] if len(chunks) == 1 else _concat(chunks)
    if device != "cpu":
        ref = backend.to_device(ref, "cpu")

    relevance = out["relevance"]
    sums = {m: out["totals"][m][:, 0] for m in net.modalities}
    abs_sums = {m: out["totals"][m][:, 1] for m in net.modalities}
    explained = out["explained"]
    shares = shares_from_totals(sums, abs_sums)
    classes = net.meta.get("classes")
    return Explanation(
        relevance={m: relevance[m].reshape(shapes[m]) for m in net.modalities},
        logits=out["logits"],
        target=out["target"],
        shares=shares["shares"],
        abs_shares=shares["abs_shares"],
        net_shares=shares["net_shares"],
        code_relevance=out["code_relevance"],
        code_slices=dict(net.code_slices),
        conservation_residual=explained.astype(np.float64) - np.sum(list(sums.values()), axis=0),
        composite=composite,
        layers=out["layers"],
        reference_logits=None if ref is None else ref["output"][1][0].copy(),
        classes=None if classes is None or len(classes) != net.w_out.shape[1] else classes,
    )


def explain(model_dict: Mapping[str, Any], X_scaled: Any, target: Any = None,
            composite: str | Composite = "epsilon", return_layers: bool = False,
            batch_size: int | None = None, reference: Any = None,
            device: str = "cpu", dtype: str | None = None) -> Explanation:
    """Explain a network given as a dict, on already z-scored inputs.

    Parameters
    ----------
    model_dict : dict
        The layout of ``MDBN.to_dict()`` (see the module docstring).
    X_scaled : dict of str -> array_like of shape (N, ...), or array_like
        Z-scored inputs per modality, flattened (N, D) or as images
        (N, H, W); a single array for a one-modality network.
    target, composite, return_layers, batch_size
        As for :func:`pymdbn.lrp.explain`.
    reference : dict of str -> array_like, or array_like, optional
        As for :func:`pymdbn.lrp.explain`, but z-scored like ``X_scaled``.
    device : {'cpu', 'cuda'}, default 'cpu'
        As for :func:`pymdbn.lrp.explain`.
    dtype : {None, 'float32', 'float64', 'bfloat16'}, default None
        As for :func:`pymdbn.lrp.explain`; None computes in the weights' dtype.

    Returns
    -------
    Explanation
    """
    net = _Network(model_dict)
    x, shapes, n = _inputs(net, X_scaled, scale=False)
    ref = _reference_inputs(net, reference, scale=False)
    return _run(net, x, shapes, n, target, composite, return_layers, batch_size, owned=False,
                reference=ref, device=device, dtype=dtype)


def explain_model(model: Any, X: Any, target: Any = None, composite: str | Composite = "epsilon",
                  return_layers: bool = False, batch_size: int | None = None,
                  reference: Any = None, scaled: bool = False,
                  device: str | None = None, dtype: str | None = None) -> Explanation:
    """Explain a (multimodal) DBN's decisions by layer-wise relevance propagation.

    Relevance starts at the target logit (the others set to 0) and is
    propagated down to every modality's input pixels with the rules of
    ``composite`` (Bach et al. [1]_, Montavon et al. [2]_; rule and
    composite names as in zennit, Anders et al. [3]_). The computation is
    batched and runs in the model's weight dtype on the compiled kernels.

    Parameters
    ----------
    model : object with ``to_dict()``, or dict
        An ``MDBN`` or ``DBN``, or its ``to_dict()`` layout.
    X : dict of str -> array_like of shape (N, H, W) or (N, D), or array_like
        Raw (unscaled) inputs of every modality, as given to the model's
        ``predict``; a single array for a one-modality model. They are
        z-scored with the model's scalers, ``x' = (x - mean) / scale``.
    target : int, str, or array_like of shape (N,), optional
        Class to explain per sample, as an index into the logits (or a
        label from ``meta['classes']``). Default: the predicted class.
    composite : str or Composite, default 'epsilon'
        Rules per layer: a preset of :data:`pymdbn.lrp.COMPOSITES` or a
        :class:`~pymdbn.lrp.Composite`. A ZBox input rule without bounds
        gets each modality's z-scored data range (:func:`zbox_bounds`).
    return_layers : bool, default False
        Also return the relevance at every layer (``Explanation.layers``).
    batch_size : int, optional
        Explain this many samples at a time to bound memory (the result
        does not depend on it, up to rounding). Default: all at once, or
        chunks whose layer activations stay near 256 MiB (convolutional
        pathways: a few dozen 128x128 images).
    reference : dict of str -> array_like, or array_like, optional
        One raw input per modality (an image, shaped like one sample of
        ``X``), e.g. the mean image of healthy training patients. Layers
        whose rule is :class:`~pymdbn.lrp.Epsilon` then propagate the
        differences from the reference's activations, ``R_i = sum_j (x_i -
        x~_i) w_ij / (z_j - z~_j + eps) R_j`` (the bias cancels), and the
        explained quantity is ``logit[target] - logit~[target]`` when the
        output layer's rule is Epsilon (the Rescale rule of DeepLIFT,
        Shrikumar et al. [4]_, in LRP's form). Sigmoid units are never off:
        without a reference a unit at 0.5 with a negative weight counts
        against the class even when the input lowered it from 0.9, which
        can give a lesion the model relies on negative relevance. Other
        rules ignore the reference. Default: None, LRP as published.
    scaled : bool, default False
        ``X`` (and ``reference``) are already z-scored: the model's scalers are
        not applied (the dict layout may then omit ``scalers``). For models that
        scale their inputs in their own way, as
        :meth:`pymdbn.EarlyFusionDBN.explain` does.
    device : {'cpu', 'cuda'} or None, default None
        Where the forward and backward passes run; None: the model's ``device``
        (``'cpu'`` for a dict). Inputs are checked and z-scored on the host, uploaded
        once, and the relevance comes back as NumPy arrays.
    dtype : {None, 'float32', 'float64', 'bfloat16'}, default None
        ``'bfloat16'`` rounds the operands of the passes' matrix products to bfloat16
        (float32 sums and weights; see :class:`pymdbn.RBM`); other values leave the
        weights' dtype in charge. None: the model's ``dtype`` parameter.

    Returns
    -------
    Explanation
        Relevance w.r.t. the z-scored pixels, shaped like ``X``; logits,
        targets, modality shares and the conservation residual.

    Raises
    ------
    ValueError
        For a malformed model, unknown or missing modalities, inputs of the
        wrong shape, or a bad target.

    References
    ----------
    .. [1] S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller,
       W. Samek, "On pixel-wise explanations for non-linear classifier
       decisions by layer-wise relevance propagation", PLoS ONE 10(7),
       e0130140, 2015.
    .. [2] G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller,
       "Layer-wise relevance propagation: an overview", in Explainable AI,
       LNCS 11700, 193-209, Springer, 2019.
    .. [3] C. J. Anders, D. Neumann, W. Samek, K.-R. Müller, S. Lapuschkin,
       "Software for dataset-wide XAI: from local explanations to global
       insights with Zennit, CoRelAy, and ViRelAy", arXiv:2106.13200, 2021.
    .. [4] A. Shrikumar, P. Greenside, A. Kundaje, "Learning important
       features through propagating activation differences", ICML 2017,
       PMLR 70, 3145-3153.
    """
    if device is None:
        device = getattr(model, "device", "cpu") if not isinstance(model, Mapping) else "cpu"
    if dtype is None and not isinstance(model, Mapping):
        dtype = getattr(model, "dtype", None)
    if isinstance(model, Mapping):
        model_dict = model
    elif callable(getattr(model, "to_dict", None)):
        model_dict = model.to_dict()
    else:
        raise ValueError(f"model must have to_dict() or be its dict layout, got "
                         f"{type(model).__name__}")
    if scaled:
        return explain(model_dict, X, target, composite, return_layers, batch_size, reference,
                       device, dtype)
    net = _Network(model_dict)
    x, shapes, n = _inputs(net, X, scale=True)
    ref = _reference_inputs(net, reference, scale=True)
    return _run(net, x, shapes, n, target, composite, return_layers, batch_size, owned=True,
                reference=ref, device=device, dtype=dtype)
