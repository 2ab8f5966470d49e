"""Matrix products that ignore floating-point flags raised inside BLAS."""

import numpy as np


def matmul(a, b):
    """``a @ b`` without NumPy's floating-point warnings.

    Some OpenBLAS kernels set the invalid/overflow flags from vector lanes they compute and
    then discard, so NumPy warns about finite products (numpy/numpy#24067, #28967); under
    ``-W error`` that turns a correct result into an exception on some CPUs only. A NaN or
    inf that reaches the result is still there for the caller's checks to see.
    """
    with np.errstate(all="ignore"):
        return np.matmul(a, b)
