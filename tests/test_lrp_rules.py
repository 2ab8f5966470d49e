"""LRP rules: every backend's kernel against the NumPy twin, rule properties, composites."""

import numpy as np
import pytest

from conftest import BACKENDS, COMPILED, DTYPES, tol
from pymdbn import backend
from pymdbn._matmul import matmul
from pymdbn.backend import reference as ref
from pymdbn.lrp import (COMPOSITES, AlphaBeta, Composite, Epsilon, Flat, Gamma, WSquare, ZBox,
                        ZPlus, get_composite)

# (batch, n_in, n_out), size 1 included; (1, 2100, 1000): one sample over more than one
# column block of the one-row kernels.
SHAPES = [(1, 1, 1), (1, 5, 3), (6, 1, 4), (3, 13, 1), (17, 31, 9), (64, 100, 33),
          (1, 2100, 1000)]
KERNEL_RULES = {
    "epsilon": {},
    "zplus": {},
    "alpha_beta": dict(alpha=2.0, beta=1.0),
    "gamma": dict(gamma=0.25),
    "zbox": {},
    "flat": {},
    "wsquare": {},
}


def assert_close(got, want, dtype, exact=None):
    """``got`` matches the twin's ``want``. In float32, where a denominator is a sum that
    nearly cancels, neither is accurate: there the allowance also includes twice the twin's
    own error against ``exact``, the twin evaluated in float64 on the same values."""
    rtol, atol = (tol(dtype, "lrp")[k] for k in ("rtol", "atol"))
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape
    bound = rtol * np.abs(want) + atol * max(1.0, np.abs(want).max())
    if exact is not None:
        bound = bound + 2 * np.abs(want - exact)
    excess = np.abs(got.astype(np.float64) - want) - bound
    worst = np.unravel_index(excess.argmax(), excess.shape)
    assert (excess <= 0).all(), f"exceeds the tolerance by {excess.max():.3g} at {worst}"


def twin(x, w, b, r, rule, **kw):
    """The twin in the dtype of x and, for float32, also in float64 on the same values."""
    want = ref.lrp_dense(x, w, b, r, rule, **kw)
    if x.dtype != np.float32:
        return want, None
    up = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    return want, ref.lrp_dense(*(a.astype(np.float64) for a in (x, w, b, r)), rule, **up)


def layer(rng, batch, n_in, n_out, dtype, nonneg=False):
    x = rng.standard_normal((batch, n_in))
    x = np.abs(x) if nonneg else x
    w = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    b = 0.3 * rng.standard_normal(n_out)
    r = rng.standard_normal((batch, n_out))
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x, w, b, r))


def kernel(kern, x, w, b, r, rule, epsilon=1e-6, gamma=0.25, alpha=1.0, beta=0.0, low=None,
           high=None, use_bias=True, z=None):
    """``lrp_dense`` of backend ``kern``, its arguments positional as the core binds them."""
    return kern.lrp_dense(x, w, b, r, rule, epsilon, gamma, alpha, beta, low, high, use_bias, z)


@pytest.fixture(params=BACKENDS)
def rules_on(request, monkeypatch):
    """The backend the rule objects run on: they call ``backend.ops.lrp_dense``, which is
    routed here to that backend's ``lrp_dense`` for the test."""
    kern = backend.get(request.param)
    monkeypatch.setattr(backend.ops, "lrp_dense", kern.lrp_dense)
    return kern


# ------------------------------------------------------------ kernel vs twin
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rule", list(KERNEL_RULES))
@pytest.mark.parametrize("use_bias", [True, False])
def test_kernel_matches_twin(kernels_dtype, rng, rule, shape, use_bias):
    kern, dtype = kernels_dtype
    x, w, b, r = layer(rng, *shape, dtype)
    kw = dict(KERNEL_RULES[rule], use_bias=use_bias)
    if rule == "zbox":
        kw.update(low=np.full(shape[1], -3.0, dtype),
                  high=rng.uniform(2, 4, shape[1]).astype(dtype))
    want, exact = twin(x, w, b, r, rule, **kw)
    assert_close(kernel(kern, x, w, b, r, rule, **kw), want, dtype, exact)


@pytest.mark.parametrize("use_bias", [True, False])
def test_kernel_epsilon_reuses_forward_z(kernels_dtype, rng, use_bias):
    kern, dtype = kernels_dtype
    x, w, b, r = layer(rng, 9, 20, 7, dtype)
    z = matmul(x, w) + b  # as the kernel computes it (bfloat16 operands for that dtype)
    got = kernel(kern, x, w, b, r, "epsilon", epsilon=0.01, use_bias=use_bias, z=z)
    want, exact = twin(x, w, b, r, "epsilon", epsilon=0.01, use_bias=use_bias, z=z)
    assert_close(got, want, dtype, exact)
    assert_close(kernel(kern, x, w, b, r, "epsilon", epsilon=0.01, use_bias=use_bias), want,
                 dtype, exact)


def rule_and_twin_kwargs(rng, n_in):
    """Every rule object with the twin's keyword arguments for it."""
    low, high = -rng.uniform(1, 2, n_in), rng.uniform(1, 2, n_in)
    return [
        (Epsilon(0.1), "epsilon", dict(epsilon=0.1)),
        (Epsilon(1e-6, use_bias=False), "epsilon", dict(use_bias=False)),
        (ZPlus(), "zplus", {}),
        (AlphaBeta(), "alpha_beta", dict(alpha=2.0, beta=1.0)),
        (AlphaBeta(3.0, 2.0, use_bias=False), "alpha_beta", dict(alpha=3.0, beta=2.0,
                                                                  use_bias=False)),
        (Gamma(0.5, stabilizer=1e-3), "gamma", dict(gamma=0.5, epsilon=1e-3)),
        (ZBox(low, high), "zbox", dict(low=low, high=high, use_bias=False)),
        (ZBox(-2.5, 1.5), "zbox", dict(low=np.full(n_in, -2.5), high=np.full(n_in, 1.5),
                                       use_bias=False)),
        (ZBox(low, high, use_bias=True), "zbox", dict(low=low, high=high, use_bias=True)),
        (Flat(), "flat", {}),
        (WSquare(), "wsquare", {}),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 12, 3), (8, 40, 16)])
def test_rule_objects_call_the_kernel_with_their_parameters(rules_on, rng, shape, dtype):
    x, w, b, r = layer(rng, *shape, dtype)
    for rule, name, kw in rule_and_twin_kwargs(rng, shape[1]):
        kw = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        want, exact = twin(x, w, b, r, name, **kw)
        assert_close(rule(x, w, b, r), want, dtype, exact)
        assert_close(rule.backward(x, w, b, r, z=x @ w + b), want, dtype, exact)


@pytest.mark.parametrize("rule", [Epsilon(), ZPlus(), AlphaBeta(), Gamma(), Flat(), WSquare(),
                                  ZBox(-3.0, 3.0)])
def test_rule_apply_is_backward_without_the_conversions(rules_on, rng, rule):
    # The engine's path: arrays already contiguous in one dtype go straight to the kernel.
    x, w, b, r = layer(rng, 5, 12, 4, np.float32)
    z = x @ w + b
    want, want_totals = rule.backward(x, w, b, r, z=z, return_totals=True)
    got, totals = rule.apply(x, w, b, r, z=z, return_totals=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(totals, want_totals)
    if rules_on is backend.get("cpu"):  # the compiled kernel still names a bad argument
        with pytest.raises(TypeError, match="w: expected dtype float32"):
            rule.apply(x, w.astype(np.float64), b, r)


def test_rule_casts_to_the_input_dtype_and_checks_shapes(rules_on, rng):
    x, w, b, r = layer(rng, 4, 6, 3, np.float32)
    out = Epsilon()(x, w.astype(np.float64), list(b), r.astype(np.float64))
    assert out.dtype == np.float32 and out.shape == (4, 6)
    assert Epsilon()(x.astype(int), w, b, r).dtype == np.float64
    with pytest.raises(ValueError, match="do not chain"):
        Epsilon()(x, w[:5], b, r)
    with pytest.raises(ValueError, match="relevance"):
        Epsilon()(x, w, b, r[:, :2])
    with pytest.raises(ValueError, match="z shape"):
        Epsilon()(x, w, b, r, z=r[:2])


# ---------------------------------------------------------- rule properties
@pytest.mark.parametrize("rule", [Epsilon(1e-12, use_bias=False), ZPlus(1e-12, use_bias=False),
                                  AlphaBeta(2, 1, 1e-12, use_bias=False),
                                  Gamma(0.25, 1e-12, use_bias=False),
                                  ZBox(-2.0, 2.0, 1e-12, use_bias=False), Flat(),
                                  WSquare(1e-12)])
def test_rules_without_bias_conserve_relevance_per_layer(rules_on, rng, rule):
    # The denominators then are exactly the sums of the numerators over i: float64 rounding
    # of 25-term sums, and the 1e-12 stabiliser over denominators of O(1).
    x, w, b, r = layer(rng, 11, 25, 8, np.float64)
    np.testing.assert_allclose(rule(x, w, b, r).sum(axis=1), r.sum(axis=1), rtol=1e-9)


def test_epsilon_bias_and_stabiliser_absorb_the_rest(rules_on, rng):
    x, w, b, r = layer(rng, 11, 25, 8, np.float64)
    eps = 0.05
    z = x @ w + b
    zs = z + np.where(z >= 0, eps, -eps)
    absorbed = (r * (b + np.where(z >= 0, eps, -eps)) / zs).sum(axis=1)
    got = Epsilon(eps)(x, w, b, r).sum(axis=1)
    # An identity of float64 sums of 25 and 8 terms: a few ulps.
    np.testing.assert_allclose(got, r.sum(axis=1) - absorbed, rtol=1e-12)


def test_epsilon_sign_of_zero_is_positive(rules_on):
    # z = 0 exactly: the stabiliser is +eps, so R_i = x_i w_i R / eps.
    x = np.array([[1.0, 1.0]])
    w = np.array([[1.0], [-1.0]])
    got = Epsilon(0.5)(x, w, np.zeros(1), np.array([[2.0]]))
    np.testing.assert_allclose(got, [[4.0, -4.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zplus_is_nonnegative_for_nonnegative_inputs(rules_on, rng, dtype):
    x, w, b, r = layer(rng, 20, 30, 10, dtype, nonneg=True)
    out = ZPlus()(x, w, b, np.abs(r))
    assert (out >= 0).all() and (out > 0).any()
    # AlphaBeta(1, 0) is z+.
    np.testing.assert_array_equal(AlphaBeta(1.0, 0.0)(x, w, b, r), ZPlus()(x, w, b, r))


def test_alpha_beta_is_affine_in_alpha(rules_on, rng):
    # R(alpha, alpha - 1) = alpha R+ - (alpha - 1) R-: equal steps in alpha give equal steps,
    # up to float64 rounding of R+ and R- scaled by alpha <= 3.
    x, w, b, r = layer(rng, 7, 15, 6, np.float64)
    r1, r2, r3 = (AlphaBeta(a, a - 1)(x, w, b, r) for a in (1.0, 2.0, 3.0))
    np.testing.assert_allclose(r3 - r2, r2 - r1, rtol=1e-10, atol=1e-10)


def test_flat_is_uniform(rules_on, rng):
    x, w, b, r = layer(rng, 4, 9, 5, np.float64)
    out = Flat()(x, w, b, r)
    np.testing.assert_allclose(out, np.repeat(r.sum(axis=1, keepdims=True) / 9, 9, axis=1))
    np.testing.assert_allclose(Flat()(2 * x - 1, w + 3, b, r), out)


def test_wsquare_ignores_the_input(rules_on, rng):
    x, w, b, r = layer(rng, 4, 9, 5, np.float64)
    out = WSquare()(x, w, b, r)
    np.testing.assert_allclose(WSquare()(np.zeros_like(x), w, b, r), out)
    # The reference leaves out the default stabiliser 1e-6, added to sums of w^2 of O(1).
    np.testing.assert_allclose(out, r @ (w**2 / (w**2).sum(axis=0)).T, rtol=1e-5)


def test_gamma_zero_and_zbox_at_zero_are_epsilon(rules_on, rng):
    # The same sums by another route (w + 0 w+, x W - 0 W+ - 0 W-) in float64: a few ulps.
    x, w, b, r = layer(rng, 6, 10, 4, np.float64)
    want = Epsilon(1e-3)(x, w, b, r)
    np.testing.assert_allclose(Gamma(0.0, stabilizer=1e-3)(x, w, b, r), want, rtol=1e-12)
    # The bias cancels in z^B by default; use_bias=True keeps it, as Epsilon does.
    np.testing.assert_allclose(ZBox(0.0, 0.0, stabilizer=1e-3)(x, w, b, r),
                               Epsilon(1e-3, use_bias=False)(x, w, b, r), rtol=1e-12)
    np.testing.assert_allclose(ZBox(0.0, 0.0, stabilizer=1e-3, use_bias=True)(x, w, b, r), want,
                               rtol=1e-12)


def zbox_by_definition(x, w, b, r, low, high, stabilizer):
    """z^B (Montavon et al. 2017), written as zennit writes it: three copies of the layer,
    x W + b, l W+ + b+ and h W- + b-, whose difference cancels the bias; every
    contribution x_i w_ij - l_i w+_ij - h_i w-_ij spelled out."""
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    low, high = np.broadcast_to(low, x.shape[1:]), np.broadcast_to(high, x.shape[1:])
    z = (x @ w + b) - (low @ wp + np.maximum(b, 0)) - (high @ wn + np.minimum(b, 0))
    z = z + np.where(z >= 0, stabilizer, -stabilizer)
    contrib = (np.einsum("bi,ij->bij", x, w) - (low[:, None] * wp)[None]
               - (high[:, None] * wn)[None])  # (B, n_in, n_out)
    return np.einsum("bij,bj->bi", contrib, r / z)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zbox_follows_its_definition_and_conserves_relevance(rules_on, rng, dtype):
    x, w, b, r = layer(rng, 7, 30, 5, dtype)
    b = (b + np.sign(b) * 2).astype(dtype)  # large biases: what the old default got wrong
    low, high = -rng.uniform(1, 3, 30), rng.uniform(1, 3, 30)
    x = np.clip(x, low, high).astype(dtype)  # inside the box, as the rule assumes
    want = zbox_by_definition(*(a.astype(np.float64) for a in (x, w, b, r)), low, high, 1e-9)
    got = ZBox(low, high, stabilizer=1e-9)(x, w, b, r)
    rtol = tol(dtype, "lrp_definition")["rtol"]
    atol = tol(dtype, "lrp_definition")["atol"] * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    # Without the bias in z^B the layer is conservative: input relevance adds up to r, a sum
    # of 30 terms that cancel (10x rtol, 30x atol).
    np.testing.assert_allclose(got.sum(axis=1, dtype=np.float64), r.sum(axis=1),
                               rtol=rtol * 10, atol=atol * 30)
    # The old form divides by z^B + b and does not conserve.
    old = ZBox(low, high, stabilizer=1e-9, use_bias=True)(x, w, b, r)
    assert not np.allclose(old.sum(axis=1), r.sum(axis=1), rtol=1e-2)


def test_zbox_matches_zennit(rules_on):
    torch = pytest.importorskip("torch")
    try:  # zennit imports torchvision, which can fail to load beside another torch
        from zennit import rules as zennit_rules
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"zennit not usable: {exc}")
    rng = np.random.default_rng(3)
    x, w, b, r = layer(rng, 4, 12, 5, np.float64)
    low, high = -np.full(12, 2.0), np.full(12, 2.5)
    x = np.clip(x, low, high)
    lin = torch.nn.Linear(12, 5).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w.T.copy()))
        lin.bias.copy_(torch.from_numpy(b))
    rule = zennit_rules.ZBox(torch.from_numpy(low[None]), torch.from_numpy(high[None]))
    handle = rule.register(lin)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = lin(xt)
    (grad,) = torch.autograd.grad(out, xt, torch.from_numpy(r))
    handle.remove()
    # Both in float64; zennit's autograd sums the same 12-term products in another order.
    np.testing.assert_allclose(ZBox(low, high)(x, w, b, r), grad.numpy(), rtol=1e-9,
                               atol=1e-12)


# --------------------------------------------------------- rule objects
def test_rule_validation():
    with pytest.raises(ValueError, match="alpha - beta == 1"):
        AlphaBeta(1.0, 1.0)
    with pytest.raises(ValueError, match="beta must be"):
        AlphaBeta(0.0, -1.0)
    with pytest.raises(ValueError, match="epsilon must be"):
        Epsilon(-1e-3)
    with pytest.raises(ValueError, match="gamma must be"):
        Gamma(float("nan"))
    with pytest.raises(ValueError, match="both low and high"):
        ZBox(low=0.0)
    with pytest.raises(ValueError, match="low <= high"):
        ZBox(1.0, [0.0, 2.0])
    with pytest.raises(ValueError, match="do not broadcast"):
        ZBox([0.0, 0.0], [1.0, 1.0, 1.0])
    x, w, b, r = layer(np.random.default_rng(0), 2, 3, 2, np.float64)
    with pytest.raises(ValueError, match="no bounds"):
        ZBox()(x, w, b, r)
    with pytest.raises(ValueError, match="3 inputs"):
        ZBox([0.0, 0.0], [1.0, 1.0])(x, w, b, r)


def test_rule_repr_and_equality():
    assert repr(Epsilon()) == "Epsilon(epsilon=1e-06, use_bias=True)"
    assert repr(AlphaBeta()) == "AlphaBeta(alpha=2.0, beta=1.0, stabilizer=1e-06, use_bias=True)"
    assert repr(Flat()) == "Flat()"
    assert repr(ZBox(-1, 2)) == "ZBox(low=-1.0, high=2.0, stabilizer=1e-06, use_bias=False)"
    assert ZBox(-1, 2) != ZBox(-1, 2, use_bias=True)
    assert repr(ZBox(np.zeros(10), np.ones(10))).startswith("ZBox(low=array(shape=(10,))")
    assert Epsilon() == Epsilon(1e-6) and Epsilon() != Epsilon(1e-3)
    assert Epsilon() != Epsilon(use_bias=False) and Epsilon() != Gamma()
    assert ZBox([0, 1], [2, 3]) == ZBox(np.array([0, 1]), [2, 3]) != ZBox([0, 0], [2, 3])
    assert ZBox(0, 1) != ZBox() and Flat() == Flat()
    with pytest.raises(TypeError):
        hash(Epsilon())


# --------------------------------------------------------------- composites
def test_presets_follow_zennit():
    roles = ("input", "hidden", "joint", "output")
    table = {
        "epsilon": (Epsilon, Epsilon, Epsilon, Epsilon),
        "epsilon_plus": (ZPlus, ZPlus, Epsilon, Epsilon),
        "epsilon_gamma_box": (ZBox, Gamma, Epsilon, Epsilon),
        "epsilon_plus_flat": (Flat, ZPlus, Epsilon, Epsilon),
    }
    assert set(COMPOSITES) == set(table)
    for name, kinds in table.items():
        c = get_composite(name)
        assert [type(c.rule(role)) for role in roles] == list(kinds), name
    assert get_composite("epsilon") == Composite()
    c = get_composite("epsilon_gamma_box", gamma=1.0, low=-1, high=1, epsilon=0.1)
    assert c.rule("hidden") == Gamma(1.0) and c.rule("input") == ZBox(-1, 1)
    assert c.rule("output") == Epsilon(0.1)
    assert get_composite("epsilon", use_bias=False).rule("joint") == Epsilon(use_bias=False)


def test_composite_per_modality_overrides():
    c = Composite(input=ZBox(-2.0, 3.0), hidden=Gamma(), per_modality={"brain": {"input": Flat()}})
    assert c.rule("input", "brain") == Flat()
    assert c.rule("input", "bone") == ZBox(-2.0, 3.0) == c.rule("input")
    assert c.rule("hidden", "brain") == Gamma()
    assert c.rule("joint") == Epsilon() == c.rule("output")
    assert c == Composite(input=ZBox(-2.0, 3.0), hidden=Gamma(),
                          per_modality={"brain": {"input": Flat()}})
    assert c != Composite(input=ZBox(-2.0, 3.0), hidden=Gamma())
    assert "per_modality={'brain': {'input': Flat()}}" in repr(c)
    assert get_composite(c) is c


def test_composite_validation():
    with pytest.raises(ValueError, match="hidden must be an LRP rule"):
        Composite(hidden="epsilon")
    with pytest.raises(ValueError, match="only .* can differ per modality"):
        Composite(per_modality={"brain": {"output": Epsilon()}})
    with pytest.raises(ValueError, match="unknown layer role"):
        Composite().rule("pooling")
    with pytest.raises(ValueError, match="preset name"):
        get_composite("lrp_magic")
    with pytest.raises(ValueError, match="preset name"):
        get_composite(Epsilon())
    with pytest.raises(ValueError, match="takes no"):
        get_composite("epsilon", gamma=0.5)
    with pytest.raises(ValueError, match="presets only"):
        get_composite(Composite(), epsilon=0.1)


# ------------------------------------------------------- totals, in-place epsilon
@pytest.mark.parametrize("shape", [(1, 1, 1), (6, 13, 4), (33, 600, 17)])
@pytest.mark.parametrize("rule", list(KERNEL_RULES))
def test_kernel_totals_are_row_sums_of_the_result(kernels_dtype, rng, rule, shape):
    kern, dtype = kernels_dtype
    x, w, b, r = layer(rng, *shape, dtype)
    kw = dict(KERNEL_RULES[rule])
    if rule == "zbox":
        kw.update(low=np.full(shape[1], -3.0, dtype), high=np.full(shape[1], 3.0, dtype))
    args = (x, w, b, r, rule, 1e-6, kw.get("gamma", 0.25), kw.get("alpha", 1.0),
            kw.get("beta", 0.0), kw.get("low"), kw.get("high"), True, None)
    plain = kern.lrp_dense(*args)
    out, totals = kern.lrp_dense(*args, totals=True)
    np.testing.assert_array_equal(out, plain)
    assert totals.dtype == np.float64 and totals.shape == (shape[0], 2)
    want = ref.relevance_totals(out)  # float64 sums of up to 600 terms: ~1e-13 relative
    np.testing.assert_allclose(totals[:, 0], want[:, 0], rtol=0, atol=1e-12 * want[:, 1].max())
    np.testing.assert_allclose(totals[:, 1], want[:, 1], rtol=1e-12)


# One GEMM tile; (40, 1300, 24) is one tile and 3 column blocks of the old in-place path;
# 2 tiles of 656 columns; 4 tiles of 1056; one sample, whose products are GEMVs over 2
# blocks of rows of w (4100 x 520 holds over 2^21 weights).
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (40, 1300, 24), (40, 1300, 64),
                                   (16, 4200, 64), (1, 4100, 520)])
def test_epsilon_overwrite_x_gives_the_same_relevance_in_x(kernels_dtype, rng, shape):
    kern, dtype = kernels_dtype
    x, w, b, r = layer(rng, *shape, dtype)
    z = x @ w + b
    want, want_totals = kern.lrp_dense(x, w, b, r, "epsilon", z=z, totals=True)
    buf = x.copy()
    got, got_totals = kern.lrp_dense(buf, w, b, r, "epsilon", z=z, totals=True,
                                     overwrite_x=True)
    assert got is buf
    # Exact by construction: the in-place path computes gemm's own tiles, one BLAS call
    # each, and multiplies them into x; OpenBLAS rounds a block of another shape
    # differently (with the Haswell kernels, 1518 elements of (40, 1300, 24) in float32).
    np.testing.assert_array_equal(got, want)
    # The totals add per-tile row sums in double: float64 rounding of <= 4200 terms.
    np.testing.assert_allclose(got_totals, want_totals, rtol=1e-12, atol=1e-300)
    # Without z (the kernel computes it with the same GEMM in both paths) as well.
    buf = x.copy()
    np.testing.assert_array_equal(kern.lrp_dense(buf, w, b, r, "epsilon", overwrite_x=True),
                                  kern.lrp_dense(x, w, b, r, "epsilon"))


# One sample goes through GEMVs over blocks of the product's outputs (one block for the
# small layer, 2 for 4100 x 520, whose products are cut in the forward and the backward
# direction): every rule against the twin, and against the batch it is in.
@pytest.mark.parametrize("shape", [(1, 37, 11), (1, 4100, 520)])
@pytest.mark.parametrize("rule", list(KERNEL_RULES))
def test_one_sample_matches_twin_and_its_batch(kernels_dtype, rng, rule, shape):
    kern, dtype = kernels_dtype
    x, w, b, r = layer(rng, 3, *shape[1:], dtype, nonneg=rule == "zbox")
    kw = dict(KERNEL_RULES[rule])
    if rule == "zbox":
        kw.update(low=np.zeros(shape[1], dtype), high=np.full(shape[1], 4.0, dtype))
    one = kernel(kern, x[:1], w, b, r[:1], rule, **kw)
    batch = kernel(kern, x, w, b, r, rule, **kw)[:1]
    want, exact = twin(x[:1], w, b, r[:1], rule, **kw)
    if exact is None:
        assert_close(one, want, dtype)
        assert_close(one, batch, dtype)
        return
    # float32: over 520 outputs some epsilon and gamma denominators nearly cancel, and the
    # one-sample kernel, the twin and the batch are each off by up to ~1e-3 of the largest
    # relevance (4100 x 520, measured), at different elements. Hence as accurate as the
    # twin against the float64 twin, as a whole.
    worst = 2 * max(np.abs(want - exact).max(), np.abs(batch - exact).max())
    assert one.dtype == dtype and one.shape == want.shape
    assert np.abs(one - exact).max() <= worst + 1e-5 * np.abs(exact).max()


@pytest.mark.parametrize("rule", list(KERNEL_RULES))
def test_no_samples_give_no_relevance(kernels_dtype, rng, rule):
    kern, dtype = kernels_dtype
    _, w, b, _ = layer(rng, 1, 6, 4, dtype)
    x, r = np.zeros((0, 6), dtype), np.zeros((0, 4), dtype)
    kw = dict(KERNEL_RULES[rule])
    if rule == "zbox":
        kw.update(low=np.zeros(6, dtype), high=np.ones(6, dtype))
    z = np.zeros((0, 4), dtype) if rule == "epsilon" else None
    out = kernel(kern, x, w, b, r, rule, z=z, **kw)
    assert out.shape == (0, 6) and out.dtype == dtype


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("in_place", [False, True])
def test_epsilon_of_a_layer_without_outputs_is_zero(kernels_dtype, rng, batch, in_place):
    kern, dtype = kernels_dtype
    x = rng.standard_normal((batch, 6)).astype(dtype)
    w, b, r = np.zeros((6, 0), dtype), np.zeros(0, dtype), np.zeros((batch, 0), dtype)
    out = kern.lrp_dense(x.copy() if in_place else x, w, b, r, "epsilon", 1e-6, 0.25, 1.0,
                         0.0, None, None, True, np.zeros((batch, 0), dtype), False, in_place)
    np.testing.assert_array_equal(out, np.zeros((batch, 6), dtype))


def test_overwrite_x_is_ignored_by_rules_that_read_x_throughout(rules_on, rng):
    x, w, b, r = layer(rng, 4, 9, 5, np.float64)
    buf = x.copy()
    out = rules_on.lrp_dense(buf, w, b, r, "zplus", overwrite_x=True)
    assert out is not buf
    np.testing.assert_array_equal(buf, x)
    np.testing.assert_array_equal(out, rules_on.lrp_dense(x, w, b, r, "zplus"))
    # The rule object's flag is a permission: a read-only x is never written.
    ro = x.copy()
    ro.flags.writeable = False
    res = Epsilon().backward(ro, w, b, r, overwrite_x=True)
    np.testing.assert_array_equal(ro, x)
    np.testing.assert_array_equal(res, Epsilon().backward(x, w, b, r))


# The thread count is the compiled backends' (OpenMP); the twins run in NumPy.
@pytest.mark.parametrize("name", COMPILED)
def test_in_place_epsilon_does_not_depend_on_the_thread_count(rng, name):
    import pymdbn

    kern = backend.get(name)
    x, w, b, r = layer(rng, 203, 1100, 40, np.float32)
    z = x @ w + b
    before = pymdbn.get_num_threads()["openmp"]
    outs = []
    try:
        for threads in (1, 2, 3):
            pymdbn.set_num_threads(threads)
            outs.append(kern.lrp_dense(x.copy(), w, b, r, "epsilon", z=z, totals=True,
                                       overwrite_x=True))
    finally:
        pymdbn.set_num_threads(before)
    for out, totals in outs[1:]:
        np.testing.assert_array_equal(out, outs[0][0])
        np.testing.assert_array_equal(totals, outs[0][1])


def test_box_preset_zbox_excludes_the_bias_and_presets_are_named():
    c = get_composite("epsilon_gamma_box", low=-1.0, high=1.0)
    assert c.rule("input") == ZBox(-1.0, 1.0) and not c.rule("input").use_bias
    assert c.rule("hidden").use_bias  # use_bias=True still reaches the other rules
    assert get_composite("epsilon_gamma_box", use_bias=False).rule("input").use_bias is False
    assert c.name == "epsilon_gamma_box"
    assert c.describe().startswith("epsilon_gamma_box (input ZBox")
    assert Composite().describe() == "input Epsilon, hidden Epsilon, joint Epsilon, output Epsilon"
    assert Composite(name="mine") == Composite()  # the name is a label, not a rule
