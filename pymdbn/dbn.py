"""Compatibility alias of :mod:`pymdbn.models.dbn`."""

from pymdbn.models.dbn import DBN

__all__ = ["DBN"]
