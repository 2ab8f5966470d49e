"""The ``'cpu'`` backend: the compiled C++/OpenMP kernels of ``pymdbn._core``.

This module is the only importer of ``_core``. It loads the core after the BLAS it
links against: the extension links ``libscipy_openblas.so`` from the scipy-openblas32
wheel by its soname. Wheels and regular installs also find it through an rpath, but an
editable install does not, so the library is loaded here first (RTLD_GLOBAL) whatever
the layout.
"""

import ctypes
import os

import scipy_openblas32

_blas = ctypes.CDLL(
    os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"),
    mode=ctypes.RTLD_GLOBAL,
)
# The kernels OpenBLAS picked when it loaded: from OPENBLAS_CORETYPE of the process's
# initial environment when set (an os.environ change made before this load is not seen:
# tried), else from the CPU.
_blas.scipy_openblas_get_corename.restype = ctypes.c_char_p


def _missing_core_message(package_dir):
    """Why ``_core`` is missing from ``package_dir``, and the fix."""
    source = os.path.dirname(package_dir)
    if os.path.isfile(os.path.join(source, "pyproject.toml")) and os.path.isdir(
            os.path.join(source, "csrc")):
        return (f"pymdbn's compiled core (_core) is missing: Python imported pymdbn from its "
                f"source folder {package_dir}, which shadows the installed package (the "
                f"current directory comes first on sys.path). Run Python from another folder, "
                f"or install the checkout in editable mode: pip install -e {source}")
    return (f"pymdbn's compiled core (_core) is missing from {package_dir}: the installation "
            f"is incomplete; reinstall it (pip install --force-reinstall pymdbn)")


try:
    from pymdbn import _core  # noqa: E402
except ImportError as exc:
    if "_core" not in str(exc):
        raise
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    raise ImportError(_missing_core_message(package_dir)) from exc

from pymdbn.backend import OPS  # noqa: E402

globals().update({name: getattr(_core, name) for name in OPS})


def build_info():
    """The compiled core's build description (compiler, OpenMP, BLAS, CUDA) and the
    kernels OpenBLAS picked (``blas_core``)."""
    info = dict(_core.build_info())
    info["blas_core"] = _blas.scipy_openblas_get_corename().decode()
    return info


def portable_math(name, x, y, p, out):
    """out = name(x) with the same bits on every CPU (exp, cos, sin; arctan2(y, x);
    power(x, p)): :mod:`pymdbn.data._portable`'s functions, compiled. x (and y) and out
    are C-contiguous arrays of one float dtype and size."""
    _core.portable_math(name, x, y, p, out)


def pool_enter():
    """Install the caching NumPy memory handler (csrc/bindings/host_pool.cpp) in this
    context; returns the handler to restore, or None where it is unavailable."""
    return _core.pool_enter()


def pool_leave(previous):
    """Restore ``previous``; the last active block frees the cached buffers."""
    _core.pool_leave(previous)


def pool_stats():
    """The pool's state: active blocks, cached bytes and blocks, its cap, hits."""
    return dict(_core.pool_stats())


def pool_status():
    """``(on, detail)``: whether the pool can install its handler here, its cap or why not."""
    reason = _core.pool_unavailable()
    if reason:
        return False, reason
    cap = _core.pool_stats()["cap_bytes"]
    return True, f"keeps freed buffers of 1 MiB or more, up to {cap / 2**20:.0f} MiB"


def pool_set_cap(cap_bytes):
    """Most bytes the pool keeps (default: 2 GiB or an eighth of the machine's memory)."""
    _core.pool_set_cap(int(cap_bytes))


def get_num_threads():
    """(OpenMP threads, OpenBLAS threads) of the kernels."""
    return _core.get_num_threads()


def set_num_threads(n):
    """Threads of the kernels' single OpenMP pool (GEMMs included)."""
    _core.set_num_threads(n)


_onednn = None  # (available, detail), probed on the first bfloat16 request


def _find_onednn():
    """Path of oneDNN's libdnnl.so.3 from the onednn-cpu-gomp wheel, or None."""
    from importlib import metadata

    try:
        files = metadata.files("onednn-cpu-gomp") or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libdnnl.so.3":
            path = str(f.locate())
            if os.path.isfile(path):
                return os.path.realpath(path)
    return None


def bfloat16_status():
    """``(available, detail)``: bfloat16 products through oneDNN, loaded on first call."""
    global _onednn
    if _onednn is None:
        if not _core.build_info()["onednn_compiled"]:
            _onednn = (False, _core.load_onednn(""))
        else:
            path = _find_onednn()
            if path is None:
                _onednn = (False, "oneDNN is not installed (pip install 'pymdbn[bf16]', "
                                  "i.e. onednn-cpu-gomp, on x86_64 Linux)")
            else:
                reason = _core.load_onednn(path)
                _onednn = (True, _core.onednn_info()) if not reason else (False, reason)
    return _onednn


def get_matmul_precision():
    """This thread's operand precision of float32 products."""
    return _core.get_matmul_precision()


def set_matmul_precision(precision):
    """Set this thread's operand precision of float32 products ('bfloat16' needs
    :func:`bfloat16_status` to be available)."""
    if precision == "bfloat16":
        ok, detail = bfloat16_status()
        if not ok:
            raise ValueError(f"bfloat16 products are unavailable: {detail}")
    _core.set_matmul_precision(precision)
