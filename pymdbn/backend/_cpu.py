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
    """The compiled core's build description (compiler, OpenMP, BLAS, CUDA)."""
    return dict(_core.build_info())


def get_num_threads():
    """(OpenMP threads, OpenBLAS threads) of the kernels."""
    return _core.get_num_threads()


def set_num_threads(n):
    """Threads of the kernels' single OpenMP pool (GEMMs included)."""
    _core.set_num_threads(n)
