"""Classification metrics for diagnostic models, reported as plain dicts.

The reports are JSON-serialisable (Python ``float``/``int``/``list`` only) so
they can be written next to trained models and aggregated over seeds with
:func:`summarize` into the "mean +/- sd" tables used in papers.

References
----------
.. [1] T. Fawcett, "An introduction to ROC analysis", Pattern Recognition
   Letters 27(8), 861-874, 2006.
.. [2] K. H. Brodersen, C. S. Ong, K. E. Stephan, J. M. Buhmann, "The balanced
   accuracy and its posterior distribution", ICPR 2010.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "classification_report",
    "format_report",
    "summarize",
    "positive_class",
    "is_negative_name",
    "METRICS",
    "NEGATIVE_CLASS_NAMES",
]

#: Scalar metrics of a report, in display order.
METRICS = (
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "balanced_accuracy",
    "roc_auc",
)


#: Class names that mean "no disease" in diagnostic datasets. Of two named classes,
#: the one *not* in this list is the positive class (see :func:`positive_class`).
#: Compared case-insensitively, ignoring spaces, '-', '_' and '.' (so 'No_Tumor',
#: 'no-tumor' and 'notumor' all match).
NEGATIVE_CLASS_NAMES = (
    "healthy",
    "normal",
    "benign",
    "negative",
    "control",
    "controls",
    "healthy-control",
    "no-tumor",
    "no-tumour",
    "non-tumor",
    "non-tumour",
    "no-finding",
    "no-findings",
    "no-cancer",
    "non-cancer",
    "cancer-free",
    "no-lesion",
    "no-disease",
    "absent",
    "nonmalignant",
)


def _canonical(name: Any) -> str:
    return re.sub(r"[\s_.\-]+", "", str(name).lower())


_NEGATIVE = frozenset(_canonical(n) for n in NEGATIVE_CLASS_NAMES)


def is_negative_name(name: Any) -> bool:
    """Whether ``name`` is one of :data:`NEGATIVE_CLASS_NAMES` (case- and
    separator-insensitively: 'No_Tumor' matches 'no-tumor')."""
    return isinstance(name, str) and _canonical(name) in _NEGATIVE


def _plain(value: Any) -> Any:
    """A NumPy scalar as the matching Python scalar (JSON-serialisable)."""
    return value.item() if isinstance(value, np.generic) else value


def positive_class(classes: Sequence[Any], pos_label: Any = None) -> Any:
    """The positive ("disease") class of a binary problem, by one documented rule.

    Sensitivity, specificity, precision, F1, ROC AUC and the explained class of
    LRP heatmaps all refer to this class. The rule, in order:

    1. An explicit ``pos_label`` wins. It must be one of ``classes``; a string
       that equals ``str(c)`` of exactly one class also matches (so the
       command line's ``--positive-class 1`` selects the integer class 1).
    2. Of exactly two named classes of which exactly one is a known name for
       the negative class (:data:`NEGATIVE_CLASS_NAMES`: 'healthy', 'normal',
       'benign', 'no-tumor', 'negative', 'control', ...; compared case- and
       separator-insensitively), the *other* one is positive: ``['cancer',
       'healthy']`` -> ``'cancer'``, whatever the alphabetical order.
    3. Integer classes ``{0, 1}`` (or one of them, for a split holding a single
       class): 1, scikit-learn's ``pos_label=1`` convention. Only true
       integers: the strings ``'0'``/``'1'`` (e.g. MedMNIST labels without
       names, where BreastMNIST's 1 means *benign*) need ``pos_label``.
    4. Otherwise no rule decides and a :class:`ValueError` asks for
       ``pos_label`` (``--positive-class`` on the command line).

    Parameters
    ----------
    classes : sequence
        The classes, e.g. a fitted model's ``classes_``.
    pos_label : hashable, optional
        The positive class, when the caller knows it.

    Returns
    -------
    object
        The positive class, an element of ``classes`` as a plain Python
        scalar (rule 3 may return 1 for the classes ``[0]``).

    Raises
    ------
    ValueError
        If ``pos_label`` is not a class, or no rule decides.

    Examples
    --------
    >>> positive_class(["cancer", "healthy"])
    'cancer'
    >>> positive_class([0, 1])
    1
    >>> positive_class(["a", "b"], pos_label="b")
    'b'
    """
    values = [_plain(c) for c in np.asarray(classes).ravel().tolist()]
    if pos_label is not None:
        pos_label = _plain(pos_label)
        if pos_label in values:
            return values[values.index(pos_label)]
        same = [c for c in values if str(c) == str(pos_label)]
        if len(same) == 1:
            return same[0]
        raise ValueError(
            f"pos_label={pos_label!r} is not one of the classes {values} "
            "(--positive-class on the command line)"
        )
    if len(values) == 2 and all(isinstance(c, str) for c in values):
        negative = [c for c in values if is_negative_name(c)]
        if len(negative) == 1:
            return values[1 - values.index(negative[0])]
    if (
        values
        and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in values)
        and set(values) <= {0, 1}
    ):
        return 1
    raise ValueError(
        f"cannot tell which of the classes {values} is the positive one (no rule of "
        "pymdbn.metrics.positive_class decides): pass pos_label (--positive-class on "
        "the command line)"
    )


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` with 0.0 where ``den == 0`` (no warnings)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Ties in ``score`` get average ranks, which equals the trapezoidal area
    under the ROC curve [1]_. Returns ``None`` when only one class is present.
    """
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _as_labels(y: Any, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"{name} contains NaN")
    return y


def classification_report(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    pos_label: Any = None,
    labels: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Summarise a classifier's predictions with the usual diagnostic metrics.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (N,)
        True and predicted class labels.
    y_score : array_like of shape (N,), (N, 2) or (N, K), optional
        Scores for ROC AUC. Binary problems accept scores of the positive
        class (N,) or class probabilities (N, 2) whose columns follow
        ``labels`` (sorted classes by default, as scikit-learn's
        ``predict_proba``). Multi-class problems take (N, K) scores, one
        column per entry of ``labels``.
    pos_label : hashable, optional
        Positive (e.g. "cancer") class of a binary problem. By default the
        rule of :func:`positive_class` picks it from ``labels`` (pass a
        model's ``classes_`` there): of two named classes the one that is not
        a known negative name ('healthy', 'normal', 'benign', ...), of the
        integer classes 0 and 1 the class 1; a ``ValueError`` asks for
        ``pos_label`` when no rule decides. Ignored for multi-class problems.
    labels : sequence, optional
        All classes, in confusion-matrix order. Defaults to the sorted union
        of ``y_true`` and ``y_pred``. Pass it explicitly when a class may be
        absent from a split, so that the problem type and matrix layout do
        not change between seeds.

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity`` (recall of the positive class),
        ``specificity`` (recall of the negative class), ``precision``,
        ``f1``, ``balanced_accuracy`` (mean recall over classes present in
        ``y_true`` [2]_), ``roc_auc`` (only when ``y_score`` is given),
        ``confusion_matrix`` (rows = true, columns = predicted, ordered as
        ``labels``), ``labels``, ``n_samples``, ``average`` and, for a binary
        problem, ``positive_class``.

        With at most two classes ``average`` is ``'binary'``: sensitivity,
        specificity, precision and F1 refer to ``pos_label`` against all
        other labels. With more classes it is ``'macro'``: sensitivity,
        precision and F1 are unweighted means of the per-class
        (one-vs-rest) values, specificity the mean of per-class
        TN / (TN + FP), and ``roc_auc`` the mean one-vs-rest AUC over classes
        that have both positive and negative samples.

        Ratios with a zero denominator are reported as 0.0. ``roc_auc`` is
        ``None`` when it is undefined (only one class in ``y_true``).

    Raises
    ------
    ValueError
        If inputs are empty or differ in length, labels are not 1-D or
        contain NaN, a label is missing from ``labels``, ``pos_label`` is not
        a class of a binary problem, or ``y_score`` has the wrong shape or
        contains NaN or infinity.

    Examples
    --------
    >>> r = classification_report([0, 1, 1, 0], [0, 1, 0, 0], y_score=[.1, .9, .4, .3])
    >>> r["sensitivity"], r["specificity"], r["roc_auc"]
    (0.5, 1.0, 1.0)
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    if y_true.size != y_pred.size:
        raise ValueError(
            f"y_true and y_pred differ in length: {y_true.size} != {y_pred.size}"
        )
    n = y_true.size
    if n == 0:
        raise ValueError("y_true and y_pred are empty")

    if labels is None:
        classes = np.unique(np.concatenate([y_true, y_pred]))
    else:
        classes = np.asarray(labels)
        if classes.ndim != 1 or classes.size == 0:
            raise ValueError("labels must be a non-empty 1-D sequence")
        if np.unique(classes).size != classes.size:
            raise ValueError(f"labels contain duplicates: {classes.tolist()}")
        for name, y in (("y_true", y_true), ("y_pred", y_pred)):
            unknown = np.setdiff1d(y, classes)
            if unknown.size:
                raise ValueError(
                    f"{name} contains labels not in labels: {unknown.tolist()}"
                )
    k = classes.size

    # Position of each sample's class in `classes` (which need not be sorted
    # when user-given); a dense k x k matrix suits the few classes of a
    # diagnostic task.
    order = np.argsort(classes)
    t_idx = order[np.searchsorted(classes, y_true, sorter=order)]
    p_idx = order[np.searchsorted(classes, y_pred, sorter=order)]
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t_idx, p_idx), 1)

    tp_c = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)  # true count per class
    predicted = cm.sum(axis=0).astype(float)
    recall_c = _divide(tp_c, support)

    report: dict[str, Any] = {"accuracy": float(np.trace(cm) / n)}
    if k <= 2:
        if k == 2:
            pos_label = positive_class(classes, pos_label)
        elif pos_label is None:  # a one-class split keeps an explicit pos_label it lacks
            try:
                pos_label = positive_class(classes)
            except ValueError as exc:
                raise ValueError(
                    f"{exc}; or pass labels= with all the classes (y_true and y_pred "
                    f"hold only {classes.tolist()})"
                ) from None
        pos = y_true == pos_label
        hit = y_pred == pos_label
        tp = float(np.sum(pos & hit))
        fn = float(np.sum(pos & ~hit))
        fp = float(np.sum(~pos & hit))
        tn = float(np.sum(~pos & ~hit))
        sens = float(_divide(tp, tp + fn))
        prec = float(_divide(tp, tp + fp))
        report.update(
            sensitivity=sens,
            specificity=float(_divide(tn, tn + fp)),
            precision=prec,
            f1=float(_divide(2 * tp, 2 * tp + fp + fn)),
            average="binary",
            positive_class=_plain(pos_label),
        )
    else:
        fp_c = predicted - tp_c
        tn_c = n - support - fp_c
        report.update(
            sensitivity=float(recall_c.mean()),
            specificity=float(_divide(tn_c, tn_c + fp_c).mean()),
            precision=float(_divide(tp_c, predicted).mean()),
            f1=float(_divide(2 * tp_c, support + predicted).mean()),
            average="macro",
        )
    report["balanced_accuracy"] = float(recall_c[support > 0].mean())

    if y_score is not None:
        report["roc_auc"] = _roc_auc(y_true, y_score, classes, pos_label)

    report.update(
        confusion_matrix=cm.tolist(),
        labels=classes.tolist(),
        n_samples=int(n),
    )
    return report


def _roc_auc(
    y_true: np.ndarray, y_score: Any, classes: np.ndarray, pos_label: Any
) -> float | None:
    score = np.asarray(y_score, dtype=float)
    n, k = y_true.size, classes.size
    if score.shape[:1] != (n,):
        raise ValueError(
            f"y_score has {score.shape[0] if score.ndim else 0} rows but "
            f"y_true has {n} samples"
        )
    if np.isnan(score).any():
        raise ValueError("y_score contains NaN")
    if np.isinf(score).any():
        raise ValueError("y_score contains infinity")

    if k <= 2:
        if score.ndim == 2 and score.shape[1] == 2:
            if k != 2:
                raise ValueError(
                    "y_score of shape (N, 2) needs two classes to know which "
                    f"column is pos_label; got classes {classes.tolist()}, "
                    "pass labels=[negative, positive]"
                )
            score = score[:, classes.tolist().index(pos_label)]
        elif score.ndim != 1:
            raise ValueError(
                f"binary y_score must have shape (N,) or (N, 2), got {score.shape}"
            )
        return _auc(y_true == pos_label, score)

    if score.shape != (n, k):
        raise ValueError(
            f"multi-class y_score must have shape (N, K) = ({n}, {k}), "
            f"got {score.shape}"
        )
    aucs = [_auc(y_true == c, score[:, j]) for j, c in enumerate(classes)]
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else None


def summarize(reports: Sequence[dict[str, Any]], ddof: int = 1) -> dict[str, Any]:
    """Mean and standard deviation of each metric over repeated runs (seeds).

    Parameters
    ----------
    reports : sequence of dict
        Outputs of :func:`classification_report` for the same task.
    ddof : int, default 1
        Delta degrees of freedom of the standard deviation (1: sample sd).

    Returns
    -------
    dict
        ``{metric: {"mean": float, "sd": float | None, "n": int}}`` for every
        metric of :data:`METRICS` present in the reports. Undefined values
        (``roc_auc`` of ``None``) are skipped and ``n`` counts the runs used;
        ``mean``/``sd`` are ``None`` when too few runs remain.

    Raises
    ------
    ValueError
        If ``reports`` is empty or mixes binary and macro-averaged reports.
    """
    if not reports:
        raise ValueError("reports is empty")
    averages = {r.get("average") for r in reports}
    if len(averages) > 1:
        raise ValueError(f"reports mix averaging modes {sorted(map(str, averages))}")
    summary: dict[str, Any] = {}
    for metric in METRICS:
        if not any(metric in r for r in reports):
            continue
        values = np.array(
            [r[metric] for r in reports if r.get(metric) is not None], dtype=float
        )
        m = values.size
        summary[metric] = {
            "mean": float(values.mean()) if m else None,
            "sd": float(values.std(ddof=ddof)) if m > ddof else None,
            "n": int(m),
        }
    return summary


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        mean, sd = value.get("mean"), value.get("sd")
        if mean is None:
            return "n/a"
        return f"{mean:.3f}" if sd is None else f"{mean:.3f} ± {sd:.3f}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """Render a report, or a :func:`summarize` output, as a markdown table.

    Parameters
    ----------
    report : dict
        Output of :func:`classification_report` (single run; the positive
        class is named above the table, the confusion matrix is appended as
        a second table) or of :func:`summarize` (cells read "mean ± sd").

    Returns
    -------
    str
        Markdown text.
    """
    lines = []
    if report.get("positive_class") is not None:
        lines += [f"positive class: {report['positive_class']}", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {m} | {_cell(report[m])} |" for m in METRICS if m in report]
    if "confusion_matrix" in report:
        labels = [str(c) for c in report.get("labels", [])]
        cm = report["confusion_matrix"]
        if len(labels) != len(cm):
            labels = [str(i) for i in range(len(cm))]
        lines += [
            "",
            f"Confusion matrix (rows = true, columns = predicted), "
            f"n = {report.get('n_samples', sum(map(sum, cm)))}:",
            "",
            "| true \\ pred | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|",
        ]
        lines += [
            f"| {lab} | " + " | ".join(str(v) for v in row) + " |"
            for lab, row in zip(labels, cm)
        ]
    return "\n".join(lines)
