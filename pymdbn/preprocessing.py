"""Per-modality standardisation of multimodal inputs."""

from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from pymdbn import backend
from pymdbn.io import SaveMixin, register

__all__ = ["ModalityScaler", "check_modalities", "standardize", "per_image_normalize"]

SINGLE = "input"  # the modality name given to a bare array


def _as_modality(name, value, check_finite=True):
    xp = backend.namespace(value)  # device arrays are checked where they are
    try:
        arr = xp.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"modality {name!r}: cannot convert to an array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"modality {name!r}: expected a real numeric array, got dtype "
                         f"{arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"modality {name!r}: expected an array of shape (n_samples, ...) "
                         f"with at least 2 dimensions, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"modality {name!r}: no samples")
    if 0 in arr.shape[1:]:
        raise ValueError(f"modality {name!r}: samples of shape {tuple(arr.shape[1:])} have "
                         f"no features")
    if check_finite and arr.dtype.kind == "f" and not bool(xp.isfinite(arr).all()):
        raise ValueError(f"modality {name!r} contains NaN or infinity")
    return arr


_KERNEL_DTYPES = (np.float32, np.float64, np.uint8, np.uint16, np.int16)


def standardize(name, x, mean, scale, dtype, per_image=False):
    """``(x - mean) / scale`` flattened to (n_samples, n_features) in ``dtype``, checked.

    One multithreaded pass in the compiled kernel (``_core.standardize``), bit-identical
    to ``(x.astype(dtype) - mean.astype(dtype)) / scale.astype(dtype)`` in NumPy, which
    also tests every value for NaN and infinity, so callers need no separate check.
    With ``per_image`` each sample is first standardised by its own mean and standard
    deviation (twin: :func:`pymdbn.backend.reference.standardize`).

    Parameters
    ----------
    name : str
        The modality, for error messages.
    x : ndarray of shape (n_samples, ...)
    mean, scale : scalar or ndarray of n_features values
    dtype : float32 or float64
    per_image : bool, default=False

    Raises
    ------
    ValueError
        When ``x`` holds NaN or infinity, or the standardised values overflow ``dtype``.
    """
    from pymdbn.backend import ops

    dtype = np.dtype(dtype)
    xp = backend.namespace(x)  # runs on x's device; mean and scale follow it there
    x2 = x.reshape(len(x), -1)
    if x2.dtype not in _KERNEL_DTYPES or x2.dtype.byteorder == ">" or not x2.flags.c_contiguous:
        x2 = xp.ascontiguousarray(x2, dtype=dtype)
    mean = np.asarray(mean, dtype=dtype).reshape(-1)
    scale = np.asarray(scale, dtype=dtype).reshape(-1)
    if mean.size != scale.size:  # one scalar, one per feature
        mean, scale = (np.ascontiguousarray(np.broadcast_to(a, (x2.shape[1],)))
                       for a in (mean, scale))
    if xp is not np:  # host arrays skip the device round (a tenth of a one-sample call)
        mean, scale = backend.to_device((mean, scale), backend.device_of(x2))
    out, finite = ops.standardize(x2, mean, scale, bool(per_image))
    if not finite:
        if x2.dtype.kind == "f" and not bool(xp.isfinite(x2).all()):
            raise ValueError(f"modality {name!r} contains NaN or infinity")
        raise ValueError(f"modality {name!r}: standardised values overflow {dtype.name} "
                         f"(values far outside the fitted range, or a tiny scale)")
    return out


def per_image_normalize(a, name="input"):
    """Each sample of ``a`` (shape (n, ...)) minus its mean, over its population standard
    deviation (1 for a constant image), in float64: the per-image step of
    :func:`standardize`, by the same kernel."""
    return standardize(name, a, 0.0, 1.0, np.float64, per_image=True).reshape(a.shape)


def check_modalities(X, names=None, shapes=None, allow_missing=False, check_finite=True):
    """Validate multimodal input and return it as a dict of arrays.

    Parameters
    ----------
    X : dict of str to array-like, or array-like
        Modality name -> array of shape (n_samples, ...). A bare array stands for a
        single modality (named by ``names`` when it has one entry, else ``'input'``).
    names : sequence of str or None
        The modalities expected; ``None`` accepts any.
    shapes : dict of str to tuple or None
        Expected per-sample shape of each modality.
    allow_missing : bool, default=False
        Accept a subset of ``names`` (at least one).
    check_finite : bool, default=True
        Test float arrays for NaN and infinity (callers that go on to
        :func:`standardize` leave that test to it).

    Returns
    -------
    X : dict of str to ndarray
        Ordered as ``names`` when given.

    Raises
    ------
    ValueError
        Naming the modality: unknown, missing, non-numeric, NaN or infinity, no
        samples or no features, wrong per-sample shape, or a sample count that differs
        from the other modalities.
    """
    if not isinstance(X, Mapping):
        if names is not None and len(names) != 1:
            raise ValueError(f"X must be a dict mapping each of the modalities {list(names)} "
                             f"to an array, got {type(X).__name__}")
        X = {SINGLE if names is None else names[0]: X}
    if not X:
        raise ValueError("X has no modalities")
    for name in X:
        if not isinstance(name, str):
            raise ValueError(f"modality names must be str, got {name!r}")
    if names is not None:
        unknown = [m for m in X if m not in names]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; expected "
                             f"{'a subset' if allow_missing else 'exactly'} of {list(names)}")
        missing = [m for m in names if m not in X]
        if missing and not allow_missing:
            raise ValueError(f"missing modality {missing[0]!r}; expected exactly "
                             f"{list(names)}")
        X = {m: X[m] for m in names if m in X}
    out, n = {}, None
    for name, value in X.items():
        arr = _as_modality(name, value, check_finite)
        if shapes is not None and tuple(arr.shape[1:]) != tuple(shapes[name]):
            raise ValueError(f"modality {name!r}: expected samples of shape "
                             f"{tuple(shapes[name])}, got {tuple(arr.shape[1:])}")
        if n is None:
            n, first = len(arr), name
        elif len(arr) != n:
            raise ValueError(f"modality {name!r} has {len(arr)} samples but modality "
                             f"{first!r} has {n}")
        out[name] = arr
    return out


@register
class ModalityScaler(SaveMixin, TransformerMixin, BaseEstimator):
    """Z-score each modality with statistics fitted on training data.

    By default each modality gets one mean and one standard deviation over all its
    pixels and samples, so that the relative intensities within an image survive
    (the standardisation the MDBN method prescribes); ``per_feature=True`` fits one
    pair per pixel or feature instead. A zero standard deviation (a constant
    modality or pixel) gets scale 1, so nothing is divided by zero.

    ``per_image=True`` first standardises every image by its own mean and standard
    deviation (intensity normalisation per scan, as MRI pipelines do, since scanner
    gain, bias fields and exposure shift whole images), then applies the fitted
    z-score to the normalised images.

    Parameters
    ----------
    per_feature : bool, default=False
        One mean/scale per feature (pixel) instead of one per modality.
    per_image : bool, default=False
        Standardise each image by its own statistics before the fitted z-score.

    Attributes
    ----------
    mean_ : dict of str to ndarray
        Per modality: a 0-d float64 array, or one of the sample shape with
        ``per_feature``.
    scale_ : dict of str to ndarray
        Standard deviations, same shapes as ``mean_``; zeros replaced by 1.
    shapes_ : dict of str to tuple
        Per-sample shape of each modality, e.g. ``(64, 64)`` for images.
    modalities_ : list of str
        Modality names in the order seen at fit.
    data_range_ : dict of str to tuple of float
        Smallest and largest training value of each modality, after the per-image
        normalisation when ``per_image`` (the range ZBox bounds are derived from).
    n_samples_seen_ : int

    Notes
    -----
    ``X`` is a dict mapping modality names to arrays of shape (n_samples, H, W) or
    (n_samples, D); a bare array is treated as one modality and then comes back as a
    bare array. :meth:`transform` flattens each sample, returning (n_samples,
    n_features) arrays ready for a network; :meth:`inverse_transform` restores the
    shapes. float32 input stays float32; other input becomes float64.

    Examples
    --------
    >>> import numpy as np
    >>> from pymdbn.preprocessing import ModalityScaler
    >>> X = {"brain": np.arange(8.0).reshape(2, 2, 2), "bone": np.ones((2, 3))}
    >>> Z = ModalityScaler().fit_transform(X)
    >>> Z["brain"].shape, float(Z["bone"].max())
    ((2, 4), 0.0)
    """

    _parameter_constraints: dict = {"per_feature": ["boolean"], "per_image": ["boolean"]}

    def __init__(self, per_feature=False, per_image=False):
        self.per_feature = per_feature
        self.per_image = per_image

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit means and standard deviations per modality.

        Parameters
        ----------
        X : dict of str to array-like, or array-like
        y : Ignored

        Returns
        -------
        self : ModalityScaler
        """
        X = check_modalities(X)
        self.modalities_ = list(X)
        self.shapes_, self.mean_, self.scale_, self.data_range_ = {}, {}, {}, {}
        for name, arr in X.items():
            # Device arrays are reduced on the device; only the statistics come back.
            a = (per_image_normalize(arr, name) if self.per_image
                 else arr.astype(np.float64, copy=False))
            self.data_range_[name] = (float(a.min()), float(a.max()))
            axis = 0 if self.per_feature else None
            mean, std = (np.asarray(backend.to_device(v, "cpu"))
                         for v in (a.mean(axis=axis), a.std(axis=axis)))
            self.shapes_[name] = tuple(arr.shape[1:])
            self.mean_[name] = mean
            self.scale_[name] = np.where(std > 0, std, 1.0)
        self.n_samples_seen_ = len(next(iter(X.values())))
        return self

    def _check(self, X, allow_missing=False, check_finite=True):
        check_is_fitted(self)
        return check_modalities(X, self.modalities_, self.shapes_, allow_missing,
                                check_finite=check_finite)

    def transform(self, X, allow_missing=False):
        """Standardise and flatten each modality.

        Parameters
        ----------
        X : dict of str to array-like, or array-like
        allow_missing : bool, default=False
            Accept a subset of the fitted modalities.

        Returns
        -------
        Z : dict of str to ndarray of shape (n_samples, n_features), or an ndarray
            for single-array input.
        """
        bare = not isinstance(X, Mapping)
        out = self._transform(self._check(X, allow_missing, check_finite=False))
        return next(iter(out.values())) if bare else out

    def _transform(self, X, dtype=None):
        """Standardise validated modalities (NaN/infinity is checked here), flattened;
        in ``dtype``, or float32 for float32 input and float64 otherwise."""
        out = {}
        for name, arr in X.items():
            dt = dtype or (np.float32 if arr.dtype == np.float32 else np.float64)
            out[name] = standardize(name, arr, self.mean_[name], self.scale_[name], dt,
                                    per_image=self.per_image)
        return out

    def inverse_transform(self, Z):
        """Undo :meth:`transform`, restoring each modality's sample shape.

        With ``per_image`` the result is the per-image normalised images: each image's
        own mean and deviation are not kept.

        Parameters
        ----------
        Z : dict of str to array-like of shape (n_samples, n_features), or array-like

        Returns
        -------
        X : dict of str to ndarray, or an ndarray for single-array input.
        """
        check_is_fitted(self)
        bare = not isinstance(Z, Mapping)
        flat = {m: (int(np.prod(s)),) for m, s in self.shapes_.items()}
        Z = check_modalities(Z, self.modalities_, flat, allow_missing=True)
        out = {}
        for name, z in Z.items():
            dtype = np.float32 if z.dtype == np.float32 else np.float64
            x = z.reshape((len(z),) + self.shapes_[name]) * self.scale_[name].astype(dtype)
            out[name] = x + self.mean_[name].astype(dtype)
        return next(iter(out.values())) if bare else out

    # -- persistence -------------------------------------------------------------------
    def _get_state(self):
        arrays = {}
        for name in self.modalities_:
            arrays[f"{name}/mean"] = self.mean_[name]
            arrays[f"{name}/scale"] = self.scale_[name]
        meta = {"modalities": self.modalities_,
                "shapes": {m: list(s) for m, s in self.shapes_.items()},
                "data_range": {m: list(r) for m, r in self.data_range_.items()},
                "n_samples_seen": self.n_samples_seen_}
        return arrays, meta

    def _set_state(self, arrays, meta):
        self.modalities_ = list(meta["modalities"])
        self.shapes_ = {m: tuple(meta["shapes"][m]) for m in self.modalities_}
        self.mean_ = {m: np.asarray(arrays[f"{m}/mean"], np.float64) for m in self.modalities_}
        self.scale_ = {m: np.asarray(arrays[f"{m}/scale"], np.float64)
                       for m in self.modalities_}
        self.n_samples_seen_ = int(meta["n_samples_seen"])
        # Files written before data_range_ existed: unknown range.
        self.data_range_ = {m: tuple(r) for m, r in (meta.get("data_range") or {}).items()}
        return self
