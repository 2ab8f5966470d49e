"""The backend seam: the one place that decides which kernels compute an op.

Every numerical op of the package (the clipped-sigmoid affine maps, the Gibbs
half-steps, the CD epoch, the dense forward/backward passes, the optimiser updates,
the LRP rules, standardisation) is reached through :data:`ops`, which forwards each
call to the backend of the arrays' device. Backends share one signature per op:

``'cpu'``
    The compiled C++/OpenMP kernels (``pymdbn._core``), the default.
``'numpy'``
    The readable NumPy twins (:mod:`pymdbn.backend.reference`) behind the same
    signatures: the specification the kernels are tested against, and a way to run
    any op, or the whole package, without the compiled core.
``'cuda'``
    The CUDA kernels (``pymdbn._cuda``, in CUDA builds) for arrays that expose
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors); it loads where the
    module is built, a GPU is visible and CuPy imports (:func:`pymdbn.cuda.is_available`).

The backend for host arrays is chosen once, on first use: the ``PYMDBN_BACKEND``
environment variable when set (``cpu`` or ``numpy``), otherwise ``'cpu'``.
:func:`pymdbn.show_config` reports the choice. A new backend (CUDA, say) is one entry
in :data:`BACKENDS` and one module that defines :data:`OPS`; see docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings

__all__ = ["BACKENDS", "DTYPES", "OPS", "DEVICES", "PRECISIONS", "ops", "get", "available",
           "host_backend", "device_of", "unavailable_reason", "check_device", "to_device",
           "namespace", "DeviceUnavailableError", "matmul_precision", "bfloat16_status",
           "BFloat16FallbackWarning", "storage_dtype", "precision_of", "array_pool",
           "array_pool_status"]

#: The devices estimators compute on (their ``device`` parameter).
DEVICES = ("cpu", "cuda")

#: Backend name -> (module defining the ops, the device whose arrays it computes on).
BACKENDS = {
    "cpu": ("pymdbn.backend._cpu", "cpu"),
    "numpy": ("pymdbn.backend._numpy", "cpu"),
    "cuda": ("pymdbn.backend._cuda", "cuda"),
}

#: The floating dtypes of the kernels (the C++ list is PYMDBN_FOR_EACH_FLOAT in ops.h).
DTYPES = ("float32", "float64")

#: The ops every backend defines, with the compiled core's signatures.
OPS = (
    "affine", "affine_sigmoid", "sample_bernoulli", "sample_gaussian", "random_bits",
    "gibbs_hidden", "gibbs_visible", "cd_epoch", "cd_gradient", "cd_apply", "free_energy",
    "ais_log_weights",
    "dense_forward", "dense_backward", "softmax_cross_entropy", "sgd_momentum_update",
    "adam_update", "lrp_dense", "standardize",
    "im2col", "col2im", "pool_forward", "pool_backward",
)

ENV_VAR = "PYMDBN_BACKEND"
POOL_ENV_VAR = "PYMDBN_ARRAY_POOL"

#: Operand precisions of float32 matrix products (:func:`matmul_precision`).
PRECISIONS = ("float32", "bfloat16")

_loaded = {}
_failed = {}
_host = None


def get(name):
    """The backend module ``name`` (``'cpu'`` or ``'numpy'``), imported on first use.

    Raises
    ------
    ValueError
        For a name that is not in :data:`BACKENDS`.
    ImportError
        When the backend cannot be loaded here (for ``'cpu'``: the compiled core is
        missing, with the reason and the fix).
    """
    try:
        return _loaded[name]
    except KeyError:
        pass
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    if name in _failed:  # probed once: a backend that did not load is not retried
        raise ImportError(_failed[name])
    try:
        module = importlib.import_module(BACKENDS[name][0])
    except ImportError as exc:
        _failed[name] = str(exc)
        raise
    _loaded[name] = module
    return module


def unavailable_reason(name):
    """Why backend ``name`` does not load here, or None when it does."""
    try:
        get(name)
    except ImportError as exc:
        return str(exc)
    return None


def available():
    """Names of the backends that load here, in :data:`BACKENDS` order."""
    names = []
    for name in BACKENDS:
        try:
            get(name)
        except ImportError:
            continue
        names.append(name)
    return names


def host_backend():
    """Name of the backend for host (NumPy) arrays, chosen once per process."""
    global _host
    if _host is None:
        name = os.environ.get(ENV_VAR, "").strip().lower() or "cpu"
        if name not in BACKENDS or BACKENDS[name][1] != "cpu":
            hosts = sorted(n for n, (_, dev) in BACKENDS.items() if dev == "cpu")
            raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} names no backend for host "
                             f"arrays; choose one of {hosts}")
        get(name)
        _host = name
    return _host


_DLPACK_CUDA = 2  # kDLCUDA in DLPack's DLDeviceType


def device_of(array):
    """The device an array lives on: ``'cuda'`` for objects exposing
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors, Numba) or DLPack on a
    CUDA device (JAX, ...), else ``'cpu'``."""
    kind = type(array)
    if hasattr(kind, "__cuda_array_interface__"):
        return "cuda"
    if hasattr(kind, "__dlpack_device__") and not hasattr(kind, "__array_interface__"):
        try:
            return "cuda" if array.__dlpack_device__()[0] == _DLPACK_CUDA else "cpu"
        except (TypeError, AttributeError, IndexError):
            return "cpu"
    return "cpu"


class DeviceUnavailableError(RuntimeError):
    """A device was asked for (``device='cuda'``) that this build or machine lacks."""


def check_device(device):
    """``device`` if ops can run there; :class:`DeviceUnavailableError` naming the reason
    if it cannot, ValueError for a name that is no device."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device != "cpu":
        reason = unavailable_reason(_backend_for(device))
        if reason is not None:
            raise DeviceUnavailableError(f"device={device!r} is not available here: {reason}")
    return device


def to_device(value, device):
    """``value`` with its arrays on ``device``: arrays, and dicts, lists and tuples of
    them, converted (a copy only where the device changes); anything else as it is."""
    # Plain containers only: a dict subclass may be an array (scipy's dok_array).
    if type(value) is dict:
        return {k: to_device(v, device) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(to_device(v, device) for v in value)
    if not hasattr(value, "__array__") and not hasattr(value, "__cuda_array_interface__"):
        return value
    here = device_of(value)
    if here == device:
        return value
    # The non-host side's backend converts either way.
    return get(_backend_for(device if device != "cpu" else here)).to_device(value, device)


def namespace(array):
    """The array module of ``array``'s device: NumPy, or CuPy for CUDA arrays."""
    device = device_of(array)
    if device == "cpu":
        import numpy

        return numpy
    return get(_backend_for(device)).xp


def _backend_for(device):
    """The backend of a non-host device (one per device)."""
    return next(n for n, (_, dev) in BACKENDS.items() if dev == device)


class _Ops:
    """``ops.<name>(array, ...)`` runs op ``name`` on the backend of ``array``'s device.

    Each op's dispatcher is built on first access and then cached as an attribute, so a
    call costs one device test on top of the kernel's own binding.
    """

    def __getattr__(self, name):
        if name.startswith("_") or name not in OPS:
            raise AttributeError(f"pymdbn.backend.ops has no op {name!r}")
        by_device = {"cpu": getattr(get(host_backend()), name)}

        def call(array, *args, **kwargs):
            device = device_of(array)
            try:
                fn = by_device[device]
            except KeyError:
                try:
                    fn = by_device[device] = getattr(get(_backend_for(device)), name)
                except ImportError as exc:
                    raise TypeError(f"{name}: no backend computes on {device!r} arrays here "
                                    f"({exc}; backends here: {available()})") from None
            return fn(array, *args, **kwargs)

        call.__name__ = call.__qualname__ = name
        self.__dict__[name] = call
        return call

    def __dir__(self):
        return list(OPS)


ops = _Ops()


class BFloat16FallbackWarning(UserWarning):
    """``dtype='bfloat16'`` was asked for where bfloat16 products are unavailable: the
    products run in float32 instead (the message says why)."""


_fallback_warned = set()


def storage_dtype(dtype):
    """The NumPy dtype of an estimator's arrays for its ``dtype`` parameter: float32 for
    ``'bfloat16'`` (float32 master weights and updates), else ``numpy.dtype(dtype)``."""
    import numpy

    return numpy.dtype(numpy.float32 if dtype == "bfloat16" else dtype)


def precision_of(dtype):
    """The product precision an estimator's ``dtype`` parameter asks for."""
    return "bfloat16" if dtype == "bfloat16" else "float32"


def bfloat16_status(device="cpu"):
    """``(available, detail)`` for bfloat16 products on ``device``'s backend: the library
    and CPU feature used when available, the reason when not."""
    check_device(device)
    name = host_backend() if device == "cpu" else _backend_for(device)
    return get(name).bfloat16_status()


@contextlib.contextmanager
def matmul_precision(precision, device="cpu"):
    """Run the float32 matrix products of ops called in this block, on this thread and
    ``device``, with operands in ``precision``.

    ``'bfloat16'`` rounds both operands of each float32 product to bfloat16 (to nearest
    even) and sums in float32; element-wise maths, float64 ops and the parameters stay
    as they are (float32 master weights). Where the backend cannot (no oneDNN, or a CPU
    without AVX512_BF16/AMX), the products stay float32 and a
    :class:`BFloat16FallbackWarning` says why, once per reason.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    name = host_backend() if device == "cpu" else _backend_for(device)
    module = get(name)
    if precision == "bfloat16":
        ok, detail = module.bfloat16_status()
        if not ok:
            if detail not in _fallback_warned:
                _fallback_warned.add(detail)
                warnings.warn(f"bfloat16 products are unavailable on {name!r} ({detail}); "
                              f"computing in float32", BFloat16FallbackWarning, stacklevel=3)
            precision = "float32"
    previous = module.get_matmul_precision()
    if previous == precision:
        yield
        return
    module.set_matmul_precision(precision)
    try:
        yield
    finally:
        module.set_matmul_precision(previous)


@contextlib.contextmanager
def array_pool():
    """Reuse the host array buffers of 1 MiB or more that the code in this block frees.

    Training and explaining loops allocate the same temporaries batch after batch. Each
    large one would otherwise be a fresh ``mmap`` whose pages the kernel faults in and
    zeroes on first touch: 14-19% of a convolutional epoch's CPU time (measured in
    bench/README.md). Inside the block, NumPy allocates through the compiled core's
    caching handler (NEP 49; this context only), which keeps freed buffers for the next
    request of the same size, up to 2 GiB or an eighth of the machine's memory; leaving
    the outermost block frees them. Arrays made here and kept stay valid. A no-op on the
    ``'numpy'`` backend, where NumPy's handler API is not the expected one, and with
    ``PYMDBN_ARRAY_POOL=0`` in the environment.
    """
    module = get(host_backend())
    enter = getattr(module, "pool_enter", None)
    if enter is None or _pool_turned_off():
        yield
        return
    previous = enter()
    try:
        yield
    finally:
        module.pool_leave(previous)


def _pool_turned_off():
    return os.environ.get(POOL_ENV_VAR, "").strip() == "0"


def array_pool_status():
    """``(on, detail)``: whether :func:`array_pool` pools here, and its cap or why not."""
    if _pool_turned_off():
        return False, f"turned off by {POOL_ENV_VAR}=0"
    name = host_backend()
    status = getattr(get(name), "pool_status", None)
    if status is None:
        return False, f"the {name!r} backend has no pool"
    return status()
