"""Phantoms are the same bits whatever SIMD loops NumPy picks on the CPU.

NumPy chooses its loops for exp, cos, sin, arctan2 and power by the CPU (AVX-512, AVX2,
baseline) and they round differently, so :mod:`pymdbn.data._portable` replaces them in
the phantoms. Here a worker process draws phantoms with NumPy's default loops and another
with every dispatched loop disabled (``NPY_DISABLE_CPU_FEATURES``, the baseline only), as
a CPU without AVX2 would run them; both must agree bit for bit. The portable functions
are also checked against NumPy's for accuracy, and the compiled kernel
(``csrc/cpu/portable_math.cpp``, at every SIMD level the CPU has) against their NumPy
code, its twin, bit for bit.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from pymdbn.data import _portable as pm

WORKER = r"""
import sys
import numpy as np
from pymdbn.data import make_phantoms

out = {}
for size, seed in ((32, 0), (64, 1)):
    d = make_phantoms(40, size=size, random_state=seed, bone_site="mixed")
    for m, x in d.X.items():
        out[f"{m}-{size}"] = x
        out[f"mask-{m}-{size}"] = d.masks[m]
np.savez(sys.argv[1], **out)
"""


def _dispatched():
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__
    return list(__cpu_dispatch__)


def _run(path, disable):
    env = dict(os.environ)
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
    subprocess.run([sys.executable, "-c", WORKER, str(path)], env=env, check=True, timeout=300,
                   cwd=path.parent)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_phantoms_same_without_numpy_simd_loops(tmp_path):
    disable = _dispatched()
    if not disable:
        pytest.skip("this NumPy dispatches no SIMD loops at run time")
    default = _run(tmp_path / "default.npz", None)
    baseline = _run(tmp_path / "baseline.npz", disable)
    assert default.keys() == baseline.keys()
    for name, a in default.items():
        b = baseline[name]
        bad = np.flatnonzero(a.view(np.uint8 if a.dtype == bool else np.uint32)
                             != b.view(np.uint8 if b.dtype == bool else np.uint32))
        assert bad.size == 0, f"{name}: {bad.size} of {a.size} pixels differ"


def _ulps(got, want):
    return np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300))


def test_float64_within_ulps_of_numpy():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-30, 30, 20000), rng.uniform(-1e-3, 1e-3, 2000)])
    assert _ulps(pm.exp(x), np.exp(x)).max() <= 3
    assert _ulps(pm.cos(x), np.cos(x)).max() <= 3
    assert _ulps(pm.sin(x), np.sin(x)).max() <= 3
    y = rng.standard_normal(20000)
    assert _ulps(pm.arctan2(y, x[:20000]), np.arctan2(y, x[:20000])).max() <= 4
    # exp(p log x) rounds p log x: an error of |p log x| ulps at most (12 near x = 1e-4).
    p = rng.uniform(0, 3, 20000)
    for e in (0.3, 1.3):
        assert _ulps(pm.power(p, e), np.power(p, e)).max() <= 16


def test_float32_rounded_once():
    """float32 arguments give float32 results within half an ulp of NumPy's float64
    result (plus its own error), i.e. correctly rounded but for ties."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-10, 10, 50000).astype(np.float32)
    y = rng.standard_normal(50000).astype(np.float32)
    for got, want in ((pm.exp(x), np.exp(x.astype(np.float64))),
                      (pm.cos(x), np.cos(x.astype(np.float64))),
                      (pm.sin(x), np.sin(x.astype(np.float64))),
                      (pm.arctan2(y, x), np.arctan2(y.astype(np.float64), x.astype(np.float64))),
                      (pm.power(np.abs(x), 0.3), np.power(np.abs(x).astype(np.float64), 0.3))):
        assert got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(np.float32))
        assert err.max() <= 0.5 + 1e-6


def test_special_values_and_out():
    z = np.array([0.0, -0.0, 0.0, -0.0, 1.0, -1.0])
    x = np.array([0.0, 0.0, -0.0, -0.0, -0.0, -0.0])
    np.testing.assert_array_equal(np.signbit(pm.arctan2(z, x)), np.signbit(np.arctan2(z, x)))
    np.testing.assert_allclose(pm.arctan2(z, x), np.arctan2(z, x), rtol=1e-15)
    np.testing.assert_array_equal(pm.exp(np.array([np.inf, -np.inf, 800.0, -800.0])),
                                  [np.inf, 0.0, np.inf, 0.0])
    assert np.isnan(pm.exp(np.nan))
    assert pm.power(np.float32(0), 0.3) == 0 and isinstance(pm.exp(1.0), np.float64)
    buf = np.linspace(-3, 3, 7, dtype=np.float32)
    assert pm.cos(buf, out=buf) is buf and buf.dtype == np.float32


KERNEL_WORKER = r"""
import sys
import numpy as np
from pymdbn.data import _portable as pm

rng = np.random.default_rng(5)
out = {}
for dt in (np.float32, np.float64):
    x = np.concatenate([rng.standard_normal(20000) * 30, rng.uniform(-800, 800, 2000),
                        [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-310, 2.0**40, -3e9, 1e300]])
    x = x.astype(dt)
    y = rng.standard_normal(x.size).astype(dt)
    y[:5] = [0.0, -0.0, np.nan, np.inf, -1.0]
    a = np.abs(x)
    calls = {"exp": lambda: pm.exp(x / 10), "cos": lambda: pm.cos(x), "sin": lambda: pm.sin(x),
             "arctan2": lambda: pm.arctan2(y, x), "arctan2_swap": lambda: pm.arctan2(x, y),
             "power03": lambda: pm.power(a, 0.3), "power13": lambda: pm.power(a, 1.3)}
    name = dt.__name__
    with np.errstate(all="ignore"):
        for key, call in calls.items():
            out[f"kernel-{key}-{name}"] = call()
        pm._KERNEL = None  # the NumPy twin
        for key, call in calls.items():
            out[f"numpy-{key}-{name}"] = call()
        pm._KERNEL = pm._UNSET
np.savez(sys.argv[1], **out)
"""


@pytest.mark.skipif("cpu" not in __import__("pymdbn.backend", fromlist=["BACKENDS"]).BACKENDS,
                    reason="the compiled CPU backend is not built")
@pytest.mark.parametrize("level", ["sse2", "avx2", "avx512"])
def test_kernel_equals_numpy_twin(tmp_path, level):
    """csrc/cpu/portable_math.cpp computes _portable's NumPy code bit for bit, special
    values included (PYMDBN_SIMD caps the kernel's SIMD variant; a level the CPU lacks
    runs its best one)."""
    path = tmp_path / "k.npz"
    env = dict(os.environ, PYMDBN_SIMD=level)
    subprocess.run([sys.executable, "-c", KERNEL_WORKER, str(path)], env=env, check=True,
                   timeout=300, cwd=tmp_path)
    with np.load(path) as z:
        res = {k: z[k] for k in z.files}
    for key in [k for k in res if k.startswith("kernel-")]:
        a, b = res[key], res["numpy-" + key[len("kernel-"):]]
        assert a.dtype == b.dtype
        bad = np.flatnonzero(a.view(f"u{a.itemsize}") != b.view(f"u{b.itemsize}"))
        assert bad.size == 0, f"{level} {key}: {bad.size} differ, first {a.flat[bad[0]]!r} " \
                              f"vs {b.flat[bad[0]]!r}"
