"""Compatibility alias of :mod:`pymdbn.models.mdbn`."""

from pymdbn.models.mdbn import DEFAULT_MODALITIES, MDBN

__all__ = ["MDBN", "DEFAULT_MODALITIES"]
