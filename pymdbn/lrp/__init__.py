"""Layer-wise relevance propagation (LRP) for (multimodal) deep belief networks.

Explain why a model decided, as relevance per input pixel of every modality
(Bach et al. 2015; Montavon et al. 2019), with zennit's rules and composites
(Anders et al. 2021)::

    from pymdbn.lrp import explain
    ex = explain(model, {'brain': mri, 'breast': mammo}, composite='epsilon')
    ex.relevance['brain']      # (N, H, W), relevance of each z-scored pixel
    ex.shares                  # each modality's share of the evidence
    ex.heatmaps({'brain': mri, 'breast': mammo}, path='why.png')

Rules: :class:`Epsilon`, :class:`ZPlus`, :class:`AlphaBeta`, :class:`Gamma`
and, for input layers, :class:`ZBox`, :class:`Flat`, :class:`WSquare`.
:class:`Composite` assigns them to layers; :func:`get_composite` builds the
presets named in :data:`COMPOSITES`. Quality measures for relevance maps are
in :mod:`pymdbn.metrics.relevance` (alias :mod:`pymdbn.lrp.metrics`).

Attributes load on first use, so ``import pymdbn.lrp.metrics`` does not load
the compiled core.
"""

__all__ = [
    "explain",
    "Explanation",
    "Rule",
    "Epsilon",
    "ZPlus",
    "AlphaBeta",
    "Gamma",
    "ZBox",
    "Flat",
    "WSquare",
    "Composite",
    "get_composite",
    "COMPOSITES",
    "zbox_bounds",
    "metrics",
]

_LAZY = {
    "explain": ("pymdbn.lrp._engine", "explain_model"),
    "zbox_bounds": ("pymdbn.lrp._engine", "zbox_bounds"),
    "Explanation": ("pymdbn.lrp.explanation", "Explanation"),
    "Composite": ("pymdbn.lrp.composites", "Composite"),
    "get_composite": ("pymdbn.lrp.composites", "get_composite"),
    "COMPOSITES": ("pymdbn.lrp.composites", "COMPOSITES"),
    **{name: ("pymdbn.lrp.rules", name)
       for name in ("Rule", "Epsilon", "ZPlus", "AlphaBeta", "Gamma", "ZBox", "Flat", "WSquare")},
}


def __getattr__(name):
    import importlib

    if name == "metrics":
        return importlib.import_module("pymdbn.lrp.metrics")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pymdbn.lrp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
