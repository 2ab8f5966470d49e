"""Build and runtime configuration of the kernels' backend."""

import json
import os

from pymdbn import backend

__all__ = ["show_config", "set_num_threads", "get_num_threads"]


def get_num_threads():
    """Threads of pymdbn's OpenMP kernels and of its OpenBLAS, as a dict.

    OpenBLAS itself runs single-threaded: pymdbn splits each GEMM across its OpenMP
    threads, so a single thread pool serves both the GEMMs and the element-wise loops.
    """
    omp, blas = backend.get(backend.host_backend()).get_num_threads()
    return {"openmp": int(omp), "blas": int(blas)}


def set_num_threads(n):
    """Set the threads of pymdbn's kernels (GEMMs included), like OMP_NUM_THREADS.

    Results do not depend on it: random draws are counter-based and reductions are
    summed in a fixed order.
    """
    backend.get(backend.host_backend()).set_num_threads(int(n))


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
        ``openmp_threads``, ``blas``, ``blas_config``, ``blas_threads``, ``cuda``
        (whether the CUDA backend is usable here), ``cuda_info`` (its build and device
        when it is, else ``cuda_unavailable``: why not), ``backend`` (the
        backend host arrays run on, see :mod:`pymdbn.backend`), ``backend_source``
        (``'PYMDBN_BACKEND'`` when the environment chose it, else ``'default'``),
        ``backends`` (those that load here), ``bfloat16`` (whether ``dtype='bfloat16'``
        gets bfloat16 products on the host backend) and ``bfloat16_info`` (the library and
        CPU feature, or why not). ``onednn_compiled``: the build can load oneDNN.
        ``array_pool`` (whether training and explaining loops reuse their large
        temporaries, :func:`pymdbn.backend.array_pool`) and ``array_pool_info`` (its cap,
        or why not).
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    name = backend.host_backend()
    info = dict(backend.get("cpu").build_info()) if "cpu" in backend.available() else {}
    info.update(backend=name, backends=backend.available(),
                backend_source=backend.ENV_VAR if os.environ.get(backend.ENV_VAR) else "default")
    reason = backend.unavailable_reason("cuda")
    info["cuda"] = reason is None
    if reason is None:
        info["cuda_info"] = backend.get("cuda").build_info()
    else:
        info["cuda_unavailable"] = reason
    info["bfloat16"], info["bfloat16_info"] = backend.bfloat16_status()
    info["array_pool"], info["array_pool_info"] = backend.array_pool_status()
    threads = get_num_threads()
    info["openmp_threads"] = threads["openmp"]
    info["blas_threads"] = threads["blas"]
    if mode == "dicts":
        return info
    print(json.dumps(info, indent=2))
    return None
