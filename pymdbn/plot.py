"""Figures for relevance heatmaps and evaluation results.

matplotlib is an optional dependency (``pip install pymdbn[plot]``); it is
imported inside the plotting functions only, so ``import pymdbn.plot`` stays
cheap and works without it. Figures are built as standalone
``matplotlib.figure.Figure`` objects, never through ``pyplot``: no display
is needed, no global figure registry fills up, and the caller's backend and
rcParams are left untouched.

All functions return the Figure and, when ``path`` is given, also write it
atomically (to a temporary file in the same folder, then ``os.replace``), so
a crash or a concurrent reader never sees a half-written image. The format
follows the file suffix (PNG when there is none).

References
----------
.. [1] S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller,
   W. Samek, "On pixel-wise explanations for non-linear classifier decisions
   by layer-wise relevance propagation", PLoS ONE 10(7), e0130140, 2015.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["heatmaps", "relevance_bars", "modality_shares", "metric_bars"]

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
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fmt = suffix[1:].lower() or "png"
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask set the final permissions, as a plain
    # open() would (tempfile.mkstemp would leave the image private, 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            # "tight" keeps outer labels that constrained layout can clip when
            # fixed-aspect images shrink inside their slots.
            fig.savefig(fh, format=fmt, dpi=150, bbox_inches="tight", pad_inches=0.05)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
    vmax: float | str | None = None,
) -> Any:
    """Relevance maps overlaid on the input images, one panel per image.

    Each panel shows the input in grey with the relevance on top in a
    diverging colormap, red = evidence for the explained class, blue =
    against it (LRP, Bach et al. [1]_). The colour scale is symmetric,
    ``[-vmax, vmax]`` with ``vmax = max |R|`` over the *whole figure* (or as
    given by ``vmax``), so equal colours mean equal relevance across samples
    and modalities, and zero relevance is the neutral centre. The overlay's opacity grows
    linearly with ``|R|`` up to ``alpha``, so irrelevant regions leave the
    anatomy visible and faint colour honestly means little relevance.
    One colour bar labelled "relevance" is shared by all panels.

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
    vmax : float or str, optional
        End of the colour scale: a positive number, or ``'pQ'`` for the
        Q-th percentile of ``|R|`` over the figure (e.g. ``'p99'``), so that
        a few extreme pixels do not wash out the rest; larger values are
        drawn at full colour and the colour bar gets arrows. Default: the
        maximum of ``|R|``.

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

    fig = _figure(_PANEL_INCHES * ncol + 1.0, _PANEL_INCHES * nrows + 0.3)
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
    bar.set_label("relevance")
    if msks is not None:
        from matplotlib.lines import Line2D

        fig.legend(
            handles=[Line2D([], [], color=_MASK, linewidth=1.2, label="ground-truth mask")],
            loc="outside lower center",
            frameon=False,
        )
    _save(fig, path)
    return fig


def relevance_bars(
    relevance: Any,
    *,
    path: str | os.PathLike[str] | None = None,
    top: int | None = None,
    feature_names: Sequence[str] | None = None,
) -> Any:
    """Bar chart of relevance per input feature.

    Reproduces the source paper's view of an explanation: one bar per
    feature, red for positive and blue for negative relevance, with the axes
    labelled "Features" and "Correlation" as in the paper (the bar heights
    are LRP relevance scores).

    Parameters
    ----------
    relevance : array_like
        Relevance of one sample; flattened to one bar per feature.
    path : str or path-like, optional
        Where to save the figure.
    top : int, optional
        Show only the ``top`` features of largest ``|relevance|``, sorted by
        it; by default all features in their original order.
    feature_names : sequence of str, optional
        One name per (flattened) feature, used as tick labels.

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
    r = np.asarray(relevance, dtype=float).ravel()
    if r.size == 0:
        raise ValueError("relevance is empty")
    if not np.isfinite(r).all():
        raise ValueError("relevance contains NaN or infinite values")
    if feature_names is not None and len(feature_names) != r.size:
        raise ValueError(f"got {len(feature_names)} feature_names for {r.size} features")
    if top is not None and (int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer, got {top}")

    idx = np.arange(r.size)
    if top is not None:
        idx = np.argsort(-np.abs(r), kind="stable")[: int(top)]
    values = r[idx]
    pos = np.arange(idx.size)

    fig = _figure(min(max(4.0, 0.25 * idx.size + 1.5), 14.0), 3.5)
    ax = fig.subplots()
    ax.bar(pos, values, color=np.where(values >= 0, _POSITIVE, _NEGATIVE), width=0.8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    # Ticks name the features only when they are not simply 0..D-1.
    if feature_names is not None or top is not None:
        names = [feature_names[j] if feature_names is not None else str(j) for j in idx]
        ax.set_xticks(pos, names, rotation=90 if idx.size > 8 else 0)
    ax.set_xlabel("Features")
    ax.set_ylabel("Correlation")
    _save(fig, path)
    return fig


def _names(keys: list[str], labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [str(k) for k in keys]
    if len(labels) != len(keys):
        raise ValueError(f"got {len(labels)} labels for {len(keys)} entries")
    return [str(s) for s in labels]


def modality_shares(
    shares: Mapping[str, Any],
    *,
    path: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
) -> Any:
    """Bar chart of each modality's mean share of relevance.

    Parameters
    ----------
    shares : dict of str -> array_like of shape (N,)
        Per-sample share of the total relevance carried by each modality.
    path : str or path-like, optional
        Where to save the figure.
    labels : sequence of str, optional
        Display names, one per modality in ``shares`` order (default: keys).

    Returns
    -------
    matplotlib.figure.Figure
        Bars at the mean, error bars at the sample standard deviation over
        the N samples (none when N = 1).

    Raises
    ------
    ValueError
        If ``shares`` is empty, arrays are empty, not 1-D, differ in length
        or contain NaN or infinity, or ``labels`` has the wrong length.
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
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("shares contain NaN or infinite values")
    means = [a.mean() for a in arrays]
    sds = [a.std(ddof=1) if a.size > 1 else 0.0 for a in arrays]

    fig = _figure(max(3.5, 1.1 * len(keys) + 1.5), 3.5)
    ax = fig.subplots()
    ax.bar(names, means, yerr=sds, capsize=4, color="#7f7f7f")
    if min(min(a) for a in arrays) >= 0:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("Share of relevance")
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
