"""Does OpenBLAS's own threading give the same bits on 1, 2, 3 and 4 threads?

pymdbn keeps OpenBLAS single-threaded and cuts each product into tiles fixed by its shape
(``csrc/cpu/gemm.cpp``), so that a fit gives the same result whatever the thread count.
Letting OpenBLAS thread one call instead would share its packed panels between threads
(the tiles pack the shared operand once per tile), which is faster where the tiles' extra
packing matters. This script checks whether that alternative keeps results independent
of the thread count: one ``cblas_sgemm`` of the library pymdbn links (``scipy-openblas32``)
per shape of the CD epochs, the LRP and the convolutions, on 1-4 OpenBLAS threads, and
counts the elements that differ from the 1-thread result.

    python bench/openblas_threads.py                          # the kernel OpenBLAS picks
    OPENBLAS_CORETYPE=Haswell python bench/openblas_threads.py  # as the CI machines force

Prints one row per shape and a ``JSON`` record. Exit status 0 either way: it measures.
"""

import argparse
import ctypes
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit_json, machine_info  # noqa: E402

# (m, n, k, trans_a, trans_b): C = op(A) op(B), row-major.
SHAPES = [
    (256, 1024, 4096, False, True, "CD L: V0 W^T"),
    (256, 4096, 1024, False, False, "CD L: H0 W"),
    (1024, 4096, 512, True, False, "CD L: weight gradient [ph0; -phn]^T [v0; vs]"),
    (128, 512, 784, False, True, "CD S: V0 W^T"),
    (512, 784, 256, True, False, "CD S: weight gradient"),
    (1000, 512, 4096, False, False, "LRP: forward of 1000 patients"),
    (37, 91, 1000, False, False, "odd small"),
    (25, 32, 115200, True, False, "conv: layer-1 weight gradient"),
    (3000, 64, 800, False, False, "conv: layer-2 forward (im2col rows)"),
]
CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112


def openblas():
    import scipy_openblas32

    (path,) = glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas*.so*"))[:1]
    lib = ctypes.CDLL(path)
    lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    lib.scipy_openblas_get_config.restype = ctypes.c_char_p
    return lib


def sgemm(lib, ta, tb, a, b, m, n, k):
    c = np.zeros((m, n), np.float32)
    ptr = ctypes.c_void_p
    lib.scipy_cblas_sgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS if ta else CBLAS_NO_TRANS,
                          CBLAS_TRANS if tb else CBLAS_NO_TRANS, m, n, k, ctypes.c_float(1.0),
                          a.ctypes.data_as(ptr), a.shape[1], b.ctypes.data_as(ptr), b.shape[1],
                          ctypes.c_float(0.0), c.ctypes.data_as(ptr), n)
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    lib = openblas()
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k, ta, tb, what in SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        lib.scipy_openblas_set_num_threads(1)
        one = sgemm(lib, ta, tb, a, b, m, n, k)
        differ = {}
        for t in args.threads:
            lib.scipy_openblas_set_num_threads(t)
            differ[t] = int(np.count_nonzero(sgemm(lib, ta, tb, a, b, m, n, k) != one))
        rows.append({"m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb, "what": what,
                     "elements": m * n, "differ_from_1_thread": differ})
    core = lib.scipy_openblas_get_corename().decode()
    print(f"OpenBLAS {lib.scipy_openblas_get_config().decode()}, kernel {core}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print("elements of C that differ from the 1-thread result, per thread count")
    print(f"{'product':48} {'m x n x k':>20} " + " ".join(f"{t:>8}" for t in args.threads))
    for r in rows:
        print(f"{r['what']:48} {r['m']:>6}x{r['n']}x{r['k']:<7} "
              + " ".join(f"{r['differ_from_1_thread'][t]:>8}" for t in args.threads))
    shapes_differing = sum(any(r["differ_from_1_thread"].values()) for r in rows)
    print(f"{shapes_differing} of {len(rows)} products differ on some thread count")
    emit_json({"benchmark": "openblas_threads", "machine": machine_info(), "kernel": core,
               "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "rows": rows,
               "shapes_differing": shapes_differing}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
