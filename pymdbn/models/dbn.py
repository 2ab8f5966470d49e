"""Deep belief networks: greedily stacked RBMs, optionally fine-tuned as classifiers."""


import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from pymdbn import backend
from pymdbn._constraints import (DTYPES, GIBBS_STEPS, NONNEGATIVE, NONNEGATIVE_INT, POSITIVE,
                                 POSITIVE_INT, UNIT_LEFT, UNIT_OPEN, InvalidParameterError,
                                 StrOptions, fine_tune_constraints, per_layer)
from pymdbn._progress import Progress
from pymdbn.io import (SaveMixin, decode_params, encode_params, get_state, nest, register,
                       set_state, to_json, unnest)
from pymdbn.models import finetune
from pymdbn.models.device import DeviceMixin, arrays_on, to_caller, validated
from pymdbn.backend import ops
from pymdbn.layers import Conv, Pool, image_shape3, input_shapes, is_convolutional, layer_specs
from pymdbn.models.network import Network, copy_layer, layer_from_rbm, propagate
from pymdbn.models.rbm import RBM

__all__ = ["DBN"]

_DEFAULT_LR = {"gaussian": 0.005, "bernoulli": 0.05}


def fit_rbm(rbm, X, desc, verbose):
    """:meth:`RBM.fit`, with a progress bar that reports each epoch's reconstruction
    error."""
    progress = Progress(rbm.n_iter, desc, enabled=verbose)
    try:
        return rbm.fit(X, callback=lambda r: progress.update(
            1, recon=r.history_[-1]["reconstruction_error"]))
    finally:
        progress.close()


def _on_feature_maps(specs, i):
    """Whether layer ``i`` reads the output of a conv or pool layer."""
    return i > 0 and isinstance(specs[i - 1], (Conv, Pool))


def _feature_scale(X, shape):
    """Mean and standard deviation of X's features (of each channel of the ``(H, W, C)``
    maps when ``shape`` is given, tiled over the positions), in X's dtype; a constant
    feature gets scale 1."""
    xp = backend.namespace(X)
    if shape is None:
        mean, std = X.mean(axis=0, dtype=xp.float64), X.std(axis=0, dtype=xp.float64)
    else:
        c = shape[2]
        per = X.reshape(-1, c)
        mean = xp.tile(per.mean(axis=0, dtype=xp.float64), X.shape[1] // c)
        std = xp.tile(per.std(axis=0, dtype=xp.float64), X.shape[1] // c)
    std = xp.where(std > 1e-6, std, 1.0)
    return mean.astype(X.dtype), std.astype(X.dtype)


def _fold_scale(layer, mean, scale):
    """The layer computing on x what ``layer`` computes on (x - mean) / scale:
    W' = W / scale, b' = b - (mean / scale) W (for a conv layer, per channel: one
    input row per (dy, dx, c), so the channel's mean and scale tile over the patch)."""
    xp = backend.namespace(layer["W"])
    mean, scale = backend.to_device((mean, scale), backend.device_of(layer["W"]))
    if layer.get("type") == "conv":
        rows = layer["W"].shape[0]
        c = layer["shape"][2]
        mean, scale = xp.tile(mean[:c], rows // c), xp.tile(scale[:c], rows // c)
    w = xp.ascontiguousarray(layer["W"] / scale[:, None])
    b = xp.ascontiguousarray(layer["b"] - (mean / scale) @ layer["W"])
    return {**layer, "W": w.astype(layer["W"].dtype), "b": b.astype(layer["b"].dtype)}


@register
class DBN(DeviceMixin, SaveMixin, ClassifierMixin, TransformerMixin, BaseEstimator):
    """Deep belief network: RBMs pretrained greedily, layer by layer.

    Unsupervised, ``fit(X)`` trains the first RBM on X, the second on the first's
    hidden probabilities, and so on [1]_ [2]_; :meth:`transform` returns the top
    layer's mean-field code. Supervised, ``fit(X, y)`` additionally puts a softmax
    layer on top and fine-tunes every layer by backpropagation (the "DBN" baseline
    of the MDBN paper), giving :meth:`predict`, :meth:`predict_proba` and
    :meth:`score`.

    Parameters
    ----------
    hidden_layers : int or tuple of int, Conv and Pool, default=(512, 256)
        Hidden units of each RBM, bottom first; an int is one layer of that many
        units, as scikit-learn's ``hidden_layer_sizes``. :class:`~pymdbn.Conv` and
        :class:`~pymdbn.Pool` specs before the dense sizes make a convolutional DBN
        (Lee et al. 2009): each ``Conv`` is a :class:`~pymdbn.ConvRBM` pretrained on the
        layer below, each ``Pool`` a parameter-free pooling of its feature maps, e.g.
        ``[Conv(32, 5), Pool(2), Conv(64, 5), Pool(2), 256]``. ``X`` is then a batch of
        images, see ``image_shape``. An RBM directly above a conv or pool layer has
        Gaussian visible units and is pretrained on its input standardised per feature
        (per channel for a ``Conv``, so its filters stay shared); the standardisation is
        then folded into its weights and biases, so the network is unchanged. Pooled
        sigmoid maps vary little around a large mean: a Bernoulli RBM pretrained on them
        learned that mean, its code was the same for every image and fine-tuning stayed
        at chance (shapes at random positions, 14x14: accuracy 0.50 without, 0.87 with).
    visible : {'gaussian', 'bernoulli'}, default='gaussian'
        Visible units of the first RBM: 'gaussian' (unit variance) for z-scored
        real-valued input, 'bernoulli' for data in [0, 1]. Higher RBMs are
        Bernoulli-Bernoulli.
    learning_rate : float, tuple of float or None, default=None
        Pretraining step size, scalar or one per layer. None gives 0.005 for a
        Gaussian layer (larger rates diverge on unbounded input) and 0.05 for
        Bernoulli layers.
    n_iter : int or tuple of int, default=10
        Pretraining epochs, scalar or one per layer.
    batch_size : int, default=32
        Pretraining mini-batch size.
    k : int, default=1
        Gibbs steps per update (CD-k).
    persistent : bool, default=False
        Persistent CD instead of CD-k. The method uses CD-1.
    momentum : float, default=0.5
        Momentum of the pretraining updates, in [0, 1).
    weight_decay : float, default=0.0
        L2 penalty during pretraining.
    sparsity_target : float, default=0.1
        Target mean activation of every RBM's hidden units during pretraining, in
        (0, 1).
    sparsity_cost : float, default=0.0
        Strength of the pull towards ``sparsity_target`` (0 disables it). A
        positive cost keeps hidden units from settling always on or always off,
        where their sigmoid is saturated and passes no gradient when fine-tuning
        (see :class:`~pymdbn.MDBN`).
    clip : float or None, default=None
        Clip every sigmoid's pre-activation to [-clip, clip] (pretraining,
        transform and fine-tuning alike). None is the plain sigmoid.
    layer_params : list of dict or None, default=None
        Per-layer overrides of any :class:`~pymdbn.RBM` parameter, one dict per
        layer, applied last (e.g. ``[{'learning_rate': 0.001, 'n_iter': 20}, {}]``);
        for a ``Conv`` layer, of :class:`~pymdbn.ConvRBM` parameters (the spec's own
        keyword arguments apply before them); ignored for a ``Pool``. Per-layer
        ``learning_rate`` and ``n_iter`` sequences count every spec, pools included.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or channels-last ``(H, W, C)`` of the images when ``hidden_layers``
        is convolutional and ``X`` comes flattened, ``(n_samples, H * W * C)``; None
        takes it from ``X`` of shape (n_samples, H, W) or (n_samples, H, W, C).
    fine_tune : bool, default=True
        Supervised fit: backpropagate through all layers. False trains only the
        softmax layer on the frozen codes.
    optimizer : {'sgd', 'adam'}, default='sgd'
        Fine-tuning optimiser: mini-batch SGD with momentum, or Adam [3]_.
    fine_tune_learning_rate : float, default=0.1
    fine_tune_momentum : float, default=0.9
        SGD momentum (ignored by Adam).
    fine_tune_weight_decay : float, default=1e-4
        L2 penalty on the weights (not biases) during fine-tuning.
    fine_tune_batch_size : int, default=32
    fine_tune_epochs : int, default=30
        Maximum number of fine-tuning epochs.
    fine_tune_dropout : float, default=0.0
        Probability, in [0, 1), of dropping each hidden unit in the fine-tuning batches
        (Srivastava et al. 2014; activations of kept units are scaled by
        ``1 / (1 - p)``, so inference uses every unit unchanged).
    fine_tune_input_dropout : float, default=0.0
        Probability of dropping each input feature in the fine-tuning batches.
    augment : callable or None, default=None
        Augmentation of the fine-tuning batches (e.g. :class:`pymdbn.ImageAugmenter`),
        see :class:`pymdbn.MDBN`; needs images: X of shape (n_samples, H, W[, C]) or
        ``image_shape``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the samples (stratified) and stop when
        the validation loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs; the best weights are restored.
    validation_fraction : float, default=0.1
        In (0, 1).
    n_iter_no_change : int, default=5
    tol : float, default=1e-4
    class_weight : None, 'balanced' or dict, default=None
        Weights of the classes in the softmax loss; 'balanced' weighs each class
        inversely to its frequency.
    random_state : int, RandomState instance or None, default=None
        Seeds every RBM, the softmax initialisation, the validation split and the
        epoch shuffles; an int makes ``fit`` reproducible.
    verbose : int, default=0
        Show a progress bar on stderr per pretrained layer and for fine-tuning.
    dtype : {'float32', 'float64', 'bfloat16'}, default='float32'
        Working precision; ``'bfloat16'``: float32 parameters with bfloat16 operands of
        the products (see :class:`pymdbn.RBM`).
    device : {'cpu', 'cuda'}, default='cpu'
        Where pretraining, fine-tuning and inference run (see :class:`pymdbn.RBM`):
        with ``'cuda'`` the data is uploaded once and every epoch stays on the GPU;
        fitted attributes are NumPy arrays either way. ``transform`` and
        ``decision_function`` return results on the input's device; ``predict`` and
        ``predict_proba`` return NumPy arrays.

    Attributes
    ----------
    rbms_ : list of RBM
        The pretrained RBMs.
    layers_ : list of dict
        The network's layers ``{'W': (n_in, n_out), 'b': (n_out,)}``, bottom first;
        ``W = rbms_[i].components_.T`` until fine-tuning changes them.
    history_ : list of list of dict
        Per layer, the RBM's per-epoch ``history_``.
    classes_ : ndarray of shape (n_classes,)
        Supervised fit only.
    output_ : dict
        Supervised fit only: softmax layer ``{'W': (n_code, n_classes), 'b'}``.
    fine_tune_history_ : list of dict
        Supervised fit only: per epoch ``loss`` (and ``val_loss``, ``val_accuracy``
        with early stopping) and ``time``.
    n_iter_ : int
        Supervised fit only: fine-tuning epochs run (the pretraining epochs are
        ``n_iter``).
    stopped_early_ : bool
        Supervised fit only: early stopping ended fine-tuning before
        ``fine_tune_epochs``.
    best_epoch_ : int or None
        Supervised fit with early stopping: the epoch of the lowest validation loss,
        whose weights were restored; None without early stopping.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when X has feature names that are all strings.

    References
    ----------
    .. [1] G. E. Hinton, S. Osindero and Y.-W. Teh, "A fast learning algorithm for
           deep belief nets", Neural Computation 18(7), 2006.
    .. [2] G. E. Hinton and R. R. Salakhutdinov, "Reducing the dimensionality of data
           with neural networks", Science 313(5786), 2006.
    .. [3] D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization",
           ICLR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from pymdbn import DBN
    >>> X = np.random.default_rng(0).standard_normal((60, 20)).astype(np.float32)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> dbn = DBN(hidden_layers=(16, 8), n_iter=2, fine_tune_epochs=5, random_state=0)
    >>> dbn.fit(X, y).predict_proba(X).shape
    (60, 2)
    """

    _parameter_constraints: dict = {
        "hidden_layers": [POSITIVE_INT, "array-like"],
        "visible": [StrOptions({"gaussian", "bernoulli"})],
        "learning_rate": [None, POSITIVE, "array-like"],
        "n_iter": [NONNEGATIVE_INT, "array-like"],
        "batch_size": [POSITIVE_INT],
        "k": [GIBBS_STEPS],
        "persistent": ["boolean"],
        "momentum": [UNIT_LEFT],
        "weight_decay": [NONNEGATIVE],
        "sparsity_target": [UNIT_OPEN],
        "sparsity_cost": [NONNEGATIVE],
        "clip": [None, POSITIVE],
        "layer_params": [None, list, tuple],
        "image_shape": [None, tuple, list],
        "augment": [None, callable],
        **fine_tune_constraints("fine_tune_", max_epochs="fine_tune_epochs"),
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "dtype": [DTYPES],
        "device": [StrOptions(set(backend.DEVICES))],
    }

    def __init__(self, hidden_layers=(512, 256), *, visible="gaussian", learning_rate=None,
                 n_iter=10, batch_size=32, k=1, persistent=False, momentum=0.5,
                 weight_decay=0.0, sparsity_target=0.1, sparsity_cost=0.0, clip=None,
                 layer_params=None, image_shape=None, fine_tune=True,
                 optimizer="sgd", fine_tune_learning_rate=0.1, fine_tune_momentum=0.9,
                 fine_tune_weight_decay=1e-4, fine_tune_batch_size=32, fine_tune_epochs=30,
                 fine_tune_dropout=0.0, fine_tune_input_dropout=0.0, augment=None,
                 early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, tol=1e-4,
                 class_weight=None, random_state=None, verbose=0, dtype="float32",
                 device="cpu"):
        self.hidden_layers = hidden_layers
        self.visible = visible
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.clip = clip
        self.layer_params = layer_params
        self.image_shape = image_shape
        self.fine_tune = fine_tune
        self.optimizer = optimizer
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.fine_tune_momentum = fine_tune_momentum
        self.fine_tune_weight_decay = fine_tune_weight_decay
        self.fine_tune_batch_size = fine_tune_batch_size
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_dropout = fine_tune_dropout
        self.fine_tune_input_dropout = fine_tune_input_dropout
        self.augment = augment
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    # -- configuration ----------------------------------------------------------------
    def _specs(self):
        return layer_specs("hidden_layers", self.hidden_layers, type(self).__name__)

    def _rbm_params(self, seeds):
        """Parameters of every layer's model, defaults first, overrides last: an
        :class:`RBM`'s for a dense size, a :class:`~pymdbn.ConvRBM`'s for a ``Conv``,
        None for a ``Pool``.

        The scalar parameters are validated (``_parameter_constraints``) by ``fit``;
        here the per-layer ones and the ``layer_params`` overrides are.
        """
        name = type(self).__name__
        specs = self._specs()
        n = len(specs)
        rates = per_layer("learning_rate", self.learning_rate, n, [None, POSITIVE], name)
        epochs = per_layer("n_iter", self.n_iter, n, [NONNEGATIVE_INT], name)
        overrides = self.layer_params if self.layer_params is not None else [{}] * n
        if len(overrides) != n or not all(isinstance(o, dict) for o in overrides):
            raise ValueError(f"layer_params must be a list of {n} dicts, got "
                             f"{self.layer_params!r}")
        params = []
        for i, spec in enumerate(specs):
            if isinstance(spec, Pool):
                params.append(None)
                continue
            visible = (self.visible if i == 0 else "gaussian" if _on_feature_maps(specs, i)
                       else "bernoulli")
            p = dict(visible=visible, n_iter=epochs[i], batch_size=self.batch_size,
                     k=self.k, momentum=self.momentum, weight_decay=self.weight_decay,
                     sparsity_target=self.sparsity_target, sparsity_cost=self.sparsity_cost,
                     clip=self.clip, dtype=self.dtype, device=self.device,
                     random_state=int(seeds[i]))
            if isinstance(spec, Conv):
                from pymdbn.models.conv_rbm import ConvRBM as cls
                p.update(filters=spec.filters, kernel_size=spec.kernel_size,
                         learning_rate=rates[i])
                p.update(spec.params)
                fixed = sorted({"filters", "kernel_size"} & (set(spec.params) | set(overrides[i])))
                if fixed:
                    raise ValueError(f"layer {i}: set {fixed[0]!r} as the Conv spec's own "
                                     f"argument ({spec!r}), not as a parameter override")
            else:
                cls = RBM
                p.update(n_components=spec, persistent=self.persistent,
                         learning_rate=_DEFAULT_LR[visible] if rates[i] is None else rates[i])
            unknown = sorted(set(overrides[i]) - set(cls().get_params()))
            if unknown:
                raise ValueError(f"layer_params[{i}] sets {unknown[0]!r}, which is not "
                                 f"a{'n' if cls is RBM else ''} {cls.__name__} parameter")
            p.update(overrides[i])
            try:  # DBN's own values passed its constraints: an error is an override's
                cls(**p)._validate_params()
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"layer_params[{i}]: {exc}") from None
            params.append(p)
        return params

    # -- fitting ------------------------------------------------------------------------
    def pretrain(self, X, seeds, desc="pretrain", image_shape=None):
        """Greedy layer-wise pretraining on validated, flattened X; sets ``rbms_`` (the
        trained models, an RBM or ConvRBM per dense or Conv spec) and ``layers_`` (a
        network layer dict per spec, see :mod:`pymdbn.layers`). ``image_shape`` is the
        ``(H, W[, C])`` of X's rows, needed by convolutional specs."""
        self.rbms_, self.history_, self.layers_ = [], [], []
        specs = self._specs()
        params = self._rbm_params(seeds)
        shapes = (input_shapes(specs, image_shape)[0] if is_convolutional(specs)
                  else [None] * len(specs))

        def pool_layer(i):
            return {"type": "pool", "size": specs[i].size, "mode": specs[i].mode,
                    "shape": shapes[i]}

        pooled = False  # X already went through the pool layer this loop is at
        for i, (spec, p) in enumerate(zip(specs, params)):
            what = f"{desc} layer {i + 1}/{len(params)}"
            last = i + 1 == len(params)
            if isinstance(spec, Pool):
                self.layers_.append(pool_layer(i))
                if not last and not pooled:
                    X = ops.pool_forward(X, shapes[i], spec.size, spec.mode)
                pooled = False
                continue
            # Above a conv or pool layer: pretrained on standardised inputs, folded back.
            mean, scale = (_feature_scale(X, shapes[i] if isinstance(spec, Conv) else None)
                           if _on_feature_maps(specs, i) else (None, None))
            data = X if mean is None else (X - mean) / scale
            if isinstance(spec, Conv):
                from pymdbn.models.conv_rbm import ConvRBM, conv_layer

                rbm = fit_rbm(ConvRBM(**p), data.reshape((len(X),) + shapes[i]), what,
                              self.verbose)
                layer = conv_layer(rbm)
            else:
                rbm = fit_rbm(RBM(**p), data, what, self.verbose)
                layer = layer_from_rbm(rbm)
            del data
            if mean is not None:
                layer = _fold_scale(layer, mean, scale)
            self.layers_.append(layer)
            if last:
                pass
            elif isinstance(spec, Conv) or mean is not None:
                # A pool layer next (not the last) pools each chunk of the maps as the
                # convolution computes it: the unpooled maps of the whole training set
                # are never held (network._conv_forward).
                ahead = [layer]
                if isinstance(spec, Conv) and isinstance(specs[i + 1], Pool) and \
                        i + 2 < len(specs):
                    ahead.append(pool_layer(i + 1))
                    pooled = True
                X = propagate(X, backend.to_device(ahead, backend.device_of(X)), self.clip)
            else:  # as before convolutional pathways existed: the same bits
                X = rbm.transform(X)
            self.rbms_.append(rbm)
            self.history_.append(rbm.history_)
        return self

    def _input(self, X):
        """(X flattened channels-last, its image shape or None). Images (n_samples, H, W)
        or (n_samples, H, W, C) are flattened; flattened X takes ``image_shape``, which
        a convolutional stack needs."""
        ndim = X.ndim if hasattr(X, "ndim") else np.ndim(X)
        shape = self.image_shape
        if ndim in (3, 4):
            X = X if hasattr(X, "reshape") else np.asarray(X)
            shape = image_shape3(X.shape[1:], "shape of X's images")
            if self.image_shape is not None and image_shape3(self.image_shape) != shape:
                raise ValueError(f"X has images of shape {tuple(X.shape[1:])}, image_shape "
                                 f"is {tuple(self.image_shape)}")
            X = X.reshape(len(X), -1)
        elif is_convolutional(self._specs()) and shape is None:
            raise ValueError(f"a convolutional DBN needs X of shape (n_samples, H, W) or "
                             f"(n_samples, H, W, C), or image_shape with flattened X; got X "
                             f"with {ndim} dimensions")
        return X, (None if shape is None else image_shape3(shape))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Pretrain the stack on X; with ``y``, also train a softmax and fine-tune.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, z-scored for Gaussian visible units.
        y : array-like of shape (n_samples,) or None
            Class labels (any hashable values) for the supervised mode.

        Returns
        -------
        self : DBN
        """
        rng = check_random_state(self.random_state)
        n_layers = len(self._specs())
        device = backend.check_device(self.device)
        X, shape = self._input(X)
        X = validated(self, X, reset=True, dtype=backend.storage_dtype(self.dtype), device=device)
        if shape is not None:
            input_shapes(self._specs(), shape)  # a spec that does not fit fails here
            if X.shape[1] != int(np.prod(shape)):
                raise ValueError(f"X has {X.shape[1]} features but image_shape {shape} has "
                                 f"{int(np.prod(shape))} pixels")
        self.image_shape_ = shape
        for name in ("classes_", "output_", "fine_tune_history_", "n_iter_",
                     "stopped_early_", "best_epoch_"):
            self.__dict__.pop(name, None)
        seeds = rng.randint(0, 2**31 - 1, size=n_layers + 2)
        self.pretrain(X, seeds[:n_layers], image_shape=shape)
        if y is None:
            return self
        self.classes_, y_idx = finetune.encode_labels(y, len(X))
        sw = finetune.class_sample_weight(self.class_weight, self.classes_, y_idx)
        self.output_ = finetune.new_layer(self._code_width(), len(self.classes_),
                                     np.random.default_rng(seeds[-2]), X.dtype)
        with arrays_on(self, ("layers_", "output_"), device, keep=True):
            self.fine_tune_history_, summary = finetune.fit_supervised(
                self._network(), {"x": X}, y_idx, sw, fine_tune=self.fine_tune,
                seed=int(seeds[-1]), verbose=self.verbose, augment=self._augmentation(),
                **finetune.options_of(self, finetune.DBN_NAMES))
        self._set_summary(summary)
        return self

    def to(self, device):
        """Compute on ``device`` from now on, the fitted RBMs too (see
        :meth:`pymdbn.RBM.to`).

        Returns
        -------
        self
        """
        for rbm in getattr(self, "rbms_", []):
            rbm.to(device)
        return super().to(device)

    def _augmentation(self):
        if self.augment is None:
            return None
        shape = self.image_shape_
        if shape is None:
            raise ValueError("augment needs images: pass X of shape (n_samples, H, W[, C]) "
                             "or set image_shape")
        return finetune.image_augmentation(self.augment, {"x": image_shape3(shape)})

    def _code_width(self):
        """Units of the top layer (a flattened feature map for a conv or pool top)."""
        top = self.layers_[-1]
        if "W" in top and top.get("type") != "conv":
            return top["W"].shape[1]
        shape = input_shapes(self._specs(), self.image_shape_)[1]
        return int(np.prod(shape))

    def _set_summary(self, summary):
        self.n_iter_ = int(summary["n_iter"])
        self.stopped_early_ = bool(summary["stopped_early"])
        self.best_epoch_ = summary["best_epoch"]

    def _network(self):
        return Network({"x": self.layers_}, ["x"], [], self.output_, self.clip)

    # -- inference ------------------------------------------------------------------------
    def _validate(self, X, device="cpu"):
        check_is_fitted(self, "layers_")
        if getattr(X, "ndim", 2) in (3, 4):
            X = self._input(X)[0]
        return validated(self, X, reset=False, dtype=self.layers_[0]["W"].dtype
                         if "W" in self.layers_[0] else self.rbms_[0].components_.dtype,
                         device=device)

    def transform(self, X):
        """Top-layer code: mean-field probabilities through every layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        code : ndarray of shape (n_samples, hidden_layers[-1])
        """
        device = backend.check_device(self.device)
        Xd = self._validate(X, device)
        with arrays_on(self, ("layers_",), device):
            return to_caller(propagate(Xd, self.layers_, self.clip), X)

    def decision_function(self, X):
        """Logits of each class, shape (n_samples, n_classes)."""
        check_is_fitted(self, "output_")
        device = backend.check_device(self.device)
        Xd = self._validate(X, device)
        with arrays_on(self, ("layers_", "output_"), device):
            return to_caller(self._network().logits({"x": Xd}), X)

    def to_dict(self):
        """The supervised network in :meth:`pymdbn.MDBN.to_dict`'s layout.

        One pathway named ``'x'`` over the (already scaled) input, no joint layers and
        identity scalers: a DBN does not scale its input.

        Returns
        -------
        dict
        """
        check_is_fitted(self, "output_")
        shape = getattr(self, "image_shape_", None)
        shape = [self.n_features_in_] if shape is None else list(shape[:2] if shape[2] == 1
                                                                 else shape)
        return {"modalities": ["x"],
                "pathways": {"x": [copy_layer(lay) for lay in self.layers_]},
                "joint": [],
                "output": {"W": self.output_["W"].copy(), "b": self.output_["b"].copy()},
                "clip": None if self.clip is None else float(self.clip),
                "scalers": {"x": {"mean": np.float64(0.0), "scale": np.float64(1.0)}},
                "meta": {"classes": self.classes_.tolist(), "image_shapes": {"x": shape}}}

    def explain(self, X, target=None, composite="epsilon", return_layers=False,
                batch_size=None, reference=None):
        """Layer-wise relevance propagation of the decisions on X.

        See :func:`pymdbn.lrp.explain`; relevance comes back as ``relevance['x']``.
        ZBox input bounds default to the range [0, 1] of the (unscaled) features.
        ``reference``: one sample of shape (n_features,), or None. ``target``: a
        column index of ``classes_`` (int), a class label, or one per sample.
        """
        from pymdbn.lrp import explain

        check_is_fitted(self, "output_")
        target = finetune.target_indices(target, self.classes_)
        if reference is not None:
            reference = {"x": self._validate(np.asarray(reference).reshape(1, -1))}
        return explain(self, {"x": self._validate(X)}, target=target, composite=composite,
                       return_layers=return_layers, batch_size=batch_size, reference=reference)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns as ``classes_``."""
        logits = backend.to_device(self.decision_function(X), "cpu")
        return softmax(logits.astype(np.float64), axis=1)

    def predict(self, X):
        """Most probable class of each sample."""
        logits = backend.to_device(self.decision_function(X), "cpu")
        return self.classes_[np.argmax(logits, axis=1)]

    # -- persistence ------------------------------------------------------------------------
    def _get_state(self):
        arrays, meta = {}, {"n_features_in": self.n_features_in_, "rbms": []}
        for i, rbm in enumerate(self.rbms_):
            a, m = get_state(rbm)
            arrays.update(nest(f"rbm{i}", a))
            meta["rbms"].append({"estimator": type(rbm).__name__,
                                 "params": encode_params(rbm.get_params()), "state": m})
        for i, layer in enumerate(self.layers_):  # conv and pool metadata: from the specs
            arrays.update(nest(f"layer{i}", {k: v for k, v in layer.items() if k in ("W", "b")}))
        if getattr(self, "image_shape_", None) is not None:
            meta["image_shape"] = list(self.image_shape_)
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in_"] = self.feature_names_in_.astype(str)
        if hasattr(self, "output_"):
            arrays.update(nest("output", self.output_))
            arrays["classes_"] = self.classes_
            meta["fine_tune_history"] = to_json(self.fine_tune_history_)
            meta["fine_tune_summary"] = {"n_iter": self.n_iter_,
                                         "stopped_early": self.stopped_early_,
                                         "best_epoch": self.best_epoch_}
        return arrays, meta

    def _set_state(self, arrays, meta):
        from pymdbn.models.conv_rbm import ConvRBM

        self.n_features_in_ = int(meta["n_features_in"])
        self.rbms_ = []
        for i, m in enumerate(meta["rbms"]):
            cls = ConvRBM if m.get("estimator") == "ConvRBM" else RBM
            rbm = cls(**decode_params(m["params"]))
            self.rbms_.append(set_state(rbm, unnest(f"rbm{i}", arrays), m["state"]))
        self.history_ = [rbm.history_ for rbm in self.rbms_]
        shape = meta.get("image_shape")
        self.image_shape_ = None if shape is None else tuple(int(s) for s in shape)
        specs = self._specs()
        shapes = ([None] * len(specs) if self.image_shape_ is None
                  else input_shapes(specs, self.image_shape_)[0])
        self.layers_ = []
        for i, spec in enumerate(specs):  # as pretrain builds them (io checked the shapes)
            layer = {k: np.ascontiguousarray(v) for k, v in unnest(f"layer{i}", arrays).items()}
            if isinstance(spec, Pool):
                layer = {"type": "pool", "size": spec.size, "mode": spec.mode,
                         "shape": shapes[i]}
            elif isinstance(spec, Conv):
                layer = {"type": "conv", **layer, "shape": shapes[i], "kernel": spec.kernel_size}
            self.layers_.append(layer)
        if "feature_names_in_" in arrays:
            self.feature_names_in_ = arrays["feature_names_in_"].astype(object)
        if "classes_" in arrays:
            self.classes_ = arrays["classes_"]
            self.output_ = {k: np.ascontiguousarray(v) for k, v in unnest("output", arrays)
                            .items()}
            self.fine_tune_history_ = meta["fine_tune_history"]
            # Files written before the summary was stored: what the history tells.
            self._set_summary(meta.get("fine_tune_summary") or {
                "n_iter": len(self.fine_tune_history_), "stopped_early": False,
                "best_epoch": None})
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags
