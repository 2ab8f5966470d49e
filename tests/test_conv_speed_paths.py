"""The convolutional speed paths of the CPU kernels (issue 13).

A weight-gradient product ``x^T dz`` with a small output (``kh * kw * C`` x ``F``) over a
long k (every (image, position) row of a batch) is cut along k into chunks fixed by the
shape, multiplied in parallel and summed in chunk order (gemm.cpp, ``gemm_k_chunk``);
``dense_backward`` sums dz's columns in the same chunks. Checked here: the results against
float64 references, bit-identity over 1, 2 and 3 threads (float32, float64, bfloat16),
and the linear pass that no longer copies grad_a.
"""


import numpy as np
import pytest

from pymdbn import backend
from conftest import results_per_thread_count

pytestmark = pytest.mark.skipif(backend.unavailable_reason("cpu") is not None,
                                reason="no compiled core")

# (k, m, n): split (12 chunks; 2 chunks at k = 8192; odd chunk ends), and k = 8191, one
# call. 800 x 64 has 2 row tiles already: one call per tile, no split.
SHAPES = [(115200, 25, 32), (8192, 25, 32), (8191, 25, 32), (50001, 9, 7), (20000, 800, 64)]


def _case(k, m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, m)).astype(dtype)
    g = rng.standard_normal((k, n)).astype(dtype)
    return x, g, np.zeros((m, n), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,m,n", SHAPES)
def test_long_weight_gradient_matches_float64(k, m, n, dtype):
    cpu = backend.get("cpu")
    x, g, w = _case(k, m, n, dtype)
    gx, gw, gb = cpu.dense_backward(g, g, g, x, w, None, "linear", False)
    assert gx is None and gw.dtype == dtype and gb.dtype == dtype
    want_w = x.astype(np.float64).T @ g.astype(np.float64)
    want_b = g.astype(np.float64).sum(axis=0)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.sqrt(k)  # sums of k terms of unit size
    np.testing.assert_allclose(gw, want_w, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(gb, want_b, rtol=0, atol=rtol * scale)


def test_sigmoid_backward_with_the_split_matches_the_reference():
    cpu, ref = backend.get("cpu"), backend.get("numpy")
    rng = np.random.default_rng(3)
    k, m, n = 20000, 27, 16
    x = rng.standard_normal((k, m))
    w = rng.standard_normal((m, n)) * 0.3
    b = rng.standard_normal(n)
    z, a = cpu.dense_forward(x, w, b, 2.0, "sigmoid")
    g = rng.standard_normal((k, n))
    got = cpu.dense_backward(g, z, a, x, w, 2.0, "sigmoid", True)
    want = ref.dense_backward(g, z, a, x, w, 2.0, "sigmoid", True)
    for gk, wk in zip(got, want):
        np.testing.assert_allclose(gk, wk, rtol=1e-10, atol=1e-10)


def test_linear_backward_leaves_grad_a_and_returns_its_sums():
    cpu = backend.get("cpu")
    x, g, w = _case(300, 12, 5, np.float32)
    before = g.copy()
    gx, gw, gb = cpu.dense_backward(g, g, g, x, w, None, "linear", True)
    np.testing.assert_array_equal(g, before)
    np.testing.assert_allclose(gw, x.T @ g, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gb, g.sum(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gx, g @ w.T, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not backend.bfloat16_status()[0], reason="no bfloat16 products")
def test_bfloat16_weight_gradient_rounds_the_operands():
    # Not split along k in bfloat16 (gemm_k_chunk): one product, float32 sums over k.
    cpu = backend.get("cpu")
    x, g, w = _case(50000, 25, 32, np.float32, seed=1)
    with backend.matmul_precision("bfloat16"):
        _, gw, gb = cpu.dense_backward(g, g, g, x, w, None, "linear", False)

    def rounded(a):  # to nearest even bfloat16 (no NaN or denormal here)
        u = a.view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)

    want = rounded(x).astype(np.float64).T @ rounded(g).astype(np.float64)
    np.testing.assert_allclose(gw, want, rtol=0, atol=1e-4 * np.sqrt(len(x)))
    # One float32 sum over 50000 N(0, 1) rows: errors of a few 1e-3 (1.5e-3 seen).
    np.testing.assert_allclose(gb, g.astype(np.float64).sum(axis=0), rtol=0,
                               atol=1e-4 * np.sqrt(len(x)))


_THREADS_SCRIPT = r"""
import sys, numpy as np, pymdbn
from pymdbn import backend
cpu = backend.get("cpu")
assert pymdbn.get_num_threads()["openmp"] == int(sys.argv[1])
out = {}
cases = [("float32", np.float32), ("float64", np.float64)]
if backend.bfloat16_status()[0]:
    cases.append(("bfloat16", np.float32))
for name, dt in cases:
    rng = np.random.default_rng(0)
    ctx = backend.matmul_precision("bfloat16" if name == "bfloat16" else "float32")
    with ctx:
        for k, m, n in ((115200, 25, 32), (8192, 25, 32), (50001, 9, 7), (30000, 288, 64)):
            x = rng.standard_normal((k, m)).astype(dt)
            g = rng.standard_normal((k, n)).astype(dt)
            w = rng.standard_normal((m, n)).astype(dt)
            z, a = cpu.dense_forward(x, w, np.zeros(n, dt), None, "sigmoid")
            for act in ("linear", "sigmoid"):
                gx, gw, gb = cpu.dense_backward(g, z, a, x, w, None, act, act == "sigmoid")
                key = f"{name}_{k}_{m}_{n}_{act}"
                out[key + "_w"], out[key + "_b"] = gw, gb
                if gx is not None:
                    out[key + "_x"] = gx
np.savez(sys.argv[2], **out)
"""


def test_bit_identical_with_1_2_and_3_threads(tmp_path):
    results = results_per_thread_count(_THREADS_SCRIPT, (1, 2, 3), tmp_path)
    for threads in (2, 3):
        assert set(results[threads]) == set(results[1])
        for key in results[1]:
            np.testing.assert_array_equal(results[threads][key], results[1][key],
                                          err_msg=f"{key}, {threads} threads")
