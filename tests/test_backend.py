"""The backend seam: one importer of the compiled core, ops by name on every backend."""

import ast
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pymdbn
from pymdbn import backend
from conftest import BACKENDS, tol

PACKAGE = pathlib.Path(pymdbn.__file__).parent


def _imports(path):
    """Absolute names a module imports (``from a import b`` gives ``a.b``)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else "pymdbn." + node.module  # level 1 only
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "_bench" not in p.parts)


def test_only_the_cpu_backend_imports_the_core():
    importers = [p.relative_to(PACKAGE).as_posix() for p in _modules()
                 if any(n == "pymdbn._core" or n.startswith("pymdbn._core.")
                        for n in _imports(p))]
    assert importers == ["backend/_cpu.py"]


def test_only_the_cuda_backend_imports_the_cuda_module():
    importers = [p.relative_to(PACKAGE).as_posix() for p in _modules()
                 if any(n == "pymdbn._cuda" or n.startswith("pymdbn._cuda.")
                        for n in _imports(p))]
    assert importers == ["backend/_cuda.py"]


def test_production_code_never_imports_the_twins():
    importers = [p.relative_to(PACKAGE).as_posix() for p in _modules()
                 if "pymdbn.backend.reference" in _imports(p)]
    assert importers == ["backend/_numpy.py"]


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_defines_every_op(name):
    module = backend.get(name)
    missing = [op for op in backend.OPS if not callable(getattr(module, op, None))]
    assert missing == []
    for fn in ("build_info", "get_num_threads", "set_num_threads"):
        assert callable(getattr(module, fn))


def test_host_backends_load_here_and_cuda_says_why_not():
    names = backend.available()
    assert names[:2] == ["cpu", "numpy"]
    assert backend.host_backend() == "cpu"
    reason = backend.unavailable_reason("cuda")
    assert ("cuda" in names) == (reason is None)
    if reason is not None:
        assert pymdbn.cuda.is_available() is False
        assert pymdbn.cuda.unavailable_reason() == reason
        assert pymdbn.show_config("dicts")["cuda_unavailable"] == reason
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pymdbn.cuda.device_name()


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backend.get("tpu")


@pytest.mark.skipif(pymdbn.cuda.is_available(), reason="a CUDA backend takes device arrays here")
def test_ops_reject_unknown_names_and_foreign_devices():
    with pytest.raises(AttributeError, match="no op 'nonexistent'"):
        backend.ops.nonexistent  # noqa: B018

    class DeviceArray:  # what CuPy arrays expose
        __cuda_array_interface__ = {}

    with pytest.raises(TypeError, match="affine: no backend computes on 'cuda' arrays"):
        backend.ops.affine(DeviceArray(), None, None, False)


@pytest.mark.parametrize("dtype", backend.DTYPES)
def test_an_op_runs_by_name_on_every_backend(dtype, rng):
    x = rng.standard_normal((9, 5)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    out = {name: backend.get(name).affine_sigmoid(x, w, b, 2.0, True)
           for name in backend.available()}
    for name in out:
        np.testing.assert_allclose(out[name], out["numpy"], **tol(dtype))
    np.testing.assert_array_equal(backend.ops.affine_sigmoid(x, w, b, 2.0, True), out["cpu"])


def _run(code, env_value):
    env = {k: v for k, v in __import__("os").environ.items() if k != backend.ENV_VAR}
    if env_value is not None:
        env[backend.ENV_VAR] = env_value
    # From a neutral folder: a checkout's source tree first on sys.path has no _core.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())


FIT = ("import json, numpy as np, pymdbn; "
       "X = (np.random.default_rng(0).random((64, 12)) < 0.4).astype('float64'); "
       "m = pymdbn.RBM(n_components=5, n_iter=2, batch_size=16, random_state=0, "
       "dtype='float64').fit(X); "
       "print(json.dumps({'config': pymdbn.show_config('dicts'), "
       "'w': m.components_.tolist()}))")


def test_environment_variable_forces_the_numpy_backend():
    runs = {}
    for value in (None, "numpy"):
        proc = _run(FIT, value)
        assert proc.returncode == 0, proc.stderr
        runs[value] = json.loads(proc.stdout)
    assert runs[None]["config"]["backend"] == "cpu"
    assert runs[None]["config"]["backend_source"] == "default"
    assert runs["numpy"]["config"]["backend"] == "numpy"
    assert runs["numpy"]["config"]["backend_source"] == backend.ENV_VAR
    # The same counter-based draws on both backends: float64 fits agree to rounding.
    np.testing.assert_allclose(runs["numpy"]["w"], runs[None]["w"], rtol=1e-9, atol=1e-10)


def test_a_bad_environment_variable_is_a_clear_error():
    proc = _run(FIT, "tpu")
    assert proc.returncode != 0
    assert "PYMDBN_BACKEND='tpu' names no backend for host arrays" in proc.stderr


def test_device_of_reads_the_cuda_interface_and_dlpack():
    class Cai:
        __cuda_array_interface__ = {}

    class DLPack:
        def __init__(self, kind):
            self.kind = kind

        def __dlpack__(self):
            raise NotImplementedError

        def __dlpack_device__(self):
            return (self.kind, 0)

    assert backend.device_of(Cai()) == "cuda"
    assert backend.device_of(DLPack(2)) == "cuda"  # kDLCUDA
    assert backend.device_of(DLPack(1)) == "cpu"   # kDLCPU
    assert backend.device_of(np.zeros(3)) == "cpu"  # NumPy has __dlpack_device__ too
    assert backend.device_of([1.0]) == "cpu"


def test_show_config_reports_openblas_core():
    info = pymdbn.show_config("dicts")
    assert isinstance(info["blas_core"], str) and info["blas_core"]
