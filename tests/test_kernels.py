"""C++ kernels against their NumPy twins (pymdbn.backend.reference), same random draws."""

import warnings

import numpy as np
import pytest

from pymdbn.backend import reference as ref
from pymdbn import backend
from pymdbn.models.rbm import log_partition_exact
from pymdbn._matmul import get_precision, round_bfloat16
from conftest import COMPILED, DTYPES, SHAPES, TOL, random_rbm, tol


def test_philox_known_answers(kernels):
    # Random123's known-answer vectors for philox4x32-10.
    cases = [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for ctr, key, expected in cases:
        out = ref.philox4x32_10(np.array([ctr], np.uint32), np.array([key], np.uint32))
        assert out[0].tolist() == expected
    # The kernel's block (0, 0) of stream 0 under seed 0 is the first vector.
    assert kernels.random_bits(1, 4, 0, 0)[0].tolist() == cases[0][2]


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 4), (3, 5), (8, 9), (2, 1030)])
@pytest.mark.parametrize("seed,stream", [(0, 0), (7, 3), (2**63 + 5, 2**40 + 1)])
def test_random_bits_match_twin(kernels, rows, cols, seed, stream):
    np.testing.assert_array_equal(kernels.random_bits(rows, cols, seed, stream),
                                  ref.random_bits(rows, cols, seed, stream))


def test_streams_and_seeds_differ(kernels):
    a = kernels.random_bits(4, 8, 1, 0)
    assert not np.array_equal(a, kernels.random_bits(4, 8, 1, 1))
    assert not np.array_equal(a, kernels.random_bits(4, 8, 2, 0))
    # Rows are separate counters: a row's draws do not depend on the batch size.
    np.testing.assert_array_equal(a[:2], kernels.random_bits(2, 8, 1, 0))


@pytest.mark.parametrize("n,nv,nh", SHAPES)
@pytest.mark.parametrize("clip", [None, 3.0])
@pytest.mark.parametrize("trans", [True, False])
def test_affine_sigmoid(kernels_dtype, rng, n, nv, nh, clip, trans):
    kern, dtype = kernels_dtype
    w, _, bh = random_rbm(rng, nv, nh, dtype, scale=2.0)
    if not trans:
        w = np.ascontiguousarray(w.T)
    x = rng.standard_normal((n, nv)).astype(dtype)
    got = kern.affine_sigmoid(x, w, bh, clip, trans)
    assert got.dtype == dtype and got.shape == (n, nh)
    np.testing.assert_allclose(got, ref.affine_sigmoid(x, w, bh, clip, trans), **TOL[dtype])
    np.testing.assert_allclose(kern.affine(x, w, bh, trans), ref.affine(x, w, bh, trans),
                               **TOL[dtype])


# Flushing denormals is the compiled kernels' (FTZ); the twins keep NumPy's denormals.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", COMPILED)
def test_sigmoid_extremes_flush_denormals(name, dtype):
    kern = backend.get(name)
    # Pre-activations from -1000 to 1000: no NaN, exact 0 instead of denormals, 1 on top.
    x = np.linspace(-1000, 1000, 20001).astype(dtype)[:, None]
    got = kern.affine_sigmoid(x, np.ones((1, 1), dtype), np.zeros(1, dtype), None, True)[:, 0]
    assert np.isfinite(got).all()
    tiny = np.finfo(dtype).tiny
    assert not np.any((got > 0) & (got < tiny)), "denormal probabilities reached the output"
    assert got[0] == 0 and got[-1] == 1
    np.testing.assert_allclose(got, np.where(ref.sigmoid(x[:, 0]) < tiny, 0, ref.sigmoid(x[:, 0])),
                               rtol=TOL[dtype]["rtol"], atol=0)
    # The clipped sigmoid stays inside (sigma(-c), sigma(c)).
    c = 4.0
    got = kern.affine_sigmoid(x, np.ones((1, 1), dtype), np.zeros(1, dtype), c, True)[:, 0]
    np.testing.assert_allclose([got.min(), got.max()], ref.sigmoid(np.array([-c, c])),
                               **TOL[dtype])


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (16, 33)])
def test_samplers_match_twin_exactly(kernels_dtype, rng, shape):
    kern, dtype = kernels_dtype
    p = rng.random(shape).astype(dtype)
    np.testing.assert_array_equal(kern.sample_bernoulli(p, 11, 5),
                                  ref.sample_bernoulli(p, 11, 5))
    m = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(kern.sample_gaussian(m, 11, 5), ref.sample_gaussian(m, 11, 5),
                               **TOL[dtype])


def _bernoulli_mismatch_ok(got, want, p, u, dtype):
    """Samples may differ only where u is within rounding of p."""
    bad = got != want
    return np.all(np.abs(u[bad] - p[bad]) < 50 * np.finfo(dtype).eps)


@pytest.mark.parametrize("n,nv,nh", SHAPES)
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_gibbs_half_steps(kernels_dtype, rng, n, nv, nh, visible):
    kern, dtype = kernels_dtype
    w, bv, bh = random_rbm(rng, nv, nh, dtype)
    v = rng.random((n, nv)).astype(dtype)
    prob, sample = kern.gibbs_hidden(v, w, bh, 2.5, 3, 9)
    rprob, rsample = ref.gibbs_hidden(v, w, bh, 2.5, 3, 9)
    np.testing.assert_allclose(prob, rprob, **TOL[dtype])
    assert _bernoulli_mismatch_ok(sample, rsample, rprob, ref.uniform(n, nh, 3, 9), dtype)

    mean, vs = kern.gibbs_visible(sample, w, bv, visible, 2.5, 3, 10)
    rmean, rvs = ref.gibbs_visible(sample, w, bv, visible, 2.5, 3, 10)
    np.testing.assert_allclose(mean, rmean, **TOL[dtype])
    if visible == "gaussian":
        np.testing.assert_allclose(vs, rvs, **TOL[dtype])
    else:
        assert _bernoulli_mismatch_ok(vs, rvs, rmean, ref.uniform(n, nv, 3, 10), dtype)


# Shapes whose products split into tiles (gemm_tiles): 2 tiles of whole rows (the draws
# of each follow its product) and, at (600, 256, 1024), tiles of columns for the hidden
# half-step (the draws follow the whole product).
@pytest.mark.parametrize("n,nv,nh", [(6000, 25, 32), (600, 256, 1024)])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_gibbs_half_steps_draw_as_the_samplers_do(kernels_dtype, rng, n, nv, nh, visible):
    """The half-steps equal their parts (the product with its activation, then the
    sampler on it) bit for bit, at a nonzero row offset too."""
    kern, dtype = kernels_dtype
    w, bv, bh = random_rbm(rng, nv, nh, dtype, scale=0.3)
    v = rng.random((n, nv)).astype(dtype)
    for offset in (0, 77):
        prob, sample = kern.gibbs_hidden(v, w, bh, 2.5, 3, 9, row_offset=offset)
        np.testing.assert_array_equal(prob, kern.affine_sigmoid(v, w, bh, 2.5, True))
        np.testing.assert_array_equal(sample, kern.sample_bernoulli(prob, 3, 9, offset))
        mean, vs = kern.gibbs_visible(sample, w, bv, visible, 2.5, 3, 10, row_offset=offset)
        if visible == "gaussian":
            np.testing.assert_array_equal(mean, kern.affine(sample, w, bv, False))
            np.testing.assert_array_equal(vs, kern.sample_gaussian(mean, 3, 10, offset))
        else:
            np.testing.assert_array_equal(mean,
                                          kern.affine_sigmoid(sample, w, bv, 2.5, False))
            np.testing.assert_array_equal(vs, kern.sample_bernoulli(mean, 3, 10, offset))


def _state(rng, nv, nh, dtype, batch):
    w, bv, bh = random_rbm(rng, nv, nh, dtype, scale=0.1)
    return dict(w=w, b_visible=bv, b_hidden=bh,
                v_w=(0.01 * rng.standard_normal((nh, nv))).astype(dtype),
                v_b_visible=np.zeros(nv, dtype), v_b_hidden=np.zeros(nh, dtype),
                chain=(rng.random((batch, nh)) < 0.5).astype(dtype))


CD_CASES = [
    # n, nv, nh, batch, k, persistent, visible, clip, momentum, wd, sparsity_cost
    (1, 1, 1, 1, 1, False, "bernoulli", None, 0.0, 0.0, 0.0),
    (10, 5, 3, 4, 1, False, "bernoulli", None, 0.5, 1e-3, 0.0),
    (33, 17, 9, 8, 3, False, "gaussian", 4.0, 0.9, 0.0, 0.1),
    (20, 12, 7, 6, 2, True, "bernoulli", 3.0, 0.5, 1e-4, 0.5),
    (25, 9, 13, 25, 1, True, "gaussian", None, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("case", CD_CASES)
def test_cd_epoch_matches_twin(kernels_dtype, rng, case):
    kern, dtype = kernels_dtype
    n, nv, nh, batch, k, persistent, visible, clip, mom, wd, sc = case
    if visible == "bernoulli":
        x = (rng.random((n, nv)) < 0.4).astype(dtype)
    else:
        x = rng.standard_normal((n, nv)).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    got = _state(np.random.default_rng(1), nv, nh, dtype, batch)
    want = {key: val.copy() for key, val in got.items()}
    kw = dict(k=k, persistent=persistent, visible=visible, clip=clip, learning_rate=0.05,
              momentum=mom, weight_decay=wd, sparsity_target=0.2, sparsity_cost=sc,
              seed=99, first_step=4)
    sq, nb = kern.cd_epoch(x, order, batch, got["w"], got["b_visible"], got["b_hidden"],
                            got["v_w"], got["v_b_visible"], got["v_b_hidden"], got["chain"],
                            kw["k"], kw["persistent"], kw["visible"], kw["clip"],
                            kw["learning_rate"], kw["momentum"], kw["weight_decay"],
                            kw["sparsity_target"], kw["sparsity_cost"], kw["seed"],
                            kw["first_step"])
    rsq, rnb = ref.cd_epoch(x, order, batch, want, **kw)
    assert nb == rnb == -(-n // batch)
    # Samples can flip where a uniform sits within rounding of its probability; with
    # these sizes that is improbable for float64 and rare for float32, so compare
    # parameters with the per-dtype tolerance for a chain of updates.
    for key in ("w", "b_visible", "b_hidden", "v_w", "v_b_visible", "v_b_hidden"):
        np.testing.assert_allclose(got[key], want[key], err_msg=key, **tol(dtype, "cd_epoch"))
    np.testing.assert_array_equal(got["chain"], want["chain"])
    np.testing.assert_allclose(sq, rsq, **tol(dtype, "cd_error"))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("n,nv,nh", SHAPES)
def test_free_energy(kernels_dtype, rng, visible, n, nv, nh):
    kern, dtype = kernels_dtype
    w, bv, bh = random_rbm(rng, nv, nh, dtype)
    v = rng.random((n, nv)).astype(dtype)
    got = kern.free_energy(v, w, bv, bh, visible)
    # The float64 twin; with bfloat16 products, of the operands the kernel's GEMM rounds
    # (from two rows on: a product of one row stays float32).
    vp, wp = ((round_bfloat16(v), round_bfloat16(w)) if get_precision() == "bfloat16" and n > 1
              else (v, w))
    want = ref.free_energy(v.astype(np.float64), w.astype(np.float64), bv.astype(np.float64),
                           bh.astype(np.float64), visible)
    if vp is not v:
        # Only the hidden term's product sees the rounding; the visible term is exact.
        want += (ref.free_energy(vp.astype(np.float64), wp.astype(np.float64), 0 * bv, bh,
                                 "bernoulli")
                 - ref.free_energy(v.astype(np.float64), w.astype(np.float64), 0 * bv, bh,
                                   "bernoulli"))
    np.testing.assert_allclose(got, want, **tol(dtype, "free_energy"))


def test_free_energy_defines_the_bernoulli_distribution(kernels, rng):
    # exp(-F(v)) / Z over all visible states sums to 1, with Z enumerated over h.
    w, bv, bh = random_rbm(rng, 6, 4, np.float64, scale=1.0)
    states = ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(np.float64)
    log_z = log_partition_exact(w, bv, bh)
    total = np.exp(-kernels.free_energy(states, w, bv, bh, "bernoulli") - log_z).sum()
    np.testing.assert_allclose(total, 1.0, **tol(np.float64, "partition"))
    # Enumerating the other layer (the transposed RBM has the same Z) agrees.
    np.testing.assert_allclose(log_partition_exact(np.ascontiguousarray(w.T), bh, bv), log_z,
                               **tol(np.float64, "partition"))


def test_ais_matches_twin(kernels_dtype, rng):
    kern, dtype = kernels_dtype
    w, bv, bh = random_rbm(rng, 7, 5, dtype)
    betas = np.linspace(0, 1, 30)
    got = kern.ais_log_weights(w, bv, bh, bv.copy(), betas, 16, 5)
    want = ref.ais_log_weights(w, bv, bh, bv.copy(), betas, 16, 5)
    np.testing.assert_allclose(got, want, **tol(dtype, "ais"))


# The bindings' adapter checks and its messages: the twins take what NumPy takes.
@pytest.mark.parametrize("name", COMPILED)
def test_bindings_reject_bad_arrays(rng, name):
    kern = backend.get(name)
    w, bv, bh = random_rbm(rng, 4, 3, np.float32)
    x = rng.random((5, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="dtype"):
        kern.affine_sigmoid(x.astype(np.float64), w, bh, None, True)
    with pytest.raises(ValueError, match="C-contiguous"):
        kern.affine_sigmoid(np.asfortranarray(x), w, bh, None, True)
    with pytest.raises(ValueError, match="columns"):
        kern.affine_sigmoid(x[:, :3].copy(), w, bh, None, True)
    with pytest.raises(ValueError, match="bias"):
        kern.affine_sigmoid(x, w, bv, None, True)
    with pytest.raises(ValueError, match="clip"):
        kern.affine_sigmoid(x, w, bh, -1.0, True)
    with pytest.raises(ValueError, match="visible"):
        kern.gibbs_visible(np.zeros((2, 3), np.float32), w, bv, "poisson", None, 0, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        kern.sample_bernoulli(np.zeros((2, 2), np.int64), 0, 0)
    ro = x.copy()
    ro.flags.writeable = False
    w2 = w.copy()
    w2.flags.writeable = False
    z = np.zeros
    with pytest.raises(ValueError, match="writeable"):
        kern.cd_epoch(ro, np.arange(5), 2, w2, bv, bh, z((3, 4), np.float32), z(4, np.float32),
                      z(3, np.float32), z((2, 3), np.float32), 1, False, "bernoulli", None,
                      0.1, 0.0, 0.0, 0.1, 0.0, 0, 0)
    with pytest.raises(ValueError, match="out of range"):
        kern.cd_epoch(ro, np.array([0, 9]), 2, w.copy(), bv, bh, z((3, 4), np.float32),
                      z(4, np.float32), z(3, np.float32), z((2, 3), np.float32), 1, False,
                      "bernoulli", None, 0.1, 0.0, 0.0, 0.1, 0.0, 0, 0)


@pytest.mark.parametrize("name", COMPILED)
def test_persistent_chain_must_hold_a_batch_of_order_not_of_x(rng, name):
    # order may repeat the rows of x: 2 rows of x, batches of 8 drawn from order, so the
    # chain needs 8 rows (a 2-row chain once let the kernel write past its end).
    kern = backend.get(name)
    w, bv, bh = random_rbm(rng, 4, 3, np.float32)
    x = rng.random((2, 4)).astype(np.float32)
    order = np.tile(np.arange(2), 5)
    z = np.zeros

    def epoch(chain_rows):
        return kern.cd_epoch(x, order, 8, w.copy(), bv.copy(), bh.copy(), z((3, 4), np.float32),
                             z(4, np.float32), z(3, np.float32),
                             z((chain_rows, 3), np.float32), 1, True, "bernoulli", None, 0.1,
                             0.0, 0.0, 0.1, 0.0, 0, 0)

    with pytest.raises(ValueError, match="chain must be"):
        epoch(2)
    assert epoch(8)[1] == 2


def test_matmul_helper_keeps_results_and_drops_blas_flags():
    # The helper must not hide a non-finite result, only the warning NumPy derives from flags.
    from pymdbn._matmul import matmul

    a = np.full((4, 3), 3e38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = matmul(a, a.T)
        np.testing.assert_array_equal(out, np.full((4, 4), np.inf, np.float32))
        np.testing.assert_allclose(matmul(np.eye(3), np.arange(3.0)), [0.0, 1.0, 2.0])
