"""MDBN: learning, input validation, missing modalities, class weights, presets."""

import numpy as np
import pytest
from sklearn.base import clone

from pymdbn import MDBN, presets
from pymdbn.data import make_phantoms

MODS = {"brain": (24,), "breast": (24, 12), "bone": (16,)}
FAST = dict(joint_units=(16,), pretrain_epochs=2, max_epochs=15, optimizer="adam",
            learning_rate=0.01, random_state=0)


def separable(n, seed, prevalence=0.5):
    """Each modality carries a class-dependent pattern under unit noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    pat = np.random.default_rng(99)
    X = {"brain": rng.standard_normal((n, 6, 6)) + 1.5 * y[:, None, None]
         * pat.standard_normal((6, 6)),
         "breast": rng.standard_normal((n, 5, 5)) - 1.5 * y[:, None, None]
         * pat.standard_normal((5, 5)),
         "bone": rng.standard_normal((n, 10)) + 1.5 * y[:, None] * pat.standard_normal(10)}
    return {k: v.astype(np.float32) for k, v in X.items()}, np.where(y == 1, "tumour", "none")


@pytest.fixture(scope="module")
def train():
    return separable(240, 0)


@pytest.fixture(scope="module")
def test_set():
    return separable(200, 1)


@pytest.fixture(scope="module")
def fitted(train):
    return MDBN(MODS, missing="infer", **FAST).fit(*train)


def test_learns_separable_problem(fitted, test_set):
    X, y = test_set
    assert fitted.score(X, y) > 0.9
    assert list(fitted.classes_) == ["none", "tumour"]
    assert fitted.transform(X).shape == (200, 16)
    assert fitted.decision_function(X).shape == (200, 2)
    assert [len(v) for v in fitted.pathways_.values()] == [1, 2, 1]
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]
    assert set(fitted.pretrain_history_) == {"brain", "breast", "bone", "joint"}


@pytest.mark.parametrize("fusion,fine_tune", [("concat", False), ("concat", True)])
def test_other_schemes_learn(train, test_set, fusion, fine_tune):
    model = MDBN(MODS, fusion=fusion, fine_tune=fine_tune, **FAST).fit(*train)
    assert model.score(*test_set) > 0.85
    assert model.joint_ == [] and model.joint_visible_bias_ is None


def test_reproducible_with_random_state(train, test_set, fitted):
    again = MDBN(MODS, missing="infer", **FAST).fit(*train)
    np.testing.assert_array_equal(again.decision_function(test_set[0]),
                                  fitted.decision_function(test_set[0]))
    other = MDBN(MODS, missing="infer", **{**FAST, "random_state": 1}).fit(*train)
    assert not np.array_equal(other.decision_function(test_set[0]),
                              fitted.decision_function(test_set[0]))


@pytest.mark.parametrize("edit,match", [
    (lambda X: {k: X[k] for k in ("brain", "bone")}, "missing modality 'breast'"),
    (lambda X: {**X, "lung": X["bone"]}, "unknown modality 'lung'"),
    (lambda X: {"brian": X["brain"], "breast": X["breast"], "bone": X["bone"]},
     "unknown modality 'brian'"),
    (lambda X: {**X, "bone": X["bone"][:-1]}, "modality 'bone' has 199 samples"),
    (lambda X: {**X, "brain": X["brain"][:, :5, :5]}, "modality 'brain': expected samples"),
    (lambda X: {**X, "breast": np.where(X["breast"] > 2, np.nan, X["breast"])},
     "modality 'breast' contains NaN"),
])
def test_bad_inputs_raise_naming_the_modality(fitted, test_set, edit, match):
    strict = clone(fitted).set_params(missing="error")
    strict.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    for model in (strict, fitted):
        if model is fitted and match.startswith("missing"):
            continue  # fitted infers absent modalities
        with pytest.raises(ValueError, match=match):
            model.predict(edit(test_set[0]))


def test_fit_validates_modalities_too(train):
    X, y = train
    with pytest.raises(ValueError, match="missing modality 'bone'"):
        MDBN(MODS, **FAST).fit({k: X[k] for k in ("brain", "breast")}, y)
    with pytest.raises(ValueError, match="modality 'brain' contains NaN"):
        MDBN(MODS, **FAST).fit({**X, "brain": X["brain"] * np.inf}, y)
    with pytest.raises(ValueError, match="missing='infer' needs fusion='joint'"):
        MDBN(MODS, fusion="concat", missing="infer").fit(X, y)
    with pytest.raises(ValueError, match="y must be 1-D"):
        MDBN(MODS, **FAST).fit(X, y[:-1])


def test_missing_modality_inference(fitted, test_set):
    X, y = test_set
    partial = {k: X[k] for k in ("brain", "bone")}
    p = fitted.predict_proba(partial)
    assert p.shape == (200, 2) and np.isfinite(p).all()
    assert fitted.score(partial, y) > 0.8  # two informative modalities remain
    strict = clone(fitted).set_params(missing="error")
    strict.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    with pytest.raises(ValueError, match="missing modality 'breast'.*missing='infer'"):
        strict.predict(partial)
    # Inference fills the absent code from the joint RBM, not with the 0.5 start.
    tops_only = fitted._infer_missing({"brain": np.full((1, 24), 0.5, np.float32),
                                       "bone": np.full((1, 16), 0.5, np.float32)}, 1)
    assert not np.allclose(tops_only[0, 24:36], 0.5)


def test_class_weight_balanced_shifts_predictions():
    X, y = separable(300, 2, prevalence=0.12)
    kw = {**FAST, "fusion": "concat", "fine_tune": False, "max_epochs": 4}
    plain = MDBN(MODS, **kw).fit(X, y)
    balanced = MDBN(MODS, class_weight="balanced", **kw).fit(X, y)
    rare = "tumour"
    assert (balanced.predict(X) == rare).sum() >= (plain.predict(X) == rare).sum()
    i = list(balanced.classes_).index(rare)
    assert balanced.predict_proba(X)[:, i].mean() > plain.predict_proba(X)[:, i].mean()


def test_early_stopping_restores_best(train):
    model = MDBN(MODS, early_stopping=True, validation_fraction=0.2, n_iter_no_change=2,
                 tol=0.01, **{**FAST, "max_epochs": 40, "learning_rate": 0.05}).fit(*train)
    h = model.history_
    assert "val_loss" in h[0] and len(h) < 40
    losses = [e["val_loss"] for e in h]
    best = len(h) - 1 - 2  # the last epoch that improved by tol, 2 epochs before stopping
    assert all(losses[i] > losses[best] - 0.01 for i in range(best + 1, len(h)))
    from pymdbn.models.finetune import validation_split
    _, val = validation_split(np.unique(train[1], return_inverse=True)[1], 0.2, model.seed_)
    X_val = {k: v[val] for k, v in train[0].items()}
    p = model.predict_proba(X_val)[np.arange(len(val)), (train[1][val] == "tumour").astype(int)]
    # The restored weights are those of the best validation loss (up to float32 rounding).
    np.testing.assert_allclose(-np.log(p).mean(), losses[best], rtol=1e-4)


def test_get_params_clone_and_verbose(train, capsys):
    model = MDBN(MODS, **FAST)
    assert clone(model).get_params() == model.get_params()
    X, y = train
    MDBN({"brain": (4,)}, fusion="concat", pretrain_epochs=1, max_epochs=2,
         verbose=1).fit({"brain": X["brain"]}, y)
    err = capsys.readouterr().err
    assert "pretrain brain layer 1/1" in err and "fine-tune" in err and "loss=" in err


def test_presets_share_pathways_and_fit_phantoms():
    assert presets.mdbn().modalities == presets.proposed().modalities
    assert presets.proposed().clip == 4.0 and presets.e_mdbn().clip is None
    assert presets.mdbn().get_params()["fine_tune"] is False
    # Same per-pixel z-scoring for every preset (the Gaussian RBMs assume it).
    assert all(f().per_feature is True for f in (presets.early_fusion_dbn, presets.mdbn,
                                                  presets.e_mdbn, presets.proposed))
    X, y, _, _ = make_phantoms(40, size=16, random_state=0)
    ef = presets.early_fusion_dbn((16,), n_iter=1, fine_tune_epochs=2, random_state=0)
    ef.fit(X, y)
    assert ef.modalities_ == ["bone", "brain", "breast"]
    assert ef.slices_["brain"] == (256, 512) and ef.predict(X).shape == (40,)
    model = presets.proposed({m: (16,) for m in X}, joint_units=(8,), pretrain_epochs=1,
                             max_epochs=2, random_state=0).fit(X, y)
    assert model.predict_proba(X).shape == (40, 2)


@pytest.mark.parametrize("sparsity_cost,saturated", [(0.0, True), (0.1, False)])
def test_sparsity_keeps_clipped_joint_layer_out_of_saturation(sparsity_cost, saturated):
    # Without the sparsity pull, CD-1 on the dense pathway codes drives every joint
    # unit always on: all pre-activations beyond the clip, derivative 0, constant code.
    X, y, _, _ = make_phantoms(300, size=16, difficulty=0.5, random_state=0)
    model = MDBN({m: (128, 64) for m in X}, joint_units=(64,), clip=4.0, pretrain_epochs=5,
                 pretrain_sparsity_cost=sparsity_cost, max_epochs=0, random_state=0).fit(X, y)
    z = model._network().forward(model._scaled(X))["joint"][0][1]
    clipped = np.mean(np.abs(z) >= 4.0)
    assert (clipped > 0.9) if saturated else (clipped < 0.2)


def test_backward_matches_finite_differences_with_clip_and_joint():
    from pymdbn import backend
    from pymdbn.models.network import Network
    cpu = backend.get("cpu")

    rng = np.random.default_rng(0)

    def layer(n_in, n_out):
        return {"W": rng.normal(0, 1, (n_in, n_out)), "b": rng.normal(0, 1, n_out)}

    net = Network({"a": [layer(5, 4), layer(4, 3)], "b": [layer(6, 2)]}, ["a", "b"],
                      [layer(5, 4), layer(4, 3)], layer(3, 3), 2.0)
    X = {"a": rng.normal(size=(7, 5)), "b": rng.normal(size=(7, 6))}
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    cache = net.forward(X)
    assert 0 < np.mean(np.abs(cache["joint"][0][1]) >= 2.0) < 1  # some units clipped
    _, grad, _ = cpu.softmax_cross_entropy(cache["logits"], y, None)
    for p, g in zip(net.parameters(), net.backward(cache, grad)):
        num = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + 1e-6
            up = cpu.softmax_cross_entropy(net.forward(X)["logits"], y, None)[0]
            p[i] = old - 1e-6
            down = cpu.softmax_cross_entropy(net.forward(X)["logits"], y, None)[0]
            p[i] = old
            num[i] = (up - down) / 2e-6
        np.testing.assert_allclose(g, num, atol=1e-7)
