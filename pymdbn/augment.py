"""Seeded, reproducible augmentation of image batches for training: :class:`ImageAugmenter`.

Images are warped by a random affine map per image (a flip, a rotation about the centre
and a shift), all of a batch at once: one inverse-mapping warp with bilinear
interpolation, gathers on the batch's array module (NumPy, or CuPy for CUDA arrays), no
Python loop over images. The random parameters are drawn on the host by NumPy from the
caller's seed, so a seed gives the same parameters everywhere.
"""

from __future__ import annotations

import numbers
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator

from pymdbn import backend
from pymdbn._constraints import Interval, StrOptions

__all__ = ["ImageAugmenter"]

_FLIPS = {"none": (False, False), "horizontal": (False, True), "vertical": (True, False),
          "both": (True, True)}  # -> (may flip rows, may flip columns)

# The per-image draws, in this order: 5 uniform doubles in [0, 1) per image.
_DRAWS = ("flip_vertical", "flip_horizontal", "shift_rows", "shift_cols", "angle")

# Offsets of the affine maps within this of an integer are made that integer, so that
# integer shifts are exact copies though ``shift * H`` is rounded (0.1 * 30 is
# 3.0000000000000004): it moves a sample by at most this many pixels.
_SNAP = 1e-9

# Values per block of images that the NumPy warp computes at once (its temporaries then
# stay in cache); the result does not depend on it.
_BLOCK = 1 << 15


def _sin_cos_degrees(degrees):
    """sin and cos of angles in degrees, by float64 adds and multiplies only.

    ``np.sin`` and ``np.cos`` may differ by an ulp between machines (NumPy picks SIMD
    implementations at run time); a polynomial in IEEE arithmetic does not. Quadrants
    are reduced exactly in degrees, so multiples of 90 degrees give exact 0 and +-1.
    """
    degrees = np.asarray(degrees, dtype=np.float64)
    quadrant = np.round(degrees / 90.0)
    x = (degrees - 90.0 * quadrant) * (np.pi / 180.0)  # |x| <= pi/4
    x2 = x * x
    # Taylor series to x^17 and x^18: the first term left out is below 1e-19 for |x| <= pi/4.
    # sin x = x (1 - x^2/3! + x^4/5! - ...), cos x = 1 - x^2/2! + ...: Horner in x^2.
    s = _horner(x2, [(-1) ** j / _factorial(2 * j + 1) for j in range(9)])
    c = _horner(x2, [(-1) ** j / _factorial(2 * j) for j in range(10)])
    sin_r, cos_r = x * s, c
    q = quadrant.astype(np.int64) % 4
    sin = np.choose(q, [sin_r, cos_r, -sin_r, -cos_r])
    cos = np.choose(q, [cos_r, -sin_r, -cos_r, sin_r])
    return sin + 0.0, cos + 0.0  # + 0.0 turns -0.0 into 0.0


def _factorial(k):
    out = 1
    for i in range(2, k + 1):
        out *= i
    return float(out)


def _horner(x, coefficients):
    """sum_j coefficients[j] x^j, evaluated from the highest power."""
    out = np.full_like(x, coefficients[-1])
    for a in coefficients[-2::-1]:
        out = out * x + a
    return out


def _is_int(value):
    """An int to a user: Python and NumPy integers, not bools."""
    return isinstance(value, (numbers.Integral, np.integer)) \
        and not isinstance(value, (bool, np.bool_))


def _check_seed(seed):
    if _is_int(seed):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}")
        return int(seed)
    if isinstance(seed, (list, tuple, np.ndarray)) and np.ndim(seed) == 1 and len(seed) > 0 \
            and all(_is_int(v) and v >= 0 for v in seed):
        return [int(v) for v in seed]
    raise ValueError("seed must be a non-negative int or a non-empty sequence of non-negative "
                     f"ints (e.g. [seed, epoch, batch]), got {seed!r}")


class ImageAugmenter(BaseEstimator):
    """Random shifts, flips and small rotations of image batches, for training.

    Each image of a batch gets its own random affine map: a flip (each allowed flip with
    probability 1/2), then a rotation about the image centre, then a shift. The maps are
    drawn from the ``seed`` given at each call, so a training loop that passes
    ``[seed, epoch, batch]`` sees the same augmented batches on every run, machine and
    thread count. Parameters are only stored by ``__init__`` and validated at each call
    (scikit-learn's convention), so :func:`sklearn.base.clone` and ``get_params`` work.

    Parameters
    ----------
    shift : float in [0, 1), default=0.1
        Largest shift, as a fraction of the height (rows) and of the width (columns):
        each image is shifted by ``u * H`` rows and ``v * W`` columns, ``u`` and ``v``
        uniform in ``[-shift, shift)``. Sub-pixel shifts are interpolated.
    flip : {'none', 'horizontal', 'vertical', 'both'}, default='horizontal'
        Which flips may happen: ``'horizontal'`` mirrors left-right (reverses the
        columns), ``'vertical'`` top-bottom (reverses the rows), ``'both'`` draws each
        of the two independently; each happens with probability 1/2.
    rotation : float in [0, 180], default=10.0
        Largest rotation in degrees; the angle is uniform in ``[-rotation, rotation)``.
        A positive angle turns the content counter-clockwise as displayed (row 0 at the
        top), as :func:`numpy.rot90` does for 90 degrees.
    fill : {'nearest', 'constant'}, default='nearest'
        The value of samples from outside the image: its nearest edge pixel
        (``'nearest'``), or ``cval`` (``'constant'``; the image is taken to be
        surrounded by ``cval``, so values blend with it at the edges).
    cval : float, default=0.0
        The fill value of ``fill='constant'``; it must be finite.

    Notes
    -----
    *Geometry.* Pixel ``(y, x)`` has centred coordinates ``p = (y, x) - c`` with
    ``c = ((H - 1) / 2, (W - 1) / 2)``. Output pixel ``p`` takes the input's value at
    ``F R(-a) (p - t)``, with ``t = (u H, v W)`` the shift in pixels, ``R(-a)`` the
    inverse of the rotation by ``a`` degrees and ``F = diag(+-1, +-1)`` the flips:
    the input is flipped, rotated, then shifted. All images of a batch are warped by
    one gather of their four neighbours and bilinear weights, in the images' dtype.
    Where a map sends pixels onto pixels (flips, whole-pixel shifts, multiples of 90
    degrees on a square image) the weights are exactly 0 and 1 and the output is an
    exact copy of the input's pixels, with no interpolation blur (given finite
    images: a NaN or inf propagates to its neighbours through its zero weight).

    *Random draws.* ``numpy.random.default_rng(seed)`` draws an ``(n, 5)`` array of
    uniform doubles, row by row; row ``i`` gives image ``i``, in this order: flip
    rows?, flip columns? (a flip where the draw is below 1/2 and the flip is allowed),
    the row shift, the column shift (``shift * (2 u - 1)``) and the angle
    (``rotation * (2 u - 1)``). All five are drawn whatever the parameters, so image
    ``i``'s maps depend on ``seed`` and ``i`` only: a longer batch does not change the
    draws of its first images, and turning one transformation off leaves the others
    as they were. :meth:`parameters` returns the draws and :meth:`warp` applies given
    ones.

    *Reproducibility.* The draws, the maps (whose sines and cosines are computed by a
    polynomial in float64, not by the platform's ``sin``) and the warp use IEEE
    additions and multiplications in a fixed order only, and no BLAS, so a seed gives
    the same bits on any machine and thread count with NumPy. CuPy arrays are warped on
    their GPU from the same draws; they may differ from NumPy's result in the last bits
    (the GPU compiler may fuse multiply-adds).

    References
    ----------
    .. [1] P. Y. Simard, D. Steinkraus and J. C. Platt, "Best practices for
       convolutional neural networks applied to visual document analysis", ICDAR 2003.
    .. [2] A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet classification with
       deep convolutional neural networks", NIPS 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from pymdbn import ImageAugmenter
    >>> x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    >>> aug = ImageAugmenter(shift=0.2, rotation=15.0)
    >>> y = aug(x, seed=[0, 1, 2])          # e.g. [seed, epoch, batch]
    >>> y.shape, y.dtype
    ((2, 4, 4), dtype('float32'))
    >>> bool(np.array_equal(y, aug(x, seed=[0, 1, 2])))   # same seed, same bits
    True

    Flattened channels-last batches, as the pathways carry them, need their image shape:

    >>> flat = x.reshape(2, 16)
    >>> bool(np.array_equal(aug(flat, seed=[0, 1, 2], shape=(4, 4, 1)), y.reshape(2, 16)))
    True

    A pure flip is an exact copy:

    >>> flipper = ImageAugmenter(shift=0.0, rotation=0.0, flip='horizontal')
    >>> params = flipper.parameters(2, seed=0)
    >>> params['flips'][:, 1]               # which images are mirrored left-right
    array([ True, False])
    >>> out = flipper(x, seed=0)
    >>> bool(np.array_equal(out[0], x[0, :, ::-1]) and np.array_equal(out[1], x[1]))
    True
    """

    _parameter_constraints: dict = {
        "shift": [Interval(Real, 0, 1, closed="left")],
        "flip": [StrOptions(set(_FLIPS))],
        "rotation": [Interval(Real, 0, 180, closed="both")],
        "fill": [StrOptions({"nearest", "constant"})],
        "cval": [Interval(Real, None, None, closed="neither")],
    }

    def __init__(self, shift=0.1, flip="horizontal", rotation=10.0, fill="nearest", cval=0.0):
        self.shift = shift
        self.flip = flip
        self.rotation = rotation
        self.fill = fill
        self.cval = cval

    # -- the draws ---------------------------------------------------------------------

    def parameters(self, n, seed):
        """The random maps of a batch of ``n`` images: what ``self(images, seed)`` applies.

        Parameters
        ----------
        n : int
            Number of images.
        seed : int or sequence of int
            The seed of :func:`numpy.random.default_rng`, e.g. ``[seed, epoch, batch]``.

        Returns
        -------
        dict
            ``'flips'``: bool array ``(n, 2)``, whether the rows (top-bottom) and the
            columns (left-right) are reversed; ``'shifts'``: float64 ``(n, 2)``, the
            shifts along the rows and the columns as fractions of the height and the
            width; ``'angles'``: float64 ``(n,)``, the rotations in degrees
            (counter-clockwise as displayed).
        """
        self._validate_params()
        if not _is_int(n) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        u = np.random.default_rng(_check_seed(seed)).random((int(n), len(_DRAWS)))
        allowed = np.array(_FLIPS[self.flip])
        return {
            "flips": (u[:, 0:2] < 0.5) & allowed,
            "shifts": float(self.shift) * (2.0 * u[:, 2:4] - 1.0),
            "angles": float(self.rotation) * (2.0 * u[:, 4] - 1.0),
        }

    # -- the warp ----------------------------------------------------------------------

    def __call__(self, images, seed, shape=None):
        """Augment a batch: each image flipped, rotated and shifted at random.

        Parameters
        ----------
        images : array of shape (n, H, W), (n, H, W, C) or (n, H * W * C)
            float32 or float64 images, channels last; a 2-D batch holds flattened
            images (pixel ``(y, x)`` of channel ``c`` in column ``(y * W + x) * C + c``,
            the pathways' layout) and needs ``shape``. NumPy, or CuPy for CUDA arrays.
        seed : int or sequence of int
            The seed of the draws (see :meth:`parameters`), e.g. ``[seed, epoch, batch]``.
        shape : (H, W) or (H, W, C), optional
            The image shape of a 2-D batch; for other batches, if given, it must agree.

        Returns
        -------
        array
            A new C-contiguous array of the shape, dtype and array module of ``images``;
            ``images`` is not modified.
        """
        self._validate_params()
        _check_seed(seed)  # before the batch's checks, so a bad seed is always reported
        batch = self._batch(images, shape)
        return self._warp(batch, self.parameters(batch[0].shape[0], seed))

    def warp(self, images, params, shape=None):
        """Apply given maps (as returned by :meth:`parameters`) to a batch.

        ``params`` needs ``'flips'`` (bool ``(n, 2)``), ``'shifts'`` (``(n, 2)``,
        fractions) and ``'angles'`` (``(n,)``, degrees), finite host (NumPy) arrays
        for the ``n`` images, also for CuPy images;
        the maps' magnitudes are not limited by ``shift`` and ``rotation`` here. The
        fill is this augmenter's. ``images`` and ``shape`` are as in :meth:`__call__`.
        """
        self._validate_params()
        batch = self._batch(images, shape)
        n = batch[0].shape[0]
        try:
            flips = np.asarray(params["flips"])
            shifts = np.asarray(params["shifts"], dtype=np.float64)
            angles = np.asarray(params["angles"], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise ValueError("params must be a dict with 'flips', 'shifts' and 'angles' "
                             f"(see ImageAugmenter.parameters): {exc!r}") from None
        for name, value, want in (("flips", flips, (n, 2)), ("shifts", shifts, (n, 2)),
                                  ("angles", angles, (n,))):
            if value.shape != want:
                raise ValueError(f"params[{name!r}] must have shape {want} for {n} images, "
                                 f"got {value.shape}")
        if flips.dtype != np.bool_:
            raise ValueError(f"params['flips'] must be bool, got dtype {flips.dtype}")
        if not (np.isfinite(shifts).all() and np.isfinite(angles).all()):
            raise ValueError("params['shifts'] and params['angles'] must be finite")
        return self._warp(batch, {"flips": flips, "shifts": shifts, "angles": angles})

    def _batch(self, images, shape):
        """(images as (n, H, W, C) view, xp, the caller's shape) after the checks."""
        xp = backend.namespace(images)
        images = xp.asarray(images)
        if images.dtype not in (np.float32, np.float64):
            raise TypeError(f"images must be float32 or float64, got dtype {images.dtype}")
        if shape is not None:
            if not (isinstance(shape, (tuple, list)) and len(shape) in (2, 3)
                    and all(_is_int(s) and s >= 1 for s in shape)):
                raise ValueError(f"shape must be (H, W) or (H, W, C) of positive ints, "
                                 f"got {shape!r}")
            shape = tuple(int(s) for s in shape)
            if len(shape) == 2:
                shape = (*shape, 1)
        if images.ndim == 2:
            if shape is None:
                raise ValueError("a 2-D batch of flattened images needs shape=(H, W, C)")
            if images.shape[1] != shape[0] * shape[1] * shape[2]:
                raise ValueError(f"images have {images.shape[1]} columns, but shape {shape} "
                                 f"has {shape[0] * shape[1] * shape[2]} values per image")
            full = shape
        elif images.ndim in (3, 4):
            full = tuple(images.shape[1:]) + ((1,) if images.ndim == 3 else ())
            if shape is not None and shape != full:
                raise ValueError(f"shape {shape} does not match the images' shape "
                                 f"{tuple(images.shape[1:])}")
            if min(full) < 1:
                raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
        else:
            raise ValueError("images must be a batch of shape (n, H, W), (n, H, W, C) or "
                             f"(n, H * W * C) with shape=, got ndim {images.ndim}")
        return images.reshape((images.shape[0], *full)), xp, images.shape

    def _warp(self, batch, params):
        images, xp, out_shape = batch
        n, H, W, C = images.shape
        if n == 0:
            return xp.empty(out_shape, dtype=images.dtype)
        dtype = images.dtype

        # The affine maps, on the host: source = M p + b for output pixel p = (y, x).
        sin, cos = _sin_cos_degrees(params["angles"])
        f = np.where(params["flips"], -1.0, 1.0)                  # (n, 2): rows, cols
        # F R(-a): R(-a) (u, v) = (cos u + sin v, -sin u + cos v) in (row, col) order.
        M = np.empty((n, 2, 2))
        M[:, 0, 0], M[:, 0, 1] = f[:, 0] * cos, f[:, 0] * sin
        M[:, 1, 0], M[:, 1, 1] = -(f[:, 1] * sin), f[:, 1] * cos
        c = np.array([(H - 1) / 2.0, (W - 1) / 2.0])
        ct = c + params["shifts"] * np.array([float(H), float(W)])   # c + t, (n, 2)
        b = c - (M[:, :, 0] * ct[:, 0:1] + M[:, :, 1] * ct[:, 1:2])  # c - M (c + t)
        near = np.round(b)
        b = np.where(np.abs(b - near) <= _SNAP, near, b)

        pad = ((0, 0), (1, 2), (1, 2), (0, 0))
        if self.fill == "constant":
            src = xp.pad(images, pad, mode="constant", constant_values=float(self.cval))
        else:
            src = xp.pad(images, pad, mode="edge")
        src = src.reshape(-1) if C == 1 else src.reshape(-1, C)
        M, b = xp.asarray(M), xp.asarray(b)
        if xp is np:  # blocks of images that stay in cache; a GPU takes the batch at once
            step = max(1, _BLOCK // (H * W * C))
            out = np.empty((n, H, W, C), dtype=dtype)
            for start in range(0, n, step):
                stop = min(n, start + step)
                out[start:stop] = self._gather(xp, src, M, b, start, stop, H, W, C, dtype)
        else:
            out = self._gather(xp, src, M, b, 0, n, H, W, C, dtype)
        return xp.ascontiguousarray(out.reshape(out_shape))

    @staticmethod
    def _gather(xp, src, M, b, start, stop, H, W, C, dtype):
        """Output images start:stop, (m, H, W, C), by bilinear interpolation in ``src``,
        the padded batch flattened (see :meth:`_warp`)."""
        m = stop - start
        M, b = M[start:stop], b[start:stop]
        # Source coordinates of every output pixel, (m, H, W).
        yy = xp.arange(H, dtype=xp.float64).reshape(1, H, 1)
        xx = xp.arange(W, dtype=xp.float64).reshape(1, 1, W)
        sy = (M[:, 0, 0].reshape(m, 1, 1) * yy + b[:, 0].reshape(m, 1, 1)) \
            + M[:, 0, 1].reshape(m, 1, 1) * xx
        sx = (M[:, 1, 0].reshape(m, 1, 1) * yy + b[:, 1].reshape(m, 1, 1)) \
            + M[:, 1, 1].reshape(m, 1, 1) * xx
        # The images are padded by one pixel before and two after, along rows and
        # columns, with cval or their edge: a sample from outside, its coordinate clipped
        # to [-1, H] (so to the padding), takes the fill, and its four neighbours are in
        # the padded array, at offsets 0, 1, Ws and Ws + 1 of the first.
        xp.clip(sy, -1.0, float(H), out=sy)
        xp.clip(sx, -1.0, float(W), out=sx)
        y0, x0 = xp.floor(sy), xp.floor(sx)
        sy -= y0
        sx -= x0
        wy1, wx1 = sy.astype(dtype), sx.astype(dtype)
        wy0, wx0 = 1 - wy1, 1 - wx1
        Hs, Ws = H + 3, W + 3
        y0 *= float(Ws)
        y0 += x0
        y0 += (xp.arange(start, stop, dtype=xp.float64) * float(Hs * Ws)
               + float(Ws + 1)).reshape(m, 1, 1)
        i00 = y0.astype(xp.int64)  # exact: integers below 2**53
        del sy, sx, x0, y0
        if C > 1:
            wy0, wy1, wx0, wx1 = (w[..., None] for w in (wy0, wy1, wx0, wx1))

        def gather(offset):
            idx = i00 if offset == 0 else i00 + offset
            return xp.take(src, idx.reshape(-1), axis=0).reshape(m, H, W, C)

        # (g00 wx0 + g01 wx1) wy0 + (g10 wx0 + g11 wx1) wy1, in place.
        wy0, wy1, wx0, wx1 = (w.reshape(m, H, W, -1) for w in (wy0, wy1, wx0, wx1))
        out = gather(0)
        out *= wx0
        part = gather(1)
        part *= wx1
        out += part
        out *= wy0
        bottom = gather(Ws)
        bottom *= wx0
        part = gather(Ws + 1)
        part *= wx1
        bottom += part
        bottom *= wy1
        out += bottom
        return out
