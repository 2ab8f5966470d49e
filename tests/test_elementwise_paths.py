"""The SIMD variants of the CPU element-wise loops (csrc/cpu/common.h, sample.cpp, dense.cpp).

The affine and dense-layer epilogues (bias + clipped sigmoid or identity), the sigmoid's
derivative in the dense backward pass, the CD weight update (cd_apply), the Bernoulli
and Gaussian draws and the optimisers' steps (SGD with momentum, Adam) are compiled for
SSE2 (the baseline), AVX2 and AVX-512 and picked at run time;
``PYMDBN_SIMD=sse2|avx2|avx512``, read once per process, caps the choice. Each variant
the CPU has runs here in its own process, at 1 and at 3 threads, on shapes whose rows
end in every kind of tail (1 to 65 columns; the Bernoulli path groups 16 Philox blocks
across rows when a row has fewer than 64 columns), and on the sigmoid's edge inputs;
all must agree bit for bit, with each other and (draws) with the NumPy twins.
"""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from pymdbn import backend
from pymdbn.backend import reference as ref

pytestmark = pytest.mark.skipif("cpu" not in backend.BACKENDS,
                                reason="the compiled CPU backend is not built")

COLS = [1, 3, 17, 32, 63, 64, 65]
ROWS = [1, 2, 7, 200]
DTYPES = ["float32", "float64"]

# Inputs of the sigmoid beyond the usual: infinities, NaN, float32 denormals and the
# smallest normal, the clip bounds and the points where exp_approx clamps (-87, 88) and
# where sigmoid flushes to 0 (-87.33 in float32), both signs of zero.
EDGE = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754944e-38,
        -1.1754944e-38, 3.0, -3.0, 3.0000002, -3.0000002, 87.0, -87.0, 88.0, -88.0, 87.33,
        -87.33, -87.34, 89.0, -89.0, 700.0, -709.0, 3.4e38, -3.4e38, 0.5, -2.5, 1e-7]

WORKER = r"""
import json, sys
import numpy as np
import pymdbn
from pymdbn import backend
from pymdbn.backend import reference as ref

COLS, ROWS, DTYPES, EDGE, out_path = json.loads(sys.argv[1])
k = backend.get("cpu")
res = {}
for threads in (1, 3):
    pymdbn.set_num_threads(threads)
    rng = np.random.default_rng(12345)
    for dt in DTYPES:
        for cols in COLS:
            for rows in ROWS:
                key = f"{dt}-{cols}-{rows}-{threads}"
                nv = 5
                x = rng.standard_normal((rows, nv)).astype(dt)
                w = (2.0 * rng.standard_normal((cols, nv))).astype(dt)
                b = rng.standard_normal(cols).astype(dt)
                res["sig3-" + key] = k.affine_sigmoid(x, w, b, 3.0, True)
                res["sig-" + key] = k.affine_sigmoid(x, np.ascontiguousarray(w.T), b, None,
                                                     False)
                res["aff-" + key] = k.affine(x, w, b, True)
                # The dense layer's epilogue and the sigmoid's derivative (fine-tuning).
                wt = np.ascontiguousarray(w.T)
                z, a = k.dense_forward(x, wt, b, 3.0, "sigmoid")
                res["dz-" + key], res["da-" + key] = z, a
                res["dlin-" + key] = k.dense_forward(x, wt, b, None, "linear")[1]
                g = rng.standard_normal((rows, cols)).astype(dt)
                res["dgx-" + key], res["dgw-" + key], res["dgb-" + key] = k.dense_backward(
                    g, z, a, x, wt, 3.0, "sigmoid", True)
                # Probabilities with exact 0 and 1, values outside [0, 1] and NaN.
                p = rng.random((rows, cols)).astype(dt)
                p.flat[::7] = 0.0
                p.flat[3::11] = 1.0
                p.flat[5::13] = np.nan
                p.flat[6::17] = -0.5
                p.flat[8::19] = 1.5
                res["p-" + key] = p
                res["ber-" + key] = k.sample_bernoulli(p, 7, 3 + cols, 11)
                # p on the draws' own uniforms (rounded to dt) and one step either side:
                # where the float32 path compares in integers, u < p must still hold
                # exactly as in double. Denormal p too (0 under DAZ: no draw).
                u = ref.uniform(rows, cols, 5, 2 + cols, 3)
                pe = u.astype(dt)
                pe.flat[1::3] = np.nextafter(pe.flat[1::3], np.inf)
                pe.flat[2::3] = np.nextafter(pe.flat[2::3], -np.inf)
                pe.flat[4::9] = 1e-40
                res["pe-" + key] = pe
                res["bedge-" + key] = k.sample_bernoulli(pe, 5, 2 + cols, 3)
                res["gib-" + key] = k.gibbs_hidden(x, w, b, 3.0, 2**63 + 5, 2**40 + 1)[1]
                m = rng.standard_normal((rows, cols)).astype(dt)
                res["m-" + key] = m
                res["gau-" + key] = k.sample_gaussian(m, 9, cols, 5)
                # The CD weight update (cd_apply): with momentum and decay, and without
                # (v_w written, not read); tiny values exercise the denormal flush.
                hh = rng.random((2 * rows, cols)).astype(dt)
                hh[rows:] *= -1
                vv = rng.standard_normal((2 * rows, nv)).astype(dt)
                for mom, decay in ((0.5, 1e-3), (0.0, 0.0)):
                    st = [0.1 * w, np.zeros(nv, dt), np.zeros(cols, dt),
                          np.full((cols, nv), 1e-36, dt), np.zeros(nv, dt),
                          np.zeros(cols, dt)]
                    k.cd_apply(hh, vv, *st, 0.05, mom, decay, 0.1, 0.01)
                    res[f"cdw{mom}-" + key], res[f"cdv{mom}-" + key] = st[0], st[3]
        # The optimisers' steps (fine-tuning): sizes below and above the threads' split,
        # tiny values for the denormal flush, a zero gradient and v for Adam's sqrt(0).
        for n in (1, 17, 70001):
            key = f"{dt}-{n}-{threads}"
            prm = rng.standard_normal(n).astype(dt)
            grd = rng.standard_normal(n).astype(dt)
            grd[::5] = 0.0
            grd[1::7] = 1e-30
            mom, ada_m, ada_v = (rng.standard_normal(n).astype(dt) for _ in range(3))
            ada_v = np.abs(ada_v)
            mom[2::9], ada_m[3::9], ada_v[::5] = 1e-37, 1e-37, 0.0
            p1 = prm.copy()
            k.sgd_momentum_update(p1, grd, mom, 0.1, 0.9, 1e-4)
            res["sgdp-" + key], res["sgdv-" + key] = p1, mom
            for t in (1, 7):
                p2, m2, v2 = prm.copy(), ada_m.copy(), ada_v.copy()
                k.adam_update(p2, grd, m2, v2, 1e-3, 0.9, 0.999, 1e-8, t, 1e-4)
                res[f"adp{t}-" + key], res[f"adm{t}-" + key] = p2, m2
                res[f"adv{t}-" + key] = v2
        # Sigmoid edge inputs: z = a_i * 1 + b_j through a one-column product.
        a = np.array(EDGE, dt)
        for cols in (1, 17, 32):
            b = np.zeros(cols, dt)  # every third bias an edge input too (finite ones)
            fin = [e for e in EDGE if np.isfinite(e)]
            b[1::3] = np.resize(np.array(fin, dt), len(b[1::3]))
            ones = np.ones((cols, 1), dt)
            key = f"{dt}-{cols}-{threads}"
            res["edge-z-" + key] = k.affine(a[:, None], ones, b, True)
            res["edge-clip-" + key] = k.affine_sigmoid(a[:, None], ones, b, 3.0, True)
            res["edge-noclip-" + key] = k.affine_sigmoid(a[:, None], ones, b, None, True)
np.savez(out_path, **res)
"""


def _levels():
    """The variants this CPU runs: sse2 always, then what /proc/cpuinfo's flags allow
    (a level the CPU lacks would run its best variant instead: nothing new to test)."""
    levels = ["sse2"]
    if platform.machine() not in ("x86_64", "AMD64"):
        return levels
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f
                          if ln.startswith("flags")), [])
    except OSError:
        return levels
    if "avx2" in flags:
        levels.append("avx2")
    if {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= set(flags):
        levels.append("avx512")
    return levels


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{level: {name: array}} from one worker process per SIMD level."""
    out = {}
    d = tmp_path_factory.mktemp("simd")
    for level in _levels():
        path = str(d / f"{level}.npz")
        env = dict(os.environ, PYMDBN_SIMD=level)
        subprocess.run([sys.executable, "-c", WORKER,
                        json.dumps([COLS, ROWS, DTYPES, EDGE, path])],
                       env=env, check=True, timeout=600, cwd=d)  # not the source folder
        with np.load(path) as z:
            out[level] = {name: z[name] for name in z.files}
    return out


def _same_bits(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    ua, ub = (np.ascontiguousarray(v).view(f"u{v.dtype.itemsize}") for v in (a, b))
    bad = np.flatnonzero(ua != ub)
    assert bad.size == 0, f"{what}: {bad.size} differ, first at {bad[0]}: " \
                          f"{a.flat[bad[0]]!r} vs {b.flat[bad[0]]!r}"


def test_variants_bit_identical(results):
    """Every output of every variant equals the SSE2 baseline's, bit for bit."""
    base = results["sse2"]
    for level, res in results.items():
        assert res.keys() == base.keys()
        for name in base:
            _same_bits(res[name], base[name], f"{level} {name}")


def test_thread_count_independent(results):
    for level, res in results.items():
        for name in res:
            if name.endswith("-1"):
                _same_bits(res[name[:-2] + "-3"], res[name], f"{level} {name} 1 vs 3 threads")


@pytest.mark.parametrize("dt", DTYPES)
def test_draws_match_twins(results, dt):
    """Bernoulli draws equal the NumPy twin's exactly (every variant, every tail);
    Gaussian draws are the twin's to float precision."""
    for level, res in results.items():
        for cols in COLS:
            for rows in ROWS:
                key = f"{dt}-{cols}-{rows}-1"
                _same_bits(res["ber-" + key], ref.sample_bernoulli(res["p-" + key], 7, 3 + cols,
                                                                   11), f"{level} ber {key}")
                _same_bits(res["bedge-" + key], ref.sample_bernoulli(res["pe-" + key], 5,
                                                                     2 + cols, 3),
                           f"{level} ber on the uniforms {key}")
                np.testing.assert_allclose(res["gau-" + key],
                                           ref.sample_gaussian(res["m-" + key], 9, cols, 5),
                                           rtol=1e-5 if dt == "float32" else 1e-12,
                                           atol=1e-5 if dt == "float32" else 1e-12)


def test_sigmoid_edges(results):
    """The edge inputs give what the clipped sigmoid defines: 1 and 0 at the infinities
    (sigma(+-3) under clip 3), NaN stays NaN, values in [0, 1] elsewhere."""
    for level, res in results.items():
        for dt in DTYPES:
            for cols in (1, 17, 32):
                key = f"{dt}-{cols}-1"
                z = res["edge-z-" + key]
                for clip, name in ((3.0, "edge-clip-"), (None, "edge-noclip-")):
                    s = res[name + key]
                    assert np.array_equal(np.isnan(s), np.isnan(z)), (level, name, key)
                    fin = ~np.isnan(s)
                    assert ((s[fin] >= 0) & (s[fin] <= 1)).all()
                    hi = ref.sigmoid(np.float64(3.0)) if clip else 1.0
                    lo = 1.0 - hi if clip else 0.0
                    np.testing.assert_allclose(s[np.isposinf(z)], hi, rtol=1e-6)
                    np.testing.assert_allclose(s[np.isneginf(z)], lo, atol=1e-6)
                    normal = np.isfinite(z)
                    np.testing.assert_allclose(
                        s[normal], ref.clipped_sigmoid(z[normal].astype(np.float64), clip),
                        rtol=2e-6 if dt == "float32" else 1e-12, atol=1e-30)
