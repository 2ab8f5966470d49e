"""DBN: greedy pretraining equals stacked RBMs; supervised mode; sklearn conventions."""

import numpy as np
import pytest
from sklearn.base import clone

from pymdbn import DBN, RBM


@pytest.fixture
def data(rng):
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = np.where(X[:, 0] - X[:, 1] > 0, "cancer", "healthy")
    return X, y


def test_pretraining_equals_stacked_rbms(data):
    X, _ = data
    dbn = DBN(hidden_layers=(8, 4), n_iter=2, learning_rate=(0.01, 0.1), random_state=0,
              layer_params=[{}, {"momentum": 0.0}]).fit(X)
    p0, p1 = dbn._rbm_params(np.random.RandomState(0).randint(0, 2**31 - 1, size=4)[:2])
    r0 = RBM(**p0).fit(X)
    r1 = RBM(**p1).fit(r0.transform(X))
    assert (r0.visible, r1.visible, r0.learning_rate, r1.momentum) == ("gaussian",
                                                                       "bernoulli", 0.01, 0.0)
    np.testing.assert_array_equal(dbn.rbms_[0].components_, r0.components_)
    np.testing.assert_array_equal(dbn.rbms_[1].components_, r1.components_)
    np.testing.assert_array_equal(dbn.transform(X), r1.transform(r0.transform(X)))
    np.testing.assert_array_equal(dbn.layers_[1]["W"], r1.components_.T)
    assert [len(h) for h in dbn.history_] == [2, 2]
    assert not hasattr(dbn, "classes_")


def test_default_learning_rates_and_validation():
    params = DBN(hidden_layers=(3, 2))._rbm_params([1, 2])
    assert [p["learning_rate"] for p in params] == [0.005, 0.05]
    assert all(p["persistent"] is False and p["k"] == 1 for p in params)
    with pytest.raises(ValueError, match="learning_rate has 3 entries for 2 layers"):
        DBN(hidden_layers=(3, 2), learning_rate=(1, 2, 3))._rbm_params([1, 2])
    with pytest.raises(ValueError, match="layer_params"):
        DBN(hidden_layers=(3, 2), layer_params=[{}])._rbm_params([1, 2])


def test_an_override_that_breaks_an_rbm_constraint_is_rejected(data):
    X, _ = data
    with pytest.raises(ValueError, match="momentum"):
        DBN(hidden_layers=(3, 2), n_iter=1, layer_params=[{}, {"momentum": -1.0}]).fit(X)


def test_supervised_learns_and_is_reproducible(data):
    X, y = data
    kw = dict(hidden_layers=(16,), n_iter=2, optimizer="adam", fine_tune_learning_rate=0.02,
              fine_tune_epochs=30, random_state=1)
    dbn = DBN(**kw).fit(X, y)
    assert set(dbn.classes_) == {"cancer", "healthy"}
    assert dbn.score(X, y) > 0.9
    assert dbn.predict_proba(X).shape == (200, 2)
    np.testing.assert_allclose(dbn.predict_proba(X).sum(axis=1), 1)
    again = DBN(**kw).fit(X, y)
    np.testing.assert_array_equal(again.decision_function(X), dbn.decision_function(X))
    frozen = DBN(**{**kw, "fine_tune": False}).fit(X, y)
    np.testing.assert_array_equal(frozen.layers_[0]["W"], frozen.rbms_[0].components_.T)
    assert not np.array_equal(dbn.layers_[0]["W"], dbn.rbms_[0].components_.T)


def test_clone_and_params(data):
    dbn = DBN(hidden_layers=(5,), learning_rate=(0.01,), random_state=3)
    c = clone(dbn)
    assert c.get_params() == dbn.get_params() and c is not dbn
    with pytest.raises(ValueError, match="hidden_layers"):
        DBN(hidden_layers=()).fit(data[0])


def test_sparsity_reaches_every_rbm():
    params = DBN(hidden_layers=(3, 2), sparsity_target=0.05, sparsity_cost=0.2)._rbm_params([1, 2])
    assert [(p["sparsity_target"], p["sparsity_cost"]) for p in params] == [(0.05, 0.2)] * 2
    assert DBN()._rbm_params([1, 2])[1]["sparsity_cost"] == 0.0
