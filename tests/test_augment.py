"""pymdbn.augment.ImageAugmenter: exact copies where the map is onto pixels, agreement
with an independent interpolation (scipy.ndimage), reproducibility, layouts, the draws'
statistics, validation."""

import numpy as np
import pytest
from scipy import ndimage, stats
from sklearn.base import clone

import pymdbn
from pymdbn import augment
from pymdbn.augment import ImageAugmenter

DTYPES = [np.float32, np.float64]


def images(n=6, H=9, W=7, C=None, dtype=np.float64, seed=0):
    shape = (n, H, W) if C is None else (n, H, W, C)
    return np.random.default_rng(seed).random(shape).astype(dtype)


def fixed(n, flips=(False, False), shifts=(0.0, 0.0), angle=0.0):
    """Maps for ImageAugmenter.warp: the same one for n images."""
    return {"flips": np.tile(np.array(flips, dtype=bool), (n, 1)),
            "shifts": np.tile(np.array(shifts, dtype=np.float64), (n, 1)),
            "angles": np.full(n, float(angle))}


def reference(x, params, fill="nearest", cval=0.0):
    """The documented map, F R(-a) (p - c - t) + c, evaluated by scipy.ndimage's linear
    interpolation, image by image."""
    n, H, W = x.shape
    c = np.array([(H - 1) / 2, (W - 1) / 2])
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    out = np.empty_like(x)
    mode = "nearest" if fill == "nearest" else "grid-constant"
    for i in range(n):
        a = np.radians(params["angles"][i])
        u = yy - c[0] - params["shifts"][i, 0] * H
        v = xx - c[1] - params["shifts"][i, 1] * W
        su, sv = np.cos(a) * u + np.sin(a) * v, -np.sin(a) * u + np.cos(a) * v
        f = np.where(params["flips"][i], -1.0, 1.0)
        coords = np.array([f[0] * su + c[0], f[1] * sv + c[1]])
        out[i] = ndimage.map_coordinates(x[i], coords, order=1, mode=mode, cval=cval)
    return out


# -- exact copies ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fill", ["nearest", "constant"])
@pytest.mark.parametrize("C", [None, 3])
def test_identity(dtype, fill, C):
    x = images(C=C, dtype=dtype)
    aug = ImageAugmenter(shift=0.0, flip="none", rotation=0.0, fill=fill, cval=5.0)
    y = aug(x, seed=3)
    assert y.dtype == dtype and y.shape == x.shape and y is not x
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flip, axes", [("horizontal", (2,)), ("vertical", (1,)),
                                        ("both", (1, 2))])
def test_flips_are_exact(dtype, flip, axes):
    x = images(n=40, dtype=dtype)
    aug = ImageAugmenter(shift=0.0, flip=flip, rotation=0.0)
    y = aug(x, seed=[7, 1])
    flips = aug.parameters(40, [7, 1])["flips"]
    if flip == "horizontal":
        assert not flips[:, 0].any()
    if flip == "vertical":
        assert not flips[:, 1].any()
    for i in range(40):
        want = x[i]
        for axis, bit in ((0, flips[i, 0]), (1, flips[i, 1])):
            if bit:
                want = np.flip(want, axis)
        np.testing.assert_array_equal(y[i], want)
    # Both outcomes occur in 40 images, for every flip allowed.
    for axis in axes:
        assert 0 < flips[:, axis - 1].sum() < 40


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dy, dx", [(2, 0), (0, -3), (-1, 4), (3, 3)])
def test_integer_shifts_are_exact(dtype, dy, dx):
    H, W = 10, 8
    x = images(n=3, H=H, W=W, dtype=dtype)
    p = fixed(3, shifts=(dy / H, dx / W))
    y = ImageAugmenter(fill="nearest").warp(x, p)
    # Content moves by (dy, dx): out[y, x] = in[clip(y - dy), clip(x - dx)].
    rows = np.clip(np.arange(H) - dy, 0, H - 1)
    cols = np.clip(np.arange(W) - dx, 0, W - 1)
    np.testing.assert_array_equal(y, x[:, rows][:, :, cols])
    y = ImageAugmenter(fill="constant", cval=-2.5).warp(x, p)
    inside = ((np.arange(H) - dy >= 0) & (np.arange(H) - dy < H))[:, None] \
        & ((np.arange(W) - dx >= 0) & (np.arange(W) - dx < W))[None, :]
    np.testing.assert_array_equal(y, np.where(inside, x[:, rows][:, :, cols], -2.5))


def test_rounded_integer_shift_is_exact():
    # 0.1 * 30 is 3.0000000000000004: the map's offset is snapped to the integer.
    x = images(n=2, H=30, W=30)
    y = ImageAugmenter().warp(x, fixed(2, shifts=(0.1, -0.1)))
    np.testing.assert_array_equal(y[:, 3:, :27], x[:, :27, 3:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [None, 2])
def test_quarter_turns_are_rot90(dtype, C):
    x = images(n=4, H=7, W=7, C=C, dtype=dtype)
    aug = ImageAugmenter(shift=0.0, flip="none", rotation=90.0)
    p = aug.parameters(4, 0)
    for angle, k in ((90.0, 1), (-90.0, -1), (180.0, 2), (-180.0, 2)):
        p["angles"][:] = angle
        np.testing.assert_array_equal(aug.warp(x, p), np.rot90(x, k, axes=(1, 2)))
    # 180 degrees is both flips.
    np.testing.assert_array_equal(aug.warp(x, fixed(4, angle=180.0)),
                                  aug.warp(x, fixed(4, flips=(True, True))))


def test_quarter_turn_of_non_square_image_interpolates_half_pixels():
    # A 90-degree turn of a 4 x 6 image about its centre lands between pixels on one axis;
    # it still matches the independent reference.
    x = images(n=2, H=4, W=6)
    p = fixed(2, angle=90.0)
    np.testing.assert_allclose(ImageAugmenter().warp(x, p), reference(x, p), atol=1e-12)


def test_rotation_keeps_a_symmetric_blob():
    H = W = 33
    yy, xx = np.mgrid[:H, :W] - 16.0
    blob = np.exp(-(yy ** 2 + xx ** 2) / (2 * 4.0 ** 2))[None]
    aug = ImageAugmenter(shift=0.0, flip="none", rotation=10.0)
    for angle in (3.0, -7.5, 10.0):
        y = aug.warp(blob, fixed(1, angle=angle))
        # Linear interpolation errs by at most h^2 max|f''| / 8 per axis, h = 1 pixel and
        # max|f''| = 1 / sigma^2 = 1/16 here: 2/128 in all.
        np.testing.assert_allclose(y, blob, rtol=0, atol=2 / 128)
        # The mass stays, and the centroid at the centre (the map is odd about it).
        np.testing.assert_allclose(y.sum(), blob.sum(), rtol=5e-3)
        assert abs((y[0] * yy).sum() / y.sum()) < 1e-9
        assert abs((y[0] * xx).sum() / y.sum()) < 1e-9
    # A non-symmetric image does change.
    x = images(n=1, H=H, W=W)
    assert np.abs(aug.warp(x, fixed(1, angle=7.0)) - x).max() > 0.1


@pytest.mark.parametrize("fill, cval", [("nearest", 0.0), ("constant", 0.75)])
@pytest.mark.parametrize("flip", ["none", "both"])
def test_agrees_with_scipy_ndimage(fill, cval, flip):
    x = images(n=12, H=11, W=14)
    aug = ImageAugmenter(shift=0.3, flip=flip, rotation=60.0, fill=fill, cval=cval)
    p = aug.parameters(12, [1, 2, 3])
    y = aug(x, [1, 2, 3])
    np.testing.assert_allclose(y, reference(x, p, fill, cval), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(y, aug.warp(x, p))


def test_float32_close_to_float64():
    x = images(n=8, H=16, W=16)
    aug = ImageAugmenter(shift=0.2, flip="both", rotation=30.0)
    y32 = aug(x.astype(np.float32), 5)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, aug(x, 5), atol=1e-6)


def test_batch_equals_images_one_by_one():
    x = images(n=9, C=2)
    aug = ImageAugmenter(shift=0.25, flip="both", rotation=45.0, fill="constant", cval=1.0)
    p = aug.parameters(9, 11)
    y = aug.warp(x, p)
    for i in range(9):
        one = {k: v[i:i + 1] for k, v in p.items()}
        np.testing.assert_array_equal(y[i:i + 1], aug.warp(x[i:i + 1], one))


def test_blocks_do_not_change_the_result(monkeypatch):
    x = images(n=7, H=12, W=10, C=3)
    aug = ImageAugmenter(shift=0.2, rotation=20.0)
    want = aug(x, 4)
    for block in (1, 200, 1000):
        monkeypatch.setattr(augment, "_BLOCK", block)
        np.testing.assert_array_equal(aug(x, 4), want)


# -- reproducibility ---------------------------------------------------------------------

def test_same_seed_same_bits_other_seed_other_result():
    x = images(n=10, H=16, W=16, dtype=np.float32)
    aug = ImageAugmenter(shift=0.2, flip="both", rotation=20.0)
    a = aug(x, [3, 1, 4])
    np.testing.assert_array_equal(a, aug(x, [3, 1, 4]))
    np.testing.assert_array_equal(a, clone(aug)(x, (3, 1, 4)))
    np.testing.assert_array_equal(a, aug(x, np.array([3, 1, 4])))
    for other in ([3, 1, 5], [3, 1], 3, 4):
        assert not np.array_equal(a, aug(x, other))
    np.testing.assert_array_equal(aug(x, np.int64(9)), aug(x, 9))


def test_draw_order_and_prefix_stability():
    aug = ImageAugmenter(shift=0.3, flip="both", rotation=25.0)
    u = np.random.default_rng([5, 6]).random((4, 5))
    p = aug.parameters(4, [5, 6])
    np.testing.assert_array_equal(p["flips"], u[:, :2] < 0.5)
    np.testing.assert_array_equal(p["shifts"], 0.3 * (2 * u[:, 2:4] - 1))
    np.testing.assert_array_equal(p["angles"], 25.0 * (2 * u[:, 4] - 1))
    # A longer batch keeps the first images' maps.
    q = aug.parameters(50, [5, 6])
    for key in p:
        np.testing.assert_array_equal(q[key][:4], p[key])
    # Turning flips off leaves the other draws as they were.
    r = ImageAugmenter(shift=0.3, flip="none", rotation=25.0).parameters(4, [5, 6])
    assert not r["flips"].any()
    np.testing.assert_array_equal(r["shifts"], p["shifts"])
    np.testing.assert_array_equal(r["angles"], p["angles"])
    h = ImageAugmenter(flip="horizontal").parameters(4, [5, 6])["flips"]
    assert not h[:, 0].any()
    np.testing.assert_array_equal(h[:, 1], p["flips"][:, 1])


def test_sin_cos_polynomial():
    deg = np.linspace(-180, 180, 20001)
    s, c = augment._sin_cos_degrees(deg)
    np.testing.assert_allclose(s, np.sin(np.radians(deg)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(c, np.cos(np.radians(deg)), rtol=0, atol=1e-15)
    s, c = augment._sin_cos_degrees([0.0, 90.0, -90.0, 180.0, -180.0])
    np.testing.assert_array_equal(s, [0, 1, -1, 0, 0])
    np.testing.assert_array_equal(c, [1, 0, 0, -1, -1])


# -- layouts, dtypes, copies -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_and_flat_agree_with_grey_path(dtype):
    n, H, W, C = 5, 8, 6, 3
    x = images(n=n, H=H, W=W, C=C, dtype=dtype)
    aug = ImageAugmenter(shift=0.2, flip="both", rotation=30.0)
    y = aug(x, 2)
    assert y.shape == x.shape and y.dtype == dtype and y.flags.c_contiguous
    for c in range(C):
        np.testing.assert_array_equal(y[..., c], aug(np.ascontiguousarray(x[..., c]), 2))
    flat = x.reshape(n, H * W * C)
    yf = aug(flat, 2, shape=(H, W, C))
    assert yf.shape == flat.shape and yf.flags.c_contiguous
    np.testing.assert_array_equal(yf, y.reshape(n, -1))
    # Grey images: shape (H, W) or (H, W, 1), and the 3-D and 4-D batches agree.
    g = x[..., 0].copy()
    want = aug(g, 2)
    np.testing.assert_array_equal(aug(g.reshape(n, -1), 2, shape=(H, W)).reshape(g.shape), want)
    np.testing.assert_array_equal(aug(g.reshape(n, -1), 2, shape=[H, W, 1]).reshape(g.shape),
                                  want)
    np.testing.assert_array_equal(aug(g[..., None], 2)[..., 0], want)
    np.testing.assert_array_equal(aug(g, 2, shape=(H, W)), want)
    np.testing.assert_array_equal(aug(x, 2, shape=(H, W, C)), y)


def test_input_is_not_modified_and_may_be_read_only():
    x = images(n=4, H=10, W=10, dtype=np.float32)
    x.flags.writeable = False
    before = x.copy()
    for fill in ("nearest", "constant"):
        y = ImageAugmenter(shift=0.0, flip="none", rotation=0.0, fill=fill)(x, 0)
        assert not np.shares_memory(x, y) and y.flags.writeable
        ImageAugmenter(fill=fill)(x, 0)
    np.testing.assert_array_equal(x, before)


def test_non_contiguous_input():
    x = images(n=4, H=10, W=12)
    view = x[:, :, ::2]
    aug = ImageAugmenter(shift=0.2, rotation=15.0)
    np.testing.assert_array_equal(aug(view, 1), aug(np.ascontiguousarray(view), 1))


def test_empty_batch():
    aug = ImageAugmenter()
    y = aug(np.empty((0, 4, 5), np.float32), 0)
    assert y.shape == (0, 4, 5) and y.dtype == np.float32
    assert aug(np.empty((0, 12)), 0, shape=(2, 2, 3)).shape == (0, 12)
    assert aug.parameters(0, 0)["angles"].shape == (0,)


def test_device_arrays_stay_on_the_device(fake_cuda):
    # tests/fake_cuda.py: NumPy behind __cuda_array_interface__, as CuPy is to CUDA.
    x = images(n=5, H=9, W=9, C=2, dtype=np.float32)
    aug = ImageAugmenter(shift=0.2, flip="both", rotation=30.0, fill="constant", cval=0.5)
    y = aug(fake_cuda.to_device(x, "cuda"), [1, 2])
    assert isinstance(y, fake_cuda.DeviceArray)
    np.testing.assert_array_equal(np.asarray(y), aug(x, [1, 2]))


# -- statistics of the draws -------------------------------------------------------------

def test_draws_are_uniform_and_flips_fair():
    n = 4000
    aug = ImageAugmenter(shift=0.15, flip="both", rotation=12.0)
    p = aug.parameters(n, 2024)
    for column in (0, 1):
        shifts = p["shifts"][:, column]
        assert shifts.min() >= -0.15 and shifts.max() <= 0.15
        assert stats.kstest(shifts, "uniform", args=(-0.15, 0.3)).pvalue > 1e-3
    angles = p["angles"]
    assert angles.min() >= -12 and angles.max() <= 12
    assert stats.kstest(angles, "uniform", args=(-12.0, 24.0)).pvalue > 1e-3
    # Flips: each bit ~ Binomial(n, 1/2), within 4 sigma; the two bits independent.
    for column in (0, 1):
        assert abs(p["flips"][:, column].sum() - n / 2) < 4 * np.sqrt(n / 4)
    both = (p["flips"][:, 0] & p["flips"][:, 1]).sum()
    assert abs(both - n / 4) < 4 * np.sqrt(n * 3 / 16)
    # The row and column shifts are independent of each other.
    r = np.corrcoef(p["shifts"][:, 0], p["shifts"][:, 1])[0, 1]
    assert abs(r) < 4 / np.sqrt(n)


# -- scikit-learn conventions ------------------------------------------------------------

def test_sklearn_params_and_clone():
    aug = ImageAugmenter(shift=0.05, flip="both", rotation=5.0, fill="constant", cval=1.0)
    assert aug.get_params() == {"shift": 0.05, "flip": "both", "rotation": 5.0,
                                "fill": "constant", "cval": 1.0}
    twin = clone(aug)
    assert twin is not aug and twin.get_params() == aug.get_params()
    assert sorted(ImageAugmenter().get_params()) == ["cval", "fill", "flip", "rotation", "shift"]
    assert ImageAugmenter().get_params() == {"shift": 0.1, "flip": "horizontal",
                                             "rotation": 10.0, "fill": "nearest", "cval": 0.0}
    aug.set_params(rotation=0.0)
    assert aug.rotation == 0.0
    assert "ImageAugmenter(" in repr(aug)
    assert pymdbn.ImageAugmenter is ImageAugmenter
    # Bad values are stored as given and refused at use.
    bad = ImageAugmenter(shift=-1.0)
    assert bad.shift == -1.0
    with pytest.raises(ValueError):
        bad(images(), 0)


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("params, match", [
    (dict(shift=-0.1), "'shift' parameter of ImageAugmenter must be a float in the range "
                       r"\[0.0, 1.0\)"),
    (dict(shift=1.0), r"'shift' parameter .* range \[0.0, 1.0\)"),
    (dict(shift=True), "'shift' parameter"),
    (dict(shift="0.1"), "'shift' parameter"),
    (dict(rotation=-1.0), r"'rotation' parameter .* range \[0.0, 180.0\]"),
    (dict(rotation=180.5), r"'rotation' parameter .* range \[0.0, 180.0\]"),
    (dict(rotation=np.nan), "'rotation' parameter"),
    (dict(flip="diagonal"), "'flip' parameter .*'both'.*Got 'diagonal'"),
    (dict(flip=None), "'flip' parameter"),
    (dict(fill="reflect"), "'fill' parameter .*'constant'.*Got 'reflect'"),
    (dict(cval=np.nan), "'cval' parameter"),
    (dict(cval=np.inf), "'cval' parameter"),
    (dict(cval=-np.inf), "'cval' parameter"),
])
def test_bad_parameters(params, match):
    aug = ImageAugmenter(**params)
    x = images()
    for call in (lambda: aug(x, 0), lambda: aug.parameters(3, 0),
                 lambda: aug.warp(x, fixed(len(x)))):
        with pytest.raises(pymdbn._constraints.InvalidParameterError, match=match):
            call()


def test_edge_parameter_values_are_accepted():
    x = images()
    for params in (dict(shift=0.0), dict(shift=0.999), dict(rotation=0.0), dict(rotation=180),
                   dict(shift=0, rotation=45), dict(cval=-1e300)):
        assert ImageAugmenter(**params)(x, 0).shape == x.shape


@pytest.mark.parametrize("seed", [-1, [1, -2], [], 1.5, "3", None, True, [1, 2.0], [[1, 2]],
                                  np.random.default_rng(0)])
def test_bad_seeds(seed):
    aug = ImageAugmenter()
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        aug(images(), seed)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        aug.parameters(3, seed)


@pytest.mark.parametrize("x, shape, match", [
    (np.zeros(5), None, "images must be a batch of shape .* got ndim 1"),
    (np.zeros((2, 3, 4, 1, 1)), None, "got ndim 5"),
    (np.zeros((2, 12)), None, r"2-D batch of flattened images needs shape=\(H, W, C\)"),
    (np.zeros((2, 12)), (2, 2, 2), r"images have 12 columns, but shape \(2, 2, 2\) has 8 "
                                   "values per image"),
    (np.zeros((2, 12)), (3, 4, 0), r"shape must be \(H, W\) or \(H, W, C\) of positive ints"),
    (np.zeros((2, 12)), (12,), "shape must be"),
    (np.zeros((2, 12)), (3, 4, 1, 1), "shape must be"),
    (np.zeros((2, 12)), (3.0, 4), "shape must be"),
    (np.zeros((2, 12)), 12, "shape must be"),
    (np.zeros((2, 3, 4)), (4, 3), r"shape \(4, 3, 1\) does not match the images' shape "
                                  r"\(3, 4\)"),
    (np.zeros((2, 3, 4, 2)), (3, 4), "does not match"),
    (np.zeros((2, 0, 4)), None, "images must not be empty"),
])
def test_bad_images(x, shape, match):
    with pytest.raises(ValueError, match=match):
        ImageAugmenter()(x, 0, shape=shape)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16, np.complex128, bool])
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match="images must be float32 or float64, got dtype"):
        ImageAugmenter()(np.zeros((2, 3, 3), dtype=dtype), 0)


def test_list_input_is_float64():
    y = ImageAugmenter(shift=0.0, flip="none", rotation=0.0)([[[1.0, 2.0], [3.0, 4.0]]], 0)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[1.0, 2.0], [3.0, 4.0]]])


@pytest.mark.parametrize("n", [-1, 2.0, True, None])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        ImageAugmenter().parameters(n, 0)


def test_bad_warp_params():
    aug = ImageAugmenter()
    x = images(n=3)
    good = fixed(3)
    cases = [
        ({k: v for k, v in good.items() if k != "angles"}, "params must be a dict with"),
        (None, "params must be a dict with"),
        ({**good, "flips": good["flips"][:2]}, r"params\['flips'\] must have shape \(3, 2\) "
                                               r"for 3 images, got \(2, 2\)"),
        ({**good, "shifts": np.zeros(3)}, r"params\['shifts'\] must have shape \(3, 2\)"),
        ({**good, "angles": np.zeros((3, 1))}, r"params\['angles'\] must have shape \(3,\)"),
        ({**good, "flips": np.zeros((3, 2))}, r"params\['flips'\] must be bool"),
        ({**good, "angles": np.array([0.0, np.nan, 0.0])}, "must be finite"),
        ({**good, "shifts": np.full((3, 2), np.inf)}, "must be finite"),
    ]
    for params, match in cases:
        with pytest.raises(ValueError, match=match):
            aug.warp(x, params)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(augment, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
