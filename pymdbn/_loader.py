"""Load the compiled core after the BLAS it links against.

The extension links ``libscipy_openblas.so`` from the scipy-openblas32 wheel by its
soname. Wheels and regular installs also find it through an rpath, but an editable
install does not, so the library is loaded here first (RTLD_GLOBAL) whatever the
layout.

OpenMP threads that spin after a parallel loop take the cores from OpenBLAS's own
threads (pymdbn alternates GEMMs and OpenMP loops): on 2 cores that halved the speed
of a forward pass. So idle OpenMP threads sleep unless the user chose otherwise; the
variable must be set before the OpenMP runtime loads with ``_core``.
"""

import ctypes
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import scipy_openblas32  # noqa: E402

_blas = ctypes.CDLL(
    os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"),
    mode=ctypes.RTLD_GLOBAL,
)

from pymdbn import _core  # noqa: E402

__all__ = ["_core"]
