"""Early fusion: one supervised DBN on the concatenation of all modalities."""

from collections.abc import Mapping

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils.validation import check_is_fitted

from pymdbn import io
from pymdbn.models.dbn import DBN
from pymdbn.models.finetune import target_indices
from pymdbn.preprocessing import ModalityScaler, check_modalities

__all__ = ["EarlyFusionDBN"]


@io.register
class EarlyFusionDBN(io.SaveMixin, ClassifierMixin, BaseEstimator):
    """A supervised DBN on the concatenation of all (z-scored, flattened) modalities.

    The modalities are ordered by name, so the layout does not depend on the dict's
    insertion order; ``slices_`` records where each lies in the input vector, for
    splitting an explanation back into modalities.

    Parameters
    ----------
    dbn : DBN or None, default=None
        The network to fit (cloned); None is ``DBN()``.
    per_feature, per_image : bool, default=False
        Passed to :class:`~pymdbn.preprocessing.ModalityScaler`.

    Attributes
    ----------
    modalities_ : list of str
        Sorted modality names, the concatenation order.
    slices_ : dict of str to tuple of int
        Modality -> (start, stop) columns in the concatenated input.
    scaler_ : ModalityScaler
    dbn_ : DBN
        The fitted network.
    classes_ : ndarray
    n_iter_, stopped_early_, best_epoch_
        The DBN's fine-tuning summary (see :class:`~pymdbn.DBN`).
    """

    _parameter_constraints: dict = {"dbn": [None, DBN], "per_feature": ["boolean"],
                                    "per_image": ["boolean"]}

    def __init__(self, dbn=None, *, per_feature=False, per_image=False):
        self.dbn = dbn
        self.per_feature = per_feature
        self.per_image = per_image

    def _concat(self, X):
        Z = self.scaler_.transform(check_modalities(X, self.modalities_, self.scaler_.shapes_))
        return np.concatenate([Z[m] for m in self.modalities_], axis=1)

    # Not skipping nested validation: the DBN's own parameters are validated by its fit.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Standardise each modality, concatenate in name order and fit the DBN.

        Parameters
        ----------
        X : dict of str to array-like
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : EarlyFusionDBN
        """
        X = check_modalities(X)
        self.modalities_ = sorted(X)
        self.scaler_ = ModalityScaler(per_feature=self.per_feature,
                                      per_image=self.per_image).fit(X)
        widths = np.cumsum([0] + [int(np.prod(self.scaler_.shapes_[m]))
                                  for m in self.modalities_])
        self.slices_ = {m: (int(widths[i]), int(widths[i + 1]))
                        for i, m in enumerate(self.modalities_)}
        self.dbn_ = clone(DBN() if self.dbn is None else self.dbn).fit(self._concat(X), y)
        self._copy_fitted()
        return self

    def _copy_fitted(self):
        """The DBN's labels and fine-tuning summary, as every classifier here has them."""
        for name in ("classes_", "n_iter_", "stopped_early_", "best_epoch_"):
            setattr(self, name, getattr(self.dbn_, name))

    def to(self, device):
        """Compute on ``device`` from now on: the fitted DBN and the one a refit clones
        (see :meth:`pymdbn.DBN.to`).

        Returns
        -------
        self
        """
        self.dbn = clone(DBN() if self.dbn is None else self.dbn).to(device)
        if hasattr(self, "dbn_"):
            self.dbn_.to(device)
        return self

    def decision_function(self, X):
        """Logits, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        return self.dbn_.decision_function(self._concat(X))

    def predict_proba(self, X):
        """Class probabilities, columns as ``classes_``."""
        return softmax(self.decision_function(X).astype(np.float64), axis=1)

    def predict(self, X):
        """Most probable class of each sample."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def explain(self, X, target=None, composite="epsilon", return_layers=False,
                batch_size=None, reference=None):
        """Layer-wise relevance propagation, split back into the modalities.

        The DBN is explained on the concatenated z-scored input; each modality's
        columns (``slices_``) are reshaped to its images. ZBox bounds are each
        modality's data range in z-scored units: [0, 1], or the training range of the
        normalised images with ``per_image``. ``reference``: one raw image per
        modality, as for :meth:`pymdbn.MDBN.explain`. ``target``: a column index of
        ``classes_`` (int), a class label, or one per sample.

        Returns
        -------
        pymdbn.lrp.Explanation
        """
        from pymdbn.lrp import explain  # on first use: LRP is not needed to fit or predict
        from pymdbn.lrp.explanation import Explanation, shares_from_totals

        check_is_fitted(self)
        d = self.dbn_.to_dict()
        low, high = [], []
        for m in self.modalities_:
            n = self.slices_[m][1] - self.slices_[m][0]
            shape = tuple(self.scaler_.shapes_[m])  # 0-d, or per pixel (per_feature)
            mean = np.broadcast_to(self.scaler_.mean_[m], shape).reshape(n)
            scale = np.broadcast_to(self.scaler_.scale_[m], shape).reshape(n)
            lo, hi = self.scaler_.data_range_[m] if self.per_image else (0.0, 1.0)
            low.append((lo - mean) / scale)
            high.append((hi - mean) / scale)
        d["meta"]["data_range"] = {"x": [np.concatenate(low), np.concatenate(high)]}
        if reference is not None:
            if not isinstance(reference, Mapping):
                raise ValueError("reference must be a dict modality -> image")
            reference = {"x": self._concat({m: np.asarray(r)[None] for m, r in
                                            reference.items()})}
        target = target_indices(target, self.classes_)
        e = explain(d, {"x": self._concat(X)}, target=target, composite=composite,
                    return_layers=return_layers, batch_size=batch_size, reference=reference,
                    scaled=True, device=self.dbn_.device, dtype=self.dbn_.dtype)
        R = e.relevance["x"]
        relevance = {m: R[:, a:b].reshape((len(R),) + tuple(self.scaler_.shapes_[m]))
                     for m, (a, b) in self.slices_.items()}
        flat = {m: r.reshape(len(r), -1) for m, r in relevance.items()}
        shares = shares_from_totals({m: r.sum(axis=1, dtype=np.float64)
                                     for m, r in flat.items()},
                                    {m: np.abs(r).sum(axis=1, dtype=np.float64)
                                     for m, r in flat.items()})
        return Explanation(relevance=relevance, logits=e.logits, target=e.target,
                           shares=shares["shares"], abs_shares=shares["abs_shares"],
                           net_shares=shares["net_shares"],
                           code_relevance=e.code_relevance, code_slices=e.code_slices,
                           conservation_residual=e.conservation_residual,
                           composite=e.composite, layers=e.layers,
                           reference_logits=e.reference_logits, classes=e.classes)

    def _get_state(self):
        scaler_arrays, scaler_meta = self.scaler_._get_state()
        dbn_arrays, dbn_meta = self.dbn_._get_state()
        arrays = {**io.nest("scaler", scaler_arrays), **io.nest("dbn", dbn_arrays)}
        return arrays, {"scaler": scaler_meta, "dbn": dbn_meta,
                        "dbn_params": io.encode_params(self.dbn_.get_params(deep=False))}

    def _set_state(self, arrays, meta):
        self.scaler_ = ModalityScaler(per_feature=self.per_feature,
                                      per_image=self.per_image)._set_state(
            io.unnest("scaler", arrays), meta["scaler"])
        self.modalities_ = sorted(self.scaler_.modalities_)
        widths = np.cumsum([0] + [int(np.prod(self.scaler_.shapes_[m]))
                                  for m in self.modalities_])
        self.slices_ = {m: (int(widths[i]), int(widths[i + 1]))
                        for i, m in enumerate(self.modalities_)}
        self.dbn_ = DBN(**io.decode_params(meta["dbn_params"]))._set_state(
            io.unnest("dbn", arrays), meta["dbn"])
        self._copy_fitted()
        return self
