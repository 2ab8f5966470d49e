"""model.explain on the fitted DBN, MDBN and early-fusion DBN."""

import numpy as np
import pytest

from pymdbn import DBN, MDBN
from pymdbn.lrp import Composite, Epsilon
from pymdbn.presets import early_fusion_dbn


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 120
    y = np.repeat([0, 1], n // 2)
    X = {"brain": rng.random((n, 6, 6)), "bone": rng.random((n, 5, 4))}
    X["brain"][y == 1, 2:4, 2:4] += 1.0  # the class shows in the brain only
    return X, y


def _small_mdbn(**kw):
    return MDBN(modalities={"brain": (8,), "bone": (8,)}, joint_units=(6,), pretrain_epochs=2,
                max_epochs=30, optimizer="adam", learning_rate=0.01, random_state=0,
                dtype="float64", **kw)


@pytest.mark.parametrize("fusion", ["concat", "joint"])
def test_mdbn_explain_shapes_shares_and_target(data, fusion):
    X, y = data
    model = _small_mdbn(fusion=fusion).fit(X, y)
    e = model.explain(X)
    assert e.relevance["brain"].shape == (120, 6, 6)
    assert e.relevance["bone"].shape == (120, 5, 4)
    np.testing.assert_array_equal(e.target, np.argmax(model.decision_function(X), axis=1))
    np.testing.assert_allclose(e.shares["brain"] + e.shares["bone"], 1.0)
    np.testing.assert_allclose(e.logits, model.decision_function(X), rtol=1e-10)
    # For the class shown in the brain's centre, the centre holds the evidence.
    pos = (y == 1) & (e.target == 1)
    brain = e.relevance["brain"][pos].mean(axis=0)
    inside = brain[2:4, 2:4].mean()
    outside = np.delete(brain.ravel(), [14, 15, 20, 21]).mean()
    assert inside > 10 * abs(outside), (inside, outside)
    other = model.explain(X, target=1 - e.target)
    assert not np.allclose(other.relevance["brain"], e.relevance["brain"])


def test_mdbn_explain_conserves_without_biases(data):
    X, y = data
    model = _small_mdbn(fusion="joint").fit(X, y)
    rule = Epsilon(epsilon=1e-12, use_bias=False)
    e = model.explain(X, composite=Composite(input=rule, hidden=rule, joint=rule, output=rule))
    total = sum(r.reshape(len(r), -1).sum(axis=1) for r in e.relevance.values())
    logit = e.logits[np.arange(len(total)), e.target]
    np.testing.assert_allclose(total, logit, rtol=1e-8, atol=1e-10)


def test_mdbn_explain_against_a_reference_image(data):
    from pymdbn.lrp import _engine

    X, y = data
    model = _small_mdbn(fusion="joint").fit(X, y)
    healthy = {m: a[y == 0].mean(axis=0) for m, a in X.items()}  # raw (H, W) images
    e = model.explain(X, reference=healthy)
    scaled = model.scaler_.transform(X)
    want = _engine.explain(model.to_dict(), scaled,
                           reference=model.scaler_.transform({m: a[None] for m, a in
                                                              healthy.items()}))
    for m in X:
        np.testing.assert_allclose(e.relevance[m], want.relevance[m].reshape(X[m].shape),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(e.reference_logits,
                               model.decision_function({m: a[None] for m, a in
                                                        healthy.items()})[0], rtol=1e-10)
    with pytest.raises(ValueError, match="reference: X lacks modalities"):
        model.explain(X, reference={"brain": healthy["brain"]})
    dbn = DBN(hidden_layers=(8,), n_iter=2, random_state=0, dtype="float64")
    flat = X["brain"].reshape(120, -1)
    dbn.fit(flat, y)
    d = dbn.explain(flat, reference=flat[y == 0].mean(axis=0))
    assert d.reference_logits.shape == (2,)


def test_dbn_and_early_fusion_explain(data):
    X, y = data
    flat = np.concatenate([X["bone"].reshape(120, -1), X["brain"].reshape(120, -1)], axis=1)
    dbn = DBN(hidden_layers=(8,), n_iter=2, random_state=0, dtype="float64").fit(flat, y)
    e = dbn.explain(flat)
    assert e.relevance["x"].shape == flat.shape
    ef = early_fusion_dbn(hidden_layers=(8,), n_iter=2, random_state=0, dtype="float64")
    ef.fit(X, y)
    e = ef.explain(X)
    assert e.relevance["brain"].shape == (120, 6, 6)
    assert e.relevance["bone"].shape == (120, 5, 4)
    np.testing.assert_allclose(e.shares["brain"] + e.shares["bone"], 1.0)
    with pytest.raises(ValueError, match="brain"):
        ef.explain({"bone": X["bone"]})
    healthy = {m: a[y == 0].mean(axis=0) for m, a in X.items()}
    r = ef.explain(X, composite="epsilon", reference=healthy)
    total = sum(v.reshape(120, -1).sum(axis=1) for v in r.relevance.values())
    explained = r.logits[np.arange(120), r.target] - r.reference_logits[r.target]
    np.testing.assert_allclose(total, explained, rtol=1e-4, atol=1e-6)  # eps 1e-6 absorbs


@pytest.mark.parametrize("per_image", [False, True])
def test_mdbn_explain_is_the_explanation_of_its_dict(data, per_image):
    # MDBN.explain hands the engine its arrays without to_dict's metadata encoding: the
    # same explanation as explaining to_dict(), ZBox bounds from the data range included.
    from pymdbn.lrp import explain

    X, y = data
    model = _small_mdbn(fusion="joint", per_image=per_image).fit(X, y)
    for composite in ("epsilon", "epsilon_gamma_box"):
        got = model.explain(X, composite=composite)
        want = explain(model.to_dict(), X, composite=composite)
        assert got.classes == want.classes == ("0", "1")
        for m in X:
            np.testing.assert_array_equal(got.relevance[m], want.relevance[m])
            np.testing.assert_array_equal(got.shares[m], want.shares[m])
        np.testing.assert_array_equal(got.logits, want.logits)


def test_per_image_models_explain_and_persist(data, tmp_path):
    from pymdbn import load
    from pymdbn.lrp import ZBox, zbox_bounds
    from pymdbn.preprocessing import per_image_normalize

    X, y = data
    gain = np.random.default_rng(1).uniform(0.5, 2.0, (120, 1, 1))
    Xg = {m: a * gain for m, a in X.items()}  # per-scan gain: per_image removes it
    model = _small_mdbn(per_image=True, per_feature=True).fit(Xg, y)
    np.testing.assert_allclose(model.decision_function(Xg), model.decision_function(X),
                               rtol=1e-9, atol=1e-9)
    d = model.to_dict()
    assert d["scalers"]["brain"]["per_image"] is True and d["meta"]["per_image"] is True
    lo, hi = d["meta"]["data_range"]["brain"]
    norm = per_image_normalize(Xg["brain"])
    assert (lo, hi) == (norm.min(), norm.max())
    low, high = zbox_bounds(d, "brain")
    np.testing.assert_allclose(low, (lo - model.scaler_.mean_["brain"].ravel())
                               / model.scaler_.scale_["brain"].ravel())
    e = model.explain(Xg, composite="epsilon_gamma_box")
    np.testing.assert_allclose(e.logits, model.decision_function(Xg), rtol=1e-10)
    assert isinstance(e.composite.rule("input", "brain"), ZBox)
    path = tmp_path / "m.npz"
    model.save(path)
    back = load(path)
    assert back.per_image is True
    np.testing.assert_array_equal(back.decision_function(Xg), model.decision_function(Xg))
    np.testing.assert_array_equal(back.explain(Xg).relevance["bone"],
                                  model.explain(Xg).relevance["bone"])
    ef = early_fusion_dbn(hidden_layers=(8,), n_iter=2, fine_tune_epochs=2, random_state=0,
                          dtype="float64", per_image=True).fit(Xg, y)
    np.testing.assert_allclose(ef.explain(Xg).logits, ef.decision_function(Xg), rtol=1e-10)
