"""make_phantoms reproduces its pre-vectorisation reference (tests/_phantoms_reference.py) bit for bit."""

import numpy as np
import pytest

import _phantoms_reference as reference
from pymdbn.data.phantoms import make_phantoms


def _bits(a):
    """``a`` viewed as unsigned integers, so -0.0 differs from 0.0 and NaN payloads count."""
    a = np.asarray(a)
    return a.view(f"u{a.itemsize}") if a.dtype.kind in "fc" else a


def _assert_identical(new, old):
    np.testing.assert_array_equal(new.y, old.y)
    assert new.y.dtype == old.y.dtype
    for field in ("X", "masks", "lesion_labels", "organ_masks"):
        got, want = getattr(new, field), getattr(old, field)
        assert list(got) == list(want), field
        for m in want:
            assert got[m].dtype == want[m].dtype and got[m].shape == want[m].shape, (field, m)
            np.testing.assert_array_equal(_bits(got[m]), _bits(want[m]), err_msg=f"{field}[{m!r}]")


def _check(n, size=32, **kw):
    _assert_identical(make_phantoms(n, size=size, **kw), reference.make_phantoms(n, size=size, **kw))


@pytest.mark.parametrize("n", [1, 7, 64])
@pytest.mark.parametrize("size", [32, 48, 64])
def test_sizes_and_counts(n, size):
    _check(n, size, random_state=n * 1000 + size, bone_site="mixed")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeds_default_options(seed):
    _check(40, 64, random_state=seed)


@pytest.mark.parametrize("size", [16, 17, 33])
def test_odd_and_tiny_sizes(size):
    # At 16 pixels most anatomical regions are empty and fall back to wider ones.
    _check(50, size, random_state=size, difficulty=1.0, bone_site="mixed")


def test_several_chunks():
    # 2**18 pixels per chunk: 16 patients of 128 x 128, so three chunks, the last partial.
    _check(37, 128, random_state=5, bone_site="mixed")


@pytest.mark.parametrize("prevalence", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_prevalence_and_difficulty(prevalence, difficulty):
    _check(24, 32, prevalence=prevalence, difficulty=difficulty, random_state=11)


@pytest.mark.parametrize("bone_site", ["long", "spine", "mixed"])
def test_bone_sites(bone_site):
    _check(30, 48, modalities="bone", bone_site=bone_site, random_state=3)


@pytest.mark.parametrize("modalities", [("breast",), ("bone", "brain"), ["brain", "breast", "bone"]])
def test_modality_subsets(modalities):
    _check(20, 32, modalities=modalities, random_state=4)


@pytest.mark.parametrize("make_state", [
    lambda: np.random.SeedSequence(99),
    lambda: np.random.default_rng(99),
    lambda: np.int64(99),
])
def test_random_state_kinds(make_state):
    new = make_phantoms(9, size=32, random_state=make_state())
    old = reference.make_phantoms(9, size=32, random_state=make_state())
    _assert_identical(new, old)


def test_pixel_picks_and_spots_with_empty_regions():
    # Regions are never empty through make_phantoms (fallbacks fill them), but the helpers
    # keep the reference's answer for that case too: row ``size``, column 0.
    from pymdbn.data import phantoms

    region = np.random.default_rng(0).random((6, 20, 20)) < 0.02
    region[[1, 4]] = False
    region[5] = True
    for k in (1, 3):
        new = phantoms._pick_pixels(np.random.default_rng(k), region, k)
        old = reference._pick_pixels(np.random.default_rng(k), region, k)
        np.testing.assert_array_equal(new, old)
    new = phantoms._spots(np.random.default_rng(1), phantoms._Grid(20), region, 3, 0.9, (1.5, 4.0), (0.3, 0.6))
    old = reference._spots(np.random.default_rng(1), reference._Grid(20), region, 3, 0.9, (1.5, 4.0), (0.3, 0.6))
    np.testing.assert_array_equal(_bits(new), _bits(old))
