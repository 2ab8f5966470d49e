"""Compatibility alias of :mod:`pymdbn.metrics.relevance`."""

from pymdbn.metrics.relevance import (
    LesionOcclusionResult,
    PixelFlippingResult,
    lesion_occlusion,
    lesion_relevance_sign,
    modality_attribution_accuracy,
    pixel_flipping,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

__all__ = [
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "lesion_relevance_sign",
    "pointing_game",
    "pixel_flipping",
    "PixelFlippingResult",
    "modality_attribution_accuracy",
    "lesion_occlusion",
    "LesionOcclusionResult",
]
