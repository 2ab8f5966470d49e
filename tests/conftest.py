import numpy as np
import pytest

# Kernel vs NumPy twin: the kernels use an approximate exp for float32 (about 1 ulp)
# and OpenBLAS sums in another order, so results agree to a few float32 ulps.
TOL = {
    np.float32: dict(rtol=2e-5, atol=2e-6),
    np.float64: dict(rtol=1e-11, atol=1e-12),
}

DTYPES = [np.float32, np.float64]

# Shapes (rows, n_visible, n_hidden), odd sizes and size 1 included.
SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 4), (3, 13, 1), (17, 31, 9), (64, 100, 33), (129, 7, 65)]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_rbm(rng, n_visible, n_hidden, dtype, scale=0.5):
    w = (scale * rng.standard_normal((n_hidden, n_visible))).astype(dtype)
    bv = (0.3 * rng.standard_normal(n_visible)).astype(dtype)
    bh = (0.3 * rng.standard_normal(n_hidden)).astype(dtype)
    return w, bv, bh
