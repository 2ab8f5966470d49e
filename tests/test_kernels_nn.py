"""Dense, softmax and optimiser kernels against their NumPy twins; gradient checks."""

import numpy as np
import pytest

from pymdbn.models import finetune
from pymdbn.models.finetune import new_layer
from pymdbn.models.network import Network
from pymdbn.backend import reference as ref
from pymdbn import backend
from pymdbn._matmul import get_precision
from conftest import TOL, numeric_grad

cpu = backend.get("cpu")

SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 4), (3, 13, 1), (17, 31, 9), (64, 100, 33)]


def _layer(rng, n, n_in, n_out, dtype):
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) * 1.5).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("n,n_in,n_out", SHAPES)
@pytest.mark.parametrize("clip,activation", [(None, "sigmoid"), (1.5, "sigmoid"),
                                             (None, "linear")])
def test_dense_forward_backward_match_twin(kernels_dtype, rng, n, n_in, n_out, clip,
                                           activation):
    kern, dtype = kernels_dtype
    x, w, b = _layer(rng, n, n_in, n_out, dtype)
    z, a = kern.dense_forward(x, w, b, clip, activation)
    rz, ra = ref.dense_forward(x, w, b, clip, activation)
    assert z.dtype == a.dtype == dtype and a.shape == (n, n_out)
    np.testing.assert_allclose(z, rz, **TOL[dtype])
    np.testing.assert_allclose(a, ra, **TOL[dtype])
    g = rng.standard_normal((n, n_out)).astype(dtype)
    for need in (True, False):
        got = kern.dense_backward(g, rz, ra, x, w, clip, activation, need)
        want = ref.dense_backward(g, rz, ra, x, w, clip, activation, need)
        assert (got[0] is None) == (not need)
        for gk, wk in zip(got, want):
            if wk is not None:
                assert gk.dtype == dtype
                np.testing.assert_allclose(gk, wk, **TOL[dtype])


# A batch of one sample is computed by GEMVs over blocks of columns (one block for the
# small layer, 2 for 4100 x 520, over 2^21 weights); without inputs it is the bias.
@pytest.mark.parametrize("n_in,n_out", [(37, 11), (4100, 520), (0, 4)])
@pytest.mark.parametrize("activation", ["sigmoid", "linear"])
def test_dense_forward_of_one_sample_matches_twin_and_its_batch(kernels_dtype, rng, n_in,
                                                                n_out, activation):
    kern, dtype = kernels_dtype
    x, w, b = _layer(rng, 3, n_in, n_out, dtype)
    w /= np.sqrt(max(n_in, 1))  # pre-activations of order 1 whatever n_in
    z, a = kern.dense_forward(x[:1], w, b, 2.0, activation)
    rz, ra = ref.dense_forward(x[:1], w, b, 2.0, activation)
    # The float32 sums of 4100 products round to a few 1e-6 of their terms.
    t = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else TOL[dtype]
    batch = kern.dense_forward(x, w, b, 2.0, activation)[0][:1]
    for got, want in ((z, rz), (a, ra), (z, batch)):
        assert got.dtype == dtype and got.shape == (1, n_out)
        if want is batch and get_precision() == "bfloat16":
            # One row stays float32; the batch's rows round both operands to bfloat16
            # (2^-9 relative each): within 2^-7 of the sum of |terms|.
            bound = (np.abs(x[:1]) @ np.abs(w)) * 2.0**-7 + 1e-5
            assert (np.abs(got - want) <= bound).all()
            continue
        np.testing.assert_allclose(got, want, **t)
    if n_in == 0:
        np.testing.assert_array_equal(z, b[None])


def test_propagate_one_sample_is_the_explanations_forward_pass(rng):
    # Inference on one sample takes the one-row kernel that an explanation's forward pass
    # (which keeps the pre-activations) runs: the same activations, bit for bit.
    from pymdbn.models.network import propagate

    layers = [new_layer(n_in, n_out, rng, np.dtype(np.float32)) for n_in, n_out in
              ((300, 40), (40, 7))]
    x = rng.standard_normal((1, 300)).astype(np.float32)
    steps = []
    kept = propagate(x, layers, 3.0, steps)
    np.testing.assert_array_equal(propagate(x, layers, 3.0), kept)
    np.testing.assert_array_equal(steps[-1][2], kept)


@pytest.mark.parametrize("n,k", [(1, 1), (1, 2), (5, 3), (64, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_matches_twin(kernels_dtype, rng, n, k, weighted):
    kern, dtype = kernels_dtype
    logits = (rng.standard_normal((n, k)) * 5).astype(dtype)
    y = rng.integers(0, k, n).astype(np.int64)
    sw = rng.uniform(0.1, 3, n) if weighted else None
    loss, grad, proba = kern.softmax_cross_entropy(logits, y, sw)
    rloss, rgrad, rproba = ref.softmax_cross_entropy(logits, y, sw)
    np.testing.assert_allclose(loss, rloss, **TOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    np.testing.assert_allclose(proba, rproba, **TOL[dtype])
    assert grad.dtype == proba.dtype == dtype


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (33, 17)])
def test_optimiser_updates_match_twin(kernels_dtype, shape):
    kern, dtype = kernels_dtype
    def arrays():
        r = np.random.default_rng(7)
        return [r.standard_normal(shape).astype(dtype) for _ in range(4)]

    p, g, v, _ = arrays()
    rp, rg, rv, _ = arrays()
    kern.sgd_momentum_update(p, g, v, 0.1, 0.9, 0.01)
    ref.sgd_momentum_update(rp, rg, rv, 0.1, 0.9, 0.01)
    np.testing.assert_allclose(p, rp, **TOL[dtype])
    np.testing.assert_allclose(v, rv, **TOL[dtype])
    p, g, m, s = arrays()
    s = np.abs(s)
    rp, rg, rm, rs = arrays()
    rs = np.abs(rs)
    for t in (1, 2, 3):
        kern.adam_update(p, g, m, s, 0.01, 0.9, 0.999, 1e-8, t, 0.001)
        ref.adam_update(rp, rg, rm, rs, 0.01, 0.9, 0.999, 1e-8, t, 0.001)
    for a, b in ((p, rp), (m, rm), (s, rs)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


@pytest.mark.parametrize("clip", [None, 2.0])
def test_dense_backward_finite_differences(rng, clip):
    x, w, b = _layer(rng, 6, 5, 4, np.float64)
    r = rng.standard_normal((6, 4))  # loss = sum(r * a)

    def loss():
        return float((r * cpu.dense_forward(x, w, b, clip, "sigmoid")[1]).sum())

    z, a = cpu.dense_forward(x, w, b, clip, "sigmoid")
    gx, gw, gb = cpu.dense_backward(r, z, a, x, w, clip, "sigmoid", True)
    for analytic, param in ((gx, x), (gw, w), (gb, b)):
        np.testing.assert_allclose(analytic, numeric_grad(loss, param), rtol=1e-6, atol=1e-8)


def two_pathways(rng, a, b, joint_units):
    """A float64 network: pathway 'a' of sizes ``a`` and 'b' of sizes ``b`` (input first),
    a joint layer of ``joint_units`` (None: none) and 3 classes; clip 1.5."""
    def stack(sizes):
        return [new_layer(i, o, rng, np.float64, 1.0) for i, o in zip(sizes[:-1], sizes[1:])]
    pathways = {"a": stack(a), "b": stack(b)}  # drawn in the order the layers run
    code = a[-1] + b[-1]
    joint = stack([code, joint_units]) if joint_units else []
    output = new_layer(joint_units or code, 3, rng, np.float64, 1.0)
    return Network(pathways, ["a", "b"], joint, output, clip=1.5)


@pytest.mark.parametrize("joint", [True, False])
def test_network_backward_finite_differences(rng, joint):
    # Two pathways of different depths, optional joint layer, weighted softmax loss.
    net = two_pathways(rng, (4, 3, 2), (5, 3), 4 if joint else None)
    joint_layers = net.joint
    for layer in [*net.pathways["a"], *net.pathways["b"], *joint_layers, net.output]:
        layer["b"][:] = rng.standard_normal(layer["b"].shape)
    X = {"a": rng.standard_normal((7, 4)), "b": rng.standard_normal((7, 5))}
    y = rng.integers(0, 3, 7).astype(np.int64)
    sw = rng.uniform(0.5, 2, 7)

    def loss():
        return cpu.softmax_cross_entropy(net.forward(X)["logits"], y, sw)[0]

    cache = net.forward(X)
    _, grad_logits, _ = cpu.softmax_cross_entropy(cache["logits"], y, sw)
    grads = net.backward(cache, grad_logits)
    params = net.parameters()
    assert len(grads) == len(params) == 2 * (3 + len(joint_layers) + 1)
    for g, p in zip(grads, params):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-8)
    only = net.backward(cache, grad_logits, output_only=True)
    np.testing.assert_allclose(only[0], grads[-2])
    assert len(only) == 2


@pytest.mark.parametrize("joint", [True, False])
def test_network_backward_with_dropout_matches_finite_differences(rng, joint):
    # Masks depend only on the Dropout seed: every loss evaluation drops the same units.
    net = two_pathways(rng, (6, 5, 4), (5, 6), 6 if joint else None)
    X = {"a": rng.standard_normal((9, 6)), "b": rng.standard_normal((9, 5))}
    y = rng.integers(0, 3, 9).astype(np.int64)

    def masks():
        return finetune.Dropout(0.4, 0.3, [7, 0, 1])

    def loss():
        return cpu.softmax_cross_entropy(net.forward(X, masks())["logits"], y, None)[0]

    cache = net.forward(X, masks())
    dropped = cache["pathways"]["a"][0][0]  # the first layer's (masked) input
    assert (dropped == 0).any() and not (X["a"] == 0).any()
    np.testing.assert_allclose(dropped[dropped != 0], (X["a"] / 0.7)[dropped != 0])
    _, grad_logits, _ = cpu.softmax_cross_entropy(cache["logits"], y, None)
    grads = net.backward(cache, grad_logits)
    for g, p in zip(grads, net.parameters()):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-8)
    # Without masks the same network gives other gradients; inference never drops.
    plain = net.backward(net.forward(X), grad_logits)
    assert not np.allclose(plain[0], grads[0])
    np.testing.assert_array_equal(net.logits(X), net.forward(X)["logits"])


def test_dropout_zero_is_no_dropout_and_rates_are_checked(rng):
    from pymdbn import MDBN

    X = {"a": rng.random((40, 3, 3)), "b": rng.random((40, 4))}
    y = np.repeat([0, 1], 20)
    kw = dict(modalities={"a": (4,), "b": (3,)}, joint_units=(3,), pretrain_epochs=1,
              max_epochs=3, random_state=0, dtype="float64")
    base = MDBN(**kw).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(MDBN(dropout=0.0, input_dropout=0.0, **kw).fit(X, y)
                                  .decision_function(X), base)
    d1 = MDBN(dropout=0.5, input_dropout=0.2, **kw).fit(X, y).decision_function(X)
    d2 = MDBN(dropout=0.5, input_dropout=0.2, **kw).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(d1, d2)  # reproducible
    assert not np.allclose(d1, base)
    for bad in (dict(dropout=1.0), dict(input_dropout=-0.1)):
        with pytest.raises(ValueError, match="dropout"):
            MDBN(**bad, **kw).fit(X, y)


def test_training_reduces_loss_and_resumes_exactly(rng):
    dt = np.float64
    X = {"x": rng.standard_normal((60, 6))}
    y = (X["x"][:, 0] + X["x"][:, 1] > 0).astype(np.int64)

    def fresh():
        r = np.random.default_rng(0)
        return Network({"x": [new_layer(6, 5, r, dt, 0.5)]}, ["x"], [],
                           new_layer(5, 2, r, dt), None)

    from pymdbn._progress import Progress
    opts = dict(output_only=False, optimizer="adam", learning_rate=0.05, momentum=0.9,
                weight_decay=0.0, batch_size=8, early_stopping=False,
                validation_fraction=0.1, n_iter_no_change=3, tol=1e-4, seed=3,
                progress=Progress(0, "", enabled=False))
    full = fresh()
    hist = finetune.train(full, X, y, None, max_epochs=6, **opts)
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]
    states = []
    part = fresh()
    finetune.train(part, X, y, None, max_epochs=3,
              on_epoch=lambda s: states.append({**s, "slots": [a.copy() for a in s["slots"]],
                                                "history": list(s["history"])}), **opts)
    finetune.train(part, X, y, None, max_epochs=6, state=states[-1], **opts)
    for a, b in zip(part.parameters(), full.parameters()):
        np.testing.assert_array_equal(a, b)


def test_dbn_fine_tune_dropout(rng):
    from pymdbn import DBN

    X = rng.random((40, 6))
    y = np.repeat([0, 1], 20)
    kw = dict(hidden_layers=(4,), n_iter=1, fine_tune_epochs=3, random_state=0,
              dtype="float64")
    base = DBN(**kw).fit(X, y).decision_function(X)
    d = DBN(fine_tune_dropout=0.5, fine_tune_input_dropout=0.2, **kw).fit(X, y)
    assert not np.allclose(d.decision_function(X), base)
    np.testing.assert_array_equal(
        DBN(fine_tune_dropout=0.5, fine_tune_input_dropout=0.2, **kw).fit(X, y)
        .decision_function(X), d.decision_function(X))
    with pytest.raises(ValueError, match="fine_tune_dropout|dropout"):
        DBN(fine_tune_dropout=1.5, **kw).fit(X, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.2, 0.3, 0.5, 0.7])
def test_dropout_scales_as_keep_over_one_minus_rate(dtype, rate):
    """The mask scale is keep / (1 - rate) computed in float64 and rounded to the dtype,
    bit for bit (signed zeros and non-finite inputs included), from the seed's draws."""
    a = np.random.default_rng(3).standard_normal((13, 37)).astype(dtype)
    a.flat[::17] = [np.inf, -np.inf, np.nan, -0.0, 0.0, -1e-30, 2.5, -3.0, 1.0, 7.0,
                    -7.0, 0.5, 1e30, -1e30, 4.0, 8.0, 9.0, -9.0, 3.3, 1.1, -1.1,
                    0.1, -0.1, 6.0, -6.0, 2.0, -2.0, 5.0, -5.0][:len(a.flat[::17])]
    keep = np.random.default_rng([5, 2, 9]).random(a.shape, dtype=np.float32) >= rate
    with np.errstate(invalid="ignore"):  # inf * 0
        got = finetune.Dropout(rate, rate, [5, 2, 9]).apply(a, inputs=True)
        want = a * (keep / (1 - rate)).astype(dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(f"u{a.itemsize}"), want.view(f"u{a.itemsize}"))
