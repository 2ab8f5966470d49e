"""Compatibility alias of :mod:`pymdbn.data.phantoms`."""

from pymdbn.data.phantoms import CLASSES, MODALITIES, Phantoms, make_phantoms

__all__ = ["CLASSES", "MODALITIES", "Phantoms", "make_phantoms"]
