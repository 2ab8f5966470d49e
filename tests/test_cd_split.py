"""The CD update split into cd_gradient + cd_apply, and the RNG's row offset.

The split is what data-parallel training will all-gather between: it must equal the
fused cd_epoch bit for bit, and a batch split across processes (row_offset) must draw
the numbers the whole batch draws.
"""

import numpy as np
import pytest

from pymdbn.backend import reference as ref
from pymdbn import backend
from conftest import BACKENDS, DTYPES, TOL, random_rbm

cpu = backend.get("cpu")

# (visible, k, persistent): CD-1, CD-2 and PCD-2 for both kinds of visible units.
MODES = [(vis, k, pcd) for vis in ("bernoulli", "gaussian") for k, pcd in
         ((1, False), (2, False), (2, True))]
UPDATE = dict(learning_rate=0.05, momentum=0.5, weight_decay=1e-3, sparsity_target=0.1,
              sparsity_cost=0.2)
N, NV, NH, BATCH, SEED, CLIP = 70, 13, 7, 16, 3, 5.0


def problem(rng, dtype, visible):
    """Data, an RBM state (dict of arrays, chain included) and a shuffled order."""
    if visible == "gaussian":
        x = rng.standard_normal((N, NV)).astype(dtype)
    else:
        x = (rng.random((N, NV)) < 0.4).astype(dtype)
    w, bv, bh = random_rbm(rng, NV, NH, dtype, scale=0.1)
    state = dict(w=w, b_visible=bv, b_hidden=bh, v_w=np.zeros_like(w),
                 v_b_visible=np.zeros_like(bv), v_b_hidden=np.zeros_like(bh),
                 chain=(rng.random((BATCH, NH)) < 0.5).astype(dtype))
    return x, state, rng.permutation(N)


def copy(state):
    return {k: v.copy() for k, v in state.items()}


def core_epoch(x, order, s, visible, k, persistent, first_step):
    return cpu.cd_epoch(x, order, BATCH, s["w"], s["b_visible"], s["b_hidden"], s["v_w"],
                          s["v_b_visible"], s["v_b_hidden"], s["chain"], k, persistent,
                          visible, CLIP, *UPDATE.values(), SEED, first_step)


def core_gradient(v0, s, visible, k, persistent, step, lib=cpu, **kw):
    return lib.cd_gradient(v0, s["w"], s["b_visible"], s["b_hidden"], s["chain"], k,
                             persistent, visible, CLIP, SEED, step, **kw)


def core_apply(h, v, s, lib=cpu):
    lib.cd_apply(h, v, s["w"], s["b_visible"], s["b_hidden"], s["v_w"], s["v_b_visible"],
                   s["v_b_hidden"], *UPDATE.values())


def batches(order):
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def assert_states_identical(a, b):
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a[key].tobytes() == b[key].tobytes(), key  # signed zeros too


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("visible,k,persistent", MODES)
def test_split_loop_equals_fused_epoch_bit_for_bit(rng, dtype, visible, k, persistent):
    x, state, order = problem(rng, dtype, visible)
    fused, split = copy(state), copy(state)
    for epoch, first_step in enumerate((0, 5)):  # a second epoch from a later step
        sq, n_batches = core_epoch(x, order, fused, visible, k, persistent, first_step)
        total = 0.0
        for s, idx in enumerate(batches(order)):
            h, v, sq_b = core_gradient(x[idx], split, visible, k, persistent, first_step + s)
            assert h.shape == (2 * len(idx), NH) and v.shape == (2 * len(idx), NV)
            core_apply(h, v, split)
            total += sq_b
        assert n_batches == len(batches(order)) and total == sq
        assert_states_identical(fused, split)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("visible,k,persistent", MODES)
def test_twins_of_the_split_match_the_kernels(rng, name, dtype, visible, k, persistent):
    """Every backend's cd_gradient and cd_apply, called by the core's signatures."""
    lib = backend.get(name)
    x, state, order = problem(rng, dtype, visible)
    v0 = x[order[:BATCH]]
    a, b = copy(state), copy(state)
    h, v, sq = core_gradient(v0, a, visible, k, persistent, 4, lib=lib)
    h_ref, v_ref, sq_ref = ref.cd_gradient(v0, b["w"], b["b_visible"], b["b_hidden"],
                                           b["chain"], k, persistent, visible, CLIP, SEED, 4)
    assert h_ref.dtype == dtype and v_ref.dtype == dtype
    np.testing.assert_allclose(h, h_ref, **TOL[dtype])
    np.testing.assert_allclose(v, v_ref, **TOL[dtype])
    np.testing.assert_allclose(a["chain"], b["chain"], **TOL[dtype])
    np.testing.assert_allclose(sq, sq_ref, rtol=TOL[dtype]["rtol"] * NV)
    # The apply step on the same factored gradient.
    core_apply(h, v, a, lib=lib)
    ref.cd_apply(h, v, b, **UPDATE)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], **TOL[dtype], err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("visible,k,persistent", MODES)
def test_twin_loop_equals_twin_epoch_exactly(rng, dtype, visible, k, persistent):
    x, state, order = problem(rng, dtype, visible)
    epoch, loop = copy(state), copy(state)
    sq, n_batches = ref.cd_epoch(x, order, BATCH, epoch, k=k, persistent=persistent,
                                 visible=visible, clip=CLIP, seed=SEED, first_step=2, **UPDATE)
    total = 0.0
    for s, idx in enumerate(batches(order)):
        h, v, sq_b = ref.cd_gradient(x[idx], loop["w"], loop["b_visible"], loop["b_hidden"],
                                     loop["chain"], k, persistent, visible, CLIP, SEED, 2 + s)
        ref.cd_apply(h, v, loop, **UPDATE)
        total += sq_b
    assert (total, len(batches(order))) == (sq, n_batches)
    assert_states_identical(epoch, loop)


# --- row offsets ---------------------------------------------------------------------

ROWS, COLS, CUT = 11, 9, 4  # rows [0, CUT) on one "process", [CUT, ROWS) on another


def halves(draw):
    """draw(rows, row_offset) for the whole batch and for its two halves, stacked."""
    whole = draw(slice(0, ROWS), 0)
    return whole, np.concatenate([draw(slice(0, CUT), 0), draw(slice(CUT, ROWS), CUT)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", ["kernel", "twin"])
def test_split_batch_draws_the_whole_batch_numbers(rng, dtype, impl):
    lib = cpu if impl == "kernel" else ref
    p = rng.random((ROWS, COLS)).astype(dtype)
    for draw in (lambda r, off: lib.sample_bernoulli(p[r], 7, 3, row_offset=off),
                 lambda r, off: lib.sample_gaussian(p[r], 7, 3, row_offset=off),
                 lambda r, off: lib.random_bits(r.stop - r.start, COLS, 7, 3, row_offset=off)):
        whole, split = halves(draw)
        np.testing.assert_array_equal(whole, split)
    # Without the offset the second half would repeat the first half's numbers.
    assert not np.array_equal(lib.random_bits(ROWS - CUT, COLS, 7, 3),
                              lib.random_bits(ROWS, COLS, 7, 3)[CUT:])
    w, bv, bh = random_rbm(rng, COLS, 5, dtype)
    hid = rng.random((ROWS, 5)).astype(dtype)
    for draw in (lambda r, off: lib.gibbs_hidden(p[r], w, bh, None, 7, 3, row_offset=off)[1],
                 lambda r, off: lib.gibbs_visible(hid[r], w, bv, "gaussian", None, 7, 3,
                                                  row_offset=off)[1]):
        whole, split = halves(draw)
        # The probabilities come from GEMMs of two shapes and may differ in the last bit:
        # Bernoulli samples still match unless a uniform falls between the two roundings
        # (not for these seeds); Gaussian ones add the same normals to those means.
        np.testing.assert_allclose(whole, split, **TOL[dtype])


def test_row_counter_wraps_at_32_bits_like_the_twin():
    for off in (2**32 - 2, 2**32 + 5):
        np.testing.assert_array_equal(cpu.random_bits(4, 6, 1, 2, row_offset=off),
                                      ref.random_bits(4, 6, 1, 2, row_offset=off))
    np.testing.assert_array_equal(cpu.random_bits(2, 6, 1, 2, row_offset=2**32),
                                  cpu.random_bits(2, 6, 1, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("visible,k,persistent", MODES)
def test_cd_gradient_of_a_split_batch_equals_the_whole(rng, dtype, visible, k, persistent):
    # Two processes each compute their rows with row_offset; gathered, their h and v are
    # the single process's h = [ph0; -phn] and v = [v0; vs]. The samples in v match bit
    # for bit; the probabilities in h to the GEMM's rounding, since OpenBLAS rounds a
    # row of a product differently for another number of rows.
    x, state, order = problem(rng, dtype, visible)
    v0, b = x[order[:BATCH]], BATCH
    cut = 5
    whole = copy(state)
    h, v, sq = core_gradient(v0, whole, visible, k, persistent, 9)
    parts = []
    for rows, off in ((slice(0, cut), 0), (slice(cut, b), cut)):
        part = copy(state)
        part["chain"] = state["chain"][rows].copy()  # each process keeps its chain rows
        hp, vp, _ = core_gradient(v0[rows], part, visible, k, persistent, 9, row_offset=off)
        parts.append((hp, vp, part["chain"]))
    (h1, v1, c1), (h2, v2, c2) = parts

    def gather(a1, a2):
        return np.concatenate([a1[:cut], a2[:b - cut], a1[cut:], a2[b - cut:]])

    np.testing.assert_array_equal(gather(v1, v2), v)
    np.testing.assert_allclose(gather(h1, h2), h, **TOL[dtype])
    np.testing.assert_array_equal(np.concatenate([c1, c2]), whole["chain"])


# --- argument checks -------------------------------------------------------------------


def test_new_bindings_reject_bad_arguments(rng):
    x, s, order = problem(rng, np.float32, "bernoulli")
    v0 = x[:4]
    grad = lambda **kw: cpu.cd_gradient(**{**dict(  # noqa: E731
        v0=v0, w=s["w"], b_visible=s["b_visible"], b_hidden=s["b_hidden"], chain=s["chain"],
        k=1, persistent=False, visible="bernoulli", clip=None, seed=0, step=0), **kw})
    with pytest.raises(TypeError, match="v0: expected float32 or float64"):
        grad(v0=v0.astype(np.int64))
    with pytest.raises(TypeError, match="w: expected dtype float32"):
        grad(w=s["w"].astype(np.float64))
    with pytest.raises(ValueError, match="v0: array must be C-contiguous"):
        grad(v0=np.asfortranarray(x[:4, :]))
    with pytest.raises(ValueError, match="columns"):
        grad(v0=x[:4, :5].copy())
    with pytest.raises(ValueError, match="b_visible"):
        grad(b_visible=s["b_visible"][:3].copy())
    with pytest.raises(ValueError, match="k must be"):
        grad(k=0)
    with pytest.raises(ValueError, match="visible"):
        grad(visible="poisson")
    with pytest.raises(TypeError, match="chain"):
        grad(persistent=True, chain=None)
    with pytest.raises(ValueError, match="chain must be"):
        grad(persistent=True, chain=s["chain"][:2].copy())
    h, v, _ = grad()

    def apply(**kw):
        args = dict(h=h, v=v, w=s["w"], b_visible=s["b_visible"], b_hidden=s["b_hidden"],
                    v_w=s["v_w"], v_b_visible=s["v_b_visible"], v_b_hidden=s["v_b_hidden"],
                    learning_rate=0.1, momentum=0.5, weight_decay=0.0, sparsity_target=0.1,
                    sparsity_cost=0.0)
        cpu.cd_apply(**{**args, **kw})

    with pytest.raises(ValueError, match="h must be"):
        apply(h=h[1:].copy())
    with pytest.raises(ValueError, match="v must be"):
        apply(v=v[:, 1:].copy())
    with pytest.raises(TypeError, match="h: expected dtype float32"):
        apply(h=h.astype(np.float64))
    ro = s["w"].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="w: array must be writeable"):
        apply(w=ro)
    with pytest.raises(ValueError, match="parameter and velocity shapes disagree"):
        apply(v_b_hidden=np.zeros(NH + 1, np.float32))
