"""Evaluation metrics: classification reports and relevance-map quality.

The classification metrics (:mod:`pymdbn.metrics.classification`) are exported
here; the quality measures for relevance maps are in
:mod:`pymdbn.metrics.relevance` (also reachable as :mod:`pymdbn.lrp.metrics`).
"""

import importlib

# The classification names, loaded on first use so that importing the relevance
# metrics (pymdbn.lrp.metrics) does not pay for scipy.stats.
__all__ = ["classification_report", "format_report", "summarize", "positive_class",
           "is_negative_name", "METRICS", "NEGATIVE_CLASS_NAMES"]


def __getattr__(name):
    if name in __all__:
        value = getattr(importlib.import_module("pymdbn.metrics.classification"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pymdbn.metrics' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
