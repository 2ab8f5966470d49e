"""Matrix products that ignore floating-point flags raised inside BLAS, in float32 or
with bfloat16 operands."""

import threading

import numpy as np

_state = threading.local()


def round_bfloat16(x):
    """float32 ``x`` rounded to the nearest bfloat16 (ties to even), as float32.

    bfloat16 is float32's upper 16 bits, so this is the bit pattern
    ``(u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000``; NaN stays NaN, and denormals become
    zeros of their sign, as the x86 conversion instruction (VCVTNEPS2BF16) makes them.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
         & np.uint32(0xFFFF0000))
    denormal = (u & np.uint32(0x7F800000)) == 0
    r = np.where(denormal, u & np.uint32(0x80000000), r)
    return np.where(np.isnan(x), x, r.view(np.float32))


def get_precision():
    """This thread's operand precision of float32 products: 'float32' or 'bfloat16'."""
    return getattr(_state, "precision", "float32")


def set_precision(precision):
    """Set this thread's operand precision of float32 products."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    _state.precision = precision


def matmul(a, b):
    """``a @ b`` without NumPy's floating-point warnings.

    Some OpenBLAS kernels set the invalid/overflow flags from vector lanes they compute and
    then discard, so NumPy warns about finite products (numpy/numpy#24067, #28967); under
    ``-W error`` that turns a correct result into an exception on some CPUs only. A NaN or
    inf that reaches the result is still there for the caller's checks to see.

    With the thread's precision at 'bfloat16' (:func:`set_precision`), the float32
    operands of a matrix-matrix product of more than one row (the kernels' GEMMs;
    matrix-vector products and products of one row stay float32, as in the kernels: they
    are bound by reading ``b``, which rounding would read once more) are first rounded to
    bfloat16 (:func:`round_bfloat16`): products of two bfloat16 values are exact in
    float32, so only the float32 summation order differs from a bfloat16 GEMM's.
    """
    if get_precision() == "bfloat16":
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == b.ndim == 2 and a.shape[0] > 1 and a.dtype == b.dtype == np.float32:
            a, b = round_bfloat16(a), round_bfloat16(b)
    with np.errstate(all="ignore"):
        return np.matmul(a, b)
