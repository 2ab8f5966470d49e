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

Forward: the models' own pass (:class:`pymdbn.models.network.Network`): every
pathway and joint layer computes ``sigma(clip(a W + b))``, the fused code is the
concatenation of the pathway tops in ``modalities`` order and the logits are
``code W_out + b_out`` (through the joint layers, if any). The backward pass applies
one rule per layer (a :class:`~pymdbn.lrp.composites.Composite`) with the backend's
``lrp_dense``; relevance passes the sigmoids unchanged. The forward
pre-activations are kept and handed to the epsilon rule, so explaining costs
one forward pass plus one matrix product per layer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from pymdbn import backend
from pymdbn.lrp.composites import Composite, get_composite
from pymdbn.lrp.explanation import Explanation, shares_from_totals
from pymdbn.lrp.rules import Epsilon, Rule, ZBox
from pymdbn.models.network import Network
from pymdbn.preprocessing import standardize

__all__ = ["explain", "explain_model", "zbox_bounds"]


# --------------------------------------------------------------------- network
def _layer_list(entries: Any, where: str, dtype: np.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    layers = []
    for k, layer in enumerate(entries):
        try:
            w, b = layer["W"], layer["b"]
        except (TypeError, KeyError):
            raise ValueError(f"{where}[{k}] must be a dict with 'W' and 'b'") from None
        w = np.ascontiguousarray(w, dtype=dtype)
        b = np.ascontiguousarray(b, dtype=dtype)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"{where}[{k}]: W must be (n_in, n_out) and b (n_out,), got "
                             f"{w.shape} and {b.shape}")
        if layers and layers[-1][0].shape[1] != w.shape[0]:
            raise ValueError(f"{where}[{k}]: W has {w.shape[0]} rows but the layer below has "
                             f"{layers[-1][0].shape[1]} units")
        layers.append((w, b))
    return layers


def _weights_dtype(model: Mapping[str, Any]) -> np.dtype:
    """float32 when every weight is float32, else float64."""
    arrays = [model["output"]["W"], *(layer["W"] for layer in model.get("joint") or [])]
    for layers in model["pathways"].values():
        arrays.extend(layer["W"] for layer in layers)
    if all(np.asarray(a).dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class _Network:
    """The validated, contiguous arrays of a model dict, in one dtype."""

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
            layers = _layer_list(pathways[m], f"pathways[{m!r}]", self.dtype)
            if not layers:
                raise ValueError(f"pathways[{m!r}] has no layers")
            self.pathways[m] = layers
        self.code_slices, start = {}, 0
        for m in modalities:
            width = self.pathways[m][-1][0].shape[1]
            self.code_slices[m] = slice(start, start + width)
            start += width
        self.joint = _layer_list(model.get("joint") or [], "joint", self.dtype)
        if self.joint and self.joint[0][0].shape[0] != start:
            raise ValueError(f"joint[0]: W has {self.joint[0][0].shape[0]} rows but the fused "
                             f"code has {start} units")
        (self.w_out, self.b_out), = _layer_list([output], "output", self.dtype)
        top = self.joint[-1][0].shape[1] if self.joint else start
        if self.w_out.shape[0] != top:
            raise ValueError(f"output: W has {self.w_out.shape[0]} rows but the layer below "
                             f"has {top} units")
        clip = model.get("clip")
        self.clip = None if clip is None else float(clip)

        def dicts(layers):
            return [{"W": w, "b": b} for w, b in layers]
        self.network = Network({m: dicts(self.pathways[m]) for m in modalities}, modalities,
                               dicts(self.joint), {"W": self.w_out, "b": self.b_out}, self.clip)
        self.meta = dict(model.get("meta") or {})
        self.scalers = dict(model.get("scalers") or {})

    def to(self, device: str) -> _Network:
        """The network's arrays on ``device`` (the forward and backward passes follow)."""
        self.pathways = backend.to_device(self.pathways, device)
        self.joint = backend.to_device(self.joint, device)
        self.w_out, self.b_out = backend.to_device((self.w_out, self.b_out), device)
        n = self.network
        n.pathways, n.joint, n.output = backend.to_device((n.pathways, n.joint, n.output),
                                                          device)
        return self

    def n_features(self, m: str) -> int:
        return self.pathways[m][0][0].shape[0]

    def image_shape(self, m: str) -> tuple[int, ...] | None:
        shape = (self.meta.get("image_shapes") or {}).get(m)
        return None if shape is None else tuple(int(s) for s in shape)


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


def _resolve(rule: Rule, net: _Network, m: str) -> Rule:
    """Bind a ZBox without bounds to the modality's z-scored data range."""
    if isinstance(rule, ZBox) and not rule.bound:
        return rule.with_bounds(*zbox_bounds(net, m))
    return rule


# ----------------------------------------------------------------------- engine
def _forward(net, x):
    """The network's forward pass keeping what the rules need: per layer, its input and
    pre-activation (pathways by name, then the joint stack), the output layer's input
    and the logits."""
    steps, joint = {}, []
    top, logits = net.network.head(net.network.fuse(net.network.codes(x, steps)), joint)
    return dict(pathways={m: [(s[0], s[1]) for s in layers] for m, layers in steps.items()},
                joint=[(s[0], s[1]) for s in joint], output=(top, logits))


def _backward(layers, rules, steps, r, record, totals=False, overwrite_input=False,
              refs=None):
    """Relevance down a stack of layers; ``record`` collects it top-down. With
    ``totals``, also the row sums and absolute row sums of the bottom relevance; with
    ``overwrite_input``, the bottom relevance may be written over the stack's input.
    ``steps``: per layer, its (input, pre-activation); ``refs``: the same for the
    reference, used by Epsilon rules."""
    last = len(layers) - 1
    sums = None
    refs = [None] * len(layers) if refs is None else refs
    for k, ((w, b), rule, (x, z), ref) in enumerate(zip(layers[::-1], rules[::-1], steps[::-1],
                                                        refs[::-1])):
        owned = overwrite_input
        if ref is not None and isinstance(rule, Epsilon):
            # Differences from the reference: z - z_ref = (x - x_ref) W, the bias cancels.
            x, z, b, owned = x - ref[0], z - ref[1], backend.namespace(b).zeros_like(b), True
        # The arrays are the validated network's and the forward pass's own: no checks.
        if totals and k == last:
            r, sums = rule.apply(x, w, b, r, z=z, return_totals=True, overwrite_x=owned)
        else:
            r = rule.apply(x, w, b, r, z=z)
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


def _run_passes(net, x, shapes, n, target, composite, return_layers, batch_size, owned,
                reference, device):
    """The passes of :func:`_run`, in the product precision it set."""
    if device != "cpu":
        net.to(device)
        x, reference = backend.to_device((x, reference), device)
        owned = True  # the uploads are this call's own copies
    if batch_size is None:
        batch_size = n
    elif not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    t = _targets(net, target, n)
    rules = {
        "output": composite.rule("output"),
        "joint": [composite.rule("joint")] * len(net.joint),
        "pathways": {
            m: [_resolve(composite.rule("input", m), net, m)]
            + [composite.rule("hidden", m)] * (len(net.pathways[m]) - 1)
            for m in net.modalities
        },
    }
    ref = None if reference is None else _forward(net, reference)
    chunks = []
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        whole = start == 0 and batch_size >= n
        chunk = _explain_batch(net, rules, x if whole else {m: x[m][rows] for m in net.modalities},
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
        does not depend on it, up to rounding). Default: all at once.
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
