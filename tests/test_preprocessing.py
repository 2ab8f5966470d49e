"""ModalityScaler: statistics, shapes, zero variance, validation messages."""

import numpy as np
import pytest
from sklearn.base import clone

from pymdbn import _reference as ref
from pymdbn.preprocessing import ModalityScaler, check_modalities, standardize


@pytest.fixture
def X(rng):
    return {"brain": rng.normal(3, 2, (20, 4, 5)).astype(np.float32),
            "bone": rng.normal(-1, 5, (20, 7))}


def test_scalar_stats_per_modality(X):
    s = ModalityScaler().fit(X)
    assert s.shapes_ == {"brain": (4, 5), "bone": (7,)}
    assert s.mean_["brain"].shape == () and np.isclose(s.mean_["brain"], X["brain"].mean())
    assert np.isclose(s.scale_["bone"], X["bone"].std())
    Z = s.transform(X)
    assert Z["brain"].shape == (20, 20) and Z["brain"].dtype == np.float32
    assert Z["bone"].dtype == np.float64
    for z in Z.values():
        assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5
    back = s.inverse_transform(Z)
    np.testing.assert_allclose(back["brain"], X["brain"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back["bone"], X["bone"])


def test_per_feature_and_zero_std(X):
    X = dict(X)
    X["bone"][:, 2] = 4.0
    s = ModalityScaler(per_feature=True).fit(X)
    assert s.mean_["brain"].shape == (4, 5)
    assert s.scale_["bone"][2] == 1.0
    Z = s.transform(X)
    assert np.isfinite(Z["bone"]).all() and np.all(Z["bone"][:, 2] == 0)
    np.testing.assert_allclose(Z["bone"][:, 0].std(), 1)
    const = ModalityScaler().fit({"c": np.full((5, 3), 2.0)})
    assert const.scale_["c"] == 1.0 and np.all(const.transform({"c": np.full((2, 3), 2.0)})
                                               ["c"] == 0)


def test_single_array_round_trip(rng):
    a = rng.normal(size=(10, 3, 3))
    s = ModalityScaler()
    z = s.fit_transform(a)
    assert isinstance(z, np.ndarray) and z.shape == (10, 9)
    np.testing.assert_allclose(s.inverse_transform(z), a)
    assert clone(s).get_params() == {"per_feature": False}


@pytest.mark.parametrize("bad,match", [
    (lambda X: {"brain": X["brain"]}, "missing modality 'bone'"),
    (lambda X: {**X, "xray": X["bone"]}, "unknown modality 'xray'"),
    (lambda X: {**X, "bone": X["bone"][:5]}, "modality 'bone' has 5 samples"),
    (lambda X: {**X, "brain": X["brain"][:, :3]}, r"modality 'brain': expected samples of "
                                                  r"shape \(4, 5\)"),
    (lambda X: {**X, "bone": np.where(np.eye(20, 7) > 0, np.nan, X["bone"])},
     "modality 'bone' contains NaN or infinity"),
    (lambda X: {**X, "brain": np.full((20, 4, 5), np.inf)}, "modality 'brain' contains NaN"),
    (lambda X: {**X, "bone": X["bone"].astype(str)}, "modality 'bone': expected a real"),
    (lambda X: {**X, "bone": X["bone"][:, 0]}, "modality 'bone': expected an array"),
])
def test_bad_inputs_name_the_modality(X, bad, match):
    s = ModalityScaler().fit(X)
    with pytest.raises(ValueError, match=match):
        s.transform(bad(X))


def test_check_modalities_order_and_subset(X):
    out = check_modalities({"bone": X["bone"], "brain": X["brain"]}, ["brain", "bone"])
    assert list(out) == ["brain", "bone"]
    assert list(check_modalities({"bone": X["bone"]}, ["brain", "bone"],
                                 allow_missing=True)) == ["bone"]
    with pytest.raises(ValueError, match="must be a dict"):
        check_modalities(X["bone"], ["brain", "bone"])


# ------------------------------------------------------------ the compiled z-scoring pass
@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64,
                                      np.int64, np.float16, ">f8", bool])
@pytest.mark.parametrize("per_feature", [True, False])
def test_standardize_is_bitwise_numpy(in_dtype, out_dtype, per_feature):
    rng = np.random.default_rng(3)
    x = (rng.uniform(0, 200, (37, 5, 7))).astype(in_dtype)
    n = 35 if per_feature else 1
    mean = rng.uniform(-5, 50, n)
    scale = rng.uniform(0.5, 30, n)
    got = standardize("m", x, mean, scale, out_dtype)
    want, finite = ref.standardize(x, mean, scale, out_dtype)
    assert finite
    assert got.dtype == out_dtype and got.shape == (37, 35) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


def test_standardize_broadcasts_and_takes_any_layout():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4, 10))[:, :, ::2]  # not contiguous
    got = standardize("m", x, 0.5, np.linspace(1, 2, 20), np.float64)
    np.testing.assert_array_equal(got, (x.reshape(6, -1) - 0.5) / np.linspace(1, 2, 20))
    with pytest.raises(ValueError, match="1 or n_features"):
        standardize("m", x, np.zeros(3), np.ones(3), np.float64)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_names_nan_and_overflow(bad, dtype):
    x = np.zeros((50, 40), dtype)
    x[31, 17] = bad
    with pytest.raises(ValueError, match="modality 'bone' contains NaN or infinity"):
        standardize("bone", x, 0.0, 1.0, dtype)
    big = np.full((3, 4), 3e38, np.float64)
    with pytest.raises(ValueError, match="'bone'.*overflow float32"):
        standardize("bone", big, -3e38, 1.0, np.float32)
