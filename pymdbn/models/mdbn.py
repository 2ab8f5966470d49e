"""Multimodal deep belief networks: one DBN pathway per modality, fused, fine-tuned."""

import os

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from pymdbn import backend, io
from pymdbn._constraints import (DTYPES, GIBBS_STEPS, NONNEGATIVE, NONNEGATIVE_INT, POSITIVE,
                                 POSITIVE_INT, UNIT_LEFT, UNIT_OPEN, InvalidParameterError,
                                 StrOptions, fine_tune_constraints, layer_sizes)
from pymdbn.layers import Conv, Pool, input_shapes, is_convolutional, layer_specs
from pymdbn.backend import ops
from pymdbn._version import __version__
from pymdbn.models import finetune
from pymdbn.models.dbn import DBN
from pymdbn.models.device import DeviceMixin, arrays_on
from pymdbn.models.network import Network, propagate
from pymdbn.preprocessing import ModalityScaler, check_modalities

__all__ = ["MDBN"]

DEFAULT_MODALITIES = {"brain": (512, 256), "breast": (512, 256), "bone": (512, 256)}
# Parameters a checkpoint must share with the estimator resuming from it: they fix the
# network's structure, the data it was trained on and the optimiser's state layout.
_RESUME_FIXED = ("modalities", "fusion", "joint_units", "clip", "per_feature", "per_image",
                 "dtype",
                 "fine_tune", "optimizer", "early_stopping", "validation_fraction",
                 "class_weight", "batch_size")


@io.register
class MDBN(DeviceMixin, io.SaveMixin, ClassifierMixin, BaseEstimator):
    """Multimodal deep belief network classifier.

    Each modality (e.g. brain MRI, mammogram, bone X-ray) is z-scored
    (:class:`~pymdbn.preprocessing.ModalityScaler`) and encoded by its own DBN
    pathway, pretrained greedily with a Gaussian-Bernoulli RBM at the bottom and
    Bernoulli RBMs above [1]_. The pathway codes are concatenated; with
    ``fusion='joint'`` one or more joint RBMs are pretrained on that
    concatenation [2]_. A softmax layer is trained on top and, with
    ``fine_tune=True``, every layer is then fine-tuned by backpropagation.

    Parameters
    ----------
    modalities : dict of str to int or tuple of int, or None, default=None
        Modality name -> hidden layer sizes of its pathway (an int is one layer), in
        fusion order. None is ``{'brain': (512, 256), 'breast': (512, 256),
        'bone': (512, 256)}``.
    fusion : {'joint', 'concat'}, default='joint'
        'concat': the classifier sees the concatenated pathway codes; 'joint':
        joint RBM layer(s) are pretrained on them first.
    joint_units : int or tuple of int, default=(256,)
        Sizes of the joint layers (``fusion='joint'``); an int is one joint layer of
        that many units, as scikit-learn's ``hidden_layer_sizes``.
    clip : float or None, default=None
        Clip every sigmoid pre-activation to [-clip, clip]; None is the plain
        sigmoid.
    pretrain_learning_rate : float or None, default=None
        RBM step size; None gives 0.005 for the Gaussian bottom layers and 0.05
        for Bernoulli layers.
    pretrain_epochs : int, default=10
    pretrain_batch_size : int, default=32
    pretrain_momentum : float, default=0.5
    pretrain_sparsity_target : float, default=0.1
        Target mean activation of the hidden units of every RBM.
    pretrain_sparsity_cost : float, default=0.1
        Strength of the pull of each RBM's mean hidden activation towards
        ``pretrain_sparsity_target`` (Lee et al. 2008; Hinton 2010, sec. 11); 0
        disables it. See Notes, *Saturated units*.
    k : int, default=1
        Gibbs steps of contrastive divergence (CD-1 as in the method).
    persistent : bool, default=False
    pathway_params : dict of str to dict or None, default=None
        Per-modality overrides of :class:`~pymdbn.DBN` parameters, also ``'joint'``
        for the joint stack, e.g. ``{'brain': {'learning_rate': (0.001, 0.05)}}``.
    per_feature : bool, default=False
        Standardise each pixel separately instead of each modality as a whole.
    per_image : bool, default=False
        Standardise every image by its own mean and deviation first (intensity
        normalisation per scan; see :class:`~pymdbn.preprocessing.ModalityScaler`).
    fine_tune : bool, default=True
        Backpropagate through all layers; False trains the softmax on frozen codes.
    optimizer : {'sgd', 'adam'}, default='sgd'
        Mini-batch SGD with momentum, or Adam [3]_ (beta1 0.9, beta2 0.999).
    learning_rate : float, default=0.1
        Fine-tuning (or softmax) step size.
    momentum : float, default=0.9
        SGD momentum, in [0, 1).
    weight_decay : float, default=1e-4
        L2 penalty on the weights (not the biases) during fine-tuning.
    dropout : float, default=0.0
        Probability, in [0, 1), of dropping each hidden unit (pathway, joint) in the fine-tuning
        batches (Srivastava et al. 2014, inverted scaling: inference is unchanged).
        Not applied when only the softmax is trained (``fine_tune=False``).
    input_dropout : float, default=0.0
        Probability of dropping each input pixel in the fine-tuning batches.
    batch_size : int, default=32
    max_epochs : int, default=30
        Maximum number of fine-tuning epochs.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` and stop once the
        validation loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, restoring the best weights.
    validation_fraction : float, default=0.1
        In (0, 1).
    n_iter_no_change : int, default=5
    tol : float, default=1e-4
    class_weight : None, 'balanced' or dict, default=None
        Sample weights of the softmax loss for imbalanced cohorts.
    missing : {'error', 'infer'}, default='error'
        What prediction does when a modality is absent from X. 'infer'
        (``fusion='joint'`` only) infers its code in the first joint RBM, see Notes.
    n_gibbs : int, default=10
        Mean-field steps of that inference.
    checkpoint_every : int or None, default=None
        Save a resumable checkpoint to ``checkpoint_path`` every this many
        fine-tuning epochs (and at the last one).
    checkpoint_path : str or None, default=None
    augment : callable, dict or None, default=None
        Augmentation of the fine-tuning batches, e.g. ``ImageAugmenter(shift=0.1,
        rotation=10)`` (:class:`pymdbn.ImageAugmenter`): applied to every image
        modality, or a dict modality -> augmenter. It transforms the z-scored images of
        each training batch, seeded by ``[seed, epoch, batch, modality index]``, so fits
        stay reproducible; pretraining and validation batches are not augmented, nor is
        a softmax trained on frozen codes (``fine_tune=False``).
    random_state : int, RandomState instance or None, default=None
        Seeds every RBM, the softmax initialisation, the validation split and the
        epoch shuffles; an int makes ``fit`` reproducible.
    verbose : int, default=0
        Progress bars on stderr, one per pretrained layer and one for fine-tuning,
        with the running loss.
    dtype : {'float32', 'float64', 'bfloat16'}, default='float32'
        Working precision; ``'bfloat16'``: float32 parameters with bfloat16 operands of
        the products (see :class:`pymdbn.RBM`), in pretraining, fine-tuning, prediction
        and :meth:`explain`.
    device : {'cpu', 'cuda'}, default='cpu'
        Where pretraining, fine-tuning, prediction and :meth:`explain` run. With
        ``'cuda'`` the scaled modalities are uploaded once and every epoch stays on
        the GPU; fitted attributes are NumPy arrays either way (a model trained on
        the GPU saves, loads and predicts on the CPU), and results come back as NumPy
        arrays.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    modalities_ : list of str
        Modality names in fusion order.
    scaler_ : ModalityScaler
    pathways_ : dict of str to list of dict
        Per modality, the layers ``{'W': (n_in, n_out), 'b': (n_out,)}``.
    joint_ : list of dict
        The joint layers (empty for ``fusion='concat'``).
    joint_visible_bias_ : ndarray or None
        Visible biases of the first joint RBM, used by ``missing='infer'``.
    output_ : dict
        Softmax layer ``{'W': (n_code, n_classes), 'b': (n_classes,)}``.
    pretrain_history_ : dict of str to list of list of dict
        Per pathway (and ``'joint'``), per layer, the RBM's per-epoch history.
    history_ : list of dict
        Per fine-tuning epoch: ``epoch``, ``loss``, ``val_loss`` and
        ``val_accuracy`` (early stopping) and ``time``.
    n_iter_ : int
        Fine-tuning epochs run.
    stopped_early_ : bool
        Early stopping ended fine-tuning before ``max_epochs``.
    best_epoch_ : int or None
        With early stopping, the epoch of the lowest validation loss, whose weights
        were restored; None without early stopping.
    seed_ : int
        Seed of the fine-tuning shuffles and validation split.

    Notes
    -----
    **Forward pass.** Each pathway computes ``a = sigmoid(clip(x W + b))`` layer
    by layer on the z-scored, flattened input; the fused code is the
    concatenation of the pathway tops in ``modalities_`` order; the joint layers
    apply the same sigmoid; the logits are ``code W + b`` of the output layer.

    **Dictionary layout** of :meth:`to_dict` / :meth:`from_dict` (NumPy arrays;
    ``meta`` is JSON-serialisable)::

        {'modalities': [name, ...],                      # fusion order
         'pathways': {name: [{'W': (n_in, n_out), 'b': (n_out,)}, ...]},
         'joint': [{'W': (n_in, n_out), 'b': (n_out,)}, ...],   # [] for 'concat'
         'output': {'W': (n_code, n_classes), 'b': (n_classes,)},
         'clip': float or None,
         'scalers': {name: {'mean': ndarray, 'scale': ndarray, 'per_image': bool}},
         'meta': {'classes': [...], 'image_shapes': {name: [H, W]}, 'fusion': str,
                  'version': str, 'params': {...}, 'dtype': str,
                  'per_feature': bool, 'per_image': bool, 'n_samples_seen': int,
                  'data_range': {name: [min, max]},  # training range, for ZBox
                  'joint_visible_bias': [float, ...] or None,
                  'history': [...], 'pretrain_history': {...}, 'seed': int}}

    ``W`` is (n_in, n_out), the transpose of an RBM's ``components_``;
    ``mean``/``scale`` are 0-d (one pair per modality) or of the image shape
    (``per_feature``).

    **Saturated units.** The pathway codes are dense probabilities (about 0.6
    on average over hundreds of units) and many units barely vary across
    patients. Plain CD-1 on them drives the hidden units of the upper RBMs,
    above all the joint RBM, to be always on: without a sparsity pull, the joint
    RBM of the proposed model (clip=4) on the phantoms ends with pre-activations
    around +21 for every unit and patient, so the fused code is constant, the
    clipped sigmoid's derivative is 0 everywhere and fine-tuning can only fit the
    output bias (one predicted class). CD has no restoring force there (the data
    and model statistics of a saturated unit are equal), so the sparsity target
    ``pretrain_sparsity_target`` is pulled towards with ``pretrain_sparsity_cost``
    in every RBM; it keeps the units in the sigmoid's working range (under 10% of
    the joint pre-activations beyond 4).

    **Missing modalities** (``missing='infer'``, ``fusion='joint'``). The codes of
    the modalities present are clamped, the missing code starts at 0.5, and
    ``n_gibbs`` mean-field steps alternate h = sigmoid(clip(v W + b)) and, for the
    missing units only, v = sigmoid(clip(h W^T + c)) in the first joint RBM
    (weights and hidden biases as fine-tuned, visible biases ``c`` as
    pretrained) [2]_. Mean-field rather than sampled steps keep predictions
    deterministic.

    **Checkpoints and resuming.** With ``checkpoint_every=N`` a checkpoint (a
    model file, see :mod:`pymdbn.io`, plus the optimiser's state) is written
    atomically to ``checkpoint_path`` every N fine-tuning epochs.
    ``fit(X, y, resume_from=path)`` skips pretraining and continues fine-tuning
    from it up to ``max_epochs``; because each epoch's shuffle depends only on
    the seed and the epoch number, the result equals an uninterrupted fit.

    References
    ----------
    .. [1] G. E. Hinton, S. Osindero and Y.-W. Teh, "A fast learning algorithm for
           deep belief nets", Neural Computation 18(7), 2006.
    .. [2] N. Srivastava and R. Salakhutdinov, "Multimodal learning with deep
           Boltzmann machines", NIPS 2012.
    .. [3] D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization",
           ICLR 2015.
    .. [4] G. E. Hinton and R. R. Salakhutdinov, "Reducing the dimensionality of
           data with neural networks", Science 313(5786), 2006.

    Examples
    --------
    >>> from pymdbn import MDBN
    >>> from pymdbn.data import make_phantoms
    >>> X, y, _, _ = make_phantoms(60, size=16, random_state=0)
    >>> model = MDBN({"brain": (32,), "breast": (32,), "bone": (32,)}, joint_units=(16,),
    ...              pretrain_epochs=2, max_epochs=3, random_state=0).fit(X, y)
    >>> model.predict_proba(X).shape
    (60, 2)
    """

    #: The modalities and pathway sizes that ``modalities=None`` stands for.
    DEFAULT_MODALITIES = DEFAULT_MODALITIES

    _parameter_constraints: dict = {
        "modalities": [None, dict],
        "fusion": [StrOptions({"joint", "concat"})],
        "joint_units": [POSITIVE_INT, "array-like"],
        "clip": [None, POSITIVE],
        "pretrain_learning_rate": [None, POSITIVE],
        "pretrain_epochs": [NONNEGATIVE_INT],
        "pretrain_batch_size": [POSITIVE_INT],
        "pretrain_momentum": [UNIT_LEFT],
        "pretrain_sparsity_target": [UNIT_OPEN],
        "pretrain_sparsity_cost": [NONNEGATIVE],
        "k": [GIBBS_STEPS],
        "persistent": ["boolean"],
        "pathway_params": [None, dict],
        "per_feature": ["boolean"],
        "per_image": ["boolean"],
        **fine_tune_constraints(),
        "missing": [StrOptions({"error", "infer"})],
        "n_gibbs": [POSITIVE_INT],
        "checkpoint_every": [None, POSITIVE_INT],
        "checkpoint_path": [None, str, os.PathLike],
        "augment": [None, callable, dict],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "dtype": [DTYPES],
        "device": [StrOptions(set(backend.DEVICES))],
    }

    def __init__(self, modalities=None, *, fusion="joint", joint_units=(256,), clip=None,
                 pretrain_learning_rate=None, pretrain_epochs=10, pretrain_batch_size=32,
                 pretrain_momentum=0.5, pretrain_sparsity_target=0.1,
                 pretrain_sparsity_cost=0.1, k=1, persistent=False, pathway_params=None,
                 per_feature=False, per_image=False, fine_tune=True, optimizer="sgd",
                 learning_rate=0.1, momentum=0.9, weight_decay=1e-4, dropout=0.0,
                 input_dropout=0.0, batch_size=32, max_epochs=30, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, tol=1e-4,
                 class_weight=None, missing="error", n_gibbs=10, checkpoint_every=None,
                 checkpoint_path=None, augment=None, random_state=None, verbose=0,
                 dtype="float32", device="cpu"):
        self.modalities = modalities
        self.fusion = fusion
        self.joint_units = joint_units
        self.clip = clip
        self.pretrain_learning_rate = pretrain_learning_rate
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_batch_size = pretrain_batch_size
        self.pretrain_momentum = pretrain_momentum
        self.pretrain_sparsity_target = pretrain_sparsity_target
        self.pretrain_sparsity_cost = pretrain_sparsity_cost
        self.k = k
        self.persistent = persistent
        self.pathway_params = pathway_params
        self.per_feature = per_feature
        self.per_image = per_image
        self.fine_tune = fine_tune
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.missing = missing
        self.n_gibbs = n_gibbs
        self.checkpoint_every = checkpoint_every
        self.checkpoint_path = checkpoint_path
        self.augment = augment
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    # -- configuration ------------------------------------------------------------------
    def _modality_sizes(self):
        mods = DEFAULT_MODALITIES if self.modalities is None else self.modalities
        if not mods:
            raise InvalidParameterError(f"The 'modalities' parameter of MDBN must be a "
                                        f"non-empty dict name -> layer sizes. Got "
                                        f"{self.modalities!r} instead.")
        for name in mods:
            if not isinstance(name, str):
                raise InvalidParameterError(f"modality names must be str, got {name!r}")
        return {name: layer_specs(f"modalities[{name!r}]", sizes, "MDBN")
                for name, sizes in mods.items()}

    def _joint_sizes(self):
        return layer_sizes("joint_units", self.joint_units, "MDBN")

    def _check_params(self):
        """What ``_parameter_constraints`` cannot say: layer sizes, the overrides and
        the parameters that depend on each other. Returns the pathway sizes."""
        sizes = self._modality_sizes()
        if self.fusion == "joint":
            self._joint_sizes()
        if self.missing == "infer" and self.fusion != "joint":
            raise ValueError("missing='infer' needs fusion='joint' (the joint RBM infers "
                             "the absent modality's code)")
        if self.checkpoint_every is not None and not self.checkpoint_path:
            raise ValueError("checkpoint_every needs a checkpoint_path")
        extra = self.pathway_params or {}
        if not all(isinstance(v, dict) for v in extra.values()):
            raise ValueError(f"pathway_params must be a dict of dicts, got "
                             f"{self.pathway_params!r}")
        unknown = set(extra) - set(sizes) - {"joint"}
        if unknown:
            raise ValueError(f"pathway_params names unknown modality {sorted(unknown)[0]!r}")
        for name in extra:  # the overrides, checked before any pretraining starts
            if name not in sizes and self.fusion != "joint":
                continue  # no joint stack to override
            stack = sizes[name] if name in sizes else self._joint_sizes()
            # MDBN's own values passed its constraints: an error is an override's.
            try:
                dbn = self._stack(stack, "gaussian" if name in sizes else "bernoulli", name)
                dbn._validate_params()
                dbn._rbm_params(np.zeros(len(stack), dtype=np.int64))
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"pathway_params[{name!r}]: {exc}") from None
            except ValueError as exc:  # e.g. not a DBN parameter
                raise ValueError(f"pathway_params[{name!r}]: {exc}") from None
        return sizes

    def _stack(self, sizes, visible, name):
        dbn = DBN(hidden_layers=sizes, visible=visible,
                  learning_rate=self.pretrain_learning_rate, n_iter=self.pretrain_epochs,
                  batch_size=self.pretrain_batch_size, k=self.k, persistent=self.persistent,
                  momentum=self.pretrain_momentum,
                  sparsity_target=self.pretrain_sparsity_target,
                  sparsity_cost=self.pretrain_sparsity_cost, clip=self.clip,
                  verbose=self.verbose, dtype=self.dtype, device=self.device)
        return dbn.set_params(**(self.pathway_params or {}).get(name, {}))

    # -- data ---------------------------------------------------------------------------
    def _scaled(self, X, allow_missing=False):
        """Validated, z-scored, flattened modalities in fusion order, in ``dtype``."""
        X = check_modalities(X, self.modalities_, self.scaler_.shapes_, allow_missing=True,
                             check_finite=False)  # standardize checks in its pass
        absent = [m for m in self.modalities_ if m not in X]
        if absent and not allow_missing:
            hint = (" (or set missing='infer' to infer it)" if self.fusion == "joint"
                    else "")
            raise ValueError(f"missing modality {absent[0]!r}; X must hold all of "
                             f"{self.modalities_}{hint}")
        return self.scaler_._transform(X, dtype=backend.storage_dtype(self.dtype))

    # -- fitting --------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, resume_from=None):
        """Scale, pretrain every pathway (and the joint stack), train the softmax, fine-tune.

        Parameters
        ----------
        X : dict of str to array-like
            Modality name -> images (n_samples, H, W) or vectors (n_samples, D), with
            exactly the modalities of ``modalities``.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values).
        resume_from : str or os.PathLike or None, default=None
            A checkpoint written with ``checkpoint_every``: pretraining is skipped and
            fine-tuning continues from it up to ``max_epochs``. The checkpoint must
            come from an MDBN with the same structural and data-defining parameters.

        Returns
        -------
        self : MDBN
        """
        sizes = self._check_params()
        device = backend.check_device(self.device)
        if resume_from is not None:
            return self._resume(X, y, resume_from)
        names = list(sizes)
        X = check_modalities(X, names)
        self.classes_, y_idx = finetune.encode_labels(y, len(X[names[0]]))
        rng = check_random_state(self.random_state)
        seeds = rng.randint(0, 2**31 - 1, size=len(names) + 3)
        self.modalities_ = names
        self.scaler_ = ModalityScaler(per_feature=self.per_feature,
                                      per_image=self.per_image).fit(X)
        for name in names:  # a convolutional spec that does not fit its images fails now
            if is_convolutional(sizes[name]):
                try:
                    input_shapes(sizes[name], self.scaler_.shapes_[name])
                except ValueError as exc:
                    raise ValueError(f"modalities[{name!r}]: {exc}") from None
        # Scaled on the host, uploaded once: pretraining and fine-tuning run on the device.
        Z = backend.to_device(self._scaled(X), device)
        self.pathways_, self.pretrain_history_, tops = {}, {}, {}
        for i, name in enumerate(names):
            dbn = self._stack(sizes[name], "gaussian", name)
            layer_seeds = np.random.RandomState(seeds[i]).randint(0, 2**31 - 1, len(sizes[name]))
            dbn.pretrain(Z[name], layer_seeds, desc=f"pretrain {name}",
                         image_shape=self.scaler_.shapes_[name] if is_convolutional(sizes[name])
                         else None)
            self.pathways_[name] = dbn.layers_
            self.pretrain_history_[name] = dbn.history_
            tops[name] = propagate(Z[name], backend.to_device(dbn.layers_, device), self.clip)
        self.joint_, self.joint_visible_bias_ = [], None
        if self.fusion == "joint":
            fused = backend.namespace(tops[names[0]]).concatenate([tops[m] for m in names],
                                                                   axis=1)
            joint_units = self._joint_sizes()
            dbn = self._stack(joint_units, "bernoulli", "joint")
            joint_seeds = np.random.RandomState(seeds[-3]).randint(0, 2**31 - 1,
                                                                   len(joint_units))
            dbn.pretrain(fused, joint_seeds, desc="pretrain joint")
            self.joint_ = dbn.layers_
            self.joint_visible_bias_ = dbn.rbms_[0].intercept_visible_.copy()
            self.pretrain_history_["joint"] = dbn.history_
        n_code = (self.joint_[-1] if self.joint_ else None)
        n_code = n_code["W"].shape[1] if n_code else sum(t.shape[1] for t in tops.values())
        self.output_ = finetune.new_layer(n_code, len(self.classes_),
                                     np.random.default_rng(seeds[-2]), backend.storage_dtype(self.dtype))
        self.seed_ = int(seeds[-1])
        self.history_ = []
        self._fine_tune(Z, y_idx, None)
        return self

    def _network(self):
        return Network(self.pathways_, self.modalities_, self.joint_, self.output_,
                           self.clip)

    def _fine_tune(self, Z, y_idx, state):
        sw = finetune.class_sample_weight(self.class_weight, self.classes_, y_idx)
        on_epoch = None
        if self.checkpoint_every is not None:
            def on_epoch(s):
                if s["epoch"] % self.checkpoint_every == 0 or s["epoch"] == self.max_epochs:
                    self._checkpoint(s)
        with arrays_on(self, self._NETWORK_ARRAYS, backend.device_of(next(iter(Z.values()))),
                       keep=True):
            self.history_, summary = finetune.fit_supervised(
                self._network(), Z, y_idx, sw, fine_tune=self.fine_tune, seed=self.seed_,
                verbose=self.verbose, state=state, on_epoch=on_epoch,
                augment=finetune.image_augmentation(self.augment, {
                    m: s for m, s in self.scaler_.shapes_.items() if len(s) >= 2}),
                **finetune.options_of(self))
        self._set_summary(summary)

    def _set_summary(self, summary):
        self.n_iter_ = int(summary["n_iter"])
        self.stopped_early_ = bool(summary["stopped_early"])
        self.best_epoch_ = summary["best_epoch"]

    # The fitted arrays a forward pass reads: on the device while it runs there.
    _NETWORK_ARRAYS = ("pathways_", "joint_", "output_", "joint_visible_bias_")

    def _checkpoint(self, state):
        """Writes the model and the training state (host copies, from any device)."""
        with arrays_on(self, self._NETWORK_ARRAYS, "cpu"):
            self._write_checkpoint(backend.to_device(
                {k: state[k] for k in ("slots", "best_params")}, "cpu"), state)

    def _write_checkpoint(self, host, state):
        self.history_ = state["history"]
        self._set_summary({"n_iter": state["epoch"], "stopped_early": state["stopped"],
                           "best_epoch": (finetune.best_epoch(state) if state["best_params"]
                                          is not None else None)})
        arrays = {f"slot{i}": s for i, s in enumerate(host["slots"])}
        if host["best_params"] is not None:
            arrays.update({f"best{i}": p for i, p in enumerate(host["best_params"])})
        meta = {k: state[k] for k in ("epoch", "t", "best_loss", "no_improve", "stopped")}
        meta.update(n_slots=len(state["slots"]), has_best=state["best_params"] is not None)
        io.save(self, self.checkpoint_path, train_state=(arrays, meta))

    def _resume(self, X, y, path):
        ck, train = io.load(path, return_train_state=True)
        if not isinstance(ck, MDBN) or train is None:
            raise ValueError(f"{path} is not an MDBN checkpoint (written with "
                             "checkpoint_every)")
        mine, theirs = self.get_params(deep=False), ck.get_params(deep=False)
        differ = [k for k in _RESUME_FIXED if mine[k] != theirs[k]]
        if differ:
            raise ValueError(f"cannot resume from {path}: parameters {differ} differ from "
                             "the checkpoint's")
        for attr in ("modalities_", "scaler_", "pathways_", "joint_", "joint_visible_bias_",
                     "output_", "classes_", "pretrain_history_", "seed_", "history_"):
            setattr(self, attr, getattr(ck, attr))
        Z = backend.to_device(self._scaled(X), backend.check_device(self.device))
        classes, y_idx = finetune.encode_labels(y, len(next(iter(Z.values()))))
        if not np.array_equal(classes, self.classes_):
            raise ValueError(f"y has classes {classes.tolist()}, the checkpoint "
                             f"{self.classes_.tolist()}")
        arrays, meta = train
        state = {k: meta[k] for k in ("epoch", "t", "best_loss", "no_improve", "stopped")}
        state["slots"] = [arrays[f"slot{i}"].copy() for i in range(meta["n_slots"])]
        state["best_params"] = ([arrays[f"best{i}"].copy() for i in range(meta["n_slots"])
                                 if f"best{i}" in arrays] if meta["has_best"] else None)
        state["history"] = list(self.history_)
        self._fine_tune(Z, y_idx, state)
        return self

    # -- inference ------------------------------------------------------------------------
    def _infer_missing(self, tops, n):
        """Fused code with absent modalities' codes inferred in the first joint RBM."""
        widths = {m: self.pathways_[m][-1]["W"].shape[1] for m in self.modalities_}
        xp = backend.namespace(self.output_["W"])
        v = xp.full((n, sum(widths.values())), 0.5, dtype=backend.storage_dtype(self.dtype))
        missing, start = [], 0
        for m in self.modalities_:
            if m in tops:
                v[:, start:start + widths[m]] = tops[m]
            else:
                missing.append(slice(start, start + widths[m]))
            start += widths[m]
        w, b, c = self.joint_[0]["W"], self.joint_[0]["b"], self.joint_visible_bias_
        for _ in range(self.n_gibbs):
            h = ops.affine_sigmoid(v, w, b, self.clip, False)
            recon = ops.affine_sigmoid(h, w, c, self.clip, True)
            for s in missing:
                v[:, s] = recon[:, s]
        return v

    def _code_and_logits(self, X):
        """(code, logits) as NumPy arrays, computed on ``device``."""
        check_is_fitted(self, "output_")
        device = backend.check_device(self.device)
        Z = backend.to_device(self._scaled(X, allow_missing=self.missing == "infer"), device)
        with arrays_on(self, self._NETWORK_ARRAYS, device):
            net = self._network()
            if len(Z) == len(self.modalities_):
                out = net.code_and_logits(Z)
            else:
                tops = {m: propagate(z, self.pathways_[m], self.clip) for m, z in Z.items()}
                out = net.head(self._infer_missing(tops, len(next(iter(Z.values())))))
            return backend.to_device(out, "cpu")

    def transform(self, X):
        """The code the softmax sees: the joint top layer, or the concatenated pathway tops.

        Parameters
        ----------
        X : dict of str to array-like

        Returns
        -------
        code : ndarray of shape (n_samples, n_code)
        """
        return self._code_and_logits(X)[0]

    def decision_function(self, X):
        """Logits, shape (n_samples, n_classes), columns as ``classes_``."""
        return self._code_and_logits(X)[1]

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns as ``classes_``."""
        return softmax(self.decision_function(X).astype(np.float64), axis=1)

    def predict(self, X):
        """Most probable class of each sample."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def explain(self, X, target=None, composite="epsilon", return_layers=False,
                batch_size=None, reference=None):
        """Explain the decisions on X by layer-wise relevance propagation.

        Relevance starts at the target logit (default: the predicted class; the other
        logits are set to 0) and is propagated through the output, joint and pathway
        layers down to every pixel of every modality with the rules of ``composite``.

        Parameters
        ----------
        X : dict of str to array-like
            Raw inputs per modality, as for :meth:`predict`.
        target : int, label or array-like of shape (n_samples,), optional
            The class to explain: a column index of ``classes_`` (an int) or a class
            label (e.g. ``'cancer'``), one for all samples or one per sample.
        composite : str or pymdbn.lrp.Composite, default='epsilon'
            'epsilon' is the method's eq. 3 everywhere; also 'epsilon_plus',
            'epsilon_gamma_box' and 'epsilon_plus_flat'.
        return_layers : bool, default=False
        batch_size : int, optional
        reference : dict of str to array-like, optional
            One raw image per modality (e.g. the mean image of healthy training
            patients): Epsilon layers then propagate differences from the reference's
            activations; see :func:`pymdbn.lrp.explain`.

        Returns
        -------
        pymdbn.lrp.Explanation
            Relevance per modality shaped like the input images, logits, targets,
            modality shares and the conservation residual.
        """
        from pymdbn.lrp import explain

        check_is_fitted(self, "output_")
        return explain(self._layout(), X,
                       target=finetune.target_indices(target, self.classes_), composite=composite,
                       return_layers=return_layers, batch_size=batch_size, reference=reference,
                       device=self.device, dtype=self.dtype)

    # -- dict and file persistence ------------------------------------------------------------
    def to_dict(self, copy=True):
        """The fitted model as plain arrays and JSON metadata (layout in the class notes).

        Parameters
        ----------
        copy : bool, default=True
            Copy the arrays; False shares them with the model (read-only use, e.g.
            explaining, where copying every weight matrix per call would cost time).

        Returns
        -------
        dict
        """
        check_is_fitted(self, "output_")
        d = self._layout(copy)
        meta = {"classes": d["meta"]["classes"], "image_shapes": d["meta"]["image_shapes"],
                "fusion": self.fusion, "version": __version__,
                "params": io.encode_params(self.get_params(deep=False)),
                "dtype": self.dtype, "per_feature": bool(self.per_feature),
                "per_image": bool(self.per_image),
                "n_samples_seen": self.scaler_.n_samples_seen_,
                "joint_visible_bias": (None if self.joint_visible_bias_ is None
                                       else self.joint_visible_bias_.tolist()),
                "history": io.to_json(self.history_),
                "pretrain_history": io.to_json(self.pretrain_history_),
                "seed": self.seed_,
                "fine_tune_summary": {"n_iter": self.n_iter_,
                                      "stopped_early": self.stopped_early_,
                                      "best_epoch": self.best_epoch_}}
        if "data_range" in d["meta"]:
            meta["data_range"] = d["meta"]["data_range"]
        return {**d, "meta": meta}

    def _layout(self, copy=False):
        """:meth:`to_dict`'s arrays with only the metadata that explaining reads
        (classes, image shapes, data range): encoding the parameters and histories
        costs more than explaining one sample."""
        take = np.copy if copy else np.asarray

        def copy_layers(layers):
            return [{k: take(v) if k in ("W", "b") else v for k, v in layer.items()}
                    for layer in layers]
        meta = {"classes": self.classes_.tolist(),
                "image_shapes": {m: list(s) for m, s in self.scaler_.shapes_.items()}}
        if self.per_image:  # normalised images have no fixed range: the training one
            meta["data_range"] = {m: list(r) for m, r in self.scaler_.data_range_.items()}
        return {"modalities": list(self.modalities_),
                "pathways": {m: copy_layers(self.pathways_[m]) for m in self.modalities_},
                "joint": copy_layers(self.joint_),
                "output": copy_layers([self.output_])[0],
                "clip": None if self.clip is None else float(self.clip),
                "scalers": {m: {"mean": take(self.scaler_.mean_[m]),
                                "scale": take(self.scaler_.scale_[m]),
                                "per_image": bool(self.per_image)}
                            for m in self.modalities_},
                "meta": meta}

    @classmethod
    def from_dict(cls, d):
        """Rebuild a fitted MDBN from :meth:`to_dict` output.

        Parameters
        ----------
        d : dict

        Returns
        -------
        MDBN
        """
        meta = d["meta"]
        model = cls(**io.decode_params(meta["params"]))
        dtype = backend.storage_dtype(meta["dtype"])

        def layers(items, specs=None, shapes=None):
            # Conv and pool metadata come from the parameters, not from the dict: a
            # file stores only W and b (io checks their shapes against the same specs).
            out = []
            for i, x in enumerate(items):
                spec = None if specs is None else specs[i]
                if isinstance(spec, Pool):
                    out.append({"type": "pool", "size": spec.size, "mode": spec.mode,
                                "shape": shapes[i]})
                    continue
                layer = {"W": np.ascontiguousarray(x["W"], dtype=dtype),
                         "b": np.ascontiguousarray(x["b"], dtype=dtype)}
                if isinstance(spec, Conv):
                    layer = {"type": "conv", **layer, "shape": shapes[i],
                             "kernel": spec.kernel_size}
                out.append(layer)
            return out

        model.modalities_ = list(d["modalities"])
        specs = model._modality_sizes()
        model.pathways_ = {}
        for m in model.modalities_:
            if is_convolutional(specs[m]):
                shapes = input_shapes(specs[m], meta["image_shapes"][m])[0]
                model.pathways_[m] = layers(d["pathways"][m], specs[m], shapes)
            else:
                model.pathways_[m] = layers(d["pathways"][m])
        model.joint_ = layers(d["joint"])
        model.output_ = layers([d["output"]])[0]
        bias = meta["joint_visible_bias"]
        model.joint_visible_bias_ = None if bias is None else np.asarray(bias, dtype=dtype)
        model.classes_ = np.asarray(meta["classes"])
        scaler = ModalityScaler(per_feature=meta["per_feature"],
                                per_image=bool(meta.get("per_image", False)))
        model.scaler_ = scaler._set_state(
            {f"{m}/{k}": d["scalers"][m][k] for m in model.modalities_ for k in ("mean",
                                                                                  "scale")},
            {"modalities": model.modalities_, "shapes": meta["image_shapes"],
             "n_samples_seen": meta["n_samples_seen"],
             "data_range": meta.get("data_range")})
        model.history_ = meta["history"]
        model.pretrain_history_ = meta["pretrain_history"]
        model.seed_ = int(meta["seed"])
        # Files written before the summary was stored: what the history tells.
        model._set_summary(meta.get("fine_tune_summary") or {
            "n_iter": len(model.history_), "stopped_early": False, "best_epoch": None})
        return model

    def _get_state(self):
        d = self.to_dict()
        arrays = {}
        for m in d["modalities"]:
            for i, layer in enumerate(d["pathways"][m]):  # shapes and kinds: from params
                arrays.update(io.nest(f"pathways/{m}/{i}",
                                      {k: v for k, v in layer.items() if k in ("W", "b")}))
            arrays.update(io.nest(f"scalers/{m}", d["scalers"][m]))
        for i, layer in enumerate(d["joint"]):
            arrays.update(io.nest(f"joint/{i}", layer))
        arrays.update(io.nest("output", d["output"]))
        meta = {"modalities": d["modalities"], "clip": d["clip"], "meta": d["meta"],
                "depths": {m: len(d["pathways"][m]) for m in d["modalities"]},
                "n_joint": len(d["joint"])}
        return arrays, meta

    def _set_state(self, arrays, state):
        d = {"modalities": state["modalities"], "clip": state["clip"], "meta": state["meta"],
             "pathways": {m: [io.unnest(f"pathways/{m}/{i}", arrays)
                              for i in range(state["depths"][m])]
                          for m in state["modalities"]},
             "joint": [io.unnest(f"joint/{i}", arrays) for i in range(state["n_joint"])],
             "output": io.unnest("output", arrays),
             "scalers": {m: io.unnest(f"scalers/{m}", arrays) for m in state["modalities"]}}
        restored = self.from_dict(d)
        self.__dict__.update({k: v for k, v in vars(restored).items() if k.endswith("_")})
        return self
