"""The RBM estimator: scikit-learn compatibility, input checking, learning."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator
from threadpoolctl import threadpool_limits

from pymdbn import RBM
from pymdbn.backend import reference as ref


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def test_sklearn_check_estimator():
    results = check_estimator(RBM(n_components=8, n_iter=3, random_state=0), on_skip=None,
                              on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    # Only the array-API check is skipped, and only because SCIPY_ARRAY_API is unset.
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}
    assert sum(r["status"] == "passed" for r in results) > 40


def test_matches_bernoulli_rbm_interface():
    from sklearn.neural_network import BernoulliRBM

    theirs = set(BernoulliRBM().get_params())
    assert theirs <= set(RBM().get_params())
    for name in ("fit", "partial_fit", "transform", "gibbs", "score_samples", "fit_transform"):
        assert callable(getattr(RBM, name))


def test_fitted_attributes(digits):
    X, _ = digits
    rbm = RBM(n_components=20, n_iter=2, random_state=0).fit(X)
    assert rbm.components_.shape == (20, 64)
    assert rbm.intercept_hidden_.shape == (20,)
    assert rbm.intercept_visible_.shape == (64,)
    assert rbm.n_features_in_ == 64
    assert rbm.components_.dtype == np.float32
    assert [h["epoch"] for h in rbm.history_] == [1, 2]
    assert rbm.transform(X).dtype == np.float32
    X64 = X.astype(np.float64)
    assert RBM(n_components=4, n_iter=1).fit(X64).transform(X64).dtype == np.float64
    assert RBM(n_components=4, n_iter=1, dtype=np.float32).fit(X64).components_.dtype == \
        np.float32


def test_training_lowers_reconstruction_error_and_raises_pseudo_likelihood(digits):
    X, _ = digits
    rbm = RBM(n_components=64, learning_rate=0.05, n_iter=15, random_state=0)
    before = RBM(n_components=64, n_iter=0, random_state=0).fit(X)
    rbm.fit(X)
    err = [h["reconstruction_error"] for h in rbm.history_]
    assert err[-1] < 0.7 * err[0]
    assert rbm.score_samples(X).mean() > before.score_samples(X).mean() + 0.1


def test_gaussian_visible_learns_structure():
    # Two-factor Gaussian data: the mean-field reconstruction explains most variance.
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((2000, 2))
    X = (factors @ rng.standard_normal((2, 30)) + 0.3 * rng.standard_normal((2000, 30)))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    rbm = RBM(n_components=32, visible="gaussian", learning_rate=0.005, momentum=0.5,
              persistent=False, batch_size=20, n_iter=15, random_state=0).fit(X)
    resid = np.mean((rbm.reconstruct(X) - X) ** 2)
    assert resid < 0.5, resid
    assert np.isnan(rbm.history_[0]["pseudo_likelihood"])
    with pytest.raises(ValueError, match="Bernoulli"):
        rbm.score_samples(X)


def test_score_samples_is_per_feature_exact_pseudo_likelihood(rng):
    X = (rng.random((20, 7)) < 0.5).astype(np.float64)
    rbm = RBM(n_components=5, n_iter=3, random_state=0).fit(X)
    w, bv, bh = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    fe = ref.free_energy(X, w, bv, bh)
    want = np.zeros(len(X))
    for i in range(7):
        Xf = X.copy()
        Xf[:, i] = 1 - Xf[:, i]
        want += -np.logaddexp(0, -(ref.free_energy(Xf, w, bv, bh) - fe))
    np.testing.assert_allclose(rbm.score_samples(X), want / 7, rtol=1e-10)
    # Normalised per feature: doubling the features by duplication keeps the scale.
    assert np.all(rbm.score_samples(X) < 0) and np.all(rbm.score_samples(X) > -np.log(2) * 2)


def test_partial_fit_and_gibbs(digits):
    X, _ = digits
    rbm = RBM(n_components=16, batch_size=32, random_state=0)
    for start in range(0, 640, 128):
        rbm.partial_fit(X[start:start + 128])
    assert len(rbm.history_) == 5
    v1 = rbm.gibbs(X[:10])
    v2 = rbm.gibbs(X[:10])
    assert v1.shape == (10, 64) and set(np.unique(v1)) <= {0.0, 1.0}
    assert not np.array_equal(v1, v2)  # the chain moves on
    with pytest.raises(ValueError, match="features"):
        rbm.partial_fit(X[:5, :10])


def test_same_random_state_same_model(digits):
    X, _ = digits
    a = RBM(n_components=10, n_iter=2, random_state=3, k=2, persistent=False).fit(X)
    b = RBM(n_components=10, n_iter=2, random_state=3, k=2, persistent=False).fit(X)
    c = RBM(n_components=10, n_iter=2, random_state=4, k=2, persistent=False).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert not np.array_equal(a.components_, c.components_)


def test_pipeline_and_grid_search(digits):
    X, y = digits
    pipe = Pipeline([("rbm", RBM(n_iter=10, learning_rate=0.06, random_state=0)),
                     ("clf", LogisticRegression(C=100, max_iter=1000))])
    search = GridSearchCV(pipe, {"rbm__n_components": [32, 64]}, cv=2)
    with threadpool_limits(1, user_api="blas"):  # multithreaded lbfgs crawls on 2 cores
        search.fit(X[:600], y[:600])
    assert search.best_score_ > 0.6
    assert search.best_estimator_.named_steps["rbm"].n_components in (32, 64)


@pytest.mark.parametrize("bad,match", [
    (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
    (np.array([[np.inf, 1.0], [0.0, 1.0]]), "infinity"),
    (np.zeros((0, 3)), "0 sample"),
    (np.zeros(5), "2D array"),
    (np.zeros((2, 2, 2)), "dim"),
    (np.array([["a", "b"], ["c", "d"]]), "dtype|convert"),
])
def test_bad_input_raises_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        RBM(n_iter=1).fit(bad)


def test_bad_input_after_fit(digits):
    X, _ = digits
    rbm = RBM(n_components=4, n_iter=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="64 features"):
        rbm.transform(X[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        rbm.transform(np.full((2, 64), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        rbm.free_energy(np.full((2, 64), np.nan))


@pytest.mark.parametrize("param,value,match", [
    ("n_components", 0, "n_components"), ("learning_rate", -1.0, "learning_rate"),
    ("batch_size", 0, "batch_size"), ("k", 0, "k"), ("k", 500, "k"),
    ("clip", -2.0, "clip"), ("momentum", 1.0, "momentum"), ("visible", "poisson", "visible"),
    ("dtype", np.int32, "dtype"), ("sparsity_target", 2.0, "sparsity_target"),
])
def test_bad_parameters(param, value, match):
    with pytest.raises(ValueError, match=match):
        RBM(**{param: value}).fit(np.zeros((4, 3)))


def test_divergence_is_reported():
    X = np.random.default_rng(0).standard_normal((200, 20)).astype(np.float32) * 50
    with pytest.raises(FloatingPointError, match="learning_rate"):
        RBM(visible="gaussian", learning_rate=10.0, n_iter=5, random_state=0).fit(X)


def test_digits_features_are_as_good_as_bernoulli_rbm(digits):
    from sklearn.neural_network import BernoulliRBM

    X, y = digits
    Xtr, Xte, ytr, yte = X[:1200], X[1200:], y[:1200], y[1200:]
    scores = {}
    for name, rbm in [("ours", RBM(n_components=100, learning_rate=0.06, n_iter=10,
                                   random_state=0)),
                      ("sklearn", BernoulliRBM(n_components=100, learning_rate=0.06,
                                               n_iter=10, random_state=0))]:
        pipe = Pipeline([("rbm", rbm), ("clf", LogisticRegression(C=100, max_iter=2000))])
        with threadpool_limits(1, user_api="blas"):  # multithreaded lbfgs crawls on 2 cores
            scores[name] = pipe.fit(Xtr, ytr).score(Xte, yte)
    # A margin of one standard error of a 597-sample accuracy (about 0.012).
    assert scores["ours"] >= scores["sklearn"] - 0.012, scores


def test_fit_callback_sees_every_epoch(rng):
    X = (rng.random((60, 9)) > 0.5).astype(np.float32)
    seen = []
    rbm = RBM(n_components=4, n_iter=3, random_state=0)
    rbm.fit(X, callback=lambda r: seen.append(dict(r.history_[-1])))
    assert [h["epoch"] for h in seen] == [1, 2, 3]
    assert seen == rbm.history_
    plain = RBM(n_components=4, n_iter=3, random_state=0).fit(X)
    np.testing.assert_array_equal(plain.components_, rbm.components_)
