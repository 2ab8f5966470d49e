"""The ``'cuda'`` backend: the CUDA kernels of ``pymdbn._cuda`` on device arrays.

This module is the only importer of ``_cuda`` (built with ``-DPYMDBN_CUDA=ON``, shipped
in the ``pymdbn-cu13`` wheel). Importing it raises ImportError, with the reason, unless
the module is built, a device is visible and CuPy (the array library new device arrays
are made with) imports; :func:`pymdbn.cuda.is_available` asks once and reports.

The ops take and return device arrays: anything with ``__cuda_array_interface__`` (CuPy,
PyTorch CUDA tensors, Numba) or DLPack on the GPU is used in place, with no host copy;
new arrays are CuPy arrays. They run on the stream :func:`set_stream` names (the legacy
default stream, CuPy's default, unless set) and return without waiting, except where a
value comes back to the host (losses, the CD epoch's error, standardize's finiteness
flag).

Given NumPy arrays instead, an op uploads them, runs, writes the in-place arguments back
and returns NumPy arrays (:mod:`pymdbn.backend.hostcall`): the kernel tests compare every
backend against the twins that way, on the same inputs.
"""

import ctypes
import os
import warnings

import numpy as np


def _preload_cublas():
    """Load cuBLAS from the nvidia-cublas wheel when it is installed.

    The extension's rpath finds the wheel's libraries in a regular install; an editable
    or in-tree build does not, so they are loaded here first (RTLD_GLOBAL), as _cpu.py
    does for OpenBLAS. Without the wheel the system's loader paths are used.
    """
    try:
        import nvidia
    except ImportError:
        return
    for root in getattr(nvidia, "__path__", []):
        lib = os.path.join(root, "cu13", "lib")
        for name in ("libcublasLt.so.13", "libcublas.so.13"):
            path = os.path.join(lib, name)
            if os.path.exists(path):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def _load():
    _preload_cublas()
    try:
        from pymdbn import _cuda
    except ImportError as exc:
        raise ImportError(f"pymdbn was built without its CUDA backend ({exc}); install "
                          "pymdbn-cu13 or build with -Ccmake.define.PYMDBN_CUDA=ON") from exc
    if _cuda.device_count() < 1:
        reason = f"no usable CUDA device: {_cuda.unavailable_reason()}"
        # Said once: the seam probes a backend once per process.
        warnings.warn(f"pymdbn's CUDA backend is installed but {reason}; running on the CPU",
                      RuntimeWarning, stacklevel=2)
        raise ImportError(reason)
    try:
        import cupy
    except ImportError as exc:
        raise ImportError("the CUDA backend makes its arrays with CuPy: pip install "
                          "cupy-cuda13x") from exc
    _cuda.set_allocator(lambda shape, dtype: cupy.empty(shape, dtype=dtype))
    return _cuda, cupy


_core, cp = _load()
#: The array module of this backend's device.
xp = cp

from pymdbn.backend import OPS  # noqa: E402
from pymdbn.backend.hostcall import host_adapter  # noqa: E402


class _ReadOnly:
    """A device copy that says it is read-only, as the host array it came from: the
    bindings then refuse it as an output, as the CPU backend refuses the host array."""

    def __init__(self, array):
        self.array = array

    @property
    def __cuda_array_interface__(self):
        cai = dict(self.array.__cuda_array_interface__)
        cai["data"] = (cai["data"][0], True)
        return cai


def _upload(value, copy):
    if copy and isinstance(value, np.ndarray):
        # The layout is kept (a Fortran-ordered array stays one, and is refused alike).
        copy = cp.asarray(value)
        return copy if value.flags.writeable else _ReadOnly(copy)
    return _as_cai(value)


def _as_cai(value):
    """A DLPack-only device array (JAX, ...) as a CuPy view of the same memory."""
    kind = type(value)
    if hasattr(kind, "__dlpack__") and not hasattr(kind, "__cuda_array_interface__") \
            and not isinstance(value, np.ndarray):
        return cp.from_dlpack(value)
    return value


def _download(value):
    return cp.asnumpy(value) if isinstance(value, cp.ndarray) else value


globals().update({name: host_adapter(name, getattr(_core, name), _upload, _download)
                  for name in OPS})


def to_device(array, device):
    """``array`` on ``'cuda'`` (a CuPy array; any __cuda_array_interface__ object is
    wrapped without a copy) or on ``'cpu'`` (a NumPy array)."""
    return cp.asarray(_as_cai(array)) if device == "cuda" else cp.asnumpy(_as_cai(array))


def build_info():
    """The CUDA build: versions (runtime, driver, cuBLAS), architectures, the device."""
    info = dict(_core.build_info())
    info["device"] = _core.device_name()
    return info


def get_num_threads():
    """The GPU has no thread pool to size: (1, 1), as the interface asks."""
    return _core.get_num_threads()


def set_num_threads(n):
    """Nothing to set on the GPU (checked like the CPU backend's)."""
    _core.set_num_threads(n)


def set_stream(stream):
    """Run the ops on ``stream`` (a CuPy or PyTorch stream, or its handle as an int)."""
    handle = getattr(stream, "ptr", None)
    if handle is None:
        handle = getattr(stream, "cuda_stream", stream)
    _core.set_stream(int(handle))


def synchronize():
    """Wait for the ops queued on the current stream."""
    _core.synchronize()


def bfloat16_status():
    """cuBLAS rounds float32 operands to bfloat16 on tensor cores (compute capability
    8.0 and newer, which this build's architectures start at)."""
    return True, "cuBLAS CUBLAS_COMPUTE_32F_FAST_16BF"


def get_matmul_precision():
    """This thread's operand precision of float32 products."""
    return _core.get_matmul_precision()


def set_matmul_precision(precision):
    """Set this thread's operand precision of float32 products."""
    _core.set_matmul_precision(precision)
