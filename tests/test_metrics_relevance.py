"""Tests for pymdbn.metrics.relevance on hand-made cases with known answers."""

import numpy as np
import pytest

from pymdbn.metrics.relevance import (
    PixelFlippingResult,
    lesion_occlusion,
    lesion_relevance_sign,
    modality_attribution_accuracy,
    pixel_flipping,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)


def _square_mask(n, h, w, top, left, size):
    mask = np.zeros((n, h, w), dtype=bool)
    mask[:, top:top + size, left:left + size] = True
    return mask


# --------------------------------------------------------------- localisation
def test_mass_accuracy_known_values():
    mask = _square_mask(3, 4, 4, 0, 0, 2)
    R = np.zeros((3, 4, 4))
    R[0, 0, 0] = 2.0                     # all positive relevance inside
    R[1, 0, 0], R[1, 3, 3] = 1.0, 3.0    # a quarter inside
    R[2, 0, 0], R[2, 3, 3] = 1.0, -5.0   # negative relevance outside is ignored
    np.testing.assert_allclose(relevance_mass_accuracy(R, mask), [1.0, 0.25, 1.0])


def test_mass_accuracy_nan_for_empty_mask_or_no_positive_relevance():
    mask = _square_mask(2, 3, 3, 0, 0, 1)
    mask[0] = False
    R = np.ones((2, 3, 3))
    R[1] = -1.0
    assert np.isnan(relevance_mass_accuracy(R, mask)).all()


def test_rank_accuracy_known_values():
    mask = _square_mask(2, 4, 4, 0, 0, 2)    # K = 4
    R = np.zeros((2, 4, 4))
    R[0, :2, :2] = [[4, 3], [2, 1]]          # top 4 exactly the mask
    R[1, 0, 0], R[1, 3, 3], R[1, 3, 2], R[1, 2, 3] = 9, 8, 7, 6  # 1 of top 4
    np.testing.assert_allclose(relevance_rank_accuracy(R, mask), [1.0, 0.25])


def test_rank_accuracy_ties_count_fractionally_and_empty_mask_is_nan():
    mask = _square_mask(2, 4, 4, 1, 1, 2)
    mask[1] = False
    out = relevance_rank_accuracy(np.zeros((2, 4, 4)), mask)
    assert out[0] == pytest.approx(4 / 16)  # constant map: the mask fraction
    assert np.isnan(out[1])


def test_uniform_random_relevance_scores_mask_fraction_on_average():
    rng = np.random.default_rng(0)
    n, h, w = 2000, 16, 16
    mask = _square_mask(n, h, w, 4, 4, 8)   # 64 / 256 = 0.25 of the image
    R = rng.uniform(size=(n, h, w))
    # Per-sample sd is about 0.04 (mass) and 0.05 (rank); the mean of 2000
    # samples is within 0.005 of 0.25 with overwhelming probability.
    assert relevance_mass_accuracy(R, mask).mean() == pytest.approx(0.25, abs=0.005)
    assert relevance_rank_accuracy(R, mask).mean() == pytest.approx(0.25, abs=0.005)
    # A map concentrated on the lesion is clearly better than chance.
    assert relevance_rank_accuracy(R + 2 * mask, mask).mean() == 1.0


def test_lesion_relevance_sign_sees_negative_lesions():
    mask = _square_mask(4, 4, 4, 0, 0, 2)
    R = np.zeros((4, 4, 4))
    R[0, 0, 0] = 1.0                        # evidence for the class
    R[1, 0, 0], R[1, 3, 3] = -1.0, 5.0      # lesion against it, strong evidence elsewhere
    R[2, 0, 0], R[2, 1, 1] = 2.0, -2.0      # cancels out
    mask[3] = False                         # no lesion: undefined
    out = lesion_relevance_sign(R, mask)
    np.testing.assert_array_equal(out[:3], [1.0, -1.0, 0.0])
    assert np.isnan(out[3])
    # the positive-only score sees a miss there, not evidence against the class
    assert relevance_mass_accuracy(R, mask)[1] == 0.0
    with pytest.raises(ValueError, match="shape"):
        lesion_relevance_sign(R, mask[:, :3])


def test_pointing_game_hits_and_tolerance():
    mask = _square_mask(3, 8, 8, 0, 0, 1)   # lesion at pixel (0, 0)
    R = np.zeros((3, 8, 8))
    R[0, 0, 0] = 1.0    # on the lesion
    R[1, 0, 1] = 1.0    # one pixel off
    R[2, 2, 2] = 1.0    # sqrt(8) = 2.83 px off, diagonally
    np.testing.assert_array_equal(pointing_game(R, mask), [True, False, False])
    np.testing.assert_array_equal(pointing_game(R, mask, tolerance=1), [True, True, False])
    # Euclidean disk: radius 2 does not reach the diagonal neighbour at 2.83.
    np.testing.assert_array_equal(pointing_game(R, mask, tolerance=2), [True, True, False])
    np.testing.assert_array_equal(pointing_game(R, mask, tolerance=3), [True, True, True])


def test_pointing_game_dilation_stays_within_each_sample():
    mask = np.zeros((2, 6, 6), dtype=bool)
    mask[0, 5, :] = True    # bottom row of sample 0
    mask[1, 5, 5] = True
    R = np.zeros((2, 6, 6))
    R[0, 5, 0] = 1.0
    R[1, 0, 0] = 1.0        # top row of sample 1: "next" to sample 0's mask in memory
    np.testing.assert_array_equal(pointing_game(R, mask, tolerance=2), [True, False])


def test_pointing_game_rejects_empty_mask_and_bad_tolerance():
    mask = _square_mask(2, 4, 4, 0, 0, 1)
    mask[1] = False
    with pytest.raises(ValueError, match=r"empty for samples \[1\]"):
        pointing_game(np.ones((2, 4, 4)), mask)
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(np.ones((1, 4, 4)), mask[:1], tolerance=-1)


@pytest.mark.parametrize(
    "fn", [relevance_mass_accuracy, relevance_rank_accuracy, pointing_game]
)
def test_localisation_validation(fn):
    with pytest.raises(ValueError, match=r"R shape \(2, 4, 4\) and mask shape \(2, 4, 5\)"):
        fn(np.ones((2, 4, 4)), np.ones((2, 4, 5), dtype=bool))
    R = np.ones((2, 4, 4))
    R[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(R, np.ones((2, 4, 4), dtype=bool))


# ------------------------------------------------------------- pixel flipping
def _linear_problem(seed=0, n=64, shape=(6, 6)):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 1.0, size=shape)
    X = rng.uniform(0.1, 1.0, size=(n,) + shape)
    axes = tuple(range(1, X.ndim))
    return X, w * X, lambda x: (w * x).sum(axis=axes)


def test_pixel_flipping_linear_model_exact_curve():
    X, R, f = _linear_problem(n=5)
    res = pixel_flipping(f, X, R, steps=36)   # one pixel per step
    assert isinstance(res, PixelFlippingResult)
    np.testing.assert_allclose(res.fractions, np.arange(37) / 36)
    # With baseline 0, removing pixel i lowers f by exactly R_i.
    flat = np.sort(R.reshape(5, -1), axis=1)[:, ::-1]
    expected = f(X)[None] - np.vstack([np.zeros(5), np.cumsum(flat, axis=1).T])
    np.testing.assert_allclose(res.curve, expected, atol=1e-12)
    np.testing.assert_allclose(res.aopc, (res.curve[0] - res.curve).mean(axis=0))


def test_pixel_flipping_aopc_hand_computed():
    res = pixel_flipping(lambda x: x.sum(axis=1), np.array([[3.0, 1.0]]),
                         np.array([[3.0, 1.0]]), steps=2)
    np.testing.assert_allclose(res.curve[:, 0], [4.0, 1.0, 0.0])
    assert res.aopc[0] == pytest.approx((0 + 3 + 4) / 3)  # Samek: mean over k = 0..L


def test_pixel_flipping_morf_beats_random_beats_lerf():
    X, R, f = _linear_problem(seed=1)
    res = {o: pixel_flipping(f, X, R, steps=12, order=o, random_state=0)
           for o in ("morf", "random", "lerf")}
    # All relevance is positive, so every flip lowers the score.
    assert (np.diff(res["morf"].curve, axis=0) <= 1e-12).all()
    assert (np.diff(res["lerf"].curve, axis=0) <= 1e-12).all()
    morf, rand, lerf = (res[o].aopc for o in ("morf", "random", "lerf"))
    assert (morf >= rand).all() and (rand >= lerf).all()
    assert morf.mean() > rand.mean() + 0.5 and rand.mean() > lerf.mean() + 0.5


def test_pixel_flipping_batches_one_call_per_step():
    X, R, f = _linear_problem(n=7)
    calls = []

    def predict(x):
        calls.append(x.shape)
        return f(x)

    pixel_flipping(predict, X, R, steps=4)
    assert calls == [(7, 6, 6)] * 5


def test_pixel_flipping_patches_ranked_by_summed_relevance():
    R = np.zeros((1, 5, 5))
    R[0, 0, 0], R[0, 1, 1] = 0.7, 0.7  # top-left 2x2 patch: total 1.4
    R[0, 4, 4] = 1.2                   # bottom-right border patch (1x1): 1.2
    X = np.ones((1, 5, 5))
    seen = []
    res = pixel_flipping(lambda x: seen.append(x.copy()) or x.sum(axis=(1, 2)),
                         X, R, steps=9, patch=2)    # 3 x 3 = 9 regions
    np.testing.assert_allclose(res.fractions, np.arange(10) / 9)
    # The patch sum beats the single strongest pixel, so the 2x2 patch goes first.
    assert seen[1][0, :2, :2].sum() == 0 and seen[1].sum() == 21
    assert seen[2][0, 4, 4] == 0 and seen[2].sum() == 20


def test_pixel_flipping_1d_features_and_baselines():
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(4, 10))
    w = rng.uniform(size=10)
    f = lambda x: x @ w  # noqa: E731
    res = pixel_flipping(f, X, w * X, steps=5, baseline="mean")
    np.testing.assert_allclose(res.curve[-1], X.mean(axis=1) * w.sum())
    res = pixel_flipping(f, X, w * X, steps=5, baseline=0.5)
    np.testing.assert_allclose(res.curve[-1], 0.5 * w.sum())
    res = pixel_flipping(f, X, w * X, steps=5, baseline=lambda x: x[::-1])
    np.testing.assert_allclose(res.curve[-1], f(X[::-1]))


def test_pixel_flipping_random_order_is_seeded():
    X, R, f = _linear_problem(n=3)
    a = pixel_flipping(f, X, R, order="random", random_state=5).curve
    b = pixel_flipping(f, X, R, order="random", random_state=5).curve
    c = pixel_flipping(f, X, R, order="random", random_state=6).curve
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pixel_flipping_multimodal_ranks_jointly():
    rng = np.random.default_rng(3)
    X = {"mri": rng.uniform(0.5, 1, size=(2, 3, 3)), "xray": rng.uniform(0.5, 1, size=(2, 4))}
    R = {"mri": X["mri"] * 0.1, "xray": X["xray"] * 10.0}  # x-ray far more relevant
    received = []

    def predict(x):
        received.append(x)
        return 0.1 * x["mri"].sum(axis=(1, 2)) + 10.0 * x["xray"].sum(axis=1)

    res = pixel_flipping(predict, X, R, steps=13)   # 9 + 4 regions, one per step
    assert set(received[0]) == {"mri", "xray"}
    # The four x-ray features go first, before any MRI pixel.
    assert (received[4]["xray"] == 0).all() and (received[4]["mri"] == X["mri"]).all()
    joint = np.concatenate([R["mri"].reshape(2, -1), R["xray"]], axis=1)
    drops = np.cumsum(np.sort(joint, axis=1)[:, ::-1], axis=1)
    np.testing.assert_allclose(res.curve[1:], res.curve[0] - drops.T, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(R=np.ones((2, 3, 4))), r"X shape \(2, 3, 3\) and R shape \(2, 3, 4\)"),
        (dict(R=np.full((2, 3, 3), np.nan)), "NaN"),
        (dict(order="best"), "order"),
        (dict(steps=0), "steps"),
        (dict(patch=0), "patch"),
        (dict(baseline="median"), "baseline"),
        (dict(predict_fn=lambda x: np.ones(3)), r"shape \(2,\)"),
        (dict(predict_fn=lambda x: np.full(2, np.nan)), "NaN"),
        (dict(X=np.ones((2, 1, 3, 3)), R=np.ones((2, 1, 3, 3))), r"\(N, H, W\) or \(N, D\)"),
        (dict(X={"a": np.ones((2, 3))}, R={"b": np.ones((2, 3))}), "keys differ"),
        (dict(X={"a": np.ones((2, 3)), "b": np.ones((3, 3))},
              R={"a": np.ones((2, 3)), "b": np.ones((3, 3))}), "sample count"),
        (dict(R={"a": np.ones((2, 3, 3))}), "both"),
    ],
)
def test_pixel_flipping_validation(kwargs, message):
    args = dict(predict_fn=lambda x: np.zeros(2), X=np.ones((2, 3, 3)), R=np.ones((2, 3, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pixel_flipping(**args)


# ------------------------------------------------------- modality attribution
def test_modality_attribution_accuracy():
    shares = {
        "mri":   np.array([0.6, 0.2, 0.5, 0.3, 0.4]),
        "mammo": np.array([0.3, 0.7, 0.5, 0.3, 0.4]),
        "xray":  np.array([0.1, 0.1, 0.0, 0.4, 0.2]),
    }
    lesions = {
        "mri":   np.array([True, True, True, False, False]),
        "mammo": np.array([False, False, False, False, False]),
        "xray":  np.array([False, True, False, False, True]),
    }
    # hit; miss (mammo wins, no lesion there); tie with a healthy modality is a
    # miss; no lesion -> NaN; x-ray lesion but mri/mammo larger -> miss.
    out = modality_attribution_accuracy(shares, lesions)
    np.testing.assert_array_equal(out, [1.0, 0.0, 0.0, np.nan, 0.0])
    assert modality_attribution_accuracy(shares, lesions, mean=True) == pytest.approx(0.25)
    # y restricts the evaluated samples.
    y = np.array([True, False, False, True, True])
    np.testing.assert_array_equal(
        modality_attribution_accuracy(shares, lesions, y=y), [1.0, np.nan, np.nan, np.nan, 0.0]
    )
    none = {k: np.zeros(5, dtype=bool) for k in lesions}
    assert np.isnan(modality_attribution_accuracy(shares, none, mean=True))


def test_modality_attribution_accuracy_validation():
    shares = {"a": np.ones(3), "b": np.ones(3)}
    with pytest.raises(ValueError, match="keys differ"):
        modality_attribution_accuracy(shares, {"a": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="one length"):
        modality_attribution_accuracy(shares, {"a": np.ones(3, bool), "b": np.ones(4, bool)})
    with pytest.raises(ValueError, match="infinite"):
        modality_attribution_accuracy({"a": np.array([np.inf])}, {"a": np.array([True])})


def test_modality_attribution_accuracy_nan_shares_are_misses():
    # Explanation.shares is NaN where no modality has positive relevance: no evidence
    # for the class lies on a lesion, so the sample is a miss, not an error.
    shares = {"a": np.array([np.nan, 0.9]), "b": np.array([np.nan, 0.1])}
    lesions = {"a": np.array([True, True]), "b": np.array([False, False])}
    np.testing.assert_array_equal(modality_attribution_accuracy(shares, lesions), [0.0, 1.0])


# --------------------------------------------------------------- occlusion
def _bright_column_model(side):
    """Predicts class k when the brightest pixel lies in columns [4k, 4k + 4)."""
    def predict(images):
        flat = np.asarray(images).reshape(len(images), -1)
        return (np.argmax(flat, axis=1) % side) // 4
    return predict


def test_lesion_occlusion_hides_and_shows_the_lesion():
    rng = np.random.default_rng(1)
    n, side = 40, 12
    y = rng.integers(0, 3, n)
    X = rng.uniform(0, 1, (n, side, side))
    mask = np.zeros_like(X, bool)
    for i, k in enumerate(y):
        mask[i, 5:7, 4 * k:4 * k + 2] = True
    X[mask] = 5.0  # the class is the bright lesion's position
    predict = _bright_column_model(side)
    r = lesion_occlusion(predict, X, y, mask, fill=0.5)
    assert r.correct.all() and r.correct_shown.all()
    # Hidden: the brightest remaining pixel is noise, right about a third of the time.
    np.testing.assert_array_equal(r.correct_hidden, predict(np.where(mask, 0.5, X)) == y)
    assert r.correct_hidden.mean() < 0.6
    # A model that reads the class from outside the lesion keeps it when hidden.
    X2 = X.copy()
    X2[np.arange(n), 0, 4 * y + 3] = 9.0
    r2 = lesion_occlusion(predict, X2, y, mask, fill=0.5)
    assert r2.correct_hidden.all() and r2.correct.all()
    # Channels-last inputs take (N, H, W) masks; a per-pixel fill broadcasts.
    r3 = lesion_occlusion(lambda im: predict(im[..., 0]), X[..., None], y, mask,
                          fill=np.full((side, side, 1), 0.5))
    for field in ("correct", "correct_hidden", "correct_shown"):
        np.testing.assert_array_equal(getattr(r3, field), getattr(r, field))


@pytest.mark.parametrize("args, message", [
    ((np.zeros((2, 3, 3)), [0, 1], np.ones((2, 3, 4), bool)), "does not fit X shape"),
    ((np.zeros((2, 3, 3)), [0], np.ones((2, 3, 3), bool)), "does not match 2 samples"),
    ((np.zeros((2, 3, 3)), [0, 1], np.zeros((2, 3, 3), bool)), "non-empty lesion mask"),
    ((np.zeros((0, 3, 3)), [], np.zeros((0, 3, 3), bool)), "non-empty shape"),
])
def test_lesion_occlusion_validation(args, message):
    with pytest.raises(ValueError, match=message):
        lesion_occlusion(lambda im: np.zeros(len(im), int), *args)
    X, y, mask = np.zeros((2, 3, 3)), np.array([0, 1]), np.ones((2, 3, 3), bool)
    with pytest.raises(ValueError, match=r"predict_fn returned shape \(3,\)"):
        lesion_occlusion(lambda im: np.zeros(3, int), X, y, mask)


def test_old_paths_name_the_same_objects():
    import pymdbn.lrp
    import pymdbn.lrp.metrics
    import pymdbn.metrics
    import pymdbn.metrics.classification
    import pymdbn.metrics.relevance

    for name in pymdbn.lrp.metrics.__all__:
        assert getattr(pymdbn.lrp.metrics, name) is getattr(pymdbn.metrics.relevance, name)
    assert pymdbn.lrp.metrics.pointing_game is pymdbn.metrics.relevance.pointing_game
    for name in pymdbn.metrics.__all__:
        assert getattr(pymdbn.metrics, name) is getattr(pymdbn.metrics.classification, name)
    assert pymdbn.metrics.positive_class is pymdbn.metrics.classification.positive_class
