"""Supervised training of a :class:`~pymdbn.models.network.Network`: dropout, optimisers,
the mini-batch loop with early stopping and resumable state, and label handling.

The arithmetic runs in the C++ kernels ``softmax_cross_entropy``, ``sgd_momentum_update``
and ``adam_update`` (and the network's ``dense_forward``/``dense_backward``); their NumPy
twins in :mod:`pymdbn.backend.reference` define them.
"""

import time

import numpy as np

from pymdbn import backend
from pymdbn.backend import ops
from pymdbn._progress import Progress
from pymdbn.models.network import Network

__all__ = ["new_layer", "Dropout", "Optimizer", "train", "fit_supervised", "fresh_state", "best_epoch",
           "stop_note", "validation_split", "encode_labels", "class_sample_weight",
           "target_indices", "OPTIONS", "DBN_NAMES", "options_of", "image_augmentation"]

_ADAM = dict(beta1=0.9, beta2=0.999, epsilon=1e-8)

#: The optimisation options of :func:`train`, as MDBN's parameters name them.
OPTIONS = ("optimizer", "learning_rate", "momentum", "weight_decay", "batch_size",
           "max_epochs", "early_stopping", "validation_fraction", "n_iter_no_change", "tol",
           "dropout", "input_dropout")
#: DBN's names for those it spells otherwise (its ``learning_rate`` etc. pretrain).
DBN_NAMES = {"learning_rate": "fine_tune_learning_rate", "momentum": "fine_tune_momentum",
             "weight_decay": "fine_tune_weight_decay", "batch_size": "fine_tune_batch_size",
             "max_epochs": "fine_tune_epochs", "dropout": "fine_tune_dropout",
             "input_dropout": "fine_tune_input_dropout"}


def options_of(estimator, names=None):
    """The :data:`OPTIONS` as ``estimator``'s parameters hold them; ``names`` maps an
    option to the parameter that holds it where the two differ (:data:`DBN_NAMES`)."""
    names = names or {}
    return {k: getattr(estimator, names.get(k, k)) for k in OPTIONS}


def new_layer(n_in, n_out, rng, dtype, scale=0.01):
    """A dense layer with N(0, scale^2) weights and zero biases."""
    return {"W": np.ascontiguousarray(rng.normal(0.0, scale, (n_in, n_out)), dtype=dtype),
            "b": np.zeros(n_out, dtype=dtype)}


class Dropout:
    """Dropout masks for one training batch (Srivastava et al. 2014, inverted scaling).

    Each call to :meth:`apply` draws a Bernoulli mask for one activation (kept with
    probability ``1 - rate``, scaled by ``1 / (1 - rate)`` so that inference needs no
    change) from ``numpy.random.default_rng(seed)`` in a fixed order, so a batch's masks
    depend only on its seed, on every device (device activations get the same masks,
    uploaded). :meth:`backward` passes a gradient back through the mask that was applied
    to that activation.

    Parameters
    ----------
    rate : float
        Hidden units' drop probability, in [0, 1).
    input_rate : float
        Input features' drop probability, in [0, 1).
    seed : sequence of int
        E.g. ``[seed, epoch, batch]``.
    """

    def __init__(self, rate, input_rate, seed):
        self.rate, self.input_rate = float(rate), float(input_rate)
        self.rng = np.random.default_rng(seed)
        self.scales = {}  # id(activation) -> the scaled mask applied to it
        self._keep = []  # the activations themselves, so their ids stay unique

    def apply(self, a, inputs=False):
        rate = self.input_rate if inputs else self.rate
        if rate == 0:
            return a
        keep = self.rng.random(a.shape, dtype=np.float32) >= rate
        # keep / (1 - rate) rounded to a.dtype, without its float64 temporary: 0 or the
        # rounded 1 / (1 - rate) (1 * s is exact).
        scale = keep.astype(a.dtype)
        scale *= a.dtype.type(1.0 / (1.0 - rate))
        scale = backend.to_device(scale, backend.device_of(a))
        self.scales[id(a)] = scale
        self._keep.append(a)
        return backend.namespace(a).ascontiguousarray(a * scale)

    def backward(self, grad, a):
        """d loss / d a from d loss / d (masked a)."""
        scale = self.scales.get(id(a))
        return grad if scale is None else backend.namespace(grad).ascontiguousarray(grad * scale)


class Optimizer:
    """Mini-batch SGD with momentum, or Adam, over a list of arrays updated in place.

    Weight decay (L2) applies to weight matrices only, not to biases. Adam uses
    beta1=0.9, beta2=0.999, epsilon=1e-8 (Kingma & Ba 2015).
    """

    def __init__(self, params, kind, learning_rate, momentum, weight_decay):
        self.kind = kind
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.decay = [float(weight_decay) if p.ndim == 2 else 0.0 for p in params]
        per_param = 1 if kind == "sgd" else 2
        self.slots = [backend.namespace(p).zeros_like(p) for p in params
                      for _ in range(per_param)]
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            g = backend.namespace(g).ascontiguousarray(g, dtype=p.dtype)
            if self.kind == "sgd":
                ops.sgd_momentum_update(p, g, self.slots[i], self.learning_rate, self.momentum,
                                       self.decay[i])
            else:
                ops.adam_update(p, g, self.slots[2 * i], self.slots[2 * i + 1],
                               self.learning_rate, _ADAM["beta1"], _ADAM["beta2"],
                               _ADAM["epsilon"], self.t, self.decay[i])


def _loss(net, X, y, sample_weight):
    """Weighted mean cross-entropy and accuracy of ``net`` on (X, y), all on one device."""
    logits = net.logits(X)
    loss, _, _ = ops.softmax_cross_entropy(logits, y, sample_weight)
    xp = backend.namespace(logits)
    return float(loss), float(xp.mean(xp.argmax(logits, axis=1) == y))


def validation_split(y, fraction, seed):
    """Stratified (train, validation) row indices, reproducible from ``seed``."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    train, val = train_test_split(rows, test_size=fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val)


def train(net, X, y, sample_weight, *, output_only, optimizer, learning_rate, momentum,
          weight_decay, batch_size, max_epochs, early_stopping, validation_fraction,
          n_iter_no_change, tol, seed, progress, state=None, on_epoch=None, dropout=0.0,
          input_dropout=0.0, augment=None):
    """Minimise the softmax cross-entropy of ``net`` by mini-batch gradient descent.

    Each epoch visits the training rows in the order ``default_rng([seed, epoch])``
    draws, so an interrupted run resumed from its ``state`` takes the same steps as an
    uninterrupted one. With ``early_stopping`` a stratified ``validation_fraction`` of
    the rows is held out; training stops once the validation loss has not improved by
    ``tol`` for ``n_iter_no_change`` epochs, and the best parameters are restored.

    Parameters
    ----------
    net : Network
    X : dict of str to ndarray
        Inputs of each pathway, C-contiguous, the network's dtype, on the network's
        device (where its parameters are: the whole loop runs there).
    y : ndarray of int64
        Class indices 0..K-1 (host).
    sample_weight : ndarray of float64 or None (host)
    output_only : bool
        Train only the output layer.
    progress : pymdbn._progress.Progress
    state : dict or None
        A training state from a previous call's ``on_epoch`` to resume from.
    on_epoch : callable or None
        Called as ``on_epoch(state)`` after each epoch; ``state`` holds ``epoch``,
        ``t``, ``slots`` (optimiser arrays), ``best_loss``, ``no_improve``,
        ``best_params``, ``stopped`` and ``history``.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (weighted training loss averaged over the
        epoch's batches), ``val_loss`` and ``val_accuracy`` (with early stopping) and
        ``time``.

    ``dropout`` and ``input_dropout`` drop hidden units and inputs in the training
    batches of a full fine-tuning (:class:`Dropout`, masks seeded by ``[seed, epoch,
    batch]``; not with ``output_only``); the validation loss and the trained network
    use every unit.

    ``augment``, a callable ``(batch, [seed, epoch, batch_index]) -> batch`` on the dict
    of a training batch's inputs, replaces each training batch by a random variation of
    it (:func:`image_augmentation`); validation batches are not augmented.
    """
    params = net.parameters(output_only)
    device = backend.device_of(params[0])
    # Labels and weights go to the parameters' device once; rows are picked there.
    y_dev, sw_dev = backend.to_device((y, sample_weight), device)
    rows = np.arange(len(y))
    val = None
    if early_stopping:
        rows, val = validation_split(y, validation_fraction, seed)
        val_dev = backend.to_device(val, device)
        X_val = {k: v[val_dev] for k, v in X.items()}
        sw_val = None if sample_weight is None else sw_dev[val_dev]
    opt = Optimizer(params, optimizer, learning_rate, momentum, weight_decay)
    if state is None or "slots" not in state:  # a fresh run, not a resumed one
        state = fresh_state() if state is None else state
    else:
        if len(state["slots"]) != len(opt.slots):
            raise ValueError("the checkpoint's optimiser state does not fit this network")
        for slot, saved in zip(opt.slots, state["slots"]):
            slot[...] = backend.to_device(saved, device)
        opt.t = state["t"]
        state["best_params"] = backend.to_device(state["best_params"], device)
    history = state["history"]
    if state["epoch"]:
        progress.update(state["epoch"])
    with backend.array_pool():  # the batches' temporaries reuse one set of buffers
        while state["epoch"] < max_epochs and not state["stopped"]:
            t0 = time.perf_counter()
            epoch = state["epoch"]
            order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
            order_dev = backend.to_device(order, device)  # one upload per epoch
            total, weight = 0.0, 0.0
            drop = not output_only and (dropout > 0 or input_dropout > 0)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                idx_dev = order_dev[start:start + batch_size]
                masks = (Dropout(dropout, input_dropout, [seed, epoch, start // batch_size])
                         if drop else None)
                batch = {k: v[idx_dev] for k, v in X.items()}
                if augment is not None:
                    batch = augment(batch, [seed, epoch, start // batch_size])
                cache = net.forward(batch, masks)
                sw = None if sample_weight is None else sw_dev[idx_dev]
                loss, grad, _ = ops.softmax_cross_entropy(cache["logits"], y_dev[idx_dev], sw)
                if not np.isfinite(loss):
                    raise FloatingPointError("fine-tuning diverged (non-finite loss); lower "
                                             "learning_rate")
                opt.step(params, net.backward(cache, grad, output_only))
                w = len(idx) if sample_weight is None else float(sample_weight[idx].sum())
                total += loss * w
                weight += w
            entry = {"epoch": epoch + 1, "loss": total / weight}
            if early_stopping:
                entry["val_loss"], entry["val_accuracy"] = _loss(net, X_val, y_dev[val_dev],
                                                                 sw_val)
                best = state["best_loss"]
                if best is None or entry["val_loss"] < best - tol:
                    state["best_loss"] = entry["val_loss"]
                    state["no_improve"] = 0
                    state["best_params"] = [p.copy() for p in params]
                else:
                    state["no_improve"] += 1
                state["stopped"] = state["no_improve"] >= n_iter_no_change
            entry["time"] = time.perf_counter() - t0
            history.append(entry)
            state["epoch"] = epoch + 1
            state["t"] = opt.t
            state["slots"] = opt.slots
            progress.update(1, **{k: v for k, v in entry.items() if k in ("loss", "val_loss")})
            if on_epoch is not None:
                on_epoch(state)
    if early_stopping and state["best_params"] is not None:
        for p, best in zip(params, state["best_params"]):
            p[...] = best
        progress.note(stop_note(state, max_epochs, n_iter_no_change, tol))
    return history


def fresh_state():
    """The training state before the first epoch (see :func:`train`'s ``on_epoch``)."""
    return {"epoch": 0, "best_loss": None, "no_improve": 0, "best_params": None,
            "stopped": False, "history": []}


def best_epoch(state):
    """The epoch whose parameters early stopping restored (the last that improved)."""
    return state["epoch"] - state["no_improve"]


def stop_note(state, max_epochs, n_iter_no_change, tol):
    """What early stopping did, in words, from a training ``state``."""
    best = best_epoch(state)
    if state["stopped"]:
        return (f"stopped early at epoch {state['epoch']} of {max_epochs}: validation loss "
                f"did not improve by tol={tol:g} for {n_iter_no_change} epochs; restored "
                f"the weights of epoch {best}")
    if best != state["epoch"]:
        return (f"ran all {state['epoch']} epochs; restored the weights of epoch {best} "
                f"(lowest validation loss)")
    return ""


def fit_supervised(net, X, y, sample_weight, *, fine_tune, seed, verbose, state=None,
                   on_epoch=None, **options):
    """Train the output layer of ``net`` and, with ``fine_tune``, every layer below it.

    Without ``fine_tune`` the codes entering the output layer are computed once and a
    softmax regression is trained on them (the layers below stay as pretrained).
    ``options`` are the optimisation arguments of :func:`train`.

    Returns
    -------
    history : list of dict
        As :func:`train` returns it.
    summary : dict
        ``n_iter`` (epochs run in all, resumed ones included), ``stopped_early`` (the
        early-stopping criterion ended training before ``max_epochs``) and
        ``best_epoch`` (the epoch whose weights early stopping restored; None without
        early stopping).
    """
    if not fine_tune:  # codes of the unaugmented inputs: augmentation needs images
        options = {**options, "augment": None}
        X = {"code": net.encode(X)}
        net = Network({"code": []}, ["code"], [], net.output, net.clip)
    progress = Progress(options["max_epochs"], "fine-tune" if fine_tune else "softmax",
                        enabled=verbose)
    state = fresh_state() if state is None else state
    try:
        history = train(net, X, y, sample_weight, output_only=not fine_tune, seed=seed,
                        progress=progress, state=state, on_epoch=on_epoch, **options)
    finally:
        progress.close()
    restored = options["early_stopping"] and state["best_params"] is not None
    return history, {"n_iter": int(state["epoch"]), "stopped_early": bool(state["stopped"]),
                     "best_epoch": int(best_epoch(state)) if restored else None}


def image_augmentation(augment, shapes):
    """The ``augment`` callable of :func:`train` for an estimator's ``augment``
    parameter: an augmenter (e.g. :class:`pymdbn.ImageAugmenter`) applied to every
    input in ``shapes``, or a dict input name -> augmenter; None for None.

    ``shapes`` maps each input that holds images to its ``(H, W[, C])``; an augmenter
    is called as ``augmenter(x, seed, shape=(H, W, C))`` on the flattened channels-last
    batch ``x``, with seed ``[seed, epoch, batch, input index]``.
    """
    if augment is None:
        return None
    per = dict(augment) if isinstance(augment, dict) else {name: augment for name in shapes}
    unknown = sorted(set(per) - set(shapes))
    if unknown:
        raise ValueError(f"augment names {unknown[0]!r}, which is not an image input; "
                         f"image inputs: {sorted(shapes)}")
    shapes = {name: tuple(shapes[name]) + (1,) * (3 - len(shapes[name])) for name in per}

    def apply(batch, seed):
        return {name: (per[name](x, [*seed, i], shape=shapes[name]) if name in per else x)
                for i, (name, x) in enumerate(batch.items())}
    return apply


def encode_labels(y, n_samples):
    """(classes, int64 indices) of a label vector, with the usual target checks."""
    from sklearn.utils.multiclass import check_classification_targets

    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_samples:
        raise ValueError(f"y must be 1-D with one label per sample ({n_samples}), got shape "
                         f"{y.shape}")
    check_classification_targets(y)
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y needs at least 2 classes, got {len(classes)}")
    return classes, y_idx.astype(np.int64)


def class_sample_weight(class_weight, classes, y_idx):
    """float64 per-sample weights for ``class_weight`` (None when unweighted)."""
    if class_weight is None:
        return None
    from sklearn.utils.class_weight import compute_sample_weight

    if isinstance(class_weight, dict):
        class_weight = {i: class_weight.get(c, 1.0) for i, c in enumerate(classes.tolist())}
    return np.ascontiguousarray(compute_sample_weight(class_weight, y_idx), dtype=np.float64)


def target_indices(target, classes):
    """The ``target`` of an explanation as column indices of ``classes``.

    An int (or an array of ints) is a column index into ``classes_`` and passes
    unchanged (the explainer checks its range); any other value (a class name) is
    looked up in ``classes``.

    Parameters
    ----------
    target : None, int, label or array-like of shape (n_samples,)
    classes : ndarray of shape (n_classes,)

    Returns
    -------
    None, or int64 ndarray of the shape of ``target``.

    Raises
    ------
    ValueError
        For a label that is not one of ``classes``.
    """
    if target is None:
        return None
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        return t.astype(np.int64, copy=False)
    if t.dtype.kind == "b":
        raise ValueError(f"target must be a class index or a class label, got {target!r}")
    names = list(np.asarray(classes).tolist())
    bad = [v for v in np.atleast_1d(t).tolist() if v not in names]
    if bad:
        raise ValueError(f"target label {bad[0]!r} is not a class; classes are {names}")
    return np.vectorize(names.index, otypes=[np.int64])(t) if t.ndim else \
        np.int64(names.index(t.item()))
