"""Quantitative quality measures for relevance maps (explanations).

All functions are batched: arrays carry the samples along their first axis
``N`` and return one value per sample, so a whole evaluation set is scored in
a few vectorised NumPy calls.

Two families are provided:

* Localisation against ground truth (a lesion mask): relevance mass and rank
  accuracy [1]_, the pointing game [2]_, the sign of the lesion's net relevance
  and, for multimodal inputs, whether the most relevant modality is one showing
  a lesion.
* Faithfulness to the model: pixel flipping / region perturbation with the
  area over the perturbation curve (AOPC) [3]_.
* What the model relies on, whatever explains it: its predictions with the
  lesion occluded and with only the lesion shown (:func:`lesion_occlusion`,
  occlusion in the sense of Zeiler and Fergus [4]_). A model that stays right
  with the lesion hidden decides from elsewhere, and no faithful explanation of
  it can point at the lesion.

References
----------
.. [1] L. Arras, A. Osman, W. Samek, "CLEVR-XAI: A benchmark dataset for the
   ground truth evaluation of neural network explanations", Information
   Fusion 81, 14-40, 2022.
.. [2] J. Zhang, S. A. Bargal, Z. Lin, J. Brandt, X. Shen, S. Sclaroff,
   "Top-down neural attention by excitation backprop", International Journal
   of Computer Vision 126, 1084-1102, 2018.
.. [3] W. Samek, A. Binder, G. Montavon, S. Lapuschkin, K.-R. Müller,
   "Evaluating the visualization of what a deep neural network has learned",
   IEEE Transactions on Neural Networks and Learning Systems 28(11),
   2660-2673, 2017.
.. [4] M. D. Zeiler, R. Fergus, "Visualizing and understanding convolutional
   networks", ECCV 2014, LNCS 8689, 818-833.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "lesion_relevance_sign",
    "pointing_game",
    "pixel_flipping",
    "PixelFlippingResult",
    "modality_attribution_accuracy",
    "lesion_occlusion",
    "LesionOcclusionResult",
]

ArrayOrDict = np.ndarray | Mapping[str, np.ndarray]


def _check_relevance(R: Any, name: str = "R") -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim < 2 or R.size == 0:
        raise ValueError(f"{name} must have a non-empty shape (N, ...), got {R.shape}")
    if not np.isfinite(R).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return R


def _check_pair(R: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a relevance/mask pair and flatten both to (N, P)."""
    R = _check_relevance(R)
    mask = np.asarray(mask)
    if mask.shape != R.shape:
        raise ValueError(
            f"R shape {R.shape} and mask shape {mask.shape} differ"
        )
    return R.reshape(len(R), -1), mask.reshape(len(R), -1).astype(bool)


def relevance_mass_accuracy(R: Any, mask: Any) -> np.ndarray:
    """Share of positive relevance that falls inside the ground-truth mask.

    ``sum(R+ inside mask) / sum(R+)`` per sample, with ``R+ = max(R, 0)``
    (Arras et al. [1]_). Only positive relevance counts because negative
    relevance is evidence *against* the explained class.

    Parameters
    ----------
    R : array_like of shape (N, ...)
        Relevance maps.
    mask : array_like of bool, same shape as ``R``
        Ground truth (e.g. lesion segmentation).

    Returns
    -------
    ndarray of shape (N,)
        Values in [0, 1]; NaN for samples with an empty mask or without
        positive relevance.

    Raises
    ------
    ValueError
        If shapes differ or ``R`` contains NaN or infinity.
    """
    R, mask = _check_pair(R, mask)
    pos = np.maximum(R, 0.0)
    total = pos.sum(axis=1)
    inside = (pos * mask).sum(axis=1)
    out = np.full(len(R), np.nan)
    ok = (total > 0) & mask.any(axis=1)
    out[ok] = inside[ok] / total[ok]
    return out


def relevance_rank_accuracy(R: Any, mask: Any) -> np.ndarray:
    """Fraction of the K most relevant pixels inside a mask of K pixels.

    Pixels are ranked by signed relevance (Arras et al. [1]_). When several
    pixels tie at the K-th largest value, the tied ones are counted
    fractionally, i.e. the result is the expectation over random
    tie-breaking, so a constant map scores exactly the mask fraction instead
    of depending on pixel order.

    Parameters
    ----------
    R : array_like of shape (N, ...)
        Relevance maps.
    mask : array_like of bool, same shape as ``R``
        Ground truth.

    Returns
    -------
    ndarray of shape (N,)
        Values in [0, 1]; NaN for samples with an empty mask.

    Raises
    ------
    ValueError
        If shapes differ or ``R`` contains NaN or infinity.
    """
    R, mask = _check_pair(R, mask)
    k = mask.sum(axis=1)
    out = np.full(len(R), np.nan)
    ok = k > 0
    if not ok.any():
        return out
    R, mask, k = R[ok], mask[ok], k[ok]
    desc = -np.sort(-R, axis=1)
    kth = np.take_along_axis(desc, (k - 1)[:, None], axis=1)  # K-th largest
    above = R > kth
    tied = R == kth
    n_above = above.sum(axis=1)
    # K - n_above of the tied pixels make it into the top K.
    tie_share = (k - n_above) / tied.sum(axis=1)
    hits = (above & mask).sum(axis=1) + tie_share * (tied & mask).sum(axis=1)
    out[ok] = hits / k
    return out


def lesion_relevance_sign(R: Any, mask: Any) -> np.ndarray:
    """Sign of the net relevance inside the ground-truth mask.

    ``sign(sum(R inside mask))`` per sample: +1 when the lesion counts as
    evidence *for* the explained class, -1 when against it. The positive-only
    scores (relevance mass, pointing game) cannot see a lesion whose relevance
    is negative; the mean of this sign over lesion cases can. Where the model
    demonstrably relies on a lesion, a -1 is an explanation error.

    Parameters
    ----------
    R : array_like of shape (N, ...)
        Relevance maps.
    mask : array_like of bool, same shape as ``R``

    Returns
    -------
    ndarray of shape (N,)
        -1.0, 0.0 or 1.0; NaN for samples with an empty mask.

    Raises
    ------
    ValueError
        If shapes differ or ``R`` contains NaN or infinity.
    """
    R, mask = _check_pair(R, mask)
    out = np.sign((R * mask).sum(axis=1))
    out[~mask.any(axis=1)] = np.nan
    return out


def _disk(radius: int, ndim: int) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid**2).sum(axis=0) <= radius**2


def pointing_game(R: Any, mask: Any, tolerance: int = 0) -> np.ndarray:
    """Whether the maximum of each relevance map lies on the ground truth.

    Pointing game of Zhang et al. [2]_: a hit when the pixel of largest
    relevance falls inside the mask dilated by a Euclidean disk of radius
    ``tolerance`` pixels (Zhang et al. use 15 px), which forgives small
    misalignments of hand-drawn lesion outlines. Ties for the maximum are
    resolved by ``numpy.argmax`` (first in C order).

    Parameters
    ----------
    R : array_like of shape (N, ...)
        Relevance maps, e.g. (N, H, W).
    mask : array_like of bool, same shape as ``R``
        Ground truth; every sample must have a non-empty mask, since a hit is
        undefined otherwise (select lesion cases first).
    tolerance : int, default 0
        Dilation radius in pixels, applied within each sample only.

    Returns
    -------
    ndarray of bool, shape (N,)

    Raises
    ------
    ValueError
        If shapes differ, ``R`` contains NaN or infinity, a mask is empty,
        or ``tolerance`` is negative.
    """
    if int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer, got {tolerance}")
    R_flat, mask_flat = _check_pair(R, mask)
    empty = np.flatnonzero(~mask_flat.any(axis=1))
    if empty.size:
        raise ValueError(f"mask is empty for samples {empty.tolist()}")
    mask = mask_flat.reshape(np.shape(R))
    if tolerance:
        # Leading singleton axis: dilate each sample independently.
        structure = _disk(int(tolerance), mask.ndim - 1)[None]
        mask = ndimage.binary_dilation(mask, structure=structure)
    top = R_flat.argmax(axis=1)
    return mask.reshape(len(mask), -1)[np.arange(len(top)), top]


@dataclass(frozen=True)
class PixelFlippingResult:
    """Perturbation curve of :func:`pixel_flipping`.

    Attributes
    ----------
    fractions : ndarray of shape (steps + 1,)
        Fraction of regions flipped before each evaluation (0 to 1).
    curve : ndarray of shape (steps + 1, N)
        ``predict_fn`` output after each step; row 0 is the unperturbed input.
    aopc : ndarray of shape (N,)
        Area over the perturbation curve, ``mean_k (curve[0] - curve[k])``
        over k = 0..steps.
    """

    fractions: np.ndarray
    curve: np.ndarray
    aopc: np.ndarray


def _region_labels(shape: tuple[int, ...], patch: int) -> np.ndarray:
    """Region id of every feature of one sample, on a ``patch``-sized grid."""
    coords = np.indices(shape) // patch
    grid = tuple(-(-s // patch) for s in shape)  # ceil: keep partial border patches
    return np.ravel_multi_index(tuple(coords), grid).ravel()


def pixel_flipping(
    predict_fn: Callable[[Any], Any],
    X: ArrayOrDict,
    R: ArrayOrDict,
    steps: int = 20,
    baseline: float | str | Callable[[np.ndarray], Any] = 0.0,
    order: str = "morf",
    patch: int = 1,
    random_state: int | np.random.Generator | None = None,
) -> PixelFlippingResult:
    """Region perturbation curve and AOPC of relevance maps.

    Regions are replaced by a baseline cumulatively in order of relevance,
    ``steps`` equal chunks at a time, and the model re-evaluated after each
    chunk (Samek et al. [3]_). A faithful explanation makes the score drop
    fast when the most relevant regions go first (MoRF: large AOPC) and
    slowly when the least relevant go first (LeRF: small AOPC).

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(X_perturbed) -> (N,)`` score of the explained class
        (e.g. its probability or logit). It receives the whole batch, in the
        same form as ``X`` (array, or dict for multimodal input), and is
        called ``steps + 1`` times.
    X : ndarray of shape (N, H, W) or (N, D), or dict of such arrays
        Inputs. A dict maps modality name -> array; modalities may differ in
        shape but share ``N``.
    R : same structure and shapes as ``X``
        Relevance of each input feature.
    steps : int, default 20
        Number of perturbation steps; step k flips ``round(k / steps * M)``
        of the M regions in total.
    baseline : float, 'mean' or callable, default 0.0
        Replacement value: a constant; ``'mean'`` for each sample's mean
        (per modality); or ``f(x) -> array broadcastable to x.shape``
        applied to each unperturbed array (called once per modality), e.g.
        ``lambda x: rng.uniform(size=x.shape)`` for the uniform noise used by
        Samek et al.
    order : {'morf', 'lerf', 'random'}, default 'morf'
        Most relevant first, least relevant first, or a random order (a
        relevance-agnostic reference curve).
    patch : int, default 1
        Side of the square (or, for (N, D) input, length of the contiguous)
        regions flipped together; regions are ranked by summed relevance.
        Border regions may be smaller when the size is not a multiple.
    random_state : int or numpy.random.Generator, optional
        Seed for ``order='random'``.

    Returns
    -------
    PixelFlippingResult
        ``fractions`` (steps + 1,), ``curve`` (steps + 1, N) and ``aopc``
        (N,) with ``AOPC = 1/(L+1) sum_{k=0}^{L} (f(x_0) - f(x_k))``, L =
        ``steps``, as defined by Samek et al.

    Raises
    ------
    ValueError
        If shapes, keys or arguments are inconsistent, ``R`` contains NaN or
        infinity, or ``predict_fn`` returns a wrong shape or non-finite
        values.

    Notes
    -----
    For dict (multimodal) inputs the regions of all modalities are ranked
    *jointly*, per sample: the most relevant region overall is flipped first,
    whichever modality it belongs to. Relevance is thus assumed comparable
    across modalities, as it is for LRP, which conserves relevance through
    the joint layers into all modalities.
    """
    multimodal = isinstance(X, Mapping)
    if multimodal != isinstance(R, Mapping):
        raise ValueError("X and R must both be arrays or both be dicts")
    Xd = dict(X) if multimodal else {"": X}
    Rd = dict(R) if multimodal else {"": R}
    if set(Xd) != set(Rd):
        raise ValueError(f"X and R keys differ: {sorted(Xd)} vs {sorted(Rd)}")
    if not Xd:
        raise ValueError("X is an empty dict")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if int(patch) != patch or patch < 1:
        raise ValueError(f"patch must be a positive integer, got {patch}")
    if order not in ("morf", "lerf", "random"):
        raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    if isinstance(baseline, str) and baseline != "mean":
        raise ValueError(f"baseline must be a number, 'mean' or callable, got {baseline!r}")

    keys = list(Xd)
    x0, labels, region_rel, fill = {}, {}, [], {}
    n = None
    for key in keys:
        name = f"[{key!r}]" if multimodal else ""
        x = np.asarray(Xd[key], dtype=float)
        r = _check_relevance(Rd[key], f"R{name}")
        if x.shape != r.shape:
            raise ValueError(f"X{name} shape {x.shape} and R{name} shape {r.shape} differ")
        if x.ndim not in (2, 3):
            raise ValueError(f"X{name} must have shape (N, H, W) or (N, D), got {x.shape}")
        if n is None:
            n = len(x)
        elif len(x) != n:
            raise ValueError(f"modalities differ in sample count: {n} vs {len(x)} for {key!r}")
        lab = _region_labels(x.shape[1:], int(patch))
        # Sum relevance per region: sort features by region, then reduceat.
        by_region = np.argsort(lab, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(lab[by_region]) != 0])
        region_rel.append(
            np.add.reduceat(r.reshape(n, -1)[:, by_region], starts, axis=1)
        )
        x0[key], labels[key] = x, lab
        if callable(baseline):
            fill[key] = np.broadcast_to(np.asarray(baseline(x.copy()), dtype=float), x.shape)
        elif baseline == "mean":
            fill[key] = np.broadcast_to(
                x.reshape(n, -1).mean(axis=1).reshape((n,) + (1,) * (x.ndim - 1)), x.shape
            )
        else:
            fill[key] = np.full(x.shape, float(baseline))

    rel = np.concatenate(region_rel, axis=1)  # (N, M): all modalities jointly
    offsets = np.cumsum([0] + [g.shape[1] for g in region_rel])
    m = rel.shape[1]
    if order == "random":
        rng = np.random.default_rng(random_state)
        ranking = np.argsort(rng.random(rel.shape), axis=1)
    else:
        ranking = np.argsort(-rel if order == "morf" else rel, axis=1, kind="stable")

    counts = np.rint(np.arange(steps + 1) / steps * m).astype(int)
    flipped = np.zeros((n, m), dtype=bool)
    rows = np.arange(n)[:, None]

    def evaluate() -> np.ndarray:
        batch = {}
        for i, key in enumerate(keys):
            region_mask = flipped[:, offsets[i]:offsets[i + 1]][:, labels[key]]
            x = x0[key]
            batch[key] = np.where(region_mask.reshape(x.shape), fill[key], x)
        out = np.asarray(predict_fn(batch if multimodal else batch[""]), dtype=float)
        if out.shape != (n,):
            raise ValueError(f"predict_fn must return shape ({n},), got {out.shape}")
        if not np.isfinite(out).all():
            raise ValueError("predict_fn returned NaN or infinite values")
        return out

    curve = np.empty((steps + 1, n))
    curve[0] = evaluate()
    for k in range(1, steps + 1):
        flipped[rows, ranking[:, counts[k - 1]:counts[k]]] = True
        curve[k] = evaluate()
    return PixelFlippingResult(
        fractions=counts / m,
        curve=curve,
        aopc=(curve[0] - curve).mean(axis=0),
    )


def modality_attribution_accuracy(
    shares: Mapping[str, Any],
    lesion_labels: Mapping[str, Any],
    y: Any = None,
    *,
    mean: bool = False,
) -> np.ndarray | float:
    """Whether the modality with the largest relevance share shows a lesion.

    For a multimodal model (e.g. MRI + mammogram + X-ray) a good explanation
    should put most relevance on a modality where the lesion is visible. A
    sample is a hit when the largest share among its lesion modalities
    strictly exceeds the largest share among its lesion-free modalities, so
    a tie between a lesion and a lesion-free modality counts as a miss.

    Parameters
    ----------
    shares : dict of str -> array_like of shape (N,)
        Each modality's share of relevance per sample, e.g.
        :attr:`pymdbn.lrp.Explanation.shares` (its share of the positive
        relevance, the evidence for the explained class) or ``abs_shares``.
        A sample whose shares are NaN (no relevance to share: no modality
        carries evidence for the class) is a miss.
    lesion_labels : dict of str -> array_like of bool, shape (N,)
        Whether the modality shows a lesion, same keys as ``shares``.
    y : array_like of bool, shape (N,), optional
        Extra sample selection, e.g. ``y_true == 1`` to score cancer cases
        only, or correctly classified cases; unselected samples give NaN.
    mean : bool, default False
        Return the mean over evaluated samples (NaN if none) instead of the
        per-sample values.

    Returns
    -------
    ndarray of shape (N,) or float
        1.0 for hits, 0.0 for misses, NaN for samples without any lesion (or
        not selected by ``y``).

    Raises
    ------
    ValueError
        If keys or shapes differ, or shares contain infinity.
    """
    if set(shares) != set(lesion_labels):
        raise ValueError(
            f"shares and lesion_labels keys differ: {sorted(shares)} vs {sorted(lesion_labels)}"
        )
    if not shares:
        raise ValueError("shares is empty")
    keys = list(shares)
    shapes = {np.shape(d[k]) for d in (shares, lesion_labels) for k in keys}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"shares and lesion_labels must be 1-D arrays of one length; got "
            f"shapes {[np.shape(shares[k]) for k in keys]} and "
            f"{[np.shape(lesion_labels[k]) for k in keys]}"
        )
    s = np.stack([np.asarray(shares[k], dtype=float) for k in keys])
    les = np.stack([np.asarray(lesion_labels[k]) for k in keys])
    if np.isinf(s).any():
        raise ValueError("shares contain infinite values")
    les = les.astype(bool)
    s = np.where(np.isnan(s).any(axis=0), 0.0, s)  # nothing shared: no lesion can lead
    lesion_max = np.where(les, s, -np.inf).max(axis=0)
    other_max = np.where(les, -np.inf, s).max(axis=0)
    out = (lesion_max > other_max).astype(float)
    evaluated = les.any(axis=0)
    if y is not None:
        y = np.asarray(y)
        if y.shape != out.shape:
            raise ValueError(f"y shape {y.shape} does not match {out.shape} samples")
        evaluated &= y.astype(bool)
    out[~evaluated] = np.nan
    if mean:
        return float(out[evaluated].mean()) if evaluated.any() else float("nan")
    return out


@dataclass(frozen=True)
class LesionOcclusionResult:
    """Per-sample correctness of :func:`lesion_occlusion`.

    Attributes
    ----------
    correct : ndarray of bool, shape (N,)
        Prediction on the unchanged input equals ``y``.
    correct_hidden : ndarray of bool, shape (N,)
        The same with the lesion replaced by the fill.
    correct_shown : ndarray of bool, shape (N,)
        The same with everything outside the lesion replaced by the fill.
    """

    correct: np.ndarray
    correct_hidden: np.ndarray
    correct_shown: np.ndarray


def lesion_occlusion(predict_fn: Callable[[np.ndarray], Any], X: Any, y: Any, mask: Any,
                     fill: Any = 0.0) -> LesionOcclusionResult:
    """Predictions with the lesion hidden and with only the lesion shown.

    Occlusion (Zeiler and Fergus [4]_) at the ground truth: the lesion's pixels
    are replaced by ``fill`` (hidden), then every other pixel is (shown). The
    accuracy of each says where the model's evidence lies. If it stays near
    the unchanged accuracy with the lesion hidden, the model decides from the
    rest of the image (anatomy, acquisition, the slice's position). Localisation
    scores of any explanation of that model are then bounded by the model, not
    by the explainer. Inputs with the lesion shown alone lie far from the
    training images, so a low accuracy there is weaker evidence than a high one.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(X_modified) -> (N,)`` predicted labels, comparable with ``y``;
        called three times, on arrays shaped like ``X``.
    X : array_like of shape (N, H, W) or (N, H, W, C)
        Inputs, as ``predict_fn`` takes them.
    y : array_like of shape (N,)
        True labels.
    mask : array_like of bool, shape (N, H, W) or the shape of ``X``
        The lesion of each sample (broadcast over channels).
    fill : float or array_like broadcastable to one sample, default 0.0
        Replacement value, e.g. the mean training image (what an average input
        has there).

    Returns
    -------
    LesionOcclusionResult
        Per-sample correctness; ``result.correct_hidden.mean()`` is the accuracy
        with the lesion hidden.

    Raises
    ------
    ValueError
        If shapes do not match, a mask is empty, or ``predict_fn`` returns
        other than N labels.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    mask = np.asarray(mask).astype(bool)
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"X must have a non-empty shape (N, ...), got {X.shape}")
    if mask.shape != X.shape[:mask.ndim] or mask.ndim < X.ndim - 1:
        raise ValueError(f"mask shape {mask.shape} does not fit X shape {X.shape}")
    if y.shape != (len(X),):
        raise ValueError(f"y shape {y.shape} does not match {len(X)} samples")
    if not mask.reshape(len(mask), -1).any(axis=1).all():
        raise ValueError("every sample needs a non-empty lesion mask (select lesion cases)")
    m = mask.reshape(mask.shape + (1,) * (X.ndim - mask.ndim))
    fill = np.asarray(fill, dtype=X.dtype)

    def correct(inputs):
        pred = np.asarray(predict_fn(inputs))
        if pred.shape != y.shape:
            raise ValueError(f"predict_fn returned shape {pred.shape}, expected {y.shape}")
        return pred == y

    return LesionOcclusionResult(correct=correct(X),
                                 correct_hidden=correct(np.where(m, fill, X)),
                                 correct_shown=correct(np.where(m, X, fill)))
