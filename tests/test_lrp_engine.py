"""The LRP engine on hand-built network dicts (the layout of MDBN.to_dict())."""

import math

import numpy as np
import pytest

from conftest import tol
from pymdbn.backend import reference as ref
from pymdbn.lrp import (Composite, Epsilon, Explanation, Flat, Gamma, ZBox, ZPlus, explain,
                        get_composite, zbox_bounds)
from pymdbn.lrp import _engine


def make_model(rng, modalities, joint=(), n_classes=2, clip=None, dtype=np.float64,
               bias=0.3, scalers=True):
    """A random network dict. ``modalities``: name -> (image shape, pathway widths)."""
    def dense(n_in, n_out):
        return {"W": (rng.standard_normal((n_in, n_out)) * 2 / np.sqrt(n_in)).astype(dtype),
                "b": (bias * rng.standard_normal(n_out)).astype(dtype)}

    pathways, shapes, sc = {}, {}, {}
    for name, (shape, widths) in modalities.items():
        sizes = [math.prod(shape), *widths]
        pathways[name] = [dense(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        shapes[name] = list(shape)
        sc[name] = {"mean": rng.uniform(0.2, 0.6, sizes[0]), "scale": rng.uniform(0.1, 0.4)}
    code = sum(widths[-1] for _, widths in modalities.values())
    sizes = [code, *joint]
    joint_layers = [dense(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    return {
        "modalities": list(modalities),
        "pathways": pathways,
        "joint": joint_layers,
        "output": dense(sizes[-1], n_classes),
        "clip": clip,
        "scalers": sc if scalers else {},
        "meta": {"image_shapes": shapes, "classes": [f"c{k}" for k in range(n_classes)]},
    }


def scaled_inputs(rng, model, n):
    """Random z-scored inputs shaped as images."""
    return {m: rng.standard_normal((n, *model["meta"]["image_shapes"][m]))
            .astype(model["output"]["W"].dtype) for m in model["modalities"]}


def twin_explain(model, x, target, composite, reference=None):
    """The same propagation with the NumPy twins, written out plainly. ``reference``:
    z-scored (1, ...) inputs; Epsilon layers then propagate differences from it."""
    c, clip = get_composite(composite), model["clip"]

    def rule_args(rule, m=None):
        kind = type(rule).__name__
        name = {"Epsilon": "epsilon", "ZPlus": "zplus", "AlphaBeta": "alpha_beta",
                "Gamma": "gamma", "ZBox": "zbox", "Flat": "flat", "WSquare": "wsquare"}[kind]
        kw = {"epsilon": getattr(rule, "epsilon", getattr(rule, "stabilizer", 1e-6))}
        if hasattr(rule, "use_bias"):
            kw["use_bias"] = rule.use_bias
        if kind == "Gamma":
            kw["gamma"] = rule.gamma
        if kind == "AlphaBeta":
            kw.update(alpha=rule.alpha, beta=rule.beta)
        if kind == "ZBox":
            low, high = (rule.low, rule.high) if rule.bound else zbox_bounds(model, m)
            n = model["pathways"][m][0]["W"].shape[0]
            kw.update(low=np.broadcast_to(low, n), high=np.broadcast_to(high, n))
        return name, kw

    def forward(layers, a):
        trace = []
        for layer in layers:
            z, a_next = ref.dense_forward(a, layer["W"], layer["b"], clip)
            trace.append((a, z))
            a = a_next
        return trace, a

    def lrp(a, w, b, r, z, rule, ref_az):
        name, kw = rule
        if ref_az is not None and name == "epsilon":
            a, z, b = a - ref_az[0], z - ref_az[1], np.zeros_like(b)
        return ref.lrp_dense(a, w, b, r, name, z=z, **kw)

    def backward(layers, trace, r, rules, ref_trace):
        ref_trace = ref_trace or [None] * len(trace)
        for layer, (a, z), rule, ra in list(zip(layers, trace, rules, ref_trace))[::-1]:
            r = lrp(a, layer["W"], layer["b"], r, z, rule, ra)
        return r

    def network(x):
        n = len(next(iter(x.values())))
        x = {m: v.reshape(n, -1) for m, v in x.items()}
        traces, tops = {}, []
        for m in model["modalities"]:
            traces[m], top = forward(model["pathways"][m], x[m])
            tops.append(top)
        jtrace, h = forward(model["joint"], np.concatenate(tops, axis=1))
        return traces, jtrace, h, h @ model["output"]["W"] + model["output"]["b"]

    traces, jtrace, h, logits = network(x)
    n = len(logits)
    rtraces, rjtrace, rh, rlogits = (({}, None, None, None) if reference is None
                                     else network(reference))
    out_rule = rule_args(c.rule("output"))
    t = logits.argmax(axis=1) if target is None else target
    r = np.zeros_like(logits)
    r[np.arange(n), t] = logits[np.arange(n), t]
    if reference is not None and out_rule[0] == "epsilon":
        r[np.arange(n), t] -= rlogits[0, t]
    r = lrp(h, model["output"]["W"], model["output"]["b"], r, logits, out_rule,
            None if reference is None else (rh, rlogits))
    r = backward(model["joint"], jtrace, r, [rule_args(c.rule("joint"))] * len(jtrace), rjtrace)
    out, start = {}, 0
    for m in model["modalities"]:
        layers = model["pathways"][m]
        width = layers[-1]["W"].shape[1]
        rules = [rule_args(c.rule("input", m), m)] + \
            [rule_args(c.rule("hidden", m))] * (len(layers) - 1)
        out[m] = backward(layers, traces[m], r[:, start:start + width], rules, rtraces.get(m))
        start += width
    return out, logits


def as_float64(model):
    cast = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v)
            for k, v in model.items() if k not in ("pathways", "joint", "output")}
    layer = lambda d: {k: v.astype(np.float64) for k, v in d.items()}  # noqa: E731
    return dict(cast, pathways={m: [layer(d) for d in p] for m, p in model["pathways"].items()},
                joint=[layer(d) for d in model["joint"]], output=layer(model["output"]))


ARCHS = [
    ({"a": ((1,), [1])}, ()),                                        # size 1 everywhere
    ({"a": ((5, 4), [7])}, ()),                                      # one pathway, one layer
    ({"a": ((6, 5), [9, 4]), "b": ((12,), [5])}, (6,)),              # two modalities + joint
    ({"x": ((4, 4), [10, 8, 3]), "y": ((3, 3), [6, 2]), "z": ((7,), [4])}, (5, 3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("arch", range(len(ARCHS)))
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_gamma_box",
                                       "epsilon_plus_flat"])
@pytest.mark.parametrize("with_reference", [False, True])
def test_engine_matches_numpy_twin(rng, arch, dtype, composite, with_reference):
    modalities, joint = ARCHS[arch]
    model = make_model(rng, modalities, joint, n_classes=3, clip=4.0 if arch % 2 else None,
                       dtype=dtype)
    x = scaled_inputs(rng, model, 13)
    reference = scaled_inputs(rng, model, 1) if with_reference else None
    if dtype == np.float32:
        # A denominator that nearly cancels is below float32 rounding when epsilon = 1e-6
        # meets sums of O(1) terms, and its error then scales a whole sample's relevance;
        # 1e-3 keeps this comparison about the engine rather than about rounding.
        composite = get_composite(composite, epsilon=1e-3,
                                  **({} if composite == "epsilon" else {"stabilizer": 1e-3}))
    ex = _engine.explain(model, x, composite=composite, reference=reference)
    want, logits = twin_explain(model, x, None, composite, reference)
    # atol relative to the largest |relevance|, as in test_lrp_rules.assert_close.
    rtol, atol = (tol(dtype, "lrp_chain")[k] for k in ("rtol", "atol"))
    if dtype == np.float32:
        # Where neither float32 run is accurate, allow ten times the largest error of the
        # twin's float32 run in that sample, against the twin in float64 on the same values.
        f64 = lambda d: None if d is None else {m: v.astype(np.float64)  # noqa: E731
                                                for m, v in d.items()}
        exact, _ = twin_explain(as_float64(model), f64(x), ex.target, composite, f64(reference))
    np.testing.assert_allclose(ex.logits, logits, rtol=rtol, atol=atol)
    for m in model["modalities"]:
        assert ex.relevance[m].shape == x[m].shape and ex.relevance[m].dtype == dtype
        got = ex.relevance[m].reshape(13, -1).astype(np.float64)
        bound = rtol * np.abs(want[m]) + atol * max(1.0, np.abs(want[m]).max())
        if dtype == np.float32:
            bound += 10 * np.abs(want[m] - exact[m]).max(axis=1, keepdims=True)
        assert (np.abs(got - want[m]) <= bound).all(), m


def test_hand_worked_network():
    # x = (1, 2); W1 = [[1, 1], [1, -1]] gives x W1 = (3, -1); b1 = (ln3 - 3, 1 - ln3)
    # makes z1 = (ln3, -ln3), so a1 = (sigma(ln3), sigma(-ln3)) = (3/4, 1/4).
    # Wout = [[2, -2], [4, 4]], bout = (0.5, 0): logits = (1.5 + 1 + 0.5, -1.5 + 1) = (3, -0.5).
    ln3 = math.log(3.0)
    model = {
        "modalities": ["m"],
        "pathways": {"m": [{"W": np.array([[1.0, 1.0], [1.0, -1.0]]),
                            "b": np.array([ln3 - 3.0, 1.0 - ln3])}]},
        "joint": [],
        "output": {"W": np.array([[2.0, -2.0], [4.0, 4.0]]), "b": np.array([0.5, 0.0])},
        "clip": None,
        "scalers": {},
        "meta": {},
    }
    x = np.array([[1.0, 2.0]])
    comp = get_composite("epsilon", epsilon=1e-12)
    ex = _engine.explain(model, x, composite=comp, return_layers=True)
    np.testing.assert_allclose(ex.logits, [[3.0, -0.5]], rtol=1e-12)
    assert ex.target.tolist() == [0]
    # Output layer, R = (3, 0), z_0 = 3: R_hidden_i = a_i w_i0 * 3 / 3 = (3/4 * 2, 1/4 * 4)
    # = (1.5, 1.0); the output bias absorbs 0.5.
    np.testing.assert_allclose(ex.code_relevance, [[1.5, 1.0]], rtol=1e-10)
    # Hidden layer, s = R / z = (1.5 / ln3, -1 / ln3):
    # R_x0 = 1 * (1 * 1.5 - 1 * 1) / ln3 = 0.5 / ln3; R_x1 = 2 * (1.5 + 1) / ln3 = 5 / ln3.
    np.testing.assert_allclose(ex.relevance["m"], [[0.5 / ln3, 5.0 / ln3]], rtol=1e-10)
    np.testing.assert_allclose(ex.conservation_residual, [3.0 - 5.5 / ln3], rtol=1e-10)
    np.testing.assert_allclose(ex.layers["joint"][-1], [[3.0, 0.0]])
    # Class 1, R = (0, -0.5), z_1 = -0.5: R_hidden = (3/4 * -2, 1/4 * 4) = (-1.5, 1);
    # s = (-1.5 / ln3, 1 / -ln3): R_x0 = (-1.5 - 1) / ln3, R_x1 = 2 (-1.5 + 1) / ln3.
    ex1 = _engine.explain(model, x, target=1, composite=comp)
    np.testing.assert_allclose(ex1.code_relevance, [[-1.5, 1.0]], rtol=1e-10)
    np.testing.assert_allclose(ex1.relevance["m"], [[-2.5 / ln3, -1.0 / ln3]], rtol=1e-10)


# ------------------------------------------------------------- conservation
def conservative_model(rng, bias=0.5, clip=None):
    return make_model(rng, {"a": ((5, 5), [12, 6]), "b": ((9,), [4])}, (7,), n_classes=3,
                      bias=bias, clip=clip)


def test_without_bias_terms_relevance_is_conserved_exactly(rng):
    # The network has biases, but with use_bias=False every denominator is the sum of its
    # numerators, so each layer passes on all relevance (up to epsilon): the inputs receive
    # exactly the target logit, bias included.
    model = conservative_model(rng, clip=3.0)
    x = scaled_inputs(rng, model, 9)
    ex = _engine.explain(model, x, composite=get_composite("epsilon", epsilon=1e-12,
                                                           use_bias=False), return_layers=True)
    target_logit = ex.logits[np.arange(9), ex.target]
    for r in ex.layers["joint"]:
        np.testing.assert_allclose(r.sum(axis=1), target_logit, rtol=1e-9)
    for m, rs in ex.layers["pathways"].items():
        top = ex.code_relevance[:, ex.code_slices[m]].sum(axis=1)
        for r in rs:
            np.testing.assert_allclose(r.sum(axis=1), top, rtol=1e-9, atol=1e-12)
    total = sum(r.reshape(9, -1).sum(axis=1) for r in ex.relevance.values())
    np.testing.assert_allclose(total, target_logit, rtol=1e-9)
    np.testing.assert_allclose(ex.conservation_residual, 0.0,
                               atol=1e-9 * np.abs(target_logit).max())
    # The same holds for a network whose biases are all zero with the default rules.
    zero = conservative_model(rng, bias=0.0)
    ex0 = _engine.explain(zero, scaled_inputs(rng, zero, 9),
                          composite=get_composite("epsilon", epsilon=1e-12))
    np.testing.assert_allclose(ex0.conservation_residual, 0.0,
                               atol=1e-9 * np.abs(ex0.logits).max())


def test_residual_is_what_biases_and_epsilon_absorb(rng):
    # Per layer, sum_i R_i = sum_j R_j - sum_j R_j (b_j + eps s_j) / (z_j + eps s_j).
    model = conservative_model(rng)
    x = scaled_inputs(rng, model, 6)
    eps = 0.01
    ex = _engine.explain(model, x, composite=get_composite("epsilon", epsilon=eps),
                         return_layers=True)

    def absorbed(r_out, z, b):
        s = np.where(z >= 0, eps, -eps)
        return (r_out * (b + s) / (z + s)).sum(axis=1)

    def pre_activations(layers, a):
        zs = []
        for layer in layers:
            z, a = ref.dense_forward(a, layer["W"], layer["b"], model["clip"])
            zs.append(z)
        return zs, a

    total_absorbed = np.zeros(6)
    tops = []
    for m in model["modalities"]:
        zs, top = pre_activations(model["pathways"][m], x[m].reshape(6, -1))
        tops.append(top)
        rs = ex.layers["pathways"][m]
        for k, (layer, z) in enumerate(zip(model["pathways"][m], zs)):
            lost = absorbed(rs[k + 1], z, layer["b"])
            np.testing.assert_allclose(rs[k].sum(axis=1), rs[k + 1].sum(axis=1) - lost,
                                       rtol=1e-9, atol=1e-12)
            total_absorbed += lost
    zs, h = pre_activations(model["joint"], np.concatenate(tops, axis=1))
    zs.append(h @ model["output"]["W"] + model["output"]["b"])
    rs = ex.layers["joint"]
    for k, (layer, z) in enumerate(zip([*model["joint"], model["output"]], zs)):
        lost = absorbed(rs[k + 1], z, layer["b"])
        np.testing.assert_allclose(rs[k].sum(axis=1), rs[k + 1].sum(axis=1) - lost, rtol=1e-9)
        total_absorbed += lost
    np.testing.assert_allclose(ex.conservation_residual, total_absorbed, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------- Explanation
@pytest.fixture
def trimodal(rng):
    model = make_model(rng, {"brain": ((6, 6), [10, 5]), "breast": ((8, 4), [7]),
                             "bone": ((5, 7), [6, 3])}, (8,), n_classes=3, clip=5.0)
    return model, scaled_inputs(rng, model, 10)


def test_explanation_contents(trimodal):
    model, x = trimodal
    ex = _engine.explain(model, x)
    assert isinstance(ex, Explanation) and ex.modalities == ["brain", "breast", "bone"]
    for m in ex.modalities:
        assert ex.relevance[m].shape == x[m].shape
    assert ex.logits.shape == (10, 3)
    np.testing.assert_array_equal(ex.target, ex.logits.argmax(axis=1))
    np.testing.assert_allclose(sum(ex.shares.values()), 1.0)
    np.testing.assert_allclose(sum(ex.abs_shares.values()), 1.0)
    assert all(((0 <= s) & (s <= 1)).all() for s in ex.abs_shares.values())
    assert ex.code_relevance.shape == (10, 5 + 7 + 3)
    assert ex.code_slices == {"brain": slice(0, 5), "breast": slice(5, 12), "bone": slice(12, 15)}
    # Net shares are each modality's relevance sum over the total.
    sums = {m: ex.relevance[m].reshape(10, -1).sum(axis=1) for m in ex.modalities}
    np.testing.assert_allclose(ex.net_shares["breast"], sums["breast"] / sum(sums.values()))
    total = sum(sums.values())
    np.testing.assert_allclose(ex.conservation_residual,
                               ex.logits[np.arange(10), ex.target] - total, atol=1e-12)
    assert ex.layers is None
    d = ex.to_dict()
    assert d["code_slices"]["bone"] == (12, 15) and d["composite"].startswith("Composite(")
    assert "layers" not in d


def test_explicit_target(trimodal):
    model, x = trimodal
    base = _engine.explain(model, x)
    other = (base.target + 1) % 3
    ex = _engine.explain(model, x, target=other)
    np.testing.assert_array_equal(ex.target, other)
    assert not np.allclose(ex.relevance["brain"], base.relevance["brain"])
    np.testing.assert_allclose(_engine.explain(model, x, target=base.target).relevance["bone"],
                               base.relevance["bone"])
    ex2 = _engine.explain(model, x, target=2)
    np.testing.assert_array_equal(ex2.target, 2)
    by_label = _engine.explain(model, x, target="c2")
    np.testing.assert_array_equal(by_label.relevance["breast"], ex2.relevance["breast"])


def test_return_layers_shapes(trimodal):
    model, x = trimodal
    ex = _engine.explain(model, x, return_layers=True)
    widths = {"brain": [36, 10, 5], "breast": [32, 7], "bone": [35, 6, 3]}
    for m, ws in widths.items():
        assert [r.shape for r in ex.layers["pathways"][m]] == [(10, w) for w in ws]
        np.testing.assert_allclose(ex.layers["pathways"][m][0], ex.relevance[m].reshape(10, -1))
        np.testing.assert_allclose(ex.layers["pathways"][m][-1],
                                   ex.code_relevance[:, ex.code_slices[m]])
    assert [r.shape for r in ex.layers["joint"]] == [(10, 15), (10, 8), (10, 3)]
    np.testing.assert_allclose(ex.layers["joint"][0], ex.code_relevance)


def test_batch_size_gives_the_same_result(trimodal):
    model, x = trimodal
    whole = _engine.explain(model, x, target=1, composite="epsilon_gamma_box",
                            return_layers=True)
    for bs in (1, 3, 10, 64):
        part = _engine.explain(model, x, target=1, composite="epsilon_gamma_box",
                               return_layers=True, batch_size=bs)
        for m in whole.modalities:
            np.testing.assert_allclose(part.relevance[m], whole.relevance[m], rtol=1e-12,
                                       atol=1e-14)
            for a, b in zip(part.layers["pathways"][m], whole.layers["pathways"][m]):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(part.logits, whole.logits, rtol=1e-12)
        np.testing.assert_allclose(part.shares["bone"], whole.shares["bone"], rtol=1e-10)


def test_composite_per_modality_in_the_engine(trimodal):
    model, x = trimodal
    comp = Composite(input=ZPlus(), hidden=ZPlus(), per_modality={"brain": {"input": Flat()}})
    ex = _engine.explain(model, x, composite=comp)
    brain = ex.relevance["brain"].reshape(10, -1)
    np.testing.assert_allclose(brain, brain[:, :1] * np.ones((1, 36)))
    assert not np.allclose(ex.relevance["bone"].reshape(10, -1)[:, 0],
                           ex.relevance["bone"].reshape(10, -1)[:, 1])


def test_invalid_inputs_name_the_problem(trimodal):
    model, x = trimodal
    with pytest.raises(ValueError, match="target class indices must be in"):
        _engine.explain(model, x, target=3)
    with pytest.raises(ValueError, match="one per sample"):
        _engine.explain(model, x, target=[0, 1])
    with pytest.raises(ValueError, match="target must be a class index"):
        _engine.explain(model, x, target=0.5)
    with pytest.raises(ValueError, match="'c9' is not a class"):
        _engine.explain(model, x, target="c9")
    with pytest.raises(ValueError, match="unknown modality 'liver'"):
        _engine.explain(model, {**x, "liver": x["bone"]})
    with pytest.raises(ValueError, match=r"lacks modalities \['bone'\]"):
        _engine.explain(model, {k: v for k, v in x.items() if k != "bone"})
    with pytest.raises(ValueError, match=r"X\['brain'\] has images of shape \(4, 9\)"):
        _engine.explain(model, {**x, "brain": x["brain"].reshape(10, 4, 9)})
    with pytest.raises(ValueError, match=r"X\['bone'\] has 34 features"):
        _engine.explain(model, {**x, "bone": x["bone"].reshape(10, -1)[:, :34]})
    with pytest.raises(ValueError, match="sample count"):
        _engine.explain(model, {**x, "bone": x["bone"][:4]})
    with pytest.raises(ValueError, match="NaN"):
        _engine.explain(model, {**x, "bone": np.full_like(x["bone"], np.nan)})
    with pytest.raises(ValueError, match="batch_size"):
        _engine.explain(model, x, batch_size=0)
    with pytest.raises(ValueError, match="X must be a dict"):
        _engine.explain(model, x["bone"])
    broken = dict(model, output={"W": model["output"]["W"][:-1], "b": model["output"]["b"]})
    with pytest.raises(ValueError, match="output: W has 7 rows"):
        _engine.explain(broken, x)
    with pytest.raises(ValueError, match="lacks 'pathways'"):
        _engine.explain({k: v for k, v in model.items() if k != "pathways"}, x)


# ------------------------------------------------------- public explain
class FakeModel:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return self._d


def test_public_explain_scales_raw_inputs(trimodal, rng):
    model, _ = trimodal
    raw = {m: rng.uniform(0, 1, (4, *model["meta"]["image_shapes"][m]))
           for m in model["modalities"]}
    scaled = {m: (raw[m].reshape(4, -1) - s["mean"]) / s["scale"]
              for m, s in model["scalers"].items()}
    want = _engine.explain(model, scaled, composite="epsilon_plus")
    got = explain(FakeModel(model), raw, composite="epsilon_plus")
    for m in model["modalities"]:
        assert got.relevance[m].shape == raw[m].shape
        np.testing.assert_allclose(got.relevance[m].reshape(4, -1), want.relevance[m],
                                   rtol=1e-12)
    np.testing.assert_allclose(explain(model, raw).logits, got.logits)
    with pytest.raises(ValueError, match="to_dict"):
        explain(object(), raw)


def test_public_explain_single_modality_and_float32(rng):
    model = make_model(rng, {"xray": ((8, 8), [16, 4])}, dtype=np.float32)
    raw = rng.uniform(0, 1, (5, 8, 8))
    ex = explain(model, raw)
    assert ex.relevance["xray"].shape == (5, 8, 8) and ex.relevance["xray"].dtype == np.float32
    np.testing.assert_allclose(ex.shares["xray"], 1.0)


def test_zbox_bounds_from_scalers_and_data_range(trimodal, rng):
    model, x = trimodal
    s = model["scalers"]["brain"]
    low, high = zbox_bounds(model, "brain")
    np.testing.assert_allclose(low, (0 - s["mean"]) / s["scale"])
    np.testing.assert_allclose(high, (1 - s["mean"]) / s["scale"])
    ranged = dict(model, meta=dict(model["meta"], data_range={"brain": [-1.0, np.full(36, 2.0)]}))
    low, high = zbox_bounds(ranged, "brain")
    np.testing.assert_allclose(high, (2 - s["mean"]) / s["scale"])
    np.testing.assert_allclose(low, (-1 - s["mean"]) / s["scale"])
    # An unbound ZBox in a composite gets these bounds; bound ones are used as given.
    auto = _engine.explain(model, x, composite=Composite(input=ZBox(), hidden=Gamma()))
    lows = {m: zbox_bounds(model, m) for m in model["modalities"]}
    explicit = Composite(input=ZBox(), hidden=Gamma(),
                         per_modality={m: {"input": ZBox(*lows[m])} for m in lows})
    given = _engine.explain(model, x, composite=explicit)
    for m in model["modalities"]:
        np.testing.assert_array_equal(auto.relevance[m], given.relevance[m])
    with pytest.raises(ValueError, match="unknown modality"):
        zbox_bounds(model, "liver")


def test_heatmaps_delegate_to_plot(trimodal, rng, tmp_path):
    pytest.importorskip("matplotlib")
    model, x = trimodal
    ex = _engine.explain(model, x)
    images = {m: rng.uniform(0, 1, x[m].shape) for m in ("brain", "bone")}
    path = tmp_path / "why.png"
    fig = ex.heatmaps(images, path=path, samples=[0, 3], titles=["a", "b"])
    assert path.exists() and len(fig.axes) == 2 * 2 + 1  # panels + colour bar
    with pytest.raises(ValueError, match="unknown modality 'liver'"):
        ex.heatmaps({"liver": images["bone"]})
    with pytest.raises(ValueError, match="do not match"):
        ex.heatmaps({"bone": images["bone"][:, :4]})
    with pytest.raises(ValueError, match="as a dict"):
        ex.heatmaps(images["bone"])


def _row_labels(fig):
    return [ax.get_ylabel() for ax in fig.axes if ax.images and ax.get_ylabel()]


def _bar_label(fig):
    (label,) = [ax.get_ylabel() for ax in fig.axes if not ax.images and ax.get_ylabel()]
    return label


def test_heatmaps_name_patients_classes_rule_and_reference(trimodal, rng):
    pytest.importorskip("matplotlib")
    model, x = trimodal
    model = {**model, "meta": {**model["meta"], "classes": ["healthy", "benign", "cancer"]}}
    ex = _engine.explain(model, x, target=2, composite="epsilon_plus")
    images = {m: rng.uniform(0, 1, x[m].shape) for m in ("brain", "bone")}
    y_true = np.array(["cancer", "healthy"] * 5)
    fig = ex.heatmaps(images, samples=[0, 3], y_true=y_true,
                      sample_ids=[f"P{i}" for i in range(10)])
    p = ex.probabilities
    pred = ["healthy", "benign", "cancer"]
    assert _row_labels(fig) == [
        f"patient P{i}\ntrue {y_true[i]}, predicted {pred[ex.logits[i].argmax()]}\n"
        f"p(cancer) = {p[i, 2]:.3f}" for i in (0, 3)]
    assert fig.get_suptitle() == ("LRP epsilon_plus (input ZPlus, hidden ZPlus, joint Epsilon, "
                                  "output Epsilon)\nreference: none; explained class: cancer")
    assert _bar_label(fig).startswith("relevance\nred: evidence for cancer; blue: against")
    # The colour scale is the 99.5th percentile of |R| over the shown maps, not the maximum.
    shown = np.concatenate([np.abs(ex.relevance[m][[0, 3]]).ravel() for m in images])
    want = np.percentile(shown, 99.5)
    assert {im.norm.vmax for ax in fig.axes for im in ax.images[1:]} == {want}
    # Indices for y_true and display names for integer class labels work too.
    fig = ex.heatmaps(images, samples=[1], y_true=np.arange(10) % 3,
                      class_names=["no finding", "benign", "malignant"], reference="healthy mean")
    assert _row_labels(fig)[0].startswith("patient #1\ntrue benign, predicted ")
    assert "reference: healthy mean; explained class: malignant" in fig.get_suptitle()
    with pytest.raises(ValueError, match="y_true has 3 entries"):
        ex.heatmaps(images, y_true=["cancer"] * 3)
    with pytest.raises(ValueError, match="not a class"):
        ex.heatmaps(images, y_true=["flu"] * 10)
    with pytest.raises(ValueError, match="class_names"):
        ex.heatmaps(images, class_names=["a"])
    with pytest.raises(TypeError, match="label"):
        ex.heatmaps(images, reference={"brain": images["brain"][0]})


def test_heatmaps_of_several_classes_and_against_a_reference(trimodal, rng):
    pytest.importorskip("matplotlib")
    model, x = trimodal
    ref = {m: v[:1] for m, v in x.items()}
    ex = _engine.explain(model, x, reference=ref, target=np.arange(10) % 3)
    images = {"breast": rng.uniform(0, 1, x["breast"].shape)}
    rows = [1, 0]
    fig = ex.heatmaps(images, samples=rows)
    assert "reference: given input; explained class: each row's target" in fig.get_suptitle()
    assert "red: evidence for the explained class" in _bar_label(fig)
    t = ex.target[rows[0]]
    assert _row_labels(fig)[0].endswith(f"p(c{t}) = {ex.probabilities[rows[0], t]:.3f}")
    # One modality as a grid: the row labels become panel titles.
    masks = {"breast": np.zeros((2, *x["breast"].shape[1:]), bool)}
    fig = ex.heatmaps(images, samples=rows, ncols=2, masks=masks)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 2 and titles[1].startswith("patient #0\npredicted ")


def test_relevance_is_finite_and_epsilon_default(trimodal):
    model, x = trimodal
    ex = _engine.explain(model, x)
    assert ex.composite == get_composite("epsilon") == Composite(output=Epsilon())
    assert all(np.isfinite(r).all() for r in ex.relevance.values())


def sign_model(dtype=np.float64):
    """x -> h = sigma(-3 x + 1.5) -> logit_1 = 2 - 2 h: a large x lowers h, which raises the
    class-1 logit, but h stays positive and its weight negative."""
    return {"modalities": ["a"],
            "pathways": {"a": [{"W": np.array([[-3.0]], dtype), "b": np.array([1.5], dtype)}]},
            "joint": [], "output": {"W": np.array([[0.0, -2.0]], dtype),
                                    "b": np.array([0.0, 2.0], dtype)},
            "clip": None, "scalers": {}, "meta": {"image_shapes": {"a": [1]}}}


def test_reference_gives_the_input_that_raised_the_logit_positive_relevance():
    model, x, ref0 = sign_model(), {"a": np.array([[2.0]])}, {"a": np.array([[0.0]])}
    plain = _engine.explain(model, x, target=1)
    assert plain.relevance["a"][0, 0] < 0  # the sigmoid unit's residual 0.011 counts against
    h, h0 = 1 / (1 + np.exp(4.5)), 1 / (1 + np.exp(-1.5))
    diff = (2 - 2 * h) - (2 - 2 * h0)
    lrp0 = get_composite("epsilon", epsilon=1e-15)  # class 0 has z = 0: LRP-0 would give 0/0
    ex = _engine.explain(model, x, target=1, composite=lrp0, reference=ref0)
    np.testing.assert_allclose(ex.relevance["a"][0, 0], diff, rtol=1e-12)
    np.testing.assert_allclose(ex.reference_logits, [0.0, 2 - 2 * h0])
    np.testing.assert_allclose(ex.conservation_residual, 0.0, atol=1e-12)
    assert "reference_logits" in ex.to_dict()


def test_reference_conserves_the_logit_difference(trimodal, rng):
    model, x = trimodal
    reference = scaled_inputs(rng, model, 1)
    ex = _engine.explain(model, x, composite=get_composite("epsilon", epsilon=1e-12),
                         reference=reference)
    rows = np.arange(10)
    want = ex.logits[rows, ex.target] - ex.reference_logits[ex.target]
    total = sum(ex.relevance[m].reshape(10, -1).sum(axis=1) for m in ex.modalities)
    np.testing.assert_allclose(total, want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ex.conservation_residual, 0.0, atol=1e-6)
    # The reference explained against itself has nothing to explain.
    same = _engine.explain(model, reference, reference=reference)
    assert all(np.abs(same.relevance[m]).max() == 0 for m in same.modalities)


def test_reference_is_ignored_by_other_rules(trimodal, rng):
    model, x = trimodal
    zplus = Composite(input=ZPlus(), hidden=ZPlus(), joint=ZPlus(), output=ZPlus())
    a = _engine.explain(model, x, composite=zplus)
    b = _engine.explain(model, x, composite=zplus, reference=scaled_inputs(rng, model, 1))
    for m in a.modalities:
        np.testing.assert_array_equal(a.relevance[m], b.relevance[m])


def test_bad_reference_names_the_problem(trimodal, rng):
    model, x = trimodal
    two = scaled_inputs(rng, model, 2)
    with pytest.raises(ValueError, match="one sample per modality, got 2"):
        _engine.explain(model, x, reference=two)
    one = scaled_inputs(rng, model, 1)
    with pytest.raises(ValueError, match=r"reference: X lacks modalities \['bone'\]"):
        _engine.explain(model, x, reference={k: v for k, v in one.items() if k != "bone"})
    bad = dict(one, brain=np.full((6, 6), np.nan))  # one image without its sample axis
    with pytest.raises(ValueError, match="reference: .*NaN"):
        _engine.explain(model, x, reference=bad)
    with pytest.raises(ValueError, match="reference must be a dict"):
        _engine.explain(model, x, reference=one["brain"])


def test_shares_are_the_positive_relevance_in_zero_one(trimodal):
    model, x = trimodal
    ex = _engine.explain(model, x)
    pos = {m: np.maximum(ex.relevance[m].reshape(10, -1), 0).sum(axis=1) for m in ex.modalities}
    total = sum(pos.values())
    for m in ex.modalities:
        np.testing.assert_allclose(ex.shares[m], pos[m] / total, rtol=1e-10, atol=1e-15)
        assert ((ex.shares[m] >= 0) & (ex.shares[m] <= 1)).all()
    np.testing.assert_allclose(sum(ex.shares.values()), 1.0)
    # The signed share leaves [0, 1] here, which is why it is no longer `shares`.
    net = np.stack(list(ex.net_shares.values()))
    assert (net < 0).any() or (net > 1).any()
    assert ex.classes == ("c0", "c1", "c2") and ex.class_name(2) == "c2"
    unnamed = _engine.explain({**model, "meta": {"image_shapes": model["meta"]["image_shapes"]}},
                              x)
    assert unnamed.classes is None and unnamed.class_name(2) == "class 2"
    np.testing.assert_allclose(ex.probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ex.probabilities.argmax(axis=1), ex.target)


def test_shares_zero_for_a_modality_without_positive_relevance_and_nan_without_any():
    from pymdbn.lrp.explanation import shares_from_totals

    # a: only negative relevance (sum == -abs up to rounding), b: only positive.
    s = shares_from_totals({"a": [-3.0, -1.0], "b": [2.0, -1.0]}, {"a": [3.0, 1.0],
                                                                  "b": [2.0, 1.0]})
    np.testing.assert_array_equal(s["shares"]["a"][:1], [0.0])
    np.testing.assert_array_equal(s["shares"]["b"][:1], [1.0])
    assert np.isnan(s["shares"]["a"][1]) and np.isnan(s["shares"]["b"][1])
    np.testing.assert_allclose(s["net_shares"]["a"], [3.0, 0.5])


def test_explanation_built_the_old_way_gets_positive_shares(trimodal):
    # Code written for 0.1.0 passes the signed shares as `shares` and no net_shares.
    model, x = trimodal
    ex = _engine.explain(model, x)
    old = Explanation(relevance=ex.relevance, logits=ex.logits, target=ex.target,
                      shares=ex.net_shares, abs_shares=ex.abs_shares,
                      code_relevance=ex.code_relevance, code_slices=ex.code_slices,
                      conservation_residual=ex.conservation_residual, composite=ex.composite)
    for m in ex.modalities:
        np.testing.assert_allclose(old.shares[m], ex.shares[m], rtol=1e-6)
        np.testing.assert_array_equal(old.net_shares[m], ex.net_shares[m])


def test_explanation_knows_the_class_names(trimodal):
    model, x = trimodal
    model = {**model, "meta": {**model["meta"], "classes": ["healthy", "benign", "cancer"]}}
    ex = _engine.explain(model, x, target=2)
    assert ex.classes == ("healthy", "benign", "cancer") and ex.class_name(2) == "cancer"
    assert ex.to_dict()["classes"] == ["healthy", "benign", "cancer"]
