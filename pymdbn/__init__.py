"""pymdbn: multimodal deep belief networks explained by layer-wise relevance propagation.

The compiled core loads on first use of a model, so ``import pymdbn`` stays light;
subpackages (``pymdbn.models``, ``pymdbn.lrp``, ``pymdbn.data``, ``pymdbn.plot``, ...) are imported on first
attribute access, as SciPy does.
"""

from pymdbn._version import __version__

__all__ = ["__version__", "RBM", "show_config", "set_num_threads", "get_num_threads",
           "DBN", "MDBN", "EarlyFusionDBN", "ConvRBM", "Conv", "Pool", "ImageAugmenter", "load"]

_LAZY = {
    "RBM": ("pymdbn.models.rbm", "RBM"),
    "show_config": ("pymdbn._config", "show_config"),
    "set_num_threads": ("pymdbn._config", "set_num_threads"),
    "get_num_threads": ("pymdbn._config", "get_num_threads"),
    "DBN": ("pymdbn.models.dbn", "DBN"),
    "MDBN": ("pymdbn.models.mdbn", "MDBN"),
    "EarlyFusionDBN": ("pymdbn.models.early_fusion", "EarlyFusionDBN"),
    "ConvRBM": ("pymdbn.models.conv_rbm", "ConvRBM"),
    "Conv": ("pymdbn.layers", "Conv"),
    "Pool": ("pymdbn.layers", "Pool"),
    "ImageAugmenter": ("pymdbn.augment", "ImageAugmenter"),
    "load": ("pymdbn.io", "load"),
}


# Public submodules, imported on first access (``pymdbn.lrp.explain`` after ``import pymdbn``).
_SUBMODULES = ("augment", "baselines", "cuda", "data", "datasets", "experiments", "io", "layers",
               "lrp", "metrics", "models", "plot", "preprocessing", "presets")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"pymdbn.{name}")
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pymdbn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
