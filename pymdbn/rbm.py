"""Compatibility alias of :mod:`pymdbn.models.rbm`."""

from pymdbn.models.rbm import RBM, log_partition_exact

__all__ = ["RBM", "log_partition_exact"]
