"""The result of explaining a batch: relevance per modality and its bookkeeping."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pymdbn.lrp.composites import Composite

__all__ = ["Explanation", "shares_from_totals"]


def _ratio(names: list[str], parts: np.ndarray) -> dict[str, np.ndarray]:
    """Each row of ``parts`` (one per name) over the column sums; NaN where a sum is 0."""
    total = parts.sum(axis=0)
    share = np.full(parts.shape, np.nan)
    np.divide(parts, total, out=share, where=total != 0)
    return dict(zip(names, share))


def shares_from_totals(sums: Mapping[str, Any], abs_sums: Mapping[str, Any]
                       ) -> dict[str, dict[str, np.ndarray]]:
    """Modality shares from each modality's relevance sum and absolute sum.

    Parameters
    ----------
    sums, abs_sums : dict of str -> array_like of shape (N,)
        Per modality and sample, ``sum R`` and ``sum |R|`` over its pixels.

    Returns
    -------
    dict
        ``'shares'`` (of the positive relevance), ``'abs_shares'`` (of
        ``|R|``) and ``'net_shares'`` (of the signed sum), each a dict of
        str -> ndarray of float64, shape (N,); see :class:`Explanation`.
    """
    # One (modalities, N) array per kind: for one sample, per-modality NumPy calls
    # cost more than the LRP kernels.
    names = list(sums)
    signed = np.stack([np.asarray(sums[m], dtype=np.float64) for m in names])
    absolute = np.stack([np.asarray(abs_sums[m], dtype=np.float64) for m in names])
    # sum R+ = (sum R + sum |R|) / 2; what is left of a modality without positive
    # relevance is rounding (both sums carry ~1e-16 |R| of it), so it counts as 0.
    p = 0.5 * (signed + absolute)
    positive = np.where(p > 1e-12 * absolute, p, 0.0)
    return {"shares": _ratio(names, positive), "abs_shares": _ratio(names, absolute),
            "net_shares": _ratio(names, signed)}


@dataclass(frozen=True, eq=False)
class Explanation:
    """LRP explanation of N samples of a (multimodal) deep belief network.

    Relevance starts at the explained logit, ``R = logit[target]`` with all
    other logits set to 0, and flows down to the z-scored input pixels of
    every modality (Bach et al. 2015; Montavon et al. 2019). Positive
    relevance is evidence for the target class, negative against it.

    Attributes
    ----------
    relevance : dict of str -> ndarray
        Per modality, relevance of each z-scored input feature, shaped like
        that modality's input (e.g. (N, H, W)).
    logits : ndarray of shape (N, K)
        The network's logits.
    target : ndarray of int64, shape (N,)
        The explained class index per sample.
    shares : dict of str -> ndarray of shape (N,)
        Each modality's share of the evidence *for* the explained class:
        its positive relevance over that of all modalities, ``sum R_m+ /
        sum_m' sum R_m'+``. In [0, 1] and adding up to 1 per sample; NaN
        where no modality has positive relevance.
    abs_shares : dict of str -> ndarray of shape (N,)
        Share of the absolute relevance ``sum |R_m| / sum_m' sum |R_m'|``,
        in [0, 1], adding up to 1: how much of the evidence, of either
        sign, each modality carries. NaN where all relevance is 0.
    code_relevance : ndarray of shape (N, n_code)
        Relevance at the fused code (the concatenated pathway tops).
    code_slices : dict of str -> slice
        Each modality's columns of ``code_relevance``.
    conservation_residual : ndarray of shape (N,)
        ``logit[target] - total input relevance``: what the biases and the
        stabilisers (epsilon) absorbed on the way down. It is 0 up to
        epsilon when every rule ignores the biases (``use_bias=False``).
        Explained against a reference with an Epsilon output rule, the
        explained quantity is ``logit[target] - reference_logits[target]``.
    composite : Composite
        The rules used.
    layers : dict or None
        With ``return_layers=True``: ``{'pathways': {modality: [R_0, ...,
        R_L]}, 'joint': [R_code, ..., R_logits]}``, relevance (N, units) at
        every layer boundary from the input pixels (``R_0``) to the pathway
        top, and from the fused code to the logits.
    reference_logits : ndarray of shape (K,) or None
        The reference's logits when explained against a reference.
    classes : tuple of str or None
        Class names, one per logit (the model's ``classes_``), when known.
    net_shares : dict of str -> ndarray of shape (N,)
        The signed share ``sum R_m / sum_m' sum R_m'`` (what ``shares`` was
        up to pymdbn 0.1.0): adds up to 1 but leaves [0, 1] when a
        modality's net evidence is against the class; NaN where the total
        is 0. Built without it (``None``), as by code written for 0.1.0,
        the ``shares`` given are taken as these signed shares and
        ``shares`` is computed from ``relevance``.
    """

    relevance: dict[str, np.ndarray]
    logits: np.ndarray
    target: np.ndarray
    shares: dict[str, np.ndarray]
    abs_shares: dict[str, np.ndarray]
    code_relevance: np.ndarray
    code_slices: dict[str, slice]
    conservation_residual: np.ndarray
    composite: Composite
    layers: dict[str, Any] | None = None
    reference_logits: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    net_shares: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if len(self.classes) != np.shape(self.logits)[1]:
                raise ValueError(f"{len(self.classes)} classes for "
                                 f"{np.shape(self.logits)[1]} logits")
        if self.net_shares is None:  # the 0.1.0 layout: ``shares`` were the signed ones
            flat = {m: np.asarray(r).reshape(len(r), -1) for m, r in self.relevance.items()}
            new = shares_from_totals({m: r.sum(axis=1, dtype=np.float64) for m, r in flat.items()},
                                     {m: np.abs(r).sum(axis=1, dtype=np.float64)
                                      for m, r in flat.items()})
            object.__setattr__(self, "net_shares", dict(self.shares))
            object.__setattr__(self, "shares", new["shares"])

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits, shape (N, K): the model's class probabilities."""
        z = np.asarray(self.logits, dtype=np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def class_name(self, k: int) -> str:
        """Name of class index ``k`` (``'class k'`` when the names are unknown)."""
        return self.classes[k] if self.classes is not None else f"class {k}"

    @property
    def modalities(self) -> list[str]:
        """Modality names in fusion order."""
        return list(self.relevance)

    def _class_index(self, label: Any) -> int:
        """Index of a class given by label (as in ``classes``) or by index."""
        if self.classes is not None and str(label) in self.classes:
            return self.classes.index(str(label))
        if isinstance(label, (int, np.integer)) and 0 <= label < np.shape(self.logits)[1]:
            return int(label)
        raise ValueError(f"y_true value {label!r} is not a class of {self.classes}")

    def heatmaps(
        self,
        images: Any,
        path: str | os.PathLike[str] | None = None,
        *,
        samples: Sequence[int] | None = None,
        y_true: Any = None,
        sample_ids: Sequence[Any] | None = None,
        class_names: Sequence[str] | None = None,
        reference: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Relevance overlaid on the images, labelled for a reader.

        Draws :func:`pymdbn.plot.heatmaps` with the colour scale at the
        99.5th percentile of ``|R|`` (unless ``vmax`` is given) and labels
        built from the explanation: each row names the patient, the true
        class (with ``y_true``), the predicted class and the probability of
        the explained class; the title names the composite, the reference
        and the explained class; the colour bar says that red is evidence
        for the explained class and blue against it.

        Parameters
        ----------
        images : dict of str -> array_like of shape (N, H, W), or array_like
            The explained samples' images (raw, for display) of some or all
            modalities; a single array for a one-modality model. Relevance
            is reshaped to each modality's image shape.
        path : str or path-like, optional
            Where to save the figure.
        samples : sequence of int, optional
            Rows to show (default: all N).
        y_true : array_like of shape (N,), optional
            True class of every explained sample, as a label of ``classes``
            or a class index.
        sample_ids : sequence, optional
            Patient identifiers, one per explained sample (default: the
            sample's index, ``#i``).
        class_names : sequence of str, optional
            Display names of the classes, one per logit (default:
            ``classes``, e.g. ``['healthy', 'cancer']`` for classes 0 and 1).
        reference : str, optional
            How the reference was chosen, for the title (e.g. ``'healthy
            training mean'``). Default: ``'none'``, or ``'given input'`` when
            the explanation was made against one.
        **kwargs
            Passed to :func:`pymdbn.plot.heatmaps` (``masks`` of the shown
            samples, ``alpha``, ``cmap``, ``vmax``; ``titles``, ``title`` and
            ``colorbar_label`` replace the generated labels). With images of
            one modality, ``ncols`` lays the samples out in a grid of that
            many columns, each panel titled with its row label, instead of
            one row per sample.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ValueError
            For an unknown modality, images that do not match the relevance
            in size, or ``y_true``, ``sample_ids`` or ``class_names`` of the
            wrong length or with unknown classes.
        TypeError
            If ``reference`` is not a string (the reference input itself
            goes to :func:`pymdbn.lrp.explain`).
        """
        from pymdbn import plot

        if reference is not None and not isinstance(reference, str):
            raise TypeError(f"reference must be a label (str) for the title, got "
                            f"{type(reference).__name__}; the reference input goes to explain()")

        single = not isinstance(images, Mapping)
        if single:
            if len(self.relevance) != 1:
                raise ValueError(f"pass images as a dict for the modalities {self.modalities}")
            images = {self.modalities[0]: images}
        n = len(self.target)
        rows = np.arange(n) if samples is None else np.asarray(samples, dtype=np.intp)
        imgs, rels = {}, {}
        for name, img in images.items():
            if name not in self.relevance:
                raise ValueError(f"unknown modality {name!r}; explained: {self.modalities}")
            img = np.asarray(img)
            rel = self.relevance[name]
            if img.shape[0] != rel.shape[0] or img[0].size != rel[0].size:
                raise ValueError(f"images[{name!r}] of shape {img.shape} do not match the "
                                 f"relevance of shape {rel.shape}")
            imgs[name] = img[rows]
            rels[name] = rel.reshape(img.shape)[rows]

        k = np.shape(self.logits)[1]
        if class_names is not None and len(class_names) != k:
            raise ValueError(f"got {len(class_names)} class_names for {k} classes")
        shown = ([str(c) for c in class_names] if class_names is not None
                 else [self.class_name(j) for j in range(k)])
        # Integer labels read as "class 1", not a bare "1".
        shown = [f"class {c}" if c.lstrip("-").isdigit() else c for c in shown]
        for what, given in (("y_true", y_true), ("sample_ids", sample_ids)):
            if given is not None and len(given) != n:
                raise ValueError(f"{what} has {len(given)} entries for {n} explained samples")
        proba = self.probabilities
        predicted = np.argmax(self.logits, axis=1)
        explained = np.asarray(self.target)[rows]
        one_class = len(set(explained.tolist())) == 1
        titles = []
        for i in rows:
            who = f"#{i}" if sample_ids is None else str(sample_ids[i])
            truth = "" if y_true is None else f"true {shown[self._class_index(y_true[i])]}, "
            t = int(self.target[i])
            titles.append(f"patient {who}\n{truth}predicted {shown[predicted[i]]}\n"
                          f"p({shown[t]}) = {proba[i, t]:.3f}")
        if reference is None:
            reference = "none" if self.reference_logits is None else "given input"
        target = shown[int(explained[0])] if one_class else "each row's target"
        name = self.composite.describe() if isinstance(self.composite, Composite) else \
            str(self.composite)
        kwargs.setdefault("titles", titles)
        kwargs.setdefault("title", f"LRP {name}\nreference: {reference}; "
                                   f"explained class: {target}")
        against = f"{target}" if one_class else "the explained class"
        kwargs.setdefault("colorbar_label",
                          f"relevance\nred: evidence for {against}; blue: against")
        kwargs.setdefault("vmax", plot.DEFAULT_VMAX)
        if single or (len(imgs) == 1 and kwargs.get("ncols") is not None):
            (name,), (img,), (rel,) = imgs.keys(), imgs.values(), rels.values()
            if not single and kwargs.get("masks") is not None:
                kwargs["masks"] = kwargs["masks"][name]
            return plot.heatmaps(img, rel, path=path, **kwargs)
        return plot.heatmaps(imgs, rels, path=path, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers of arrays (e.g. for ``np.savez`` or JSON export).

        ``code_slices`` become ``(start, stop)`` pairs and ``composite`` its
        repr; ``layers`` is included when it was requested.
        """
        out = {
            "relevance": dict(self.relevance),
            "logits": self.logits,
            "target": self.target,
            "shares": dict(self.shares),
            "abs_shares": dict(self.abs_shares),
            "net_shares": dict(self.net_shares),
            "code_relevance": self.code_relevance,
            "code_slices": {k: (s.start, s.stop) for k, s in self.code_slices.items()},
            "conservation_residual": self.conservation_residual,
            "composite": repr(self.composite),
        }
        if self.layers is not None:
            out["layers"] = self.layers
        if self.reference_logits is not None:
            out["reference_logits"] = self.reference_logits
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out
