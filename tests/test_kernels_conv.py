"""im2col, col2im and pooling on every backend: against the NumPy twins (exact: the
kernels copy, or sum in the twins' fixed order), against direct definitions, as
adjoints and gradients (finite differences), thread-count independence, bad inputs."""

import re

import numpy as np
import pytest

from pymdbn import backend
from pymdbn.backend import reference as ref
from conftest import BACKENDS, DTYPES, TOL

# (n, H, W, C, kh, kw): C = 1 and C > 1, n = 1, 1x1 kernels, kernel == image,
# non-square images and kernels, a 1x1 image.
CONV_SHAPES = [
    (2, 6, 7, 1, 3, 3),
    (1, 5, 5, 3, 5, 5),
    (3, 4, 6, 2, 1, 1),
    (2, 9, 5, 4, 2, 4),
    (1, 1, 1, 1, 1, 1),
    (4, 12, 10, 3, 3, 2),
    (1, 7, 3, 2, 7, 1),
]

# (n, H, W, C, size): dropped borders (H % size, W % size != 0), size 1, size == image.
POOL_SHAPES = [
    (2, 6, 6, 1, 2),
    (1, 7, 5, 3, 2),
    (3, 8, 9, 2, 3),
    (2, 4, 4, 2, 1),
    (1, 5, 5, 4, 5),
    (2, 3, 10, 1, 3),
]

MODES = ["max", "avg"]


@pytest.fixture(params=BACKENDS)
def kern(request):
    return backend.get(request.param)


def _images(rng, n, h, w, c, dtype):
    return rng.standard_normal((n, h * w * c)).astype(dtype)


def _pool_direct(x, shape, p, mode):
    """Pooling by reshaping the cropped images into windows (NumPy's max and mean)."""
    h, w, c = shape
    ho, wo = h // p, w // p
    win = x.reshape(-1, h, w, c)[:, :ho * p, :wo * p].reshape(-1, ho, p, wo, p, c)
    out = win.max(axis=(2, 4)) if mode == "max" else win.mean(axis=(2, 4))
    return out.reshape(len(x), ho * wo * c)


# --- im2col / col2im ----------------------------------------------------------------------

def test_im2col_twin_is_the_layout_of_pymdbn_layers(rng):
    n, h, w, c, kh, kw = 2, 5, 6, 3, 3, 2
    x = _images(rng, n, h, w, c, np.float64)
    cols = ref.im2col(x, (h, w, c), (kh, kw))
    ho, wo = h - kh + 1, w - kw + 1
    assert cols.shape == (n * ho * wo, kh * kw * c)
    for i, oy, ox, dy, dx, ch in np.ndindex(n, ho, wo, kh, kw, c):
        assert cols[(i * ho + oy) * wo + ox, (dy * kw + dx) * c + ch] == \
            x[i, ((oy + dy) * w + ox + dx) * c + ch]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h,w,c,kh,kw", CONV_SHAPES)
def test_im2col_col2im_equal_twins(kern, rng, dtype, n, h, w, c, kh, kw):
    x = _images(rng, n, h, w, c, dtype)
    cols = kern.im2col(x, (h, w, c), (kh, kw))
    want = ref.im2col(x, (h, w, c), (kh, kw))
    assert cols.dtype == dtype and cols.shape == want.shape
    np.testing.assert_array_equal(cols, want)  # a copy: exact
    g = rng.standard_normal(want.shape).astype(dtype)
    back = kern.col2im(g, (h, w, c), (kh, kw))
    assert back.dtype == dtype and back.shape == x.shape
    # The same sums in the same (dy, dx) order: exact in float32 too.
    np.testing.assert_array_equal(back, ref.col2im(g, (h, w, c), (kh, kw)))


def test_col2im_of_ones_counts_the_copies(kern):
    h, w, kh, kw = 4, 5, 2, 3
    cols = np.ones(((h - kh + 1) * (w - kw + 1), kh * kw), np.float64)
    counts = kern.col2im(cols, (h, w, 1), (kh, kw)).reshape(h, w)
    rows = np.minimum.reduce([np.arange(h) + 1, np.full(h, kh), h - np.arange(h),
                              np.full(h, h - kh + 1)])
    cols_ = np.minimum.reduce([np.arange(w) + 1, np.full(w, kw), w - np.arange(w),
                               np.full(w, w - kw + 1)])
    np.testing.assert_array_equal(counts, np.outer(rows, cols_))


@pytest.mark.parametrize("n,h,w,c,kh,kw", CONV_SHAPES)
def test_col2im_is_the_adjoint_of_im2col(kern, rng, n, h, w, c, kh, kw):
    # <im2col(x), g> == <x, col2im(g)>: float64 sums of the same products in other orders.
    x = _images(rng, n, h, w, c, np.float64)
    cols = kern.im2col(x, (h, w, c), (kh, kw))
    g = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, g), np.vdot(x, kern.col2im(g, (h, w, c), (kh, kw))),
                               **TOL[np.float64])


def test_col2im_is_the_gradient_of_im2col(kern, rng):
    # f(x) = <im2col(x), g> is linear: central differences are exact up to rounding.
    shape, kernel = (4, 5, 2), (2, 3)
    x = _images(rng, 2, *shape, np.float64)
    g = rng.standard_normal(ref.im2col(x, shape, kernel).shape)
    grad = kern.col2im(g, shape, kernel)
    eps, numeric = 1e-6, np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric[idx] = (np.vdot(kern.im2col(xp, shape, kernel), g)
                        - np.vdot(kern.im2col(xm, shape, kernel), g)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


# --- pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,h,w,c,p", POOL_SHAPES)
def test_pool_equals_twin_and_direct_pooling(kern, rng, dtype, mode, n, h, w, c, p):
    x = _images(rng, n, h, w, c, dtype)
    y = kern.pool_forward(x, (h, w, c), p, mode)
    assert y.dtype == dtype and y.shape == (n, (h // p) * (w // p) * c)
    np.testing.assert_array_equal(y, ref.pool_forward(x, (h, w, c), p, mode))
    # NumPy's mean sums in another order (pairwise): the kernel tolerance in avg mode.
    direct = _pool_direct(x, (h, w, c), p, mode)
    if mode == "max":
        np.testing.assert_array_equal(y, direct)
    else:
        np.testing.assert_allclose(y, direct, **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = kern.pool_backward(g, x, (h, w, c), p, mode)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_array_equal(gx, ref.pool_backward(g, x, (h, w, c), p, mode))
    # The dropped border gets no gradient.
    img = gx.reshape(n, h, w, c)
    assert not img[:, (h // p) * p:].any() and not img[:, :, (w // p) * p:].any()
    # Each window's gradient goes to one element (max) or is spread evenly (avg).
    sums = _pool_direct(gx, (h, w, c), p, "avg") * (p * p)
    np.testing.assert_allclose(sums, g, **TOL[dtype])


@pytest.mark.parametrize("mode", MODES)
def test_pool_backward_is_the_gradient_of_pool_forward(kern, rng, mode):
    shape, p = (5, 7, 2), 2
    x = _images(rng, 2, *shape, np.float64)  # distinct values: no argmax moves by eps
    g = rng.standard_normal((2, 2 * 3 * 2))
    grad = kern.pool_backward(g, x, shape, p, mode)
    eps, numeric = 1e-6, np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric[idx] = (np.vdot(kern.pool_forward(xp, shape, p, mode), g)
                        - np.vdot(kern.pool_forward(xm, shape, p, mode), g)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_and_nans_go_to_the_first_element(kern, dtype):
    # One 2x2 window per image (C = 1), row-major (0, 0), (0, 1), (1, 0), (1, 1).
    nan = np.nan
    windows = np.array([
        [1.0, 1.0, 1.0, 1.0],   # all tied: the first
        [0.0, 3.0, 3.0, 2.0],   # tied maximum: the earlier one
        [-1.0, -2.0, -1.0, -1.0],
        [nan, 5.0, 6.0, 7.0],   # a first NaN wins: nothing compares greater
        [1.0, nan, 2.0, 0.0],   # a later NaN never does
    ], dtype=dtype)
    first = np.array([0, 1, 0, 0, 2])
    y = kern.pool_forward(windows, (2, 2, 1), 2, "max")
    np.testing.assert_array_equal(y[:, 0], [1.0, 3.0, -1.0, nan, 2.0])
    g = np.arange(1, 6, dtype=dtype).reshape(5, 1)
    gx = kern.pool_backward(g, windows, (2, 2, 1), 2, "max")
    want = np.zeros_like(windows)
    want[np.arange(5), first] = g[:, 0]
    np.testing.assert_array_equal(gx, want)
    np.testing.assert_array_equal(gx, ref.pool_backward(g, windows, (2, 2, 1), 2, "max"))
    # Gradients pass to the maximum bit for bit (-0, infinities, NaN), +0 elsewhere.
    g = np.array([[-0.0], [np.inf], [-np.inf], [nan], [-1e-300 if dtype == "float64" else -1e-40]],
                 dtype=dtype)
    gx = kern.pool_backward(g, windows, (2, 2, 1), 2, "max")
    want = np.zeros_like(windows)
    want[np.arange(5), first] = g[:, 0]
    uint = f"u{windows.itemsize}"
    np.testing.assert_array_equal(gx.view(uint), want.view(uint))
    np.testing.assert_array_equal(gx.view(uint), ref.pool_backward(g, windows, (2, 2, 1), 2,
                                                                   "max").view(uint))


# --- threads ------------------------------------------------------------------------------

def test_cpu_results_do_not_depend_on_the_thread_count(rng):
    cpu = pytest.importorskip("pymdbn.backend._cpu")
    before = cpu.get_num_threads()[0]
    # Well above the kernels' parallel threshold (2^15 elements), odd row counts.
    shape, kernel, p = (21, 19, 8), (5, 3), 2
    x = _images(rng, 13, *shape, np.float32)
    cols_g = rng.standard_normal(ref.im2col(x, shape, kernel).shape).astype(np.float32)
    y = ref.pool_forward(x, shape, p, "max")
    g = rng.standard_normal(y.shape).astype(np.float32)

    def run():
        out = [cpu.im2col(x, shape, kernel), cpu.col2im(cols_g, shape, kernel)]
        for mode in MODES:
            out += [cpu.pool_forward(x, shape, p, mode), cpu.pool_backward(g, x, shape, p, mode)]
        return out

    try:
        cpu.set_num_threads(1)
        one = run()
        cpu.set_num_threads(3)
        three = run()
    finally:
        cpu.set_num_threads(before)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


# --- bad input ----------------------------------------------------------------------------

X8 = np.zeros((2, 8))  # two 2x2x2 images

BAD = [
    ("im2col", lambda k: k.im2col(np.zeros((2, 10)), (2, 2, 2), (1, 1)),
     "x has 10 columns, expected H*W*C = 8 for shape (2, 2, 2)"),
    ("im2col", lambda k: k.im2col(X8, (2, 2, 2), (3, 1)),
     "a 3x1 kernel does not fit a 2x2 image"),
    ("im2col", lambda k: k.im2col(X8, (2, 2, 2), (1, 0)),
     "kernel must be two positive ints (kh, kw), got (1, 0)"),
    ("im2col", lambda k: k.im2col(X8, (2, 4), (1, 1)),
     "shape must be three positive ints (H, W, C), got (2, 4)"),
    ("col2im", lambda k: k.col2im(np.zeros((3, 2)), (2, 2, 2), (1, 1)),
     "cols has 3 rows, not a multiple of Ho*Wo = 4"),
    ("col2im", lambda k: k.col2im(np.zeros((4, 3)), (2, 2, 2), (1, 1)),
     "cols has 3 columns, expected kh*kw*C = 2"),
    ("col2im", lambda k: k.col2im(np.zeros((1, 8)), (2, 2, 2), (2, 3)),
     "a 2x3 kernel does not fit a 2x2 image"),
    ("pool_forward", lambda k: k.pool_forward(X8, (2, 2, 2), 0, "max"),
     "pool size must be >= 1, got 0"),
    ("pool_forward", lambda k: k.pool_forward(X8, (2, 2, 2), 3, "max"),
     "a 3x3 pool does not fit a 2x2 image"),
    ("pool_forward", lambda k: k.pool_forward(X8, (2, 2, 2), 2, "sum"),
     "pool mode must be 'max' or 'avg', got 'sum'"),
    ("pool_forward", lambda k: k.pool_forward(np.zeros((2, 9)), (2, 2, 2), 2, "max"),
     "x has 9 columns, expected H*W*C = 8 for shape (2, 2, 2)"),
    ("pool_backward", lambda k: k.pool_backward(np.zeros((2, 3)), X8, (2, 2, 2), 2, "max"),
     "grad_y has shape (2, 3), expected (n, Ho*Wo*C) = (2, 2)"),
    ("pool_backward", lambda k: k.pool_backward(np.zeros((1, 2)), X8, (2, 2, 2), 2, "avg"),
     "grad_y has shape (1, 2), expected (n, Ho*Wo*C) = (2, 2)"),
    ("pool_backward", lambda k: k.pool_backward(np.zeros((2, 2)), X8, (2, 2, 2), 2, "mean"),
     "pool mode must be 'max' or 'avg', got 'mean'"),
]


@pytest.mark.parametrize("call,message", [(c, m) for _, c, m in BAD],
                         ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(BAD)])
def test_bad_input_raises_a_clear_value_error(kern, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(kern)
