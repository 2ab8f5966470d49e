"""Tests for pymdbn.data.phantoms.make_phantoms."""

import numpy as np
import pytest
from scipy import ndimage

from pymdbn.data.phantoms import MODALITIES, Phantoms, make_phantoms


def _auc(score, y):
    """Mann-Whitney AUC of ``score`` for binary labels ``y`` (no ties expected)."""
    ranks = np.argsort(np.argsort(score, axis=0), axis=0) + 1
    n1 = y.sum()
    n0 = y.size - n1
    return (ranks[y == 1].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


@pytest.fixture(scope="module")
def pair():
    """The same 60 patients with (prevalence 1) and without (prevalence 0) lesions."""
    kw = dict(n_patients=60, size=48, difficulty=0.2, random_state=7)
    return make_phantoms(prevalence=1.0, **kw), make_phantoms(prevalence=0.0, **kw)


def test_shapes_dtypes_and_unpacking():
    ph = make_phantoms(40, size=32, random_state=0)
    assert isinstance(ph, Phantoms)
    X, y, masks, lesion_labels = ph
    assert ph.modalities == MODALITIES
    assert y.shape == (40,) and y.dtype == np.int64
    for m in MODALITIES:
        assert X[m].shape == (40, 32, 32) and X[m].dtype == np.float32
        assert masks[m].shape == (40, 32, 32) and masks[m].dtype == bool
        assert ph.organ_masks[m].shape == (40, 32, 32) and ph.organ_masks[m].dtype == bool
        assert lesion_labels[m].shape == (40,) and lesion_labels[m].dtype == bool
        assert np.isfinite(X[m]).all()
        assert -0.5 < X[m].min() and X[m].max() < 1.5


def test_modality_subset_and_order():
    ph = make_phantoms(10, size=16, modalities=("bone", "brain"), random_state=0)
    assert ph.modalities == ("bone", "brain")
    full = make_phantoms(10, size=16, random_state=0)
    # Each modality has its own random stream.
    np.testing.assert_array_equal(ph.X["bone"], full.X["bone"])


def test_reproducible():
    a = make_phantoms(70, size=32, random_state=123)
    b = make_phantoms(70, size=32, random_state=np.random.SeedSequence(123))
    c = make_phantoms(70, size=32, random_state=124)
    np.testing.assert_array_equal(a.y, b.y)
    for m in MODALITIES:
        np.testing.assert_array_equal(a.X[m], b.X[m])
        np.testing.assert_array_equal(a.masks[m], b.masks[m])
        assert not np.array_equal(a.X[m], c.X[m])


@pytest.mark.parametrize("prevalence", [0.0, 0.3, 0.5, 1.0])
def test_prevalence_and_lesion_assignment(prevalence):
    ph = make_phantoms(101, size=16, prevalence=prevalence, random_state=1)
    assert ph.y.sum() == round(prevalence * 101)
    any_lesion = np.any([ph.lesion_labels[m] for m in MODALITIES], axis=0)
    np.testing.assert_array_equal(any_lesion, ph.y == 1)
    for m in MODALITIES:
        # masks are non-empty exactly where the label says there is a lesion
        np.testing.assert_array_equal(ph.masks[m].any(axis=(1, 2)), ph.lesion_labels[m])


def test_labels_shuffled_and_subsets_vary():
    ph = make_phantoms(200, size=16, random_state=2)
    assert 0 < ph.y[:100].sum() < 100
    subsets = {tuple(ph.lesion_labels[m][i] for m in MODALITIES) for i in np.flatnonzero(ph.y)}
    assert len(subsets) == 2 ** len(MODALITIES) - 1


def test_lesions_lie_inside_the_organ(pair):
    with_lesion, _ = pair
    for m in MODALITIES:
        masks, organs = with_lesion.masks[m], with_lesion.organ_masks[m]
        assert masks.any()
        assert not (masks & ~organs).any()
        # the organ is the head / breast / bone, not the whole image
        assert 0.1 < organs.mean() < 0.9


def test_lesions_change_the_image_only_inside_the_mask(pair):
    with_lesion, without = pair
    for m in MODALITIES:
        diff = np.abs(with_lesion.X[m] - without.X[m])
        mask = with_lesion.masks[m]
        assert diff[~mask].max() == 0
        assert diff[mask].mean() > 0.05


def test_lesion_contrast_to_noise_falls_with_difficulty():
    cnr = {}
    for difficulty in (0.0, 0.5, 1.0):
        kw = dict(n_patients=40, size=32, difficulty=difficulty, random_state=5)
        pos, neg = make_phantoms(prevalence=1.0, **kw), make_phantoms(prevalence=0.0, **kw)
        for m in MODALITIES:
            signal = np.abs(pos.X[m] - neg.X[m])[pos.masks[m]].mean()
            noise = (neg.X[m] - ndimage.uniform_filter(neg.X[m], (1, 3, 3))).std()
            cnr[m, difficulty] = signal / noise
    for m in MODALITIES:
        assert cnr[m, 0.0] > cnr[m, 0.5] > cnr[m, 1.0]


def test_no_single_pixel_decides():
    ph = make_phantoms(200, size=32, difficulty=0.0, random_state=3)
    for m in MODALITIES:
        auc = _auc(ph.X[m].reshape(200, -1), ph.y)
        assert np.max(np.maximum(auc, 1 - auc)) < 0.9


def _lesion_features(ph):
    """Per-modality band-pass energy and intensity quantiles inside the organ."""
    feats = []
    for m in MODALITIES:
        X = ph.X[m]
        smooth = ndimage.gaussian_filter(X, (0, 1, 1))
        band = np.abs(smooth - ndimage.gaussian_filter(X, (0, 4, 4)))
        for image in (band, smooth):
            inside = np.sort(np.where(ph.organ_masks[m], image, np.nan).reshape(len(X), -1), axis=1)
            count = ph.organ_masks[m].reshape(len(X), -1).sum(axis=1)
            for q in (0.01, 0.05, 0.5, 0.95, 0.99):
                feats.append(inside[np.arange(len(X)), (q * (count - 1)).astype(int)])
    return np.stack(feats, axis=1)


def test_simple_model_beats_chance():
    train = make_phantoms(200, size=48, difficulty=0.0, random_state=10)
    test = make_phantoms(200, size=48, difficulty=0.0, random_state=11)
    f_train, f_test = _lesion_features(train), _lesion_features(test)
    mean, std = f_train.mean(axis=0), f_train.std(axis=0)
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # nearest centroid: project on the centroid difference
        w = f_train[train.y == 1].mean(axis=0) - f_train[train.y == 0].mean(axis=0)
        score = f_test @ w
    else:
        score = LogisticRegression(C=0.1).fit(f_train, train.y).decision_function(f_test)
    assert _auc(score, test.y) > 0.6


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_patients=0), "n_patients"),
        (dict(n_patients=2.5), "n_patients"),
        (dict(size=8), "size"),
        (dict(prevalence=1.5), "prevalence"),
        (dict(prevalence=-0.1), "prevalence"),
        (dict(difficulty=2.0), "difficulty"),
        (dict(modalities=("brain", "lung")), "lung"),
        (dict(modalities=()), "modalities"),
        (dict(modalities=("bone", "bone")), "modalities"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_bad_arguments(kwargs, name):
    args = dict(n_patients=4, size=16) | kwargs
    with pytest.raises(ValueError, match=name):
        make_phantoms(**args)


def test_unknown_modality_message_lists_known():
    with pytest.raises(ValueError, match="brain.*breast.*bone"):
        make_phantoms(2, modalities=["lung"])


def test_resized_averages_blocks_and_keeps_small_lesions():
    from pymdbn.data.phantoms import make_phantoms

    d = make_phantoms(12, size=32, random_state=3)
    r = d.resized(16)
    for m in d.X:
        assert r.X[m].shape == (12, 16, 16) and r.X[m].dtype == np.float32
        np.testing.assert_allclose(r.X[m][:, 1, 2], d.X[m][:, 2:4, 4:6].mean(axis=(1, 2)),
                                   rtol=1e-6)
        np.testing.assert_array_equal(r.masks[m].any(axis=(1, 2)), d.masks[m].any(axis=(1, 2)))
        assert r.masks[m].sum() >= d.masks[m].sum() / 4
    assert r.y is d.y and d.resized(32).X["brain"].shape == (12, 32, 32)
    with pytest.raises(ValueError, match="divisor"):
        d.resized(24)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 8, 9, 16])
def test_resized_equals_numpy_block_mean_and_any_bit_for_bit(k):
    """resized sums blocks its own way: the bits must stay those of
    ``mean(axis=(2, 4), dtype=float32)`` and ``any(axis=(2, 4))`` (signed zeros,
    denormals and values of very different size included)."""
    from pymdbn.data.phantoms import Phantoms

    rng = np.random.default_rng(k)
    n, size = 40, 3
    side = size * k
    X = (rng.standard_normal((n, side, side))
         * np.exp(3 * rng.standard_normal((n, side, side)))).astype(np.float32)
    X.flat[::7], X.flat[::11] = -0.0, 0.0
    X[:5] = -0.0
    X[5:9] = np.where(rng.random((4, side, side)) < 0.5, -0.0, 1e-45)
    masks = rng.random((n, side, side)) < 0.05
    d = Phantoms({"brain": X}, np.zeros(n, np.int64), {"brain": masks},
                 {"brain": np.zeros(n, bool)}, {"brain": ~masks})
    r = d.resized(size)
    blocks = X.reshape(n, size, k, size, k)
    want = blocks.mean(axis=(2, 4), dtype=np.float32)
    np.testing.assert_array_equal(r.X["brain"].view(np.uint32), want.view(np.uint32))
    for got, m in ((r.masks["brain"], masks), (r.organ_masks["brain"], ~masks)):
        np.testing.assert_array_equal(got, m.reshape(n, size, k, size, k).any(axis=(2, 4)))


def test_phantoms_carry_class_names():
    from pymdbn.metrics import positive_class

    data = make_phantoms(6, size=16, random_state=0)
    assert data.classes == ["healthy", "cancer"]
    assert data.resized(8).classes == data.classes
    names = np.asarray(data.classes)[data.y]
    assert set(names[data.y == 1]) == {"cancer"}
    assert positive_class(np.unique(names)) == "cancer"


def test_old_and_package_paths_name_the_same_objects():
    import pymdbn.data
    import pymdbn.data.phantoms
    import pymdbn.datasets

    for name in ("CLASSES", "MODALITIES", "Phantoms", "make_phantoms"):
        assert getattr(pymdbn.datasets, name) is getattr(pymdbn.data.phantoms, name)
        assert getattr(pymdbn.data, name) is getattr(pymdbn.data.phantoms, name)


def test_an_error_in_one_chunk_stops_the_rest(monkeypatch):
    """Chunks run on pymdbn's threads: an error (or Ctrl-C) in one is raised at once and
    the chunks not started yet are dropped, not generated first."""
    import pymdbn
    from pymdbn.data import phantoms

    generate = phantoms._GENERATORS["brain"]
    calls = []

    def failing(*args, **kwargs):
        calls.append(None)
        if len(calls) == 3:
            raise RuntimeError("chunk 3 failed")
        return generate(*args, **kwargs)

    monkeypatch.setitem(phantoms._GENERATORS, "brain", failing)
    before = pymdbn.get_num_threads()["openmp"]
    pymdbn.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="chunk 3 failed"):
            make_phantoms(64 * 40, size=64, random_state=0)
    finally:
        pymdbn.set_num_threads(before)
    assert len(calls) < 10  # of 40 brain chunks
