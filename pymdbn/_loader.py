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

from pymdbn import _core  # noqa: E402

__all__ = ["_core"]
