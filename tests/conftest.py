"""Shared fixtures: the tolerance table, the kernel backends, the default and extended seeds."""

import contextlib

import numpy as np
import pytest

from pymdbn import _matmul, backend

# One tolerance table per dtype: name -> dict(rtol=..., atol=...), the reason beside each.
TOLERANCES = {
    "float32": {
        # Kernel vs NumPy twin: the kernels' approximate float32 exp is off by about 1 ulp,
        # and OpenBLAS sums the GEMMs in another order (blocked, FMA) than NumPy: a few
        # float32 ulps (eps 1.2e-7) times the sums' condition, up to ~100 terms.
        "kernel": dict(rtol=2e-5, atol=2e-6),
        # A CD epoch chains several updates, each adding the kernel's rounding.
        "cd_epoch": dict(rtol=2e-4, atol=2e-5),
        # The epoch's squared reconstruction error: a float64 sum of float32 residuals.
        "cd_error": dict(rtol=1e-5, atol=0),
        # AIS log weights accumulate 30 free-energy differences that nearly cancel.
        "ais": dict(rtol=1e-4, atol=1e-4),
        # The float32 kernel against the float64 twin: the rounding of the float32 inputs
        # passes through a softplus sum over the hidden units (10x the kernel's atol).
        "free_energy": dict(rtol=2e-5, atol=2e-5),
        # One LRP layer, kernel vs twin. atol is relative: the bound is rtol |want| + atol
        # max(1, max |want|), the layer's largest |relevance|. The rules divide GEMM sums as
        # in "kernel" by sums of up to ~100 contributions, which can nearly cancel (where
        # they do, tests/test_lrp_rules.py also allows the twin's own float32 error).
        "lrp": dict(rtol=2e-5, atol=1e-5),
        # The LRP engine vs its twin, the same relative atol: the per-layer 1e-5 grows
        # along a chain of up to five layers.
        "lrp_chain": dict(rtol=2e-5, atol=1e-4),
        # A rule against an independent matrix reference in float64 (z^B by its
        # definition): the float32 rounding of x W and of the sums that cancel the bias.
        # atol is relative to max |want| (no floor).
        "lrp_definition": dict(rtol=2e-4, atol=2e-4),
        # standardize per image: the row mean and deviation are summed in another order
        # than NumPy's (in float64, then rounded to dtype): a few ulps.
        "standardize_per_row": dict(rtol=1e-5, atol=1e-5),
    },
    "float64": {
        # The same sources as in float32, at float64's eps 2.2e-16 (a few thousand ulps).
        "kernel": dict(rtol=1e-11, atol=1e-12),
        "cd_epoch": dict(rtol=1e-10, atol=1e-11),
        "cd_error": dict(rtol=1e-10, atol=0),
        "ais": dict(rtol=1e-10, atol=1e-10),
        "free_energy": dict(rtol=1e-11, atol=1e-11),
        # float64 only (the tests run in float64): exp(-F)/Z summed over 64 states, and
        # log Z enumerated over either layer.
        "partition": dict(rtol=1e-12, atol=0),
        # The LRP and standardize entries: the float32 sources at float64's eps.
        "lrp": dict(rtol=1e-10, atol=1e-10),
        "lrp_chain": dict(rtol=1e-10, atol=1e-10),
        "lrp_definition": dict(rtol=1e-9, atol=1e-12),
        "standardize_per_row": dict(rtol=1e-12, atol=1e-12),
    },
}


def tol(dtype, name="kernel"):
    """The tolerance ``name`` of ``dtype`` (a NumPy type, dtype or name) as rtol/atol."""
    return TOLERANCES[np.dtype(dtype).name][name]


# The kernel-vs-twin tolerance by NumPy type and by name (tests/test_cd_split.py uses
# TOL[np.float32]).
TOL = {key: tol(key) for key in (np.float32, np.float64, *backend.DTYPES)}

DTYPES = [np.dtype(name).type for name in backend.DTYPES]

# Shapes (rows, n_visible, n_hidden), odd sizes and size 1 included.
SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 4), (3, 13, 1), (17, 31, 9), (64, 100, 33), (129, 7, 65)]

# Every backend, the 'numpy' twins included: a new entry in backend.BACKENDS is tested
# with no edit. One that does not load here (CUDA without a GPU or without the CUDA
# build) is skipped with its reason. Against the twins 'numpy' is exact by construction
# (it checks the adapter's signatures only); the value is for compiled ones.
# tests/fake_cuda.py, the CPU kernels behind device arrays, joins the kernel tests as one
# more device backend: they then run the host-call path of pymdbn.backend.hostcall
# (upload, run, bring back) that the real CUDA backend's tests take, on any machine.
backend.BACKENDS.setdefault("cuda-stand-in", ("fake_cuda", "cuda"))


def _backend_param(name, *more):
    reason = backend.unavailable_reason(name)
    marks = [pytest.mark.skip(reason=f"backend {name!r} unavailable: {reason}")] if reason else []
    value = (name, *more) if more else name
    return pytest.param(value, marks=marks, id="-".join(map(str, (name, *more))))


BACKENDS = [_backend_param(name) for name in backend.BACKENDS]
# Backends with the compiled bindings' checks and messages: all but the twins.
COMPILED = [_backend_param(name) for name in backend.BACKENDS if name != "numpy"]

# The usual run draws from DEFAULT_SEED; `pytest --extended` adds EXTENDED_SEEDS.
DEFAULT_SEED = 12345
EXTENDED_SEEDS = (0, 1, 2, 3, 2024)


def pytest_addoption(parser):
    parser.addoption("--extended", action="store_true",
                     help="also run the tests marked extended (more seeds)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--extended"):
        return
    skip = pytest.mark.skip(reason="extended: run with --extended")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=[DEFAULT_SEED, *(pytest.param(s, marks=pytest.mark.extended)
                                        for s in EXTENDED_SEEDS)],
                ids=lambda s: f"seed{s}")
def seed(request):
    """A seed for randomised and statistical tests: the default, more with --extended."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(DEFAULT_SEED)


@pytest.fixture(params=BACKENDS)
def kernels(request):
    """A backend module by name, for dtype-free ops."""
    return backend.get(request.param)


# The kernel dtypes, and 'bfloat16': float32 arrays whose products round their operands
# to bfloat16, in the kernels and in the twins alike (pymdbn._matmul); both then sum the
# same exact products in float32, so the float32 tolerances hold.
KERNEL_DTYPES = (*backend.DTYPES, "bfloat16")


@contextlib.contextmanager
def bfloat16_products(module):
    """Products with bfloat16 operands in ``module``'s kernels and in the twins; skips
    where the backend has no bfloat16 products (no oneDNN, or no AVX512_BF16/AMX)."""
    ok, detail = module.bfloat16_status()
    if not ok:
        pytest.skip(f"bfloat16 products unavailable: {detail}")
    module.set_matmul_precision("bfloat16")
    _matmul.set_precision("bfloat16")
    try:
        yield
    finally:
        module.set_matmul_precision("float32")
        _matmul.set_precision("float32")


@pytest.fixture(params=[_backend_param(name, dt) for name in backend.BACKENDS
                        for dt in KERNEL_DTYPES])
def kernels_dtype(request):
    """(backend module, NumPy float type) for every backend and dtype, ids like cpu-float32;
    the bfloat16 ids give float32 with bfloat16 products."""
    name, dt = request.param
    module = backend.get(name)
    if dt != "bfloat16":
        yield module, np.dtype(dt).type
        return
    with bfloat16_products(module):
        yield module, np.float32


def random_rbm(rng, n_visible, n_hidden, dtype, scale=0.5):
    w = (scale * rng.standard_normal((n_hidden, n_visible))).astype(dtype)
    bv = (0.3 * rng.standard_normal(n_visible)).astype(dtype)
    bh = (0.3 * rng.standard_normal(n_hidden)).astype(dtype)
    return w, bv, bh


@pytest.fixture
def fake_cuda(monkeypatch):
    """The 'cuda' backend replaced by tests/fake_cuda.py (CPU kernels behind device
    arrays), so the estimators' device plumbing is tested on any machine. Yields the
    module: ``fake_cuda.to_device(x, 'cuda')`` makes a device array."""
    import fake_cuda as module

    monkeypatch.setitem(backend._loaded, "cuda", module)
    monkeypatch.delitem(backend._failed, "cuda", raising=False)
    backend.ops.__dict__.clear()  # the dispatchers cache each device's op
    yield module
    backend.ops.__dict__.clear()


def numeric_grad(f, param, eps=1e-6):
    """Central finite differences of the scalar ``f()`` w.r.t. ``param``, changed in place
    one entry at a time and restored (float64 parameters)."""
    grad = np.zeros_like(param)
    for i in np.ndindex(param.shape):
        old = param[i]
        param[i] = old + eps
        hi = f()
        param[i] = old - eps
        lo = f()
        param[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


def results_per_thread_count(script, counts, folder):
    """{threads: dict of arrays} from ``script`` run in a fresh Python per thread count
    (``OMP_NUM_THREADS``; argv: threads, output .npz path), from ``folder`` so that the
    installed package, not the source tree, is imported."""
    import os
    import subprocess
    import sys

    results = {}
    for threads in counts:
        path = os.path.join(folder, f"t{threads}.npz")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", script, str(threads), path], check=True,
                       env=env, cwd=folder)
        with np.load(path) as f:
            results[threads] = dict(f)
    return results
