"""Figures for relevance heatmaps and evaluation results.

matplotlib is an optional dependency (``pip install pymdbn[plot]``); it is
imported inside the plotting functions only, so ``import pymdbn.plot`` stays
cheap and works without it. Figures are built as standalone
``matplotlib.figure.Figure`` objects, never through ``pyplot``: no display
is needed, no global figure registry fills up, and the caller's backend and
rcParams are left untouched.

All functions return the Figure and, when ``path`` is given, also write it
atomically (:func:`pymdbn._atomic.atomic_write`), so a crash or a concurrent
reader never sees a half-written image. The format follows the file suffix
(PNG when there is none).

References
----------
.. [1] S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller,
   W. Samek, "On pixel-wise explanations for non-linear classifier decisions
   by layer-wise relevance propagation", PLoS ONE 10(7), e0130140, 2015.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pymdbn._atomic import atomic_write

__all__ = ["heatmaps", "relevance_bars", "modality_shares", "metric_bars", "DEFAULT_VMAX"]

#: Default end of the heatmaps' colour scale: the 99.5th percentile of |R| over the
#: figure. LRP maps are heavy-tailed (a few pixels whose denominators nearly vanish
#: reach 100-1000x the typical |R|), so a scale to max |R| draws blank maps.
DEFAULT_VMAX = "p99.5"
_COLORBAR_LABEL = "relevance\nred: evidence for the explained class; blue: against"

_POSITIVE = "#d62728"  # red: evidence for the explained class, as in "bwr"
_NEGATIVE = "#1f77b4"  # blue: evidence against it
_MASK = "lime"  # mask contour: distinct from both ends of a red/blue map
_PANEL_INCHES = 2.8


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "pymdbn.plot needs matplotlib: pip install pymdbn[plot]"
        ) from exc
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    with atomic_write(path, "wb") as fh:
        # "tight" keeps outer labels that constrained layout can clip when
        # fixed-aspect images shrink inside their slots.
        fig.savefig(fh, format=fmt, dpi=150, bbox_inches="tight", pad_inches=0.05)


def _stack3(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:  # a single image is a batch of one
        a = a[None]
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, H, W), got {a.shape}")
    return a


def heatmaps(
    images: Any,
    relevance: Any,
    *,
    titles: Sequence[str] | None = None,
    masks: Any = None,
    alpha: float = 0.6,
    cmap: str = "bwr",
    path: str | os.PathLike[str] | None = None,
    ncols: int | None = None,
    vmax: float | str | None = DEFAULT_VMAX,
    title: str | None = None,
    colorbar_label: str | None = None,
) -> Any:
    """Relevance maps overlaid on the input images, one panel per image.

    Each panel shows the input in grey with the relevance on top in a
    diverging colormap, red = evidence for the explained class, blue =
    against it (LRP, Bach et al. [1]_). The colour scale is symmetric,
    ``[-vmax, vmax]`` over the *whole figure*, by default up to the 99.5th
    percentile of ``|R|`` (:data:`DEFAULT_VMAX`), so equal colours mean
    equal relevance across samples and modalities, zero relevance is the
    neutral centre and a few extreme pixels do not wash out the rest. The
    overlay's opacity grows linearly with ``|R|`` up to ``alpha``, so
    irrelevant regions leave the anatomy visible and faint colour honestly
    means little relevance. One colour bar, which says what the colours
    mean, is shared by all panels. :meth:`pymdbn.lrp.Explanation.heatmaps`
    fills in the labels (patients, classes, rule, reference).

    Parameters
    ----------
    images : array_like of shape (N, H, W), or dict of str -> such arrays
        Input images. A dict maps modality name -> images; the figure then
        has one row per sample and one column per modality (titled with the
        modality name). Modalities may differ in H and W but not in N. A
        single (H, W) image counts as N = 1.
    relevance : same structure and shapes as ``images``
        Relevance maps.
    titles : sequence of str, optional
        One title per panel for array input; one label per row (sample) for
        dict input.
    masks : same structure and shapes as ``images``, optional
        Ground-truth regions (e.g. lesions), drawn as a green contour and
        named in a legend.
    alpha : float, default 0.6
        Opacity of the overlay where ``|R| = vmax``.
    cmap : str, default 'bwr'
        Diverging matplotlib colormap for the relevance.
    path : str or path-like, optional
        Where to save the figure.
    ncols : int, optional
        Panels per row for array input (default: up to 4). Not allowed for
        dict input, whose columns are the modalities.
    vmax : float, str or None, default 'p99.5'
        End of the colour scale: a positive number, or ``'pQ'`` for the
        Q-th percentile of ``|R|`` over the figure (e.g. ``'p99'``); larger
        values are drawn at full colour and the colour bar gets arrows.
        ``None`` or ``'p100'``: the maximum of ``|R|``. A percentile of 0
        (mostly zero relevance) falls back to the maximum.
    title : str, optional
        Figure title (e.g. the rule, the reference and the explained class).
    colorbar_label : str, optional
        Label of the colour bar. Default: ``'relevance'`` and which colour is
        evidence for and against the explained class; the percentile scale
        is named below it.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If shapes, keys or lengths of ``titles`` do not match, or relevance
        contains NaN or infinity.
    ImportError
        If matplotlib is not installed.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    multimodal = isinstance(images, Mapping)
    if multimodal != isinstance(relevance, Mapping) or (
        masks is not None and multimodal != isinstance(masks, Mapping)
    ):
        raise ValueError("images, relevance and masks must all be arrays or all dicts")
    if multimodal:
        if ncols is not None:
            raise ValueError("ncols applies to array input only; dict columns are modalities")
        keys = list(images)
        same = set(keys) == set(relevance) and (masks is None or set(keys) == set(masks))
        if not keys or not same:
            raise ValueError(
                f"images, relevance and masks keys differ: {sorted(images)} vs "
                f"{sorted(relevance)}" + ("" if masks is None else f" vs {sorted(masks)}")
            )
        imgs = {k: _stack3(images[k], f"images[{k!r}]") for k in keys}
        rels = {k: _stack3(relevance[k], f"relevance[{k!r}]") for k in keys}
        msks = None if masks is None else {k: _stack3(masks[k], f"masks[{k!r}]") for k in keys}
    else:
        keys = [""]
        imgs = {"": _stack3(images, "images")}
        rels = {"": _stack3(relevance, "relevance")}
        msks = None if masks is None else {"": _stack3(masks, "masks")}

    n = len(imgs[keys[0]])
    for k in keys:
        name = f"[{k!r}]" if multimodal else ""
        if rels[k].shape != imgs[k].shape:
            raise ValueError(
                f"images{name} shape {imgs[k].shape} and relevance{name} shape "
                f"{rels[k].shape} differ"
            )
        if msks is not None and msks[k].shape != imgs[k].shape:
            raise ValueError(
                f"images{name} shape {imgs[k].shape} and masks{name} shape "
                f"{msks[k].shape} differ"
            )
        if len(imgs[k]) != n:
            raise ValueError(f"modalities differ in sample count: {n} vs {len(imgs[k])} for {k!r}")
        if not np.isfinite(rels[k]).all():
            raise ValueError(f"relevance{name} contains NaN or infinite values")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} samples")

    top = max(float(np.abs(rels[k]).max()) for k in keys)
    scale_note = ""
    if vmax is None:
        vmax = top
    elif isinstance(vmax, str):
        try:
            q = float(vmax[1:]) if vmax[:1] == "p" else float("nan")
        except ValueError:
            q = float("nan")
        if not 0 < q <= 100:
            raise ValueError(f"vmax must be a positive number or 'pQ' with 0 < Q <= 100, "
                             f"got {vmax!r}")
        vmax = float(np.percentile(np.concatenate([np.abs(rels[k]).ravel() for k in keys]), q))
        if 0 < vmax < top:
            scale_note = f"\ncolours saturate at the {q:g}th percentile of |R|"
    elif not (isinstance(vmax, (int, float)) and math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a positive number or 'pQ', got {vmax!r}")
    vmax = float(vmax) or top or 1.0  # all-zero relevance: any symmetric scale shows neutral
    clipped = top > vmax

    if multimodal:
        nrows, ncol = n, len(keys)
        cells = [(i, k) for i in range(n) for k in keys]
    else:
        ncol = min(n, ncols or 4)
        nrows = math.ceil(n / ncol)
        cells = [(i, "") for i in range(n)]

    labels = multimodal and titles is not None
    fig = _figure(_PANEL_INCHES * ncol + (2.0 if labels else 1.4),
                  _PANEL_INCHES * nrows + (1.0 if title else 0.3))
    axes = fig.subplots(nrows, ncol, squeeze=False)

    from matplotlib.colors import Normalize

    norm = Normalize(vmin=-vmax, vmax=vmax)
    overlay = None
    for ax, (i, k) in zip(axes.flat, cells):
        r = rels[k][i].astype(float)
        ax.imshow(imgs[k][i], cmap="gray", interpolation="nearest")
        overlay = ax.imshow(
            r,
            cmap=cmap,
            norm=norm,
            # Opacity follows |R|: a constant alpha would wash the whole image
            # out with the colormap's white centre.
            alpha=alpha * np.minimum(np.abs(r) / vmax, 1.0),
            interpolation="nearest",
        )
        if msks is not None and msks[k][i].any():
            ax.contour(msks[k][i].astype(float), levels=[0.5], colors=_MASK, linewidths=1.2)
        ax.set_xticks([])
        ax.set_yticks([])
        if multimodal:
            if i == 0:
                ax.set_title(str(k))
            if k == keys[0] and titles is not None:
                ax.set_ylabel(titles[i])
        elif titles is not None:
            ax.set_title(titles[i])
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)

    from matplotlib.cm import ScalarMappable

    # Opaque mappable for the bar: the overlay's per-pixel alpha would fade it.
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=overlay.get_cmap()), ax=axes, shrink=0.8,
        extend="both" if clipped else "neither",
    )
    bar.set_label((_COLORBAR_LABEL if colorbar_label is None else colorbar_label) + scale_note,
                  fontsize=10 if nrows > 1 else 8)  # a one-row bar is short
    if title is not None:
        fig.suptitle(title)
    if msks is not None:
        from matplotlib.lines import Line2D

        fig.legend(
            handles=[Line2D([], [], color=_MASK, linewidth=1.2, label="ground-truth mask")],
            loc="outside lower center",
            frameon=False,
        )
    _save(fig, path)
    return fig


def _feature_names(relevance: Any) -> tuple[np.ndarray, list[str] | None, str]:
    """Flat relevance, generated names (None: plain indices) and the x-axis label."""
    if isinstance(relevance, Mapping):
        if not relevance:
            raise ValueError("relevance is empty")
        parts, names = [], []
        images = all(np.ndim(v) == 2 for v in relevance.values())
        for m, v in relevance.items():
            v = np.asarray(v, dtype=float)
            if v.ndim not in (1, 2):
                raise ValueError(f"relevance[{m!r}] must be one sample, (H, W) or (D,), "
                                 f"got shape {v.shape}")
            parts.append(v.ravel())
            if v.ndim == 2:
                names += [f"{m} ({i}, {j})" for i in range(v.shape[0]) for j in range(v.shape[1])]
            else:
                names += [f"{m} [{i}]" for i in range(v.size)]
        xlabel = ("input pixel: modality (row, column)" if images
                  else "input feature: modality [index]")
        return np.concatenate(parts), names, xlabel
    r = np.asarray(relevance, dtype=float)
    if r.ndim == 2:
        names = [f"({i}, {j})" for i in range(r.shape[0]) for j in range(r.shape[1])]
        return r.ravel(), names, "input pixel (row, column)"
    return r.ravel(), None, "input feature (flat index)"


def relevance_bars(
    relevance: Any,
    *,
    path: str | os.PathLike[str] | None = None,
    top: int | None = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Bar chart of the LRP relevance of one sample's input features.

    The source paper's view of an explanation, one bar per feature, red for
    positive relevance (evidence for the explained class) and blue for
    negative. The paper calls the axes "Features" and "Correlation"; what
    the bars show is LRP relevance, and the axes say so (the paper's names
    are kept in a subtitle). Given per modality, each bar is named by its
    modality and pixel row and column, not by an index into the joined
    images.

    Parameters
    ----------
    relevance : array_like, or dict of str -> array_like
        Relevance of one sample: an (H, W) image, a flat (D,) vector, or a
        dict modality -> such an array (one sample per modality).
    path : str or path-like, optional
        Where to save the figure.
    top : int, optional
        Show only the ``top`` features of largest ``|relevance|``, sorted by
        it; by default all features in their original order.
    feature_names : sequence of str, optional
        One name per (flattened) feature, used as tick labels instead of the
        generated ones.
    title : str, optional
        Figure title (e.g. the patient and the explained class).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``relevance`` is empty or non-finite, ``top`` is not positive, or
        ``feature_names`` has the wrong length.
    ImportError
        If matplotlib is not installed.
    """
    r, names, xlabel = _feature_names(relevance)
    if r.size == 0:
        raise ValueError("relevance is empty")
    if not np.isfinite(r).all():
        raise ValueError("relevance contains NaN or infinite values")
    if feature_names is not None:
        if len(feature_names) != r.size:
            raise ValueError(f"got {len(feature_names)} feature_names for {r.size} features")
        names, xlabel = [str(f) for f in feature_names], "input feature"
    if top is not None and (int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer, got {top}")

    idx = np.arange(r.size)
    if top is not None:
        idx = np.argsort(-np.abs(r), kind="stable")[: int(top)]
        xlabel += f", the {idx.size} of largest |relevance|"
    values = r[idx]
    pos = np.arange(idx.size)

    fig = _figure(min(max(4.5, 0.25 * idx.size + 1.5), 14.0), 4.2 if names else 3.6)
    ax = fig.subplots()
    ax.bar(pos, values, color=np.where(values >= 0, _POSITIVE, _NEGATIVE), width=0.8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    # Ticks name the features unless they are simply 0..D-1 in order.
    if names is not None or top is not None:
        labels = [names[j] if names is not None else str(j) for j in idx]
        ax.set_xticks(pos, labels, rotation=90 if idx.size > 8 else 0, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("LRP relevance")
    ax.set_title("the source paper's 'Correlation' (y) over 'Features' (x) view", fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=_POSITIVE, label="for the explained class"),
                       Patch(color=_NEGATIVE, label="against")], frameon=False, fontsize=8)
    if title is not None:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def _names(keys: list[str], labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [str(k) for k in keys]
    if len(labels) != len(keys):
        raise ValueError(f"got {len(labels)} labels for {len(keys)} entries")
    return [str(s) for s in labels]


def _lesion_groups(lesions: Mapping[str, Any], keys: list[str], n: int) -> np.ndarray:
    """Per sample, the '+'-joined modalities with a lesion ('no lesion' if none)."""
    if set(lesions) != set(keys):
        raise ValueError(f"lesions keys {sorted(lesions)} differ from shares keys {sorted(keys)}")
    flags = []
    for k in keys:
        a = np.asarray(lesions[k])
        if a.shape != (n,):
            raise ValueError(f"lesions[{k!r}] must have shape ({n},), got {a.shape}")
        flags.append(a.astype(bool))
    return np.array(["+".join(k for k, f in zip(keys, row) if f) or "no lesion"
                     for row in zip(*flags)] if flags else [], dtype=object)


def modality_shares(
    shares: Mapping[str, Any],
    *,
    path: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    lesions: Mapping[str, Any] | None = None,
    title: str | None = None,
    ylabel: str = "share of the positive relevance",
) -> Any:
    """Bar chart of each modality's share of relevance, by lesion pattern.

    A share is a fraction in [0, 1] per sample, such as
    :attr:`pymdbn.lrp.Explanation.shares` (each modality's share of the
    evidence *for* the explained class) or ``abs_shares``. Pass the samples
    the figure is about, e.g. the patients of the explained class. With
    ``lesions`` the samples are grouped by which modalities show a lesion
    (e.g. "brain+bone"), one group of bars per pattern: a good explanation
    puts the evidence where the lesions are. A caption in the figure says
    what the bars and whiskers are.

    Parameters
    ----------
    shares : dict of str -> array_like of shape (N,)
        Per-sample share of each modality, in [0, 1]. Samples with a NaN
        share (no relevance to share) are left out and counted in the
        caption.
    path : str or path-like, optional
        Where to save the figure.
    labels : sequence of str, optional
        Display names, one per modality in ``shares`` order (default: keys).
    lesions : dict of str -> array_like of bool, shape (N,), optional
        Whether each sample shows a lesion in each modality (same keys as
        ``shares``).
    title : str, optional
        Figure title (e.g. which patients and which class).
    ylabel : str, default 'share of the positive relevance'
        What the shares are.

    Returns
    -------
    matplotlib.figure.Figure
        Bars at the mean share, whiskers from the 25th to the 75th
        percentile over the samples of the group.

    Raises
    ------
    ValueError
        If ``shares`` is empty, arrays are empty, not 1-D, differ in length
        or contain infinity or values outside [0, 1] (the signed
        ``Explanation.net_shares`` are not shares of this kind), no sample
        is left, or ``labels`` or ``lesions`` do not match.
    ImportError
        If matplotlib is not installed.
    """
    keys = list(shares)
    if not keys:
        raise ValueError("shares is empty")
    names = _names(keys, labels)
    arrays = [np.asarray(shares[k], dtype=float) for k in keys]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1 or arrays[0].size == 0:
        raise ValueError(
            f"shares must be non-empty 1-D arrays of one length, got shapes "
            f"{[a.shape for a in arrays]}"
        )
    s = np.stack(arrays, axis=1)  # (N, modalities)
    if np.isinf(s).any():
        raise ValueError("shares contain infinite values")
    finite = s[np.isfinite(s)]
    if finite.size and (finite.min() < -1e-9 or finite.max() > 1 + 1e-9):
        raise ValueError(f"shares must lie in [0, 1], got values from {finite.min():.3g} to "
                         f"{finite.max():.3g}; pass Explanation.shares or abs_shares, not the "
                         f"signed net_shares")
    n = len(s)
    groups = (np.full(n, "all", dtype=object) if lesions is None
              else _lesion_groups(lesions, keys, n))
    keep = np.isfinite(s).all(axis=1)
    dropped = int(n - keep.sum())
    s, groups = s[keep], groups[keep]
    if len(s) == 0:
        raise ValueError("no sample has finite shares")
    # Groups in a readable order: fewer lesion modalities first, then fusion order.
    order = sorted(set(groups), key=lambda g: (g != "no lesion", g.count("+"),
                                               [keys.index(p) if p in keys else -1
                                                for p in g.split("+")]))

    width = 0.8 / len(keys)
    fig = _figure(max(4.5, (0.35 * len(keys) + 0.4) * len(order) + 2.5), 4.2)
    ax = fig.subplots()
    x = np.arange(len(order))
    for j, name in enumerate(names):
        vals = [s[groups == g, j] for g in order]
        mean = np.array([v.mean() for v in vals])
        q25 = np.array([np.percentile(v, 25) for v in vals])
        q75 = np.array([np.percentile(v, 75) for v in vals])
        ax.bar(x + (j - (len(keys) - 1) / 2) * width, mean, width,
               yerr=np.stack([mean - np.minimum(q25, mean), np.maximum(q75, mean) - mean]),
               capsize=3, label=name)
    ticks = [f"{g}\n(n={int((groups == g).sum())})" for g in order]
    if lesions is not None:
        ticks = [f"lesions: {t}" if not t.startswith("no lesion") else t for t in ticks]
    ax.set_xticks(x, ticks, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    caption = ("bars: mean share per modality; whiskers: 25th to 75th percentile over the "
               "patients")
    if dropped:
        caption += f"; {dropped} without any relevance to share left out"
    ax.set_title(caption, fontsize=8)
    ax.legend(title="modality", frameon=False, fontsize=8, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    if title is not None:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def metric_bars(
    table: Mapping[str, Mapping[str, Any]],
    *,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Grouped bar chart comparing systems on several metrics.

    Parameters
    ----------
    table : dict of str -> dict of str -> (mean, sd)
        ``table[system][metric]``, e.g. accuracy, specificity, F1 and
        sensitivity per system, each a ``(mean, sd)`` pair or a
        ``{"mean": ..., "sd": ...}`` entry of
        :func:`pymdbn.metrics.summarize` (``sd`` may be ``None``). All
        systems must report the same metrics.
    path : str or path-like, optional
        Where to save the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One group per metric, one bar per system, error bars = sd.

    Raises
    ------
    ValueError
        If the table is empty, systems report different metrics, or an entry
        is not a (mean, sd) pair.
    ImportError
        If matplotlib is not installed.
    """
    systems = list(table)
    if not systems:
        raise ValueError("table is empty")
    metrics = list(table[systems[0]])
    for s in systems:
        if set(table[s]) != set(metrics) or not metrics:
            raise ValueError(
                f"systems must report the same non-empty metrics: {systems[0]!r} has "
                f"{metrics}, {s!r} has {list(table[s])}"
            )

    def pair(entry: Any, where: str) -> tuple[float, float]:
        if isinstance(entry, Mapping):
            entry = (entry.get("mean"), entry.get("sd"))
        try:
            mean, sd = entry
            return float(mean), 0.0 if sd is None else float(sd)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a (mean, sd) pair, got {entry!r}") from None

    values = np.array(
        [[pair(table[s][m], f"table[{s!r}][{m!r}]") for m in metrics] for s in systems]
    )  # (systems, metrics, 2)

    fig = _figure(max(4.5, 0.35 * len(systems) * len(metrics) + 2.5), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(systems)
    x = np.arange(len(metrics))
    for j, s in enumerate(systems):
        ax.bar(
            x + (j - (len(systems) - 1) / 2) * width,
            values[j, :, 0],
            width,
            yerr=values[j, :, 1],
            capsize=3,
            label=str(s),
        )
    ax.set_xticks(x, metrics)
    ax.set_ylabel("Score")
    if values[:, :, 0].min() >= 0:
        ax.set_ylim(bottom=0)
    fig.legend(loc="outside right upper", frameon=False)
    _save(fig, path)
    return fig
