"""Build and runtime configuration of the compiled core."""

import json

from pymdbn._loader import _core

__all__ = ["show_config", "set_num_threads", "get_num_threads"]


def get_num_threads():
    """Threads of pymdbn's OpenMP kernels and of its OpenBLAS, as a dict.

    OpenBLAS itself runs single-threaded: pymdbn splits each GEMM across its OpenMP
    threads, so a single thread pool serves both the GEMMs and the element-wise loops.
    """
    omp, blas = _core.get_num_threads()
    return {"openmp": int(omp), "blas": int(blas)}


def set_num_threads(n):
    """Set the threads of pymdbn's kernels (GEMMs included), like OMP_NUM_THREADS.

    Results do not depend on it: random draws are counter-based and reductions are
    summed in a fixed order.
    """
    _core.set_num_threads(int(n))


def show_config(mode="stdout"):
    """Describe the build and runtime backend, as ``numpy.show_config`` does.

    Parameters
    ----------
    mode : {'stdout', 'dicts'}, default='stdout'
        ``'stdout'`` prints the configuration as JSON and returns None;
        ``'dicts'`` returns it and prints nothing.

    Returns
    -------
    dict or None
        With ``mode='dicts'``: ``version``, ``compiler``, ``openmp`` (spec date),
        ``openmp_threads``, ``blas``, ``blas_config``, ``blas_threads`` and ``cuda``
        (whether a CUDA backend is built and a device is usable).
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    info = dict(_core.build_info())
    threads = get_num_threads()
    info["openmp_threads"] = threads["openmp"]
    info["blas_threads"] = threads["blas"]
    if mode == "dicts":
        return info
    print(json.dumps(info, indent=2))
    return None
