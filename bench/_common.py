"""Shared helpers for the pymdbn benchmarks: data, timing, machine description."""

import datetime
import json
import os
import platform
import time

import numpy as np

OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# The data recipe of every CD benchmark, kept in the package (pymdbn bench runs without
# this folder).
from pymdbn.benchmark import binary_data  # noqa: E402,F401


def gaussian_data(n, v, seed=0):
    """Standard normal float32 data."""
    return np.random.default_rng(seed).standard_normal((n, v), dtype=np.float32)


def best_of(fn, repeat=3, warmup=1, setup=None):
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times; return all timings.
    ``setup`` (untimed) runs before each call, e.g. to restore a model's state."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info():
    import sklearn
    import scipy

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "openblas_env": {k: os.environ.get(k) for k in OPENBLAS_ENV},
    }


def emit_json(record, path=None):
    """Print the record as one line starting with ``JSON `` and write it to ``path``."""
    print("JSON " + json.dumps(record))
    if path:
        with open(path, "w") as f:
            json.dump(record, f, indent=2)
