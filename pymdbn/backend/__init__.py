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

The backend for host arrays is chosen once, on first use: the ``PYMDBN_BACKEND``
environment variable when set (``cpu`` or ``numpy``), otherwise ``'cpu'``.
:func:`pymdbn.show_config` reports the choice. A new backend (CUDA, say) is one entry
in :data:`BACKENDS` and one module that defines :data:`OPS`; see docs/architecture.md.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["BACKENDS", "DTYPES", "OPS", "ops", "get", "available", "host_backend",
           "device_of"]

#: Backend name -> (module defining the ops, the device whose arrays it computes on).
BACKENDS = {
    "cpu": ("pymdbn.backend._cpu", "cpu"),
    "numpy": ("pymdbn.backend._numpy", "cpu"),
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
)

ENV_VAR = "PYMDBN_BACKEND"

_loaded = {}
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
    module = importlib.import_module(BACKENDS[name][0])
    _loaded[name] = module
    return module


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


def device_of(array):
    """The device an array lives on: ``'cuda'`` for objects exposing
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors), else ``'cpu'``."""
    return "cuda" if hasattr(type(array), "__cuda_array_interface__") else "cpu"


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
                raise TypeError(f"{name}: no backend computes on {device!r} arrays in this "
                                f"build (backends here: {available()})") from None
            return fn(array, *args, **kwargs)

        call.__name__ = call.__qualname__ = name
        self.__dict__[name] = call
        return call

    def __dir__(self):
        return list(OPS)


ops = _Ops()
