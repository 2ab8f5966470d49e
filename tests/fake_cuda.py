"""A stand-in CUDA backend on the CPU, for testing the estimators' device plumbing here.

Its "device arrays" are NumPy arrays of the subclass :class:`DeviceArray`, which exposes
``__cuda_array_interface__``, so :func:`pymdbn.backend.device_of` sends them to this
backend. Each op checks that every array argument is a device array (host index arrays
excepted, as in the real bindings), then runs the compiled CPU kernel on the same memory
and returns device arrays. A model fitted with ``device='cuda'`` on this backend must
therefore equal the CPU fit bit for bit, and any array that stays on the host where the
real GPU needs it on the device fails loudly. The real kernels are tested against the
twins by the kernel tests on a machine with a GPU.
"""

import numpy as np

from pymdbn import backend
from pymdbn.backend.hostcall import HOST_ARGS, host_adapter


class DeviceArray(np.ndarray):
    """A NumPy array that says it lives on the GPU."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                "data": (self.__array_interface__["data"][0], not self.flags.writeable),
                "strides": None if self.flags.c_contiguous else self.strides}


def _wrap(value):
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    return value


class _Namespace:
    """numpy, with array results as device arrays (what CuPy is to the real backend)."""

    def __getattr__(self, name):
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def call(*args, **kwargs):
            return _wrap(fn(*args, **kwargs))

        return call


xp = _Namespace()

def _op(name):
    kernel = getattr(backend.get("cpu"), name)

    def call(*args, **kwargs):
        host = HOST_ARGS.get(name, set())
        for i, a in enumerate((*args, *kwargs.values())):
            if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) and i not in host:
                raise TypeError(f"{name}: argument {i} is a host array on the CUDA backend")
        plain = [a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in args]
        kw = {k: v.view(np.ndarray) if isinstance(v, DeviceArray) else v
              for k, v in kwargs.items()}
        out = kernel(*plain, **kw)

        def back(value):  # an argument returned (overwrite_x) is that argument, as in CUDA
            same = [a for a, p in zip(args, plain) if p is value]
            return same[0] if same else _wrap(value)

        return tuple(map(back, out)) if isinstance(out, tuple) else back(out)

    call.__name__ = name
    return call


def to_device(array, device):
    if device == "cuda":
        return np.array(array, copy=True).view(DeviceArray)
    return np.array(array.view(np.ndarray) if isinstance(array, DeviceArray) else array,
                    copy=True)


def _upload(value, copy):
    if not (copy and isinstance(value, np.ndarray)):
        return value
    out = to_device(value, "cuda")  # the layout kept, as CuPy keeps it
    out.flags.writeable = value.flags.writeable
    return out


def _download(value):
    return to_device(value, "cpu") if isinstance(value, DeviceArray) else value


# The ops as the real backend's: host arrays go through pymdbn.backend.hostcall (the
# kernel tests' path), device arrays to the strict op.
globals().update({name: host_adapter(name, _op(name), _upload, _download)
                  for name in backend.OPS})


def build_info():
    return {"cuda": True, "device": "fake (tests/fake_cuda.py)"}


def get_num_threads():
    return 1, 1


def set_num_threads(n):
    pass


def synchronize():
    pass


def bfloat16_status():
    return backend.get("cpu").bfloat16_status()


def get_matmul_precision():
    return backend.get("cpu").get_matmul_precision()


def set_matmul_precision(precision):
    backend.get("cpu").set_matmul_precision(precision)
