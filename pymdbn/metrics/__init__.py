"""Evaluation metrics: classification reports and relevance-map quality.

The classification metrics (:mod:`pymdbn.metrics.classification`) are exported
here; the quality measures for relevance maps are in
:mod:`pymdbn.metrics.relevance` (also reachable as :mod:`pymdbn.lrp.metrics`).
"""

from pymdbn.metrics.classification import (
    METRICS,
    NEGATIVE_CLASS_NAMES,
    classification_report,
    format_report,
    is_negative_name,
    positive_class,
    summarize,
)

__all__ = [
    "classification_report",
    "format_report",
    "summarize",
    "positive_class",
    "is_negative_name",
    "METRICS",
    "NEGATIVE_CLASS_NAMES",
]
