"""Results are bit-identical whatever the number of threads (1, 2, 3 and 4).

Each thread count runs in its own subprocess with OMP_NUM_THREADS set, the most honest
way to change the kernels' thread count (it also sets the default of every OpenMP
region and of NumPy's OpenBLAS). The shapes are well above the kernels' parallel
thresholds (GEMMs of >= 2e6 multiply-adds split into several blocks, element-wise loops
of >= 2^15 elements), so every count really splits the work differently. CI has 2 cores:
3 and 4 threads oversubscribe them, which changes the timing only.
"""


import numpy as np
import pytest

from pymdbn import backend
from conftest import results_per_thread_count

THREADS = (1, 2, 3, 4)

_SCRIPT = r"""
import contextlib, sys, numpy as np, pymdbn
from pymdbn import backend
cpu = backend.get("cpu")

threads, path = int(sys.argv[1]), sys.argv[2]
assert pymdbn.get_num_threads()["openmp"] == threads, pymdbn.get_num_threads()
out = {}
# bfloat16: float32 arrays, bfloat16 products (oneDNN's, one thread per row tile).
cases = [("float32", np.float32), ("float64", np.float64)]
if cpu.bfloat16_status()[0]:
    cases.append(("bfloat16", np.float32))
for name, dt in cases:
    rng = np.random.default_rng(0)
    products = (backend.matmul_precision("bfloat16") if name == "bfloat16"
                else contextlib.nullcontext())
    products.__enter__()
    # GEMMs, every transpose the kernels use, odd sizes (edge blocks) included.
    x = rng.standard_normal((600, 256)).astype(dt)
    w = rng.standard_normal((128, 256)).astype(dt)
    b = rng.standard_normal(128).astype(dt)
    out[f"affine_t_{name}"] = cpu.affine(x, w, b, True)        # the issue's product
    w2 = rng.standard_normal((256, 1000)).astype(dt)
    b2 = rng.standard_normal(1000).astype(dt)
    out[f"affine_{name}"] = cpu.affine(x[:77], w2, b2, False)    # wide, few rows
    x3 = rng.standard_normal((1031, 67)).astype(dt)
    w3 = rng.standard_normal((67, 333)).astype(dt)
    out[f"affine_odd_{name}"] = cpu.affine(x3, w3, np.zeros(333, dt), False)
    x4 = rng.standard_normal((4100, 40)).astype(dt)                # 4 tiles, 2 x 2
    w4 = rng.standard_normal((4200, 40)).astype(dt)
    out[f"affine_big_{name}"] = cpu.affine(x4, w4, np.zeros(4200, dt), True)
    # One sample: GEMVs over 2 blocks of 4100 x 520 weights, forward and epsilon-LRP.
    x5 = rng.standard_normal((1, 4100)).astype(dt)
    w5 = (rng.standard_normal((4100, 520)) / 64).astype(dt)
    b5 = rng.standard_normal(520).astype(dt)
    z5, out[f"affine_row_{name}"] = cpu.dense_forward(x5, w5, b5, 4.0, "sigmoid")
    r5 = rng.standard_normal((1, 520)).astype(dt)
    out[f"affine_row_lrp_{name}"] = cpu.lrp_dense(x5.copy(), w5, b5, r5, "epsilon", z=z5,
                                                  overwrite_x=True)

    # An RBM fit (Gaussian visible units, CD-2) and a Bernoulli one with sparsity.
    X = rng.standard_normal((512, 300)).astype(dt)
    r = pymdbn.RBM(n_components=200, batch_size=128, n_iter=2, visible="gaussian",
                   learning_rate=0.01, k=2, clip=6.0, random_state=1,
                   dtype=name).fit(X)
    out[f"rbm_w_{name}"] = r.components_
    out[f"rbm_bh_{name}"] = r.intercept_hidden_
    out[f"rbm_bv_{name}"] = r.intercept_visible_
    Xb = (X > 0).astype(dt)
    r2 = pymdbn.RBM(n_components=160, batch_size=128, n_iter=2, sparsity_cost=0.1,
                    random_state=2, dtype=name).fit(Xb)
    out[f"rbm2_w_{name}"] = r2.components_
    out[f"rbm2_bh_{name}"] = r2.intercept_hidden_

    # A supervised DBN: greedy pretraining and fine-tuning.
    y = (X[:, :10].sum(axis=1) > 0).astype(int)
    dbn = pymdbn.DBN(hidden_layers=(192, 96), n_iter=2, batch_size=128,
                     fine_tune_epochs=2, fine_tune_batch_size=128, random_state=3,
                     dtype=name).fit(X, y)
    for i, layer in enumerate(dbn.layers_ + [dbn.output_]):
        out[f"dbn_W{i}_{name}"], out[f"dbn_b{i}_{name}"] = layer["W"], layer["b"]
    out[f"dbn_proba_{name}"] = dbn.predict_proba(X)

    # An MDBN with a joint layer and fine-tuning, and its LRP explanation.
    Xm = {"a": rng.standard_normal((384, 16, 16)).astype(dt),
          "b": rng.standard_normal((384, 180)).astype(dt)}
    ym = (Xm["a"][:, :4, :4].mean(axis=(1, 2)) + Xm["b"][:, :8].mean(axis=1) > 0)
    m = pymdbn.MDBN({"a": (160,), "b": (128,)}, joint_units=(128,), pretrain_epochs=2,
                    pretrain_batch_size=128, batch_size=128, max_epochs=2,
                    optimizer="adam", learning_rate=0.01, random_state=4,
                    dtype=name).fit(Xm, ym.astype(int))
    for i, layer in enumerate(m.joint_ + [m.output_]):
        out[f"mdbn_W{i}_{name}"] = layer["W"]
    out[f"mdbn_proba_{name}"] = m.predict_proba(Xm)
    for comp in ("epsilon", "epsilon_plus"):
        e = m.explain(Xm, composite=comp)
        for k, v in e.relevance.items():
            out[f"mdbn_lrp_{comp}_{k}_{name}"] = v
    products.__exit__(None, None, None)
# Phantoms: their chunks (64 patients at 64x64, one task per modality) run on pymdbn's
# threads.
ph = pymdbn.data.make_phantoms(300, size=64, random_state=5)
for k in ph.X:
    out[f"phantoms_{k}_float32"] = ph.X[k]
    out[f"phantoms_mask_{k}_float32"] = (ph.masks[k] + 2 * ph.organ_masks[k]).astype(np.float32)
np.savez(path, **out)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return results_per_thread_count(_SCRIPT, THREADS, tmp_path_factory.mktemp("threads"))


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("what", ["affine", "rbm", "dbn", "mdbn", "phantoms"])
@pytest.mark.parametrize("threads", THREADS[1:])
def test_bit_identical_to_one_thread(runs, threads, what, dtype):
    if what == "phantoms" and dtype != "float32":
        pytest.skip("phantoms are float32")
    one, other = runs[1], runs[threads]
    keys = [k for k in one if k.startswith(what + "_") or k.startswith(what + "2_")]
    keys = [k for k in keys if k.endswith("_" + dtype)]
    if dtype == "bfloat16" and not keys:
        pytest.skip(f"bfloat16 products unavailable: {backend.bfloat16_status()[1]}")
    assert keys and set(one) == set(other)
    for key in keys:
        if "proba" not in key:  # probabilities are float64 for every model dtype
            assert one[key].dtype == backend.storage_dtype(dtype), key
        np.testing.assert_array_equal(other[key], one[key], err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_epsilon_flushes_denormals_as_the_out_of_place_path(dtype):
    # FTZ/DAZ is per-thread state: the in-place path's GEMM tiles must run without it,
    # like gemm's, or the denormal products of s w^T (s just above the smallest normal)
    # are flushed in one path only (36688 of 52000 elements differed).
    from pymdbn import backend
    cpu = backend.get("cpu")

    rng = np.random.default_rng(0)
    tiny = np.finfo(dtype).tiny
    x = np.ones((40, 1300), dtype)
    w = rng.standard_normal((1300, 64)).astype(dtype)
    b, z = np.zeros(64, dtype), np.ones((40, 64), dtype)
    r = (tiny * (4 + 4 * rng.random((40, 64)))).astype(dtype)
    want = cpu.lrp_dense(x, w, b, r, "epsilon", z=z)
    got = cpu.lrp_dense(x.copy(), w, b, r, "epsilon", z=z, overwrite_x=True)
    assert np.count_nonzero(want) > want.size // 2
    np.testing.assert_array_equal(got, want)
