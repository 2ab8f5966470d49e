"""Load the compiled core after the BLAS it links against.

The extension links ``libscipy_openblas.so`` from the scipy-openblas32 wheel by its
soname. Wheels and regular installs also find it through an rpath, but an editable
install does not, so the library is loaded here first (RTLD_GLOBAL) whatever the
layout.
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
    raise ImportError(_missing_core_message(os.path.dirname(os.path.abspath(__file__)))) from exc

__all__ = ["_core"]
