"""Convolutional restricted Boltzmann machines (Lee et al. 2009) on the backend ops.

A convolutional RBM shares each filter across every position of the image, so one CD
step is a dense RBM over the im2col rows of the batch (one row per hidden position)
whose visible layer is folded back onto the image by ``col2im``; see
:class:`ConvRBM`. The layout is the channels-last one of :mod:`pymdbn.layers`.
"""

import contextlib
import numbers
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Options
from sklearn.utils.validation import check_array, check_is_fitted

from pymdbn import backend, io
from pymdbn._constraints import (GIBBS_STEPS, NONNEGATIVE, NONNEGATIVE_INT, POSITIVE,
                                 POSITIVE_INT, UNIT_LEFT, UNIT_OPEN, StrOptions)
from pymdbn.backend import ops
from pymdbn.models.device import DeviceMixin, arrays_on, is_device_array, to_caller

__all__ = ["ConvRBM", "conv_layer"]

#: Default ``learning_rate`` per visible type: DBN's pretraining defaults (see below).
_DEFAULT_LR = {"gaussian": 0.005, "bernoulli": 0.05}

#: The most im2col entries :meth:`ConvRBM.transform` holds at once (64 MiB in float32).
_TRANSFORM_ENTRIES = 2**24


def _quiet():
    """NumPy's overflow warnings off: exp overflows to inf on purpose (the sigmoid is
    then exactly 0). CuPy warns of nothing."""
    return np.errstate(over="ignore", under="ignore")


def _sigmoid_(x, clip, xp):
    """In place: x = 1 / (1 + exp(-clip(x))), the float operations of
    :func:`pymdbn.backend.reference.clipped_sigmoid` in x's dtype."""
    if clip is not None:
        xp.clip(x, -clip, clip, out=x)
    xp.negative(x, out=x)
    with _quiet():
        xp.exp(x, out=x)
    x += 1
    xp.reciprocal(x, out=x)
    return x


@io.register
class ConvRBM(DeviceMixin, io.SaveMixin, TransformerMixin, BaseEstimator):
    """Convolutional restricted Boltzmann machine with Bernoulli hidden units.

    ``filters`` shared filters of ``kernel_size`` slide over the image (valid
    convolution, stride 1); each output position of each filter is a Bernoulli hidden
    unit with the filter's bias [1]_. Training is CD-k [2]_ on mini-batches of images,
    composed from the backend ops (:mod:`pymdbn.backend`): the batch's im2col matrix
    (one row per hidden position, ``kh * kw * C`` columns, see :mod:`pymdbn.layers`)
    makes the convolution a dense RBM with weights ``(filters, kh * kw * C)`` over those
    rows, so the hidden half-step is the dense RBM's ``gibbs_hidden``, and the visible
    half-step is ``col2im`` of ``h @ W`` plus a bias per channel. Random numbers come
    from the counter-based Philox streams the dense :class:`~pymdbn.RBM` uses: a draw
    depends on (seed, mini-batch step, row) only, so results do not depend on the
    number of threads.

    Parameters
    ----------
    filters : int, default=32
        Number of filters (hidden feature maps).
    kernel_size : int or (int, int), default=5
        Filter height and width.
    visible : {'gaussian', 'bernoulli'}, default='gaussian'
        Visible unit type. 'gaussian' means unit variance: standardise the images.
        As in the dense RBM, the negative phase uses a sampled visible state (mean +
        N(0, 1) for Gaussian units) and the hidden probabilities it gives.
    learning_rate : float or None, default=None
        Step size per averaged mini-batch gradient. The weight gradient is averaged
        over the ``batch_size * Ho * Wo`` hidden positions of the batch, so a filter
        sees the step a dense RBM's weight row sees per example; None then takes
        :class:`~pymdbn.DBN`'s pretraining defaults, 0.005 for Gaussian and 0.05 for
        Bernoulli visible units. Each pixel is reconstructed from
        ``filters * kh * kw`` hidden units, as many as the hidden layer of a dense RBM
        of 500-1000 units, for which those rates are stable (larger Gaussian rates
        diverge on unbounded input).
    n_iter : int, default=10
        Number of passes over the training images (epochs).
    batch_size : int, default=32
        Images per mini-batch.
    k : int, default=1
        Gibbs steps of the negative phase (CD-k), 1 to 127.
    momentum : float, default=0.5
        Momentum of the parameter updates, in [0, 1).
    weight_decay : float, default=0.0
        L2 penalty on the filters (not on the biases).
    sparsity_target : float, default=0.1
        Target mean activation of every filter's hidden units, in (0, 1).
    sparsity_cost : float, default=0.0
        Strength of the pull of each filter's hidden bias towards ``sparsity_target``:
        ``sparsity_cost * (sparsity_target - q)`` is added to its gradient, q the
        batch's mean P(h=1 | v) over images and positions (Lee et al. 2008 [4]_, who
        found updating the hidden biases alone sufficient; Hinton 2010 [3]_, sec. 11).
        0 disables it.
    clip : float or None, default=None
        Clip pre-activations to [-clip, clip] before every sigmoid. None is the plain
        sigmoid.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial filters, the epoch shuffles and the Philox streams.
    verbose : int, default=0
        Print the reconstruction error after each epoch.
    dtype : {'float32', 'float64', 'bfloat16', None}, default='float32'
        Working precision. ``'bfloat16'`` keeps float32 parameters, data and updates
        and rounds the operands of the matrix products to bfloat16 (float32 sums), as
        the dense RBM does; None keeps float32 and float64 input and uses float64
        otherwise.
    device : {'cpu', 'cuda'}, default='cpu'
        Where training and inference run; fitted attributes are NumPy arrays either
        way.

    Attributes
    ----------
    components_ : ndarray of shape (filters, kh, kw, C)
        The filters; ``components_[f, dy, dx, c]`` weighs input pixel (oy + dy, ox + dx),
        channel c, for output (oy, ox) of filter f.
    intercept_hidden_ : ndarray of shape (filters,)
    intercept_visible_ : ndarray of shape (C,)
        One visible bias per channel, shared by its pixels.
    image_shape_ : tuple (H, W, C)
    output_shape_ : tuple (Ho, Wo, filters)
        ``Ho = H - kh + 1``, ``Wo = W - kw + 1``.
    history_ : list of dict
        Per epoch: ``epoch``, ``reconstruction_error`` (mean squared error per pixel
        of v against E[v | h], h sampled from P(h | v), over the epoch's batches
        before each update) and ``time`` in seconds.
    n_features_in_ : int
        ``H * W * C``.

    See Also
    --------
    pymdbn.RBM : The dense RBM.
    conv_layer : The network layer dict of a fitted ConvRBM.

    References
    ----------
    .. [1] H. Lee, R. Grosse, R. Ranganath and A. Y. Ng, "Convolutional deep belief
           networks for scalable unsupervised learning of hierarchical
           representations", ICML 2009.
    .. [2] M. Norouzi, M. Ranjbar and G. Mori, "Stacks of convolutional restricted
           Boltzmann machines for shift-invariant feature learning", CVPR 2009.
    .. [3] G. E. Hinton, "A practical guide to training restricted Boltzmann
           machines", UTML TR 2010-003.
    .. [4] H. Lee, C. Ekanadham and A. Y. Ng, "Sparse deep belief net model for
           visual area V2", NIPS 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from pymdbn import ConvRBM
    >>> X = np.random.default_rng(0).standard_normal((20, 12, 12)).astype(np.float32)
    >>> crbm = ConvRBM(filters=4, kernel_size=3, n_iter=2, random_state=0).fit(X)
    >>> crbm.transform(X).shape
    (20, 10, 10, 4)
    """

    _parameter_constraints: dict = {
        "filters": [POSITIVE_INT],
        "kernel_size": [POSITIVE_INT, tuple, list],
        "visible": [StrOptions({"bernoulli", "gaussian"})],
        "learning_rate": [None, POSITIVE],
        "n_iter": [NONNEGATIVE_INT],
        "batch_size": [POSITIVE_INT],
        "k": [GIBBS_STEPS],
        "momentum": [UNIT_LEFT],
        "weight_decay": [NONNEGATIVE],
        "sparsity_target": [UNIT_OPEN],
        "sparsity_cost": [NONNEGATIVE],
        "clip": [None, POSITIVE],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "dtype": [None, Options(type, {np.float32, np.float64}),
                  StrOptions({"float32", "float64", "bfloat16"}),
                  Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64)})],
        "device": [StrOptions(set(backend.DEVICES))],
    }

    def __init__(self, filters=32, kernel_size=5, *, visible="gaussian", learning_rate=None,
                 n_iter=10, batch_size=32, k=1, momentum=0.5, weight_decay=0.0,
                 sparsity_target=0.1, sparsity_cost=0.0, clip=None, random_state=None,
                 verbose=0, dtype="float32", device="cpu"):
        self.filters = filters
        self.kernel_size = kernel_size
        self.visible = visible
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.k = k
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.clip = clip
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    # -- validation -------------------------------------------------------------------
    def _kernel(self):
        """``kernel_size`` as a checked (kh, kw)."""
        ks = self.kernel_size
        pair = (ks, ks) if isinstance(ks, numbers.Integral) else tuple(ks)
        if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and
                                     not isinstance(v, bool) and v >= 1 for v in pair):
            raise ValueError(f"kernel_size must be a positive int or a pair of them, got "
                             f"{self.kernel_size!r}")
        return int(pair[0]), int(pair[1])

    def _learning_rate(self):
        return (_DEFAULT_LR[self.visible] if self.learning_rate is None
                else float(self.learning_rate))

    def _dtypes(self):
        if self.dtype is None:
            return [np.float64, np.float32]
        return backend.storage_dtype(self.dtype).type

    def _input(self, X, reset, device):
        """X checked (images, finite, floating) and flattened to a C-contiguous
        ``(n, H * W * C)`` array on ``device``, with its ``(H, W, C)``. Fitted, X must
        have ``image_shape_`` and may also come flattened, ``(n, H * W * C)``."""
        name = type(self).__name__
        dtype = self._dtypes() if reset else self.components_.dtype
        if is_device_array(X):
            xp = backend.namespace(X)
            if isinstance(dtype, list):
                dtype = X.dtype if X.dtype in dtype else dtype[0]
            X = xp.ascontiguousarray(X, dtype=dtype)
            if X.ndim in (3, 4) and X.shape[0] >= 1 and not bool(xp.isfinite(X).all()):
                raise ValueError(f"{name}: input contains NaN or infinity")
        else:
            X = check_array(X, dtype=dtype, order="C", allow_nd=True, ensure_2d=False,
                            ensure_min_samples=0, input_name="X", estimator=self)
        ndim = X.ndim
        if not reset and ndim == 2 and X.shape[1] == self.n_features_in_:
            shape = self.image_shape_
        elif ndim in (3, 4):
            shape = tuple(int(s) for s in X.shape[1:]) + ((1,) if ndim == 3 else ())
        else:
            want = "" if reset else (f", or (n_samples, {self.n_features_in_}) flattened "
                                     f"images of shape {self.image_shape_}")
            raise ValueError(f"{name} expects images of shape (n_samples, H, W) or "
                             f"channels-last (n_samples, H, W, C){want}; got an array of "
                             f"shape {tuple(X.shape)}")
        if X.shape[0] < 1:
            raise ValueError(f"{name}: found array with 0 images (shape={tuple(X.shape)})")
        if reset:
            kh, kw = self._kernel()
            if kh > shape[0] or kw > shape[1]:
                raise ValueError(f"{name}: a {kh}x{kw} kernel does not fit {shape[0]}x"
                                 f"{shape[1]} images; use a smaller kernel_size")
        elif shape != self.image_shape_:
            raise ValueError(f"{name} was fitted on images of shape {self.image_shape_}, "
                             f"got {shape}")
        X = X.reshape(len(X), -1)
        return backend.to_device(X, device), shape

    # -- fitting ----------------------------------------------------------------------
    _STATE_ARRAYS = ("components_", "intercept_hidden_", "intercept_visible_",
                     "velocity_components_", "velocity_hidden_", "velocity_visible_")

    def _initialize(self, shape, dtype, random_state):
        rng = check_random_state(random_state)
        kh, kw = self._kernel()
        h, w, c = shape
        self.image_shape_ = tuple(shape)
        self.output_shape_ = (h - kh + 1, w - kw + 1, int(self.filters))
        self.n_features_in_ = h * w * c
        self.components_ = np.asarray(rng.normal(0, 0.01, (self.filters, kh, kw, c)),
                                      dtype=dtype, order="C")
        self.intercept_hidden_ = np.zeros(self.filters, dtype=dtype)
        self.intercept_visible_ = np.zeros(c, dtype=dtype)
        self.velocity_components_ = np.zeros_like(self.components_)
        self.velocity_hidden_ = np.zeros_like(self.intercept_hidden_)
        self.velocity_visible_ = np.zeros_like(self.intercept_visible_)
        self.seed_ = int(rng.randint(0, 2**63 - 1, dtype=np.int64))
        self.n_steps_ = 0
        self.history_ = []

    def _visible_mean_(self, pre, xp):
        """In place: the visible means E[v | h] from ``pre`` = col2im(h W), (b, H*W*C)."""
        c = self.image_shape_[2]
        channels = pre.reshape(-1, c)  # a view: pre is C-contiguous
        channels += self.intercept_visible_
        if self.visible == "bernoulli":
            _sigmoid_(pre, self.clip, xp)
        return pre

    def _cd_step(self, v0, step, zeros_k, w_shape):
        """One CD-k update on the mini-batch ``v0`` (b, H*W*C) at Philox step ``step``;
        returns the batch's summed squared reconstruction error.

        Streams as in :func:`pymdbn.backend.reference.cd_gradient`: the hidden sample
        of the data from ``step * 256`` with row counters the im2col rows (image i,
        position p: row i * Ho * Wo + p), the visible sample of Gibbs step t from
        ``step * 256 + 1 + 2t`` (row counter: image i) and, for t + 1 < k, its hidden
        sample from ``step * 256 + 2 + 2t``.
        """
        xp = backend.namespace(v0)
        shape, kernel = self.image_shape_, self.components_.shape[1:3]
        n_filters, clip, seed = self.components_.shape[0], self.clip, self.seed_
        w = self.components_.reshape(n_filters, -1)  # (F, kh*kw*C), a view
        b_hidden = self.intercept_hidden_
        base = step * 256
        cols0 = ops.im2col(v0, shape, kernel)  # (b*Ho*Wo, kh*kw*C)
        ph0, h = ops.gibbs_hidden(cols0, w, b_hidden, clip, seed, base, 0)
        sq = 0.0
        for t in range(self.k):
            pre = ops.col2im(ops.affine(h, w, zeros_k, False), shape, kernel)
            vm = self._visible_mean_(pre, xp)
            if t == 0:
                d = v0 - vm
                xp.square(d, out=d)
                sq = float(d.sum(dtype=xp.float64))  # one thread's order: deterministic
                del d
            sampler = ops.sample_gaussian if self.visible == "gaussian" else \
                ops.sample_bernoulli
            vs = sampler(vm, seed, base + 1 + 2 * t, 0)
            cols = ops.im2col(vs, shape, kernel)
            if t + 1 < self.k:
                _, h = ops.gibbs_hidden(cols, w, b_hidden, clip, seed, base + 2 + 2 * t, 0)
            else:
                phn = ops.affine_sigmoid(cols, w, b_hidden, clip, True)
        # Positive minus negative statistics: cols^T ph of either phase (kh*kw*C, F) and
        # the column sums of ph, through dense_backward's linear pass (its w only shapes
        # the call). Two products over b*Ho*Wo rows each, not one over stacked rows:
        # stacking would copy both patch matrices.
        _, gw0, gb0 = ops.dense_backward(ph0, ph0, ph0, cols0, w_shape, None, "linear", False)
        del cols0
        _, gwn, gbn = ops.dense_backward(phn, phn, phn, cols, w_shape, None, "linear", False)
        rows = ph0.shape[0]
        dt = self.components_.dtype.type
        scale = dt(-1.0 / rows)  # descent direction for sgd_momentum_update
        grad_w = xp.ascontiguousarray((gw0 - gwn).T * scale).reshape(self.components_.shape)
        q = gb0 * dt(1.0 / rows)
        grad_h = (gb0 - gbn) * scale
        if self.sparsity_cost > 0:
            grad_h -= dt(self.sparsity_cost) * (dt(self.sparsity_target) - q)
        c = shape[2]
        pixels = v0.size // c
        grad_v = (vs.reshape(-1, c).sum(axis=0) - v0.reshape(-1, c).sum(axis=0)) \
            * dt(1.0 / pixels)
        lr, mom = self._learning_rate(), float(self.momentum)
        ops.sgd_momentum_update(self.components_, grad_w, self.velocity_components_, lr, mom,
                                float(self.weight_decay))
        ops.sgd_momentum_update(self.intercept_hidden_, grad_h, self.velocity_hidden_, lr, mom,
                                0.0)
        ops.sgd_momentum_update(self.intercept_visible_, grad_v.astype(dt, copy=False),
                                self.velocity_visible_, lr, mom, 0.0)
        return sq

    def _run_epoch(self, X, order):
        """CD-k over the rows ``order`` of X in mini-batches; the mean squared
        reconstruction error per pixel."""
        xp = backend.namespace(self.components_)
        dtype = self.components_.dtype
        n_filters = self.components_.shape[0]
        n_cols = self.components_[0].size
        zeros_k = xp.zeros(n_cols, dtype=dtype)  # the visible product's (absent) bias
        w_shape = xp.zeros((n_cols, n_filters), dtype=dtype)  # dense_backward checks its shape
        order = backend.to_device(np.asarray(order, dtype=np.int64), backend.device_of(X))
        sq = 0.0
        with _quiet(), backend.array_pool():
            for start in range(0, len(order), self.batch_size):
                v0 = X[order[start:start + self.batch_size]]
                sq += self._cd_step(v0, self.n_steps_, zeros_k, w_shape)
                self.n_steps_ += 1
        if not bool(xp.isfinite(self.components_).all()):
            raise FloatingPointError(
                "ConvRBM training diverged (non-finite weights); lower learning_rate"
                + (" (Gaussian visible units need standardised images and usually "
                   "0.001-0.01)" if self.visible == "gaussian" else ""))
        return sq / (len(order) * X.shape[1])

    def _record(self, err, t0):
        entry = {"epoch": len(self.history_) + 1, "reconstruction_error": float(err),
                 "time": time.perf_counter() - t0}
        self.history_.append(entry)
        if self.verbose:
            print(f"[{type(self).__name__}] Iteration {entry['epoch']}, reconstruction "
                  f"error = {err:.4f}, time = {entry['time']:.2f}s")

    def fit(self, X, y=None, *, callback=None):
        """Fit the model to the images X.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
            Training images, channels-last.
        y : Ignored
        callback : callable or None, default=None
            Called as ``callback(self)`` after every epoch, when ``history_[-1]``
            holds that epoch's figures.

        Returns
        -------
        self : ConvRBM
        """
        self._validate_params()
        device = backend.check_device(self.device)
        X, shape = self._input(X, True, device)
        self._initialize(shape, X.dtype, self.random_state)
        # One pool for all epochs: each epoch's first batch reuses the last one's buffers.
        with arrays_on(self, self._STATE_ARRAYS, device, keep=True), backend.array_pool():
            for epoch in range(self.n_iter):
                t0 = time.perf_counter()
                order = np.random.default_rng([self.seed_, epoch]).permutation(len(X))
                self._record(self._run_epoch(X, order), t0)
                if callback is not None:
                    callback(self)
        return self

    def partial_fit(self, X, y=None):
        """One pass over the images X, in order, in mini-batches of ``batch_size``.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W) or (n_samples, H, W, C)
        y : Ignored

        Returns
        -------
        self : ConvRBM
        """
        self._validate_params()
        device = backend.check_device(self.device)
        fitted = hasattr(self, "components_")
        X, shape = self._input(X, not fitted, device)
        if not fitted:
            self._initialize(shape, X.dtype, self.random_state)
        t0 = time.perf_counter()
        with arrays_on(self, self._STATE_ARRAYS, device, keep=True):
            self._record(self._run_epoch(X, np.arange(len(X))), t0)
        return self

    # -- inference --------------------------------------------------------------------
    def transform(self, X):
        """Hidden unit probabilities P(h = 1 | v = X), per position and filter.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W), (n_samples, H, W, C) or
            (n_samples, H * W * C)
            Images of ``image_shape_``.

        Returns
        -------
        h : ndarray of shape (n_samples, Ho, Wo, filters)
        """
        check_is_fitted(self)
        device = backend.check_device(self.device)
        Xd, shape = self._input(X, False, device)
        n = len(Xd)
        ho, wo, n_filters = self.output_shape_
        per_image = ho * wo * self.components_[0].size
        chunk = max(1, _TRANSFORM_ENTRIES // per_image)
        # Several chunks: each im2col matrix reuses the last one's buffer.
        pool = backend.array_pool() if n > chunk else contextlib.nullcontext()
        with arrays_on(self, ("components_", "intercept_hidden_"), device), pool:
            w = self.components_.reshape(n_filters, -1)
            kernel = self.components_.shape[1:3]
            parts = [ops.affine_sigmoid(ops.im2col(Xd[s:s + chunk], shape, kernel), w,
                                        self.intercept_hidden_, self.clip, True)
                     for s in range(0, n, chunk)]
        if len(parts) == 1:
            h = parts[0]
        else:
            h = backend.namespace(parts[0]).concatenate(parts)
        return to_caller(h.reshape(n, ho, wo, n_filters), X)

    # -- persistence (pymdbn.io) ------------------------------------------------------
    def _get_state(self):
        """(arrays, meta) for :func:`pymdbn.io.save`."""
        arrays = {name: getattr(self, name) for name in self._STATE_ARRAYS}
        meta = {"seed": self.seed_, "n_steps": self.n_steps_, "history": self.history_,
                "n_features_in": self.n_features_in_, "image_shape": list(self.image_shape_)}
        return arrays, meta

    def _set_state(self, arrays, meta):
        """Restore what :meth:`_get_state` returned (checked by :mod:`pymdbn.io`)."""
        for name in self._STATE_ARRAYS:
            setattr(self, name, np.ascontiguousarray(arrays[name]))
        self.seed_, self.n_steps_ = int(meta["seed"]), int(meta["n_steps"])
        self.n_features_in_ = int(meta["n_features_in"])
        self.image_shape_ = tuple(int(s) for s in meta["image_shape"])
        n_filters, kh, kw, _ = self.components_.shape
        h, w, _ = self.image_shape_
        self.output_shape_ = (h - kh + 1, w - kw + 1, n_filters)
        self.history_ = [{k: (float("nan") if v is None else v) for k, v in entry.items()}
                         for entry in meta["history"]]
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags


def conv_layer(rbm):
    """The network layer dict of a fitted :class:`ConvRBM` (see :mod:`pymdbn.layers`).

    Returns
    -------
    dict
        ``{'type': 'conv', 'W': (kh * kw * C, filters), 'b': (filters,), 'shape': (H, W,
        C), 'kernel': (kh, kw)}``, ``W`` C-contiguous, its row ``(dy * kw + dx) * C + c``
        the filters' weights of input pixel (dy, dx), channel c: the im2col column order.
    """
    check_is_fitted(rbm)
    n_filters, kh, kw, _ = rbm.components_.shape
    return {"type": "conv",
            "W": np.ascontiguousarray(rbm.components_.reshape(n_filters, -1).T),
            "b": rbm.intercept_hidden_.copy(),
            "shape": tuple(rbm.image_shape_),
            "kernel": (int(kh), int(kw))}
