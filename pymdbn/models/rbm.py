"""Restricted Boltzmann machines trained by contrastive divergence in C++."""

import time
from numbers import Integral

import numpy as np
from scipy.special import log_expit
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Options
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from pymdbn import backend, io
from pymdbn._constraints import (GIBBS_STEPS, NONNEGATIVE, NONNEGATIVE_INT, POSITIVE,
                                 POSITIVE_INT, UNIT_LEFT, UNIT_OPEN, Interval, StrOptions,
                                 check_value)
from pymdbn.backend import ops
from pymdbn._matmul import matmul
from pymdbn.models.device import DeviceMixin, arrays_on, is_device_array, to_caller, validated

__all__ = ["RBM", "log_partition_exact"]

_PLL_ROWS = 1000  # rows the per-epoch pseudo-likelihood estimate uses


def log_partition_exact(w, b_visible, b_hidden):
    """log Z of a Bernoulli RBM by enumerating the smaller layer (up to ~20 units)."""
    w = np.asarray(w, dtype=np.float64)
    b_visible = np.asarray(b_visible, dtype=np.float64)
    b_hidden = np.asarray(b_hidden, dtype=np.float64)
    n_h, n_v = w.shape
    if n_h > 24 and n_v > 24:
        raise ValueError("exact log Z enumerates 2**min(n_hidden, n_visible) states; "
                         f"({n_h}, {n_v}) is too large")
    # Sum over the smaller layer's states, the other layer in closed form (softplus):
    # log Z = logsumexp_h [c.h + sum_i softplus(b_i + (W^T h)_i)], or the same over v.
    if n_h <= n_v:
        states = ((np.arange(2**n_h)[:, None] >> np.arange(n_h)) & 1).astype(np.float64)
        terms = matmul(states, b_hidden) + np.logaddexp(0, matmul(states, w) + b_visible).sum(1)
    else:
        states = ((np.arange(2**n_v)[:, None] >> np.arange(n_v)) & 1).astype(np.float64)
        terms = matmul(states, b_visible) + np.logaddexp(0, matmul(states, w.T) + b_hidden).sum(1)
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


@io.register
class RBM(DeviceMixin, io.SaveMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin,
          BaseEstimator):
    """Restricted Boltzmann machine with Bernoulli hidden units.

    A drop-in replacement for :class:`sklearn.neural_network.BernoulliRBM` whose
    training loop (Gibbs sampling, clipped sigmoid, CD-k / PCD-k updates) runs in
    C++ with OpenMP and OpenBLAS, plus unit-variance Gaussian visible units for
    z-scored real-valued inputs, momentum, weight decay, a sparsity target and
    counter-based random numbers that make results independent of the number of
    threads.

    Parameters
    ----------
    n_components : int, default=256
        Number of hidden units.
    learning_rate : float, default=0.1
        Step size of the parameter updates (per averaged mini-batch gradient, which
        equals scikit-learn's ``learning_rate`` applied to the summed gradient divided
        by the batch size). Gaussian visible units usually need 0.001-0.01.
    batch_size : int, default=10
        Number of examples per mini-batch.
    n_iter : int, default=10
        Number of passes over the training data (epochs).
    verbose : int, default=0
        Print the reconstruction error and pseudo-likelihood after each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the epoch shuffles and the Philox streams of the
        Gibbs sampler. An int gives identical results whatever the thread count.
    visible : {'bernoulli', 'gaussian'}, default='bernoulli'
        Visible unit type. 'gaussian' means unit variance: standardise the data.
    k : int, default=1
        Number of Gibbs steps in the negative phase (CD-k / PCD-k), 1 to 127.
    persistent : bool, default=True
        Persistent contrastive divergence (Tieleman 2008) as in ``BernoulliRBM``;
        ``False`` restarts the chain at the data (CD-k, Hinton 2002).
    clip : float or None, default=None
        Clip pre-activations to [-clip, clip] before the sigmoid, keeping
        probabilities away from 0 and 1. ``None`` is the plain sigmoid.
    momentum : float, default=0.0
        Momentum of the parameter updates, in [0, 1).
    weight_decay : float, default=0.0
        L2 penalty on the weights.
    sparsity_target : float, default=0.1
        Target mean activation of the hidden units, in (0, 1).
    sparsity_cost : float, default=0.0
        Strength of the pull towards ``sparsity_target`` (0 disables it).
    dtype : {None, numpy.float32, numpy.float64, 'bfloat16'}, default=None
        Working precision. ``None`` keeps float32 and float64 inputs and uses float64
        for others, as ``BernoulliRBM`` does. float32 is about twice as fast.
        ``'bfloat16'`` keeps float32 parameters, data and updates (small updates rounded
        into bfloat16 weights would be lost) and rounds the operands of the matrix
        products to bfloat16 with float32 sums: binary Gibbs states are exact in
        bfloat16. Products of one row (one sample) stay float32: they are bound by
        reading the weights, which rounding would read once more. It needs oneDNN (``pip install 'pymdbn[bf16]'``) and a CPU with
        AVX512_BF16 or AMX, or a CUDA device; elsewhere the products stay float32 and a
        :class:`~pymdbn.backend.BFloat16FallbackWarning` says why.
    device : {'cpu', 'cuda'}, default='cpu'
        Where training and inference run. ``'cuda'`` uploads the data once and keeps
        every epoch on the GPU; fitted attributes are NumPy arrays either way, so a
        model trained on the GPU saves, loads and predicts on the CPU. Inputs may be
        CuPy arrays (or any ``__cuda_array_interface__`` object), used without a host
        copy; results come back on the input's device. :meth:`score_samples` and
        :meth:`log_partition` run on the CPU.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weight matrix.
    intercept_hidden_ : ndarray of shape (n_components,)
    intercept_visible_ : ndarray of shape (n_features,)
    h_samples_ : ndarray of shape (batch_size, n_components)
        State of the persistent chain (PCD).
    history_ : list of dict
        Per epoch: ``epoch``, ``reconstruction_error`` (mean squared error per entry
        of v against E[v | h], h sampled from P(h|v), over the epoch's batches before
        each update), ``pseudo_likelihood`` (Bernoulli visible units: the stochastic
        per-feature estimate on up to 1000 training rows; NaN for Gaussian units) and
        ``time`` in seconds.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when X has feature names that are all strings.

    References
    ----------
    .. [1] G. E. Hinton, "Training products of experts by minimizing contrastive
           divergence", Neural Computation 14(8), 2002.
    .. [2] T. Tieleman, "Training restricted Boltzmann machines using approximations
           to the likelihood gradient", ICML 2008.
    .. [3] G. E. Hinton, "A practical guide to training restricted Boltzmann
           machines", UTML TR 2010-003.
    .. [4] R. Salakhutdinov and I. Murray, "On the quantitative analysis of deep
           belief networks", ICML 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from pymdbn import RBM
    >>> X = (np.random.default_rng(0).random((100, 16)) > 0.5).astype(np.float32)
    >>> rbm = RBM(n_components=8, n_iter=2, random_state=0).fit(X)
    >>> rbm.transform(X).shape
    (100, 8)
    """

    _parameter_constraints: dict = {
        "n_components": [POSITIVE_INT],
        "learning_rate": [POSITIVE],
        "batch_size": [POSITIVE_INT],
        "n_iter": [NONNEGATIVE_INT],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "visible": [StrOptions({"bernoulli", "gaussian"})],
        "k": [GIBBS_STEPS],
        "persistent": ["boolean"],
        "clip": [None, POSITIVE],
        "momentum": [UNIT_LEFT],
        "weight_decay": [NONNEGATIVE],
        "sparsity_target": [UNIT_OPEN],
        "sparsity_cost": [NONNEGATIVE],
        "dtype": [None, Options(type, {np.float32, np.float64}),
                  StrOptions({"float32", "float64", "bfloat16"}),
                  Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64)})],
        "device": [StrOptions(set(backend.DEVICES))],
    }

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10,
                 verbose=0, random_state=None, visible="bernoulli", k=1, persistent=True,
                 clip=None, momentum=0.0, weight_decay=0.0, sparsity_target=0.1,
                 sparsity_cost=0.0, dtype=None, device="cpu"):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.visible = visible
        self.k = k
        self.persistent = persistent
        self.clip = clip
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.dtype = dtype
        self.device = device

    # -- validation -------------------------------------------------------------------
    def _dtypes(self):
        if self.dtype is None:
            return [np.float64, np.float32]
        return backend.storage_dtype(self.dtype).type

    def _validate_X(self, X, reset):
        """X checked on the host (a device array is brought there: for the CPU-only
        scores)."""
        X = validate_data(self, backend.to_device(X, "cpu"), reset=reset,
                          dtype=self._dtypes(), order="C", ensure_min_samples=1)
        if not reset and X.dtype != self.components_.dtype:
            X = X.astype(self.components_.dtype)
        return X

    def _input(self, X, reset, device):
        """X checked and placed on ``device`` for the kernels; device arrays are checked
        there, without a host copy."""
        if not is_device_array(X):
            return backend.to_device(self._validate_X(X, reset), device)
        dtype = self._dtypes() if reset else self.components_.dtype
        return validated(self, X, reset=reset, dtype=dtype, device=device)

    # -- fitting ----------------------------------------------------------------------
    def _initialize(self, n_features, dtype, random_state):
        rng = check_random_state(random_state)
        self.components_ = np.asarray(
            rng.normal(0, 0.01, (self.n_components, n_features)), dtype=dtype, order="C")
        self.intercept_hidden_ = np.zeros(self.n_components, dtype=dtype)
        self.intercept_visible_ = np.zeros(n_features, dtype=dtype)
        self.h_samples_ = np.zeros((self.batch_size, self.n_components), dtype=dtype)
        self.velocity_components_ = np.zeros_like(self.components_)
        self.velocity_hidden_ = np.zeros_like(self.intercept_hidden_)
        self.velocity_visible_ = np.zeros_like(self.intercept_visible_)
        self.seed_ = int(rng.randint(0, 2**63 - 1, dtype=np.int64))
        self.n_steps_ = 0
        self.history_ = []

    def _run_epoch(self, X, order):
        xp = backend.namespace(self.components_)
        if self.h_samples_.shape != (self.batch_size, self.n_components):
            # batch_size changed between partial_fit calls: restart the chain.
            self.h_samples_ = xp.zeros((self.batch_size, self.n_components),
                                       dtype=self.components_.dtype)
        sq, n_batches = ops.cd_epoch(
            X, order, self.batch_size, self.components_, self.intercept_visible_,
            self.intercept_hidden_, self.velocity_components_, self.velocity_visible_,
            self.velocity_hidden_, self.h_samples_, int(self.k), bool(self.persistent),
            self.visible, self.clip, float(self.learning_rate), float(self.momentum),
            float(self.weight_decay), float(self.sparsity_target), float(self.sparsity_cost),
            self.seed_, self.n_steps_)
        self.n_steps_ += n_batches
        if not bool(xp.isfinite(self.components_).all()):
            raise FloatingPointError(
                "RBM training diverged (non-finite weights); lower learning_rate"
                + (" (Gaussian visible units usually need 0.001-0.01)"
                   if self.visible == "gaussian" else ""))
        return sq / (len(order) * X.shape[1])

    def _record(self, X, err, t0):
        epoch = len(self.history_) + 1
        pll = float("nan")
        if self.visible == "bernoulli":
            rows = np.random.default_rng([self.seed_, epoch]).permutation(len(X))[:_PLL_ROWS]
            rows = backend.to_device(np.sort(rows), backend.device_of(X))
            pll = float(np.mean(self._pseudo_likelihood_estimate(X[rows], epoch)))
        entry = {"epoch": epoch, "reconstruction_error": float(err),
                 "pseudo_likelihood": pll, "time": time.perf_counter() - t0}
        self.history_.append(entry)
        if self.verbose:
            print(f"[{type(self).__name__}] Iteration {epoch}, reconstruction error = "
                  f"{err:.4f}, pseudo-likelihood = {pll:.4f}, time = {entry['time']:.2f}s")

    def fit(self, X, y=None, *, callback=None):
        """Fit the model to the data X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
        callback : callable or None, default=None
            Called as ``callback(self)`` after every epoch, when ``history_[-1]``
            holds that epoch's figures (a progress bar, a log). With
            ``device='cuda'`` the parameters are device arrays during the fit.

        Returns
        -------
        self : RBM
        """
        # Not scikit-learn's _fit_context, which skips this inside another estimator's
        # fit: a DBN builds its RBMs from overrides that only this check sees.
        self._validate_params()
        device = backend.check_device(self.device)
        X = self._input(X, True, device)
        self._initialize(X.shape[1], X.dtype, self.random_state)
        with arrays_on(self, self._STATE_ARRAYS, device, keep=True):
            for epoch in range(self.n_iter):
                t0 = time.perf_counter()
                order = np.random.default_rng([self.seed_, epoch]).permutation(len(X))
                self._record(X, self._run_epoch(X, order), t0)
                if callback is not None:
                    callback(self)
        return self

    def partial_fit(self, X, y=None):
        """Fit the model to the rows of X, in order, in mini-batches of batch_size.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : RBM
        """
        # Every call, not only the first as scikit-learn's _fit_context does: a NaN set
        # between calls would otherwise only surface as diverged weights.
        self._validate_params()
        device = backend.check_device(self.device)
        fitted = hasattr(self, "components_")
        X = self._input(X, not fitted, device)
        if not fitted:
            self._initialize(X.shape[1], X.dtype, self.random_state)
        t0 = time.perf_counter()
        with arrays_on(self, self._STATE_ARRAYS, device, keep=True):
            self._record(X, self._run_epoch(X, np.arange(len(X), dtype=np.int64)), t0)
        return self

    # -- inference --------------------------------------------------------------------
    def transform(self, X):
        """Hidden unit probabilities P(h=1 | v=X).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        h : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        device = backend.check_device(self.device)
        Xd = self._input(X, False, device)
        with arrays_on(self, ("components_", "intercept_hidden_"), device):
            h = ops.affine_sigmoid(Xd, self.components_, self.intercept_hidden_, self.clip,
                                   True)
        return to_caller(h, X)

    def _visible_mean(self, h):
        if self.visible == "gaussian":
            return ops.affine(h, self.components_, self.intercept_visible_, False)
        return ops.affine_sigmoid(h, self.components_, self.intercept_visible_, self.clip,
                                    False)

    def reconstruct(self, X):
        """Mean-field reconstruction E[v | h = P(h=1 | X)].

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        v : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        device = backend.check_device(self.device)
        Xd = self._input(X, False, device)
        with arrays_on(self, ("components_", "intercept_hidden_", "intercept_visible_"),
                       device):
            h = ops.affine_sigmoid(Xd, self.components_, self.intercept_hidden_, self.clip,
                                   True)
            v = self._visible_mean(h)
        return to_caller(v, X)

    def gibbs(self, v):
        """One Gibbs step v -> h -> v with sampled states.

        Each call draws fresh Philox streams, so repeated calls continue the chain.

        Parameters
        ----------
        v : array-like of shape (n_samples, n_features)

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        device = backend.check_device(self.device)
        vd = self._input(v, False, device)
        stream = self.n_steps_ * 256
        self.n_steps_ += 1
        with arrays_on(self, ("components_", "intercept_hidden_", "intercept_visible_"),
                       device):
            _, h = ops.gibbs_hidden(vd, self.components_, self.intercept_hidden_, self.clip,
                                    self.seed_, stream)
            _, v_new = ops.gibbs_visible(h, self.components_, self.intercept_visible_,
                                         self.visible, self.clip, self.seed_, stream + 1)
        return to_caller(v_new, v)

    def free_energy(self, X):
        """Free energy F(v), with P(v) = exp(-F(v)) / Z.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        F : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        device = backend.check_device(self.device)
        Xd = self._input(X, False, device)
        with arrays_on(self, ("components_", "intercept_hidden_", "intercept_visible_"),
                       device):
            fe = ops.free_energy(Xd, self.components_, self.intercept_visible_,
                                 self.intercept_hidden_, self.visible)
        return to_caller(fe, X)

    def _pseudo_likelihood_estimate(self, X, stream):
        """log P(v_i | v_-i) for one random feature i per row (cheap, unbiased)."""
        rng = np.random.default_rng([self.seed_, stream, 1])
        device = backend.device_of(X)
        idx = backend.to_device(rng.integers(0, X.shape[1], len(X)), device)
        X_flip = X.copy()
        rows = backend.to_device(np.arange(len(X)), device)
        X_flip[rows, idx] = 1 - X_flip[rows, idx]
        fe = ops.free_energy(X, self.components_, self.intercept_visible_,
                               self.intercept_hidden_, "bernoulli")
        fe_flip = ops.free_energy(X_flip, self.components_, self.intercept_visible_,
                                    self.intercept_hidden_, "bernoulli")
        fe, fe_flip = backend.to_device((fe, fe_flip), "cpu")
        return log_expit(fe_flip.astype(np.float64) - fe)

    def score_samples(self, X):
        """Pseudo-log-likelihood per feature, (1/D) sum_i log P(v_i | v_-i).

        Computed exactly over all features, so it is deterministic and comparable
        across data of different dimensionality. ``BernoulliRBM.score_samples``
        instead returns ``n_features`` times the term of one random feature
        (scikit-learn issue 23179). Values are rounded to binary (the units' states)
        before scoring. Bernoulli visible units only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        pll : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if self.visible != "bernoulli":
            raise ValueError("score_samples (pseudo-likelihood) is defined for Bernoulli "
                             "visible units; use free_energy for Gaussian units")
        X = self._validate_X(X, reset=False)
        v = (X > 0.5).astype(np.float64)
        w = self.components_.astype(np.float64)
        pre = matmul(v, w.T) + self.intercept_hidden_
        out = np.empty(len(v))
        # F(flip_i v) - F(v) = (2 v_i - 1) b_i + sum_j [sp(pre_j) - sp(pre_j + (1 - 2 v_i) w_ji)]
        chunk = max(1, int(2**23 // max(1, w.size)))
        for s in range(0, len(v), chunk):
            vs, ps = v[s:s + chunk], pre[s:s + chunk]
            sign = 1 - 2 * vs
            flipped = ps[:, None, :] + sign[:, :, None] * w.T[None, :, :]
            delta = (np.logaddexp(0, ps).sum(axis=1)[:, None]
                     - np.logaddexp(0, flipped).sum(axis=2)
                     - sign * self.intercept_visible_)
            out[s:s + chunk] = log_expit(delta).mean(axis=1)
        return out

    def log_partition(self, method="ais", *, n_runs=100, n_betas=10000, random_state=None,
                      return_std=False):
        """log Z of a Bernoulli RBM, by AIS or exact enumeration.

        Parameters
        ----------
        method : {'ais', 'exact'}, default='ais'
            'exact' enumerates 2**min(n_components, n_features) states (small models).
        n_runs : int, default=100
            Independent AIS chains.
        n_betas : int, default=10000
            Intermediate distributions (Salakhutdinov & Murray use 14500).
        random_state : int or None
        return_std : bool, default=False
            Also return the standard deviation of the estimate (delta method over runs).

        Returns
        -------
        log_z : float
        std : float, only when ``return_std``
        """
        check_is_fitted(self)
        if self.visible != "bernoulli":
            raise ValueError("log_partition is implemented for Bernoulli visible units")
        if method == "exact":
            log_z = log_partition_exact(self.components_, self.intercept_visible_,
                                         self.intercept_hidden_)
            return (log_z, 0.0) if return_std else log_z
        if method != "ais":
            raise ValueError(f"method must be 'ais' or 'exact', got {method!r}")
        check_value("n_runs", n_runs, [POSITIVE_INT], "RBM.log_partition")
        check_value("n_betas", n_betas, [Interval(Integral, 2, None, closed="left")],
                    "RBM.log_partition")
        seed = int(check_random_state(random_state).randint(0, 2**63 - 1, dtype=np.int64))
        # Base rate: the data marginals are unknown here, so use the visible biases.
        base = self.intercept_visible_.copy()
        betas = np.linspace(0.0, 1.0, n_betas)
        logw = ops.ais_log_weights(self.components_, self.intercept_visible_,
                                     self.intercept_hidden_, base, betas, n_runs, seed)
        log_z_base = float(np.logaddexp(0, base.astype(np.float64)).sum()
                           + self.n_components * np.log(2.0))
        top = logw.max()
        mean_w = np.exp(logw - top).mean()
        log_z = log_z_base + top + np.log(mean_w)
        if not return_std:
            return float(log_z)
        std = np.exp(logw - top).std() / np.sqrt(n_runs) / mean_w
        return float(log_z), float(std)

    def score_log_likelihood(self, X, log_z=None, **kwargs):
        """Mean log-likelihood of X, -F(v) - log Z, with log Z from :meth:`log_partition`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        log_z : float, optional
            A precomputed log partition function.
        **kwargs : passed to :meth:`log_partition`.

        Returns
        -------
        float
        """
        if log_z is None:
            log_z = self.log_partition(**kwargs)
        return float(-np.mean(self.free_energy(X).astype(np.float64)) - log_z)

    _STATE_ARRAYS = ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_",
                     "velocity_components_", "velocity_hidden_", "velocity_visible_")

    def _get_state(self):
        """(arrays, meta) for :func:`pymdbn.io.save`."""
        arrays = {name: getattr(self, name) for name in self._STATE_ARRAYS}
        meta = {"seed": self.seed_, "n_steps": self.n_steps_, "history": self.history_,
                "n_features_in": self.n_features_in_}
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in_"] = self.feature_names_in_.astype(str)
        return arrays, meta

    def _set_state(self, arrays, meta):
        """Restore what :meth:`_get_state` returned (checked by :mod:`pymdbn.io`)."""
        for name in self._STATE_ARRAYS:
            setattr(self, name, np.ascontiguousarray(arrays[name]))
        if "feature_names_in_" in arrays:
            self.feature_names_in_ = arrays["feature_names_in_"].astype(object)
        self.seed_, self.n_steps_ = int(meta["seed"]), int(meta["n_steps"])
        self.n_features_in_ = int(meta["n_features_in"])
        self.history_ = [{k: (float("nan") if v is None else v) for k, v in h.items()}
                         for h in meta["history"]]
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
