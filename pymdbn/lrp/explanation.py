"""The result of explaining a batch: relevance per modality and its bookkeeping."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pymdbn.lrp.composites import Composite

__all__ = ["Explanation"]


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
        Signed share of each modality: its relevance sum divided by the sum
        over all modalities. Shares add up to 1, but one can exceed 1 and
        another be negative when a modality's net evidence is against the
        target; NaN where the total is exactly 0.
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

    @property
    def modalities(self) -> list[str]:
        """Modality names in fusion order."""
        return list(self.relevance)

    def heatmaps(
        self,
        images: Any,
        path: str | os.PathLike[str] | None = None,
        *,
        samples: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Relevance overlaid on the images, via :func:`pymdbn.plot.heatmaps`.

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
        **kwargs
            Passed to :func:`pymdbn.plot.heatmaps` (``titles``, ``masks``,
            ``alpha``, ``cmap``, ``vmax``).

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ValueError
            For an unknown modality or images that do not match the
            relevance in size.
        """
        from pymdbn import plot

        single = not isinstance(images, Mapping)
        if single:
            if len(self.relevance) != 1:
                raise ValueError(f"pass images as a dict for the modalities {self.modalities}")
            images = {self.modalities[0]: images}
        rows = slice(None) if samples is None else np.asarray(samples, dtype=np.intp)
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
        if single:
            (img,), (rel,) = imgs.values(), rels.values()
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
            "code_relevance": self.code_relevance,
            "code_slices": {k: (s.start, s.stop) for k, s in self.code_slices.items()},
            "conservation_residual": self.conservation_residual,
            "composite": repr(self.composite),
        }
        if self.layers is not None:
            out["layers"] = self.layers
        if self.reference_logits is not None:
            out["reference_logits"] = self.reference_logits
        return out
