"""ModalityScaler: statistics, shapes, zero variance, validation messages."""

import numpy as np
import pytest
from sklearn.base import clone

from conftest import BACKENDS, tol
from pymdbn import backend
from pymdbn.backend import reference as ref
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
    assert clone(s).get_params() == {"per_feature": False, "per_image": False}


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


# ------------------------------------------------------------ the z-scoring pass
def route_standardize(monkeypatch, name):
    """Route ``backend.ops.standardize``, which ``standardize`` calls, to backend ``name``'s
    kernel for the test."""
    kern = backend.get(name)
    monkeypatch.setattr(backend.ops, "standardize", kern.standardize)
    return kern


@pytest.fixture(params=BACKENDS)
def standardize_on(request, monkeypatch):
    """Every backend in turn runs ``standardize``."""
    return route_standardize(monkeypatch, request.param)


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64,
                                      np.int64, np.float16, ">f8", bool])
@pytest.mark.parametrize("per_feature", [True, False])
def test_standardize_is_bitwise_numpy(standardize_on, in_dtype, out_dtype, per_feature):
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


def test_standardize_broadcasts_and_takes_any_layout(standardize_on):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4, 10))[:, :, ::2]  # not contiguous
    got = standardize("m", x, 0.5, np.linspace(1, 2, 20), np.float64)
    np.testing.assert_array_equal(got, (x.reshape(6, -1) - 0.5) / np.linspace(1, 2, 20))


def test_standardize_checks_the_feature_count(standardize_on):
    x = np.random.default_rng(4).standard_normal((6, 4, 10))[:, :, ::2]  # not contiguous
    with pytest.raises(ValueError, match="1 or n_features"):
        standardize("m", x, np.zeros(3), np.ones(3), np.float64)


def test_standardize_names_overflow(standardize_on):
    big = np.full((3, 4), 3e38, np.float64)
    with pytest.raises(ValueError, match="'bone'.*overflow float32"):
        standardize("bone", big, -3e38, 1.0, np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_names_nan_and_infinity(standardize_on, bad, dtype):
    x = np.zeros((50, 40), dtype)
    x[31, 17] = bad
    with pytest.raises(ValueError, match="modality 'bone' contains NaN or infinity"):
        standardize("bone", x, 0.0, 1.0, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("per_feature", [True, False])
def test_standardize_per_image_matches_twin(standardize_on, dtype, in_dtype, per_feature):
    rng = np.random.default_rng(5)
    x = (rng.uniform(0, 1, (23, 6, 9)) * rng.uniform(1, 200, (23, 1, 1))).astype(in_dtype)
    x[3] = x[3].flat[0]  # a constant image: deviation 0 -> 1
    n = 54 if per_feature else 1
    mean, scale = rng.uniform(-0.5, 0.5, n), rng.uniform(0.5, 2, n)
    got = standardize("m", x, mean, scale, dtype, per_image=True)
    want, finite = ref.standardize(x, mean, scale, dtype, per_row=True)
    assert finite
    # Row statistics are summed in another order than NumPy's: a few ulps at most.
    np.testing.assert_allclose(got, want, **tol(dtype, "standardize_per_row"))
    np.testing.assert_allclose(got[3], np.broadcast_to((0 - mean) / scale, (54,)),
                               **tol(dtype, "standardize_per_row"))
    # Each image is now mean 0, deviation 1 before the fitted z-score: float64 moments of
    # 54 values.
    plain = standardize("m", x, 0.0, 1.0, np.float64, per_image=True)
    keep = np.arange(23) != 3
    np.testing.assert_allclose(plain[keep].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(plain[keep].std(axis=1), 1, rtol=1e-12)


def test_standardize_per_image_still_names_nan(standardize_on):
    x = np.ones((4, 10))
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="modality 'breast' contains NaN"):
        standardize("breast", x, 0.0, 1.0, np.float32, per_image=True)


def test_per_image_scaler_removes_gain_and_offset(rng):
    base = rng.uniform(0, 1, (40, 5, 5))
    gain = rng.uniform(0.5, 3, (40, 1, 1))
    offset = rng.uniform(-1, 1, (40, 1, 1))
    X = {"mri": base * gain + offset}
    s = ModalityScaler(per_feature=True, per_image=True).fit(X)
    z = s.transform(X)["mri"]
    np.testing.assert_allclose(z, s.transform({"mri": base})["mri"], atol=1e-9)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-9)  # fitted on normalised images
    lo, hi = s.data_range_["mri"]
    from pymdbn.preprocessing import per_image_normalize
    norm = per_image_normalize(X["mri"])
    assert lo == norm.min() and hi == norm.max()
    back = s.inverse_transform({"mri": z})["mri"].reshape(40, -1)  # the normalised images
    norm = norm.reshape(40, -1)
    np.testing.assert_allclose(back, norm, atol=1e-9)
    with pytest.raises(ValueError, match="'per_image' parameter of ModalityScaler must be an "
                                         "instance of 'bool'"):
        ModalityScaler(per_image="yes").fit(X)


def test_per_image_scaler_persists(tmp_path, rng):
    from pymdbn import load

    X = {"a": rng.uniform(0, 1, (12, 4, 4)) * rng.uniform(1, 5, (12, 1, 1))}
    s = ModalityScaler(per_image=True).fit(X)
    path = tmp_path / "s.npz"
    s.save(path)
    back = load(path)
    assert back.per_image is True and back.data_range_ == s.data_range_
    np.testing.assert_array_equal(back.transform(X)["a"], s.transform(X)["a"])
