"""The CUDA backend, seen from Python: is it here, and on which device.

The backend is probed once, on the first question (the build's ``pymdbn._cuda``, a
visible device, CuPy); importing this module costs nothing. Without it everything runs
on the CPU, and :func:`pymdbn.show_config` says why.

Examples
--------
>>> import pymdbn
>>> pymdbn.cuda.is_available() in (True, False)
True
"""

from pymdbn import backend

__all__ = ["is_available", "unavailable_reason", "device_name", "synchronize"]


def is_available():
    """Whether the CUDA backend loads here: built, a device visible, CuPy importable."""
    return backend.unavailable_reason("cuda") is None


def unavailable_reason():
    """Why the CUDA backend is not available (None when it is)."""
    return backend.unavailable_reason("cuda")


def _module():
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return backend.get("cuda")


def device_name():
    """The current device, e.g. ``'NVIDIA H200 (sm_90, 139 GiB)'``."""
    return _module().build_info()["device"]


def synchronize():
    """Wait for the ops queued on the CUDA backend's stream."""
    _module().synchronize()
