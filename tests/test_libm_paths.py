"""The Gaussian draws do not depend on which build of glibc's maths functions runs.

The CPU samplers' Box-Muller transform calls the C library's log and sin/cos (logf and
sincosf in float32). glibc picks one of several builds of each at load time by the CPU's
features (on x86-64: FMA / AVX2 builds and SSE2 ones, e.g. ``__logf_fma`` and
``__logf_sse2``), so a CPU without FMA runs other code than the machines CI has. Here the
draws are made in one process as the CPU chooses and in another with
``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F``, under which glibc takes its SSE2
builds (as ``perf`` shows; pymdbn's own SIMD choice, made from CPUID, is unaffected), and
must agree bit for bit. On glibc 2.36 the two builds of logf and sincosf agree on every
float in (0, 1] and [0, 2 pi] respectively (checked exhaustively outside this test);
another C library (musl) or a glibc of another version may still round differently.
"""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from pymdbn import backend

pytestmark = [
    pytest.mark.skipif("cpu" not in backend.BACKENDS, reason="the compiled CPU backend is not built"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                       or platform.libc_ver()[0] != "glibc",
                       reason="glibc's x86-64 builds of its maths functions only"),
]

WORKER = r"""
import sys
import numpy as np
from pymdbn import backend

k = backend.get("cpu")
rng = np.random.default_rng(3)
out = {}
for dt in ("float32", "float64"):
    mean = rng.standard_normal((512, 4096)).astype(dt)
    out["normals-" + dt] = k.sample_gaussian(mean, 2**40 + 3, 11, 5)
# float64 models end to end: the sigmoid, the softmax loss, Adam's bias corrections, the
# free energy (softplus) and a fit that uses them all.
x = rng.standard_normal((2000, 300)) * 4
w = rng.standard_normal((200, 300)) * 0.5
out["sigmoid"] = k.affine_sigmoid(x, w, np.zeros(200), None, True)
out["free_energy"] = k.free_energy((x > 0).astype(np.float64), w, np.zeros(300), np.zeros(200),
                                   "bernoulli")
import pymdbn
X = {"a": rng.standard_normal((300, 12, 12)), "b": rng.standard_normal((300, 40))}
y = (X["a"][:, :3, :3].mean(axis=(1, 2)) + X["b"][:, :5].mean(axis=1) > 0).astype(int)
m = pymdbn.MDBN({"a": (48,), "b": (32,)}, joint_units=(32,), pretrain_epochs=2,
                pretrain_batch_size=50, batch_size=50, max_epochs=3, optimizer="adam",
                learning_rate=0.01, random_state=4, dtype="float64").fit(X, y)
out["mdbn_proba"] = m.predict_proba(X)
np.savez(sys.argv[1], **out)
"""

SSE2_LIBM = "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F"


def _draws(path, tunables):
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    subprocess.run([sys.executable, "-c", WORKER, str(path)], env=env, check=True, timeout=300,
                   cwd=path.parent)
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def test_same_with_glibc_sse2_maths(tmp_path):
    """Gaussian draws of both dtypes and float64 models (sigmoid, softmax loss, Adam, free
    energy, an MDBN fit) are the same bits with either build of glibc's functions."""
    default = _draws(tmp_path / "default.npz", None)
    sse2 = _draws(tmp_path / "sse2.npz", SSE2_LIBM)
    assert default.keys() == sse2.keys()
    for name, a in default.items():
        b = sse2[name]
        ua, ub = (v.view(f"u{v.dtype.itemsize}") for v in (a, b))
        bad = np.flatnonzero(ua != ub)
        assert bad.size == 0, (f"{name}: {bad.size} of {a.size} values differ between glibc's "
                               f"builds, first at {bad[0]}: {a.flat[bad[0]]!r} vs "
                               f"{b.flat[bad[0]]!r}")


def _normals_reference(rows, cols, seed, stream):
    """Box-Muller in float64 from the same Philox words with NumPy's log, cos and sin, the
    angle's quarter turns split off in integers as the kernel does (2 pi u2 rounded to
    double, then its cosine, would lose up to thousands of ulps near the zeros)."""
    from pymdbn.backend import reference as ref

    words = ref._blocks((cols + 3) // 4, rows, seed, stream, 0).astype(np.int64)
    a, b = words[..., 0::2], words[..., 1::2]
    r = np.sqrt(-2.0 * np.log((a + 1.0) * 2.0**-32))
    q = (b + 2**29) >> 30
    x = (b - (q << 30)).astype(np.float64) * (2.0 * np.pi * 2.0**-32)
    c, s = np.cos(x), np.sin(x)
    quarter = q & 3
    cos_t = np.choose(quarter, [c, -s, -c, s])
    sin_t = np.choose(quarter, [s, c, -s, -c])
    z = np.stack([r * cos_t, r * sin_t], axis=-1)
    return z.reshape(rows, -1)[:, :cols]


def test_float64_normals_within_ulps_of_box_muller():
    """The kernel's own log and cos/sin (no C library) are accurate: its float64 normals
    lie within 4 ulps of Box-Muller computed with NumPy's functions (measured against
    120-bit mpmath on 40000 normals: 3 ulps at most, 0.42 on average)."""
    k = backend.get("cpu")
    rows, cols = 300, 1000
    z = k.sample_gaussian(np.zeros((rows, cols)), 12345, 7, 0)
    want = _normals_reference(rows, cols, 12345, 7)
    ulps = np.abs(z - want) / np.spacing(np.maximum(np.abs(want), 1e-300))
    assert ulps.max() <= 4, f"{(ulps > 4).sum()} normals beyond 4 ulps, worst {ulps.max():.1f}"


def test_float64_sigmoid_and_softplus_within_ulps():
    """The float64 sigmoid (numerics.h's exp) and free energy (its log1p and exp) stay
    within a few ulps of NumPy's (against 100-bit mpmath on 30000 arguments the sigmoid
    was within 2 ulps, as with glibc's exp)."""
    from pymdbn.backend import reference as ref

    k = backend.get("cpu")
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.uniform(-40, 40, 20000), rng.uniform(-1, 1, 5000),
                        rng.uniform(-700, 700, 5000), [0.0, -0.0, 1e-300, -1e-300]])
    s = k.affine_sigmoid(z[:, None], np.ones((1, 1)), np.zeros(1), None, True)[:, 0]
    want = ref.sigmoid(z)
    ulps = np.abs(s - want) / np.spacing(np.maximum(want, 1e-300))
    assert ulps.max() <= 4, f"sigmoid: worst {ulps.max():.1f} ulps"
    v = (rng.random((500, 60)) < 0.5).astype(np.float64)
    w = rng.standard_normal((40, 60)) * 3
    bv, bh = rng.standard_normal(60), rng.standard_normal(40)
    fe = k.free_energy(v, w, bv, bh, "bernoulli")
    want = ref.free_energy(v, w, bv, bh, "bernoulli")
    np.testing.assert_allclose(fe, want, rtol=1e-13, atol=1e-12)
