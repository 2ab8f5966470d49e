"""LRP through convolutional and pooling pathway layers (pymdbn.lrp._engine).

Three independent references: the explicit unrolled network (each convolution as its
dense Toeplitz matrix, average pooling as a matrix of 1/p^2, max pooling as the
selection of each window's argmax found by loops) run through the dense reference rules
layer by layer; zennit itself on the equivalent PyTorch model; and conservation.
"""

import importlib
import math
import sys
import types

import numpy as np
import pytest

from conftest import tol
from pymdbn import backend
from pymdbn.backend import reference as ref
from pymdbn.lrp import (AlphaBeta, Composite, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus,
                        get_composite, zbox_bounds)
from pymdbn.lrp import _engine

# --------------------------------------------------------------------------- models
# Pathway specs, bottom first: ('conv', filters, (kh, kw)), ('pool', size, mode),
# ('dense', units). Odd sizes, so that the pools drop a border.
CONV_MAX_AVG = [("conv", 3, (3, 3)), ("pool", 2, "max"), ("conv", 4, (2, 2)),
                ("pool", 2, "avg"), ("dense", 5)]
CONV_AVG_MAX = [("conv", 3, (3, 2)), ("pool", 2, "avg"), ("conv", 4, (2, 2)),
                ("pool", 2, "max"), ("dense", 5)]
POOL_FIRST = [("pool", 2, "max"), ("conv", 3, (2, 2)), ("dense", 4)]
IMAGE = (12, 11, 2)  # H, W, C


def make_model(rng, pathways, joint=(), n_classes=3, clip=None, dtype=np.float64, bias=0.3,
               scale_per_pixel=True):
    """A random network dict. ``pathways``: name -> (image shape (H, W, C) or (D,),
    layer specs)."""
    def weights(n_in, n_out):
        return ((rng.standard_normal((n_in, n_out)) * 2 / np.sqrt(n_in)).astype(dtype),
                (bias * rng.standard_normal(n_out)).astype(dtype))

    layers, shapes, scalers = {}, {}, {}
    for name, (image, specs) in pathways.items():
        shape, width, out = tuple(image), math.prod(image), []
        for spec in specs:
            if spec[0] == "conv":
                (h, w, c), f, (kh, kw) = shape, spec[1], spec[2]
                wt, b = weights(kh * kw * c, f)
                out.append({"type": "conv", "W": wt, "b": b, "shape": shape,
                            "kernel": (kh, kw)})
                shape = (h - kh + 1, w - kw + 1, f)
                width = math.prod(shape)
            elif spec[0] == "pool":
                (h, w, c), p = shape, spec[1]
                out.append({"type": "pool", "size": p, "mode": spec[2], "shape": shape})
                shape = (h // p, w // p, c)
                width = math.prod(shape)
            else:
                wt, b = weights(width, spec[1])
                out.append({"W": wt, "b": b})
                width = spec[1]
        layers[name] = out
        shapes[name] = list(image[:2]) if len(image) == 3 and image[2] == 1 else list(image)
        d = math.prod(image)
        scalers[name] = {"mean": rng.uniform(0.2, 0.6, d) if scale_per_pixel else 0.4,
                         "scale": rng.uniform(0.1, 0.4)}
    code = sum(_top_width(v) for v in layers.values())
    sizes = [code, *joint]
    joint_layers = [dict(zip("Wb", weights(a, b))) for a, b in zip(sizes[:-1], sizes[1:])]
    return {"modalities": list(pathways), "pathways": layers, "joint": joint_layers,
            "output": dict(zip("Wb", weights(sizes[-1], n_classes))), "clip": clip,
            "scalers": scalers, "meta": {"image_shapes": shapes}}


def _top_width(layers):
    top = layers[-1]
    if "type" not in top:
        return top["W"].shape[1]
    if top["type"] == "conv":
        (h, w, _), (kh, kw) = top["shape"], top["kernel"]
        return (h - kh + 1) * (w - kw + 1) * top["W"].shape[1]
    (h, w, c), p = top["shape"], top["size"]
    return (h // p) * (w // p) * c


def inputs(rng, model, n):
    return {m: rng.standard_normal((n, *model["meta"]["image_shapes"][m]))
            .astype(model["output"]["W"].dtype) for m in model["modalities"]}


def as_float64(model):
    def cast(v):
        if isinstance(v, dict):
            return {k: cast(x) for k, x in v.items()}
        if isinstance(v, list):
            return [cast(x) for x in v]
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            return v.astype(np.float64)
        return v
    return cast(model)


# ------------------------------------------------------- the unrolled reference
def toeplitz(layer):
    """A convolution as its dense matrix (H*W*C, Ho*Wo*F), tiled bias and the
    connectivity mask, by loops over the definition."""
    (h, w, c), (kh, kw), wt = layer["shape"], layer["kernel"], layer["W"]
    f = wt.shape[1]
    ho, wo = h - kh + 1, w - kw + 1
    big = np.zeros((h * w * c, ho * wo * f))
    mask = np.zeros_like(big)
    for oy in range(ho):
        for ox in range(wo):
            for dy in range(kh):
                for dx in range(kw):
                    for ch in range(c):
                        i = ((oy + dy) * w + (ox + dx)) * c + ch
                        cols = slice((oy * wo + ox) * f, (oy * wo + ox + 1) * f)
                        big[i, cols] = wt[(dy * kw + dx) * c + ch]
                        mask[i, cols] = 1.0
    return big, np.tile(layer["b"], ho * wo), mask


def pool_windows(layer):
    """Per output unit (oy, ox, c), the input indices of its window, row-major."""
    (h, w, c), p = layer["shape"], layer["size"]
    out = []
    for oy in range(h // p):
        for ox in range(w // p):
            for ch in range(c):
                out.append([((oy * p + dy) * w + (ox * p + dx)) * c + ch
                            for dy in range(p) for dx in range(p)])
    return np.array(out)


def avg_matrix(layer):
    win = pool_windows(layer)
    a = np.zeros((math.prod(layer["shape"]), len(win)))
    for j, idx in enumerate(win):
        a[idx, j] = 1.0 / layer["size"] ** 2
    return a


def argmax_select(layer, x):
    """Per sample and output unit, the input index of the window's first maximum."""
    win = pool_windows(layer)
    sel = np.zeros((len(x), len(win)), dtype=np.int64)
    for n in range(len(x)):
        for j, idx in enumerate(win):
            best = idx[0]
            for i in idx[1:]:
                if x[n, i] > x[n, best]:
                    best = i
            sel[n, j] = best
    return sel


def rule_kwargs(rule):
    name = {"Epsilon": "epsilon", "ZPlus": "zplus", "AlphaBeta": "alpha_beta",
            "Gamma": "gamma", "ZBox": "zbox", "Flat": "flat", "WSquare": "wsquare"}[
        type(rule).__name__]
    kw = {"epsilon": getattr(rule, "epsilon", getattr(rule, "stabilizer", 1e-6))}
    if hasattr(rule, "use_bias"):
        kw["use_bias"] = rule.use_bias
    if isinstance(rule, Gamma):
        kw["gamma"] = rule.gamma
    if isinstance(rule, AlphaBeta):
        kw.update(alpha=rule.alpha, beta=rule.beta)
    return name, kw


def unrolled_explain(model, x, target, composite, clip):
    """LRP on the unrolled network in float64, every layer a dense matrix (the pools by
    their own definitions); returns the input relevance per modality and the logits."""
    c = get_composite(composite)
    sigmoid = lambda z: 1 / (1 + np.exp(-(z if clip is None else np.clip(z, -clip, clip))))
    traces, tops = {}, []
    for m in model["modalities"]:
        a, trace = np.asarray(x[m], np.float64).reshape(len(x[m]), -1), []
        for layer in model["pathways"][m]:
            kind = layer.get("type", "dense")
            if kind == "conv":
                w, b, mask = toeplitz(layer)
            elif kind == "dense":
                w, b = layer["W"], layer["b"]
                mask = np.ones_like(w)
            if kind == "pool" and layer["mode"] == "max":
                sel = argmax_select(layer, a)
                trace.append(("max", a, sel, None))
                a = np.take_along_axis(a, sel, axis=1)
            elif kind == "pool":
                amat = avg_matrix(layer)
                trace.append(("avg", a, amat, None))
                a = a @ amat
            else:
                trace.append(("rule", a, (w, b, mask), layer))
                a = sigmoid(a @ w + b)
        traces[m] = trace
        tops.append(a)
    code = np.concatenate(tops, axis=1)
    joint_trace = []
    for layer in model["joint"]:
        joint_trace.append((code, layer))
        code = sigmoid(code @ layer["W"] + layer["b"])
    logits = code @ model["output"]["W"] + model["output"]["b"]
    t = logits.argmax(axis=1) if target is None else np.broadcast_to(target, len(logits))
    r = np.zeros_like(logits)
    r[np.arange(len(r)), t] = logits[np.arange(len(r)), t]

    def dense_rule(rule, a, w, b, r, mask=None, low=None, high=None):
        name, kw = rule_kwargs(rule)
        if name == "flat":  # spread over each output's connected inputs
            return (r / mask.sum(axis=0)) @ mask.T
        if name == "zbox":
            kw.update(low=low, high=high)
        return ref.lrp_dense(a, w, b, r, name, **kw)

    r = dense_rule(c.rule("output"), code, model["output"]["W"], model["output"]["b"], r)
    for a, layer in joint_trace[::-1]:
        r = dense_rule(c.rule("joint"), a, layer["W"], layer["b"], r)
    out, start = {}, 0
    for m, top in zip(model["modalities"], tops):
        rm = r[:, start:start + top.shape[1]]
        start += top.shape[1]
        trace = traces[m]
        first = next(k for k, s in enumerate(trace) if s[0] == "rule")
        for k in range(len(trace) - 1, -1, -1):
            kind, a, what, layer = trace[k]
            if kind == "max":
                grad = np.zeros_like(a)
                np.put_along_axis(grad, what, rm, axis=1)  # one winner per window
                rm = grad
            elif kind == "avg":  # zennit's Norm: epsilon on the pooling matrix, no bias
                rm = ref.lrp_dense(a, what, np.zeros(what.shape[1]), rm, "epsilon",
                                   epsilon=1e-6)
            else:
                rule = c.rule("input" if k == first else "hidden", m)
                low = high = None
                if isinstance(rule, ZBox):  # reference_explain binds derived bounds
                    low = np.broadcast_to(rule.low, a.shape[1])
                    high = np.broadcast_to(rule.high, a.shape[1])
                rm = dense_rule(rule, a, *what[:2], rm, mask=what[2], low=low, high=high)
        out[m] = rm
    return out, logits


def _pool_bounds_full(model, m, k_first):
    """The modality's ZBox pixel bounds through the pools below its first rule layer,
    window by window: max of each bound for max pooling, the mean for average pooling."""
    low, high = zbox_bounds(model, m)
    for layer in model["pathways"][m][:k_first]:
        win = pool_windows(layer)
        red = np.max if layer["mode"] == "max" else np.mean
        low = np.array([red(low[idx]) for idx in win])
        high = np.array([red(high[idx]) for idx in win])
    return low, high


def reference_explain(model, x, target, composite):
    """:func:`unrolled_explain`, with derived ZBox bounds pooled window by window."""
    c = get_composite(composite)
    overrides = {}
    for m in model["modalities"]:
        rule = c.rule("input", m)
        if isinstance(rule, ZBox) and not rule.bound:
            k = next(k for k, layer in enumerate(model["pathways"][m])
                     if layer.get("type") != "pool")
            overrides[m] = {"input": rule.with_bounds(*_pool_bounds_full(model, m, k))}
    if overrides:
        c = Composite(input=c.rules["input"], hidden=c.rules["hidden"],
                      joint=c.rules["joint"], output=c.rules["output"],
                      per_modality={**c.per_modality, **{m: {**c.per_modality.get(m, {}), **o}
                                                         for m, o in overrides.items()}})
    return unrolled_explain(model, x, target, c, model["clip"])


COMPOSITES = {
    "epsilon": "epsilon",
    # A float32 chain of eps=1e-6 layers can meet a near-zero z: the backends' GEMM
    # orders then differ by more than rounding (test_numpy_and_cpu_backends_agree).
    "epsilon-0.01": get_composite("epsilon", epsilon=0.01),
    "epsilon-nobias": Composite(input=Epsilon(0.01, use_bias=False), hidden=Epsilon(0.1),
                                joint=Epsilon(use_bias=False)),
    "epsilon_plus": "epsilon_plus",
    "alpha_beta": Composite(input=AlphaBeta(2, 1), hidden=AlphaBeta(3, 2, use_bias=False)),
    "epsilon_gamma_box": "epsilon_gamma_box",  # per-pixel bounds: varying patch bounds
    "zbox-scalar-gamma": Composite(input=ZBox(-3.0, 2.5), hidden=Gamma(0.5)),
    "epsilon_plus_flat": "epsilon_plus_flat",
    "wsquare-flat": Composite(input=WSquare(), hidden=Flat()),
}
ARCHS = {
    "conv-max-conv-avg": {"img": (IMAGE, CONV_MAX_AVG)},
    "conv-avg-conv-max+dense": {"img": (IMAGE, CONV_AVG_MAX), "tab": ((7,), [("dense", 4)])},
    "pool-first": {"img": ((9, 8, 1), POOL_FIRST)},
}


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name", list(COMPOSITES))
def test_matches_unrolled_network_float64(arch, name, chunked, monkeypatch):
    if chunked:  # the conv layers' relevance one image at a time (bounded memory)
        import pymdbn.models.network as network

        monkeypatch.setattr(network, "_IM2COL_BYTES", 1)
    rng = np.random.default_rng(7)
    model = make_model(rng, ARCHS[arch], joint=(6,) if "tab" in ARCHS[arch] else (), clip=4.0)
    x = inputs(rng, model, 5)
    ex = _engine.explain(model, x, composite=COMPOSITES[name])
    want, logits = reference_explain(model, x, ex.target, COMPOSITES[name])
    np.testing.assert_allclose(ex.logits, logits, rtol=1e-12, atol=1e-12)
    t = tol(np.float64, "lrp_definition")
    for m in model["modalities"]:
        got = ex.relevance[m].reshape(len(x[m]), -1)
        np.testing.assert_allclose(got, want[m], rtol=t["rtol"],
                                   atol=t["atol"] * np.abs(want[m]).max())
    # The totals behind shares and the residual are the input relevance's (after col2im).
    total = sum(want[m].sum(axis=1) for m in model["modalities"])
    explained = ex.logits[np.arange(len(total)), ex.target]
    scale = sum(np.abs(want[m]).sum(axis=1) for m in model["modalities"])
    np.testing.assert_allclose(ex.conservation_residual, explained - total, rtol=1e-9,
                               atol=1e-12 * scale.max())


def test_default_chunks_bound_the_activations(monkeypatch):
    """By default explain takes as many samples at a time as keep its activations near
    _EXPLAIN_BYTES; the chunks give the same relevance as one pass."""
    rng = np.random.default_rng(3)
    model = make_model(rng, ARCHS["conv-avg-conv-max+dense"], joint=(6,), clip=4.0)
    x = inputs(rng, model, 7)
    whole = _engine.explain(model, x, composite="epsilon_plus", batch_size=7)
    net = _engine._Network(model)
    units = sum(_engine._width(layer) for m in net.modalities for layer in net.pathways[m])
    assert _engine._default_batch_size(net, 7) == 7
    monkeypatch.setattr(_engine, "_EXPLAIN_BYTES", 3 * 8 * units * 2)  # two samples' worth
    assert _engine._default_batch_size(net, 7) == 2
    calls = []
    batch = _engine._explain_batch
    monkeypatch.setattr(_engine, "_explain_batch", lambda *a, **k: calls.append(1) or batch(*a, **k))
    chunked = _engine.explain(model, x, composite="epsilon_plus")
    assert len(calls) == 4
    for m in model["modalities"]:
        np.testing.assert_allclose(chunked.relevance[m], whole.relevance[m], rtol=1e-12,
                                   atol=1e-12 * np.abs(whole.relevance[m]).max())
    np.testing.assert_array_equal(chunked.target, whole.target)


@pytest.mark.parametrize("name", ["epsilon", "epsilon_plus", "epsilon_gamma_box",
                                  "epsilon_plus_flat", "alpha_beta"])
def test_matches_unrolled_network_float32(name):
    rng = np.random.default_rng(11)
    model = make_model(rng, ARCHS["conv-avg-conv-max+dense"], joint=(6,), dtype=np.float32)
    x = inputs(rng, model, 6)
    ex = _engine.explain(model, x, composite=COMPOSITES[name])
    assert ex.relevance["img"].dtype == np.float32
    want, _ = reference_explain(as_float64(model), {m: v.astype(np.float64) for m, v in x.items()},
                                ex.target, COMPOSITES[name])
    t = tol(np.float32, "lrp_chain")
    for m in model["modalities"]:
        w = want[m]
        np.testing.assert_allclose(ex.relevance[m].reshape(len(w), -1), w, rtol=t["rtol"],
                                   atol=t["atol"] * max(1.0, np.abs(w).max()))


# ------------------------------------------------------------------ against zennit
def _import_zennit():
    """zennit's rules, composites and attribution modules. zennit imports two ResNet
    block classes from torchvision for its canonizers; where torchvision is missing or
    does not load beside this torch, stand-ins take their place for the import only."""
    pytest.importorskip("torch")
    names = ("zennit.rules", "zennit.composites", "zennit.attribution")
    try:
        return tuple(importlib.import_module(n) for n in names)
    except (ImportError, RuntimeError):
        pass
    for key in [k for k in sys.modules if k.split(".")[0] in ("zennit", "torchvision")]:
        del sys.modules[key]
    tv, models, resnet = (types.ModuleType(n) for n in
                          ("torchvision", "torchvision.models", "torchvision.models.resnet"))
    resnet.Bottleneck = type("Bottleneck", (), {})
    resnet.BasicBlock = type("BasicBlock", (), {})
    tv.models, models.resnet = models, resnet
    stand_ins = {"torchvision": tv, "torchvision.models": models,
                 "torchvision.models.resnet": resnet}
    sys.modules.update(stand_ins)
    try:
        return tuple(importlib.import_module(n) for n in names)
    except ImportError as exc:
        pytest.skip(f"zennit not usable: {exc}")
    finally:
        for key in stand_ins:
            sys.modules.pop(key, None)


def torch_model(torch, model):
    """The one-pathway network dict as a torch Sequential (float64, NCHW), and the module
    name of each of its rule layers in the pathway's order, then joint, then output."""
    nn = torch.nn

    class FlattenHWC(nn.Module):  # NCHW -> the channels-last flattening of pymdbn
        def forward(self, x):
            return x.permute(0, 2, 3, 1).reshape(len(x), -1)

    mods, names, spatial = [], [], True
    (m,) = model["modalities"]

    def linear(layer):
        lin = nn.Linear(*layer["W"].shape).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer["W"].T.copy()))
            lin.bias.copy_(torch.from_numpy(layer["b"]))
        return lin

    for layer in model["pathways"][m]:
        kind = layer.get("type", "dense")
        if kind == "conv":
            c, (kh, kw), wt = layer["shape"][2], layer["kernel"], layer["W"]
            conv = nn.Conv2d(c, wt.shape[1], (kh, kw)).double()
            with torch.no_grad():  # rows (dy*kw+dx)*C+c -> weight[f, c, dy, dx]
                conv.weight.copy_(torch.from_numpy(
                    wt.reshape(kh, kw, c, -1).transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(layer["b"]))
            names.append(str(len(mods)))
            mods += [conv, nn.Sigmoid()]
        elif kind == "pool":
            pool = nn.MaxPool2d if layer["mode"] == "max" else nn.AvgPool2d
            mods.append(pool(layer["size"]))
        else:
            if spatial:
                mods.append(FlattenHWC())
                spatial = False
            names.append(str(len(mods)))
            mods += [linear(layer), nn.Sigmoid()]
    if spatial:
        mods.append(FlattenHWC())
    for layer in model["joint"]:
        names.append(str(len(mods)))
        mods += [linear(layer), nn.Sigmoid()]
    names.append(str(len(mods)))
    mods.append(linear(model["output"]))
    return nn.Sequential(*mods), names


def zennit_rule(zr, torch, rule, shape=None):
    """The zennit rule that computes ``rule`` (zero_params=['bias'] where it has no bias)."""
    nobias = {"zero_params": ["bias"]}
    bias = {} if getattr(rule, "use_bias", True) else nobias
    if isinstance(rule, Epsilon):
        return zr.Epsilon(epsilon=rule.epsilon, **bias)
    if isinstance(rule, ZPlus):
        return zr.ZPlus(stabilizer=rule.stabilizer, **bias)
    if isinstance(rule, AlphaBeta):
        return zr.AlphaBeta(alpha=rule.alpha, beta=rule.beta, stabilizer=rule.stabilizer, **bias)
    if isinstance(rule, ZBox):  # bounds per pixel, channels-last -> (1, C, H, W)
        h, w, c = shape
        low, high = (torch.from_numpy(np.broadcast_to(v, (h * w * c,)).reshape(1, h, w, c)
                                      .transpose(0, 3, 1, 2).copy()) for v in (rule.low, rule.high))
        return zr.ZBox(low, high, stabilizer=rule.stabilizer)
    if isinstance(rule, Flat):  # pymdbn's Flat divides by the fan-in exactly
        return zr.Flat(stabilizer=0.0)
    if isinstance(rule, WSquare):
        return zr.WSquare(stabilizer=rule.stabilizer, **nobias)
    raise AssertionError(rule)


def zennit_explain(model, x, target, composite):
    torch = pytest.importorskip("torch")
    zr, zc, za = _import_zennit()
    net, names = torch_model(torch, model)
    (m,) = model["modalities"]
    c = get_composite(composite)
    first = model["pathways"][m][0]
    n_path = sum(1 for layer in model["pathways"][m] if layer.get("type") != "pool")
    roles = ["input"] + ["hidden"] * (n_path - 1) + ["joint"] * len(model["joint"]) + ["output"]
    rules = [c.rule(role, m) for role in roles]
    if isinstance(rules[0], ZBox) and not rules[0].bound:
        rules[0] = rules[0].with_bounds(*zbox_bounds(model, m))
    shape = first["shape"] if "type" in first else None
    name_map = [((name,), zennit_rule(zr, torch, rule, shape)) for name, rule in zip(names, rules)]
    comp = zc.NameLayerMapComposite(name_map=name_map, layer_map=zc.layer_map_base(1e-6))
    h, w, ch = first["shape"]
    xt = torch.from_numpy(np.asarray(x[m], np.float64).reshape(-1, h, w, ch)
                          .transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    onehot = torch.zeros(len(xt), model["output"]["W"].shape[1], dtype=torch.float64)
    onehot[torch.arange(len(xt)), torch.from_numpy(np.asarray(target))] = 1.0
    with za.Gradient(model=net, composite=comp) as attributor:
        out, rel = attributor(xt, lambda y: y * onehot)
    return rel.detach().numpy().transpose(0, 2, 3, 1).reshape(len(xt), -1), out.detach().numpy()


ZENNIT_ARCHS = {
    "conv-max-conv-avg-dense": CONV_MAX_AVG,
    "conv-avg-conv-max-dense": CONV_AVG_MAX,
}
ZENNIT_COMPOSITES = {
    "epsilon": "epsilon",
    "epsilon-nobias": COMPOSITES["epsilon-nobias"],
    "epsilon_plus": "epsilon_plus",
    "alpha_beta": COMPOSITES["alpha_beta"],
    "zbox-scalar": Composite(input=ZBox(-3.0, 2.5), hidden=ZPlus()),
    "zbox-per-pixel": Composite(input=ZBox(), hidden=Epsilon(0.01)),
    "epsilon_plus_flat": "epsilon_plus_flat",
    "wsquare-flat": COMPOSITES["wsquare-flat"],
}


@pytest.mark.parametrize("arch", list(ZENNIT_ARCHS))
@pytest.mark.parametrize("name", list(ZENNIT_COMPOSITES))
def test_matches_zennit(arch, name):
    rng = np.random.default_rng(5)
    model = make_model(rng, {"img": (IMAGE, ZENNIT_ARCHS[arch])})
    x = inputs(rng, model, 4)
    comp = ZENNIT_COMPOSITES[name]
    ex = _engine.explain(model, x, composite=comp)
    want, logits = zennit_explain(model, x, ex.target, comp)
    np.testing.assert_allclose(ex.logits, logits, rtol=1e-12, atol=1e-12)
    got = ex.relevance["img"].reshape(len(want), -1)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.abs(want).max())


def test_matches_zennits_own_epsilon_plus_composite():
    """A pathway of convolutions and pools under a dense joint layer: zennit's
    EpsilonPlus (ZPlus on Conv2d, Epsilon on Linear, Norm on AvgPool2d) is pymdbn's
    'epsilon_plus' preset."""
    torch = pytest.importorskip("torch")
    zr, zc, za = _import_zennit()
    rng = np.random.default_rng(9)
    model = make_model(rng, {"img": (IMAGE, CONV_MAX_AVG[:4])}, joint=(6,))
    x = inputs(rng, model, 4)
    ex = _engine.explain(model, x, composite="epsilon_plus")
    net, _ = torch_model(torch, model)
    xt = torch.from_numpy(x["img"].reshape(-1, *IMAGE).transpose(0, 3, 1, 2).copy())
    onehot = torch.zeros(len(xt), 3, dtype=torch.float64)
    onehot[torch.arange(len(xt)), torch.from_numpy(ex.target)] = 1.0
    with za.Gradient(model=net, composite=zc.EpsilonPlus()) as attributor:
        _, rel = attributor(xt.requires_grad_(True), lambda y: y * onehot)
    want = rel.detach().numpy().transpose(0, 2, 3, 1).reshape(len(xt), -1)
    np.testing.assert_allclose(ex.relevance["img"].reshape(len(xt), -1), want, rtol=1e-8,
                               atol=1e-8 * np.abs(want).max())


# ------------------------------------------------------------------ conservation
@pytest.mark.parametrize("arch", ["conv-max-conv-avg", "conv-avg-conv-max+dense", "pool-first"])
def test_conservation(arch):
    """Epsilon with a tiny epsilon and zero biases conserves the explained logit, up to
    the average pools' fixed Norm stabilizer (1e-6 on each window mean); with biases, the
    residual is the relevance the biases absorb, layer by layer."""
    rng = np.random.default_rng(3)
    spec = ARCHS[arch]
    joint = (6,) if "tab" in spec else ()
    model = make_model(rng, spec, joint=joint, bias=0.0)
    x = inputs(rng, model, 6)
    comp = get_composite("epsilon", epsilon=1e-12)
    ex = _engine.explain(model, x, composite=comp)
    explained = ex.logits[np.arange(6), ex.target]
    total = sum(ex.relevance[m].reshape(6, -1).sum(axis=1) for m in model["modalities"])
    has_avg = any(layer.get("mode") == "avg" for p in model["pathways"].values() for layer in p)
    # Each avg window loses R_j eps / (mean_j + eps), ~2e-6 of |R_j| for sigmoid means.
    rtol = 1e-5 if has_avg else 1e-9
    scale = sum(np.abs(ex.relevance[m]).reshape(6, -1).sum(axis=1) for m in model["modalities"])
    np.testing.assert_allclose(total, explained, rtol=rtol, atol=rtol * scale.max())
    np.testing.assert_allclose(ex.conservation_residual, explained - total, atol=1e-12)

    # With biases: sum R_in = logit - sum over rule layers of sum_j R_j b_j / z_j.
    model = make_model(np.random.default_rng(3), {"img": ((9, 8, 1), [
        ("conv", 3, (3, 3)), ("pool", 2, "max"), ("conv", 2, (2, 2)), ("dense", 4)])},
        bias=0.5)
    x = inputs(rng, model, 6)
    ex = _engine.explain(model, x, composite=comp, return_layers=True)
    fw = _engine._forward(_engine._Network(model), {"img": x["img"].reshape(6, -1)})
    rec = ex.layers["pathways"]["img"]  # R_0 (pixels) ... R_L (pathway top)
    absorbed = np.zeros(6)
    for k, (layer, (_, z)) in enumerate(zip(model["pathways"]["img"], fw["pathways"]["img"])):
        if layer.get("type") == "pool":
            continue
        f = layer["W"].shape[1]
        b = np.tile(layer["b"], z.shape[1] // f)
        absorbed += (rec[k + 1] * b / z).sum(axis=1)
    top, logits = fw["output"]
    rows = np.arange(6)
    out_r = ex.layers["joint"][-1]
    code_r = ex.layers["joint"][0]
    absorbed_head = out_r[rows, ex.target] - code_r.sum(axis=1)
    np.testing.assert_allclose(absorbed_head, (out_r * model["output"]["b"] / logits).sum(axis=1),
                               rtol=1e-9)
    # Sums of terms that cancel: the error is relative to the terms' absolute sum.
    np.testing.assert_allclose(rec[0].sum(axis=1), code_r.sum(axis=1) - absorbed, rtol=1e-9,
                               atol=1e-10 * np.abs(rec[0]).sum(axis=1).max())


# ---------------------------------------------------- the engine's bookkeeping
def test_return_layers_shares_and_heatmap_shapes():
    rng = np.random.default_rng(4)
    model = make_model(rng, ARCHS["conv-avg-conv-max+dense"], joint=(6,))
    x = inputs(rng, model, 3)
    ex = _engine.explain(model, x, composite="epsilon_plus_flat", return_layers=True)
    assert ex.relevance["img"].shape == (3, *IMAGE)
    rec = ex.layers["pathways"]["img"]
    widths = [math.prod(IMAGE), 10 * 10 * 3, 5 * 5 * 3, 4 * 4 * 4, 2 * 2 * 4, 5]
    assert [r.shape for r in rec] == [(3, w) for w in widths]
    np.testing.assert_array_equal(rec[0], ex.relevance["img"].reshape(3, -1))
    # Max pooling conserves exactly; each conv (ZPlus, with biases) need not.
    np.testing.assert_allclose(rec[3].sum(axis=1), rec[4].sum(axis=1), rtol=1e-12)
    for s in (ex.shares, ex.abs_shares, ex.net_shares):
        np.testing.assert_allclose(s["img"] + s["tab"], 1.0)
    want = [np.abs(ex.relevance[m].reshape(3, -1)).sum(axis=1) for m in ("img", "tab")]
    np.testing.assert_allclose(ex.abs_shares["img"], want[0] / (want[0] + want[1]))
    # Batches give the same answer as one pass.
    parts = _engine.explain(model, x, composite="epsilon_plus_flat", batch_size=2)
    np.testing.assert_allclose(parts.relevance["img"], ex.relevance["img"], rtol=1e-12,
                               atol=1e-14)


def test_grey_images_without_meta_and_raw_inputs():
    """A conv pathway's input shape comes from its first layer when meta has none;
    explain_model z-scores raw inputs and may overwrite its own copies."""
    rng = np.random.default_rng(8)
    model = make_model(rng, {"img": ((9, 8, 1), POOL_FIRST)}, scale_per_pixel=False)
    raw = rng.uniform(0, 1, (4, 9, 8))
    scaled = (raw - 0.4) / model["scalers"]["img"]["scale"]
    want = _engine.explain(model, scaled, composite="epsilon_gamma_box")
    got = _engine.explain_model(model, raw, composite="epsilon_gamma_box")
    np.testing.assert_allclose(got.relevance["img"], want.relevance["img"], rtol=1e-12,
                               atol=1e-14)
    bare = dict(model, meta={})
    assert _engine._Network(bare).image_shape("img") == (9, 8)
    np.testing.assert_allclose(_engine.explain(bare, scaled).relevance["img"],
                               _engine.explain(model, scaled).relevance["img"])


def test_reference_differences_through_conv_layers():
    """Against a reference, Epsilon conv layers propagate differences from it (the bias
    cancels); explaining the reference against itself gives nothing."""
    rng = np.random.default_rng(6)
    model = make_model(rng, {"img": (IMAGE, CONV_MAX_AVG)})
    x = inputs(rng, model, 3)
    r0 = x["img"][:1]
    same = _engine.explain(model, r0, reference=r0)
    np.testing.assert_allclose(same.relevance["img"], 0.0, atol=1e-12)
    ex = _engine.explain(model, x, reference=r0, composite=get_composite("epsilon",
                                                                         epsilon=1e-12))
    # Max pools and linear differences conserve; avg pools lose ~1e-6 relative.
    explained = ex.logits[np.arange(3), ex.target] - ex.reference_logits[ex.target]
    np.testing.assert_allclose(ex.relevance["img"].reshape(3, -1).sum(axis=1), explained,
                               rtol=1e-4, atol=1e-4 * np.abs(explained).max())


@pytest.fixture
def host_backend(monkeypatch):
    def use(name):
        if backend.unavailable_reason(name):
            pytest.skip(f"backend {name!r} unavailable")
        monkeypatch.setattr(backend, "_host", name)
        backend.ops.__dict__.clear()  # dispatchers cache the host backend's op
    yield use
    backend.ops.__dict__.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["epsilon-0.01", "epsilon_plus", "epsilon_gamma_box",
                                  "epsilon_plus_flat", "alpha_beta", "wsquare-flat"])
def test_numpy_and_cpu_backends_agree(host_backend, dtype, name):
    rng = np.random.default_rng(2)
    model = make_model(rng, ARCHS["conv-max-conv-avg"], dtype=dtype, clip=4.0)
    x = inputs(rng, model, 4)
    out = {}
    for b in ("numpy", "cpu"):
        host_backend(b)
        out[b] = _engine.explain(model, x, composite=COMPOSITES[name], return_layers=True)
    t = tol(dtype, "lrp_chain")
    want = out["numpy"].relevance["img"]
    np.testing.assert_allclose(out["cpu"].relevance["img"], want, rtol=t["rtol"],
                               atol=t["atol"] * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(out["cpu"].logits, out["numpy"].logits, **tol(dtype))


def test_device_arrays_stay_on_the_device(fake_cuda):
    """device='cuda' on the stand-in backend (CPU kernels behind device arrays): every
    conv and pool op gets device arrays, and the result is the CPU's."""
    rng = np.random.default_rng(1)
    model = make_model(rng, ARCHS["conv-avg-conv-max+dense"], joint=(6,))
    x = inputs(rng, model, 3)
    for comp in ("epsilon", "epsilon_gamma_box", COMPOSITES["zbox-scalar-gamma"]):
        cpu = _engine.explain(model, x, composite=comp, return_layers=True)
        dev = _engine.explain(model, x, composite=comp, return_layers=True, device="cuda")
        for m in model["modalities"]:
            np.testing.assert_allclose(dev.relevance[m], cpu.relevance[m], rtol=1e-12,
                                       atol=1e-14)
        np.testing.assert_allclose(dev.abs_shares["img"], cpu.abs_shares["img"])


# ------------------------------------------------------------------ bad layer dicts
def _bad(model, k, **change):
    m = dict(model, pathways={"img": list(model["pathways"]["img"])})
    layer = {**m["pathways"]["img"][k], **change}
    for key in [key for key, v in change.items() if v is None]:
        del layer[key]
    m["pathways"]["img"][k] = layer
    return m


def test_bad_conv_and_pool_dicts_raise_clear_errors():
    rng = np.random.default_rng(0)
    model = make_model(rng, {"img": (IMAGE, CONV_MAX_AVG)})
    x = inputs(rng, model, 2)
    w0 = model["pathways"]["img"][0]["W"]
    cases = [
        (_bad(model, 0, W=w0[:-1]), r"pathways\['img'\]\[0\]: W has 17 rows, a 3x3 kernel on "
                                    r"2 channel\(s\) needs kh\*kw\*C = 18"),
        (_bad(model, 0, b=np.zeros(2)), r"pathways\['img'\]\[0\]: W must be \(kh\*kw\*C, F\)"),
        (_bad(model, 0, kernel=(13, 3)), r"\[0\]: a 13x3 kernel does not fit its 12x11 input"),
        (_bad(model, 0, kernel=(3, 0)), r"\[0\]\['kernel'\] \(kh, kw\) must be 2 positive ints"),
        (_bad(model, 0, shape=(12, 11)), r"\[0\]\['shape'\] \(H, W, C\) must be 3 positive"),
        (_bad(model, 0, kernel=None), r"\[0\]: a conv layer needs 'shape'.*lacks 'kernel'"),
        (_bad(model, 1, size=0), r"\[1\]\['size'\] must be a positive int, got 0"),
        (_bad(model, 1, mode="min"), r"\[1\]: pool mode must be 'max' or 'avg', got 'min'"),
        (_bad(model, 1, shape=(10, 9, 4)), r"\[1\]: its input shape \(10, 9, 4\) differs from "
                                           r"the output shape \(10, 9, 3\) of the layer below"),
        (_bad(model, 3, shape=(1, 1, 4), size=2), r"\[3\]: a 2x2 pool does not fit its 1x1"),
        (_bad(model, 1, type="deconv"), r"\[1\]: unknown layer type 'deconv'"),
        (_bad(model, 1, size=None), r"\[1\]: a pool layer needs .* lacks 'size'"),
    ]
    for broken, match in cases:
        with pytest.raises(ValueError, match=match):
            _engine.explain(broken, x)
    dense_first = dict(model, pathways={"img": [{"W": np.zeros((math.prod(IMAGE), 4)),
                                                 "b": np.zeros(4)},
                                                {"type": "pool", "size": 2, "mode": "max",
                                                 "shape": (2, 2, 1)}]})
    with pytest.raises(ValueError, match=r"\[1\]: a pool layer after a dense layer"):
        _engine.explain(dense_first, x)
    joint_conv = dict(model, joint=[model["pathways"]["img"][2]])
    with pytest.raises(ValueError, match=r"joint\[0\]: conv layers may only start a pathway"):
        _engine.explain(joint_conv, x)
    wrong_width = _bad(model, 4, W=np.zeros((7, 5)))
    with pytest.raises(ValueError, match=r"\[4\]: W has 7 rows but the layer below has 8"):
        _engine.explain(wrong_width, x)
    with pytest.raises(ValueError, match=r"X\['img'\] has images of shape"):
        _engine.explain(model, {"img": x["img"][:, :-1]})
    # A ZBox with bounds of the wrong size for a conv input layer.
    with pytest.raises(ValueError, match="ZBox bounds do not fit a conv layer with 264"):
        _engine.explain(model, x, composite=Composite(input=ZBox(np.zeros(18), np.ones(18))))


def test_fitted_convolutional_dbn_explains_like_its_unrolled_network():
    """A DBN with convolutional layers (its to_dict carries conv and pool dicts): its
    explain equals the unrolled reference on its own dict, heatmaps shaped as X."""
    from pymdbn import DBN
    from pymdbn.layers import Conv, Pool

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 10, 9))
    y = (X[:, :5].mean(axis=(1, 2)) > X[:, 5:].mean(axis=(1, 2))).astype(int)
    dbn = DBN([Conv(3, 3), Pool(2), Conv(2, 2), Pool(2, "avg"), 6], image_shape=(10, 9),
              n_iter=1, fine_tune_epochs=2, random_state=0).fit(X.reshape(40, -1), y)
    model = dbn.to_dict()
    assert [layer.get("type", "dense") for layer in model["pathways"]["x"]] == \
        ["conv", "pool", "conv", "pool", "dense"]
    ex = dbn.explain(X[:5].reshape(5, -1), composite="epsilon_plus")
    assert ex.relevance["x"].shape == (5, 90)
    want, logits = reference_explain(as_float64(model), {"x": X[:5].reshape(5, -1)},
                                     ex.target, "epsilon_plus")
    t = tol(np.float32, "lrp_chain")
    np.testing.assert_allclose(ex.logits, logits, rtol=t["rtol"], atol=t["atol"])
    np.testing.assert_allclose(ex.relevance["x"], want["x"], rtol=t["rtol"],
                               atol=t["atol"] * max(1.0, np.abs(want["x"]).max()))
