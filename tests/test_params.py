"""Hyperparameters of every estimator: constraints at fit, int layer sizes, inputs
without features, class names and the fine-tuning summary."""

import inspect

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from pymdbn import DBN, MDBN, RBM, load
from pymdbn.preprocessing import ModalityScaler
from pymdbn.presets import EarlyFusionDBN

NAMES = np.array(["healthy", "cancer"])


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = {"brain": rng.standard_normal((n, 4, 4)), "bone": rng.standard_normal((n, 6))}
    X["brain"][y == 1, 1:3, 1:3] += 2.0
    X["bone"][y == 1, :2] += 2.0
    return X, y


X_MM, Y = _data()
X_FLAT = np.concatenate([X_MM["brain"].reshape(len(Y), -1), X_MM["bone"]], axis=1)

# Every float hyperparameter, by estimator (read from each docstring): all must reject
# NaN, infinity, negative values and strings at fit.
FLOAT_PARAMS = {
    RBM: ["learning_rate", "clip", "momentum", "weight_decay", "sparsity_target",
          "sparsity_cost"],
    DBN: ["learning_rate", "momentum", "weight_decay", "sparsity_target", "sparsity_cost",
          "clip", "fine_tune_learning_rate", "fine_tune_momentum", "fine_tune_weight_decay",
          "fine_tune_dropout", "fine_tune_input_dropout", "validation_fraction", "tol"],
    MDBN: ["clip", "pretrain_learning_rate", "pretrain_momentum", "pretrain_sparsity_target",
           "pretrain_sparsity_cost", "learning_rate", "momentum", "weight_decay", "dropout",
           "input_dropout", "validation_fraction", "tol"],
}
INT_PARAMS = {
    RBM: ["n_components", "batch_size", "n_iter", "k"],
    DBN: ["hidden_layers", "n_iter", "batch_size", "k", "fine_tune_batch_size",
          "fine_tune_epochs", "n_iter_no_change"],
    MDBN: ["joint_units", "pretrain_epochs", "pretrain_batch_size", "k", "batch_size",
           "max_epochs", "n_iter_no_change", "n_gibbs", "checkpoint_every"],
}


def _fit(est):
    if isinstance(est, RBM):
        return est.fit(X_FLAT)
    if isinstance(est, DBN):
        return est.fit(X_FLAT, Y)
    return est.fit(X_MM, Y)


def _small(cls, **params):
    if cls is RBM:
        return RBM(**{"n_components": 3, "n_iter": 1, "random_state": 0, **params})
    if cls is DBN:
        return DBN(**{"hidden_layers": (3,), "n_iter": 1, "fine_tune_epochs": 1,
                      "random_state": 0, **params})
    return MDBN(**{"modalities": {"brain": (3,), "bone": (3,)}, "joint_units": (2,),
                   "pretrain_epochs": 1, "max_epochs": 1, "random_state": 0, **params})


def test_every_float_parameter_is_listed():
    # A float parameter added later must join FLOAT_PARAMS (and get a constraint).
    for cls, names in FLOAT_PARAMS.items():
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        floats = {k for k, v in defaults.items() if isinstance(v, float)}
        assert floats <= set(names), (cls.__name__, floats - set(names))
        assert set(cls._parameter_constraints) == set(defaults)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -1.0, "0.1", True])
@pytest.mark.parametrize("cls,param", [(c, p) for c, ps in FLOAT_PARAMS.items() for p in ps])
def test_float_parameters_reject_nan_inf_negative_and_strings(cls, param, bad):
    est = _small(cls, **{param: bad})
    with pytest.raises(InvalidParameterError,
                       match=rf"The '{param}' parameter of {cls.__name__} must be .* Got"):
        _fit(est)


@pytest.mark.parametrize("bad", [-1, 2.5, np.nan, "3", True])
@pytest.mark.parametrize("cls,param", [(c, p) for c, ps in INT_PARAMS.items() for p in ps])
def test_int_parameters_reject_bad_values(cls, param, bad):
    with pytest.raises(InvalidParameterError, match=rf"'{param}' parameter of {cls.__name__}"):
        _fit(_small(cls, **{param: bad}))


@pytest.mark.parametrize("param,value", [("learning_rate", 1.0), ("momentum", 0.99),
                                         ("dropout", 0.0), ("validation_fraction", 0.5),
                                         ("tol", 0.0), ("clip", 1e-3), ("n_iter_no_change", 1)])
def test_boundary_values_are_accepted(param, value):
    assert _fit(_small(MDBN, **{param: value})).n_iter_ == 1


@pytest.mark.parametrize("param,value", [("momentum", 1.0), ("dropout", 1.0),
                                         ("input_dropout", 1.0), ("validation_fraction", 0.0),
                                         ("validation_fraction", 1.0), ("clip", 0.0),
                                         ("learning_rate", 0.0),
                                         ("pretrain_sparsity_target", 0.0)])
def test_open_bounds_are_rejected(param, value):
    with pytest.raises(InvalidParameterError, match=f"'{param}' parameter of MDBN"):
        _fit(_small(MDBN, **{param: value}))


def test_nan_learning_rate_is_rejected_before_training():
    # Before, NaN passed the checks and training reported divergence ("lower
    # learning_rate") instead.
    with pytest.raises(InvalidParameterError, match="'learning_rate' parameter of RBM"):
        RBM(learning_rate=np.nan, n_iter=1).fit(X_FLAT)
    rbm = RBM(n_components=3, random_state=0).partial_fit(X_FLAT)
    rbm.set_params(learning_rate=np.nan)  # between calls: still checked
    with pytest.raises(InvalidParameterError, match="'learning_rate' parameter of RBM"):
        rbm.partial_fit(X_FLAT)
    with pytest.raises(InvalidParameterError, match="'n_runs' parameter of "
                                                   "RBM.log_partition"):
        rbm.set_params(learning_rate=0.1).log_partition(n_runs=0)


@pytest.mark.parametrize("est,match", [
    (EarlyFusionDBN(DBN(hidden_layers=(3,), tol=np.nan)), "'tol' parameter of DBN"),
    (EarlyFusionDBN(DBN(hidden_layers=(3,)), per_image="yes"),
     "'per_image' parameter of EarlyFusionDBN"),
    (EarlyFusionDBN(dbn=MDBN()), "'dbn' parameter of EarlyFusionDBN"),
    (ModalityScaler(per_feature=1), "'per_feature' parameter of ModalityScaler"),
])
def test_early_fusion_and_scaler_parameters(est, match):
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(X_MM, Y)


def test_dbn_passes_scikit_learns_parameter_validation_check():
    check_param_validation("DBN", DBN(hidden_layers=(3,), n_iter=1, fine_tune_epochs=1))


@pytest.mark.parametrize("cls,params,match", [
    (DBN, dict(hidden_layers=(4, 0)), r"'hidden_layers\[1\]' parameter of DBN"),
    (DBN, dict(hidden_layers=()), "'hidden_layers' parameter of DBN must be an int or a "
                                  "non-empty sequence"),
    (DBN, dict(hidden_layers=(4, 2), learning_rate=(0.01, np.nan)),
     r"'learning_rate\[1\]' parameter of DBN"),
    (DBN, dict(hidden_layers=(4, 2), n_iter=(1, -1)), r"'n_iter\[1\]' parameter of DBN"),
    (DBN, dict(hidden_layers=(4,), layer_params=[{"momentum": np.nan}]),
     r"layer_params\[0\]: The 'momentum' parameter of RBM"),
    (DBN, dict(hidden_layers=(4,), layer_params=[{"momentun": 0.5}]),
     r"layer_params\[0\] sets 'momentun', which is not an RBM parameter"),
    (MDBN, dict(modalities={"brain": (3, np.nan), "bone": (3,)}),
     r"""["']modalities\['brain'\]\[1\]["'] parameter of MDBN"""),
    (MDBN, dict(modalities={"brain": 0, "bone": (3,)}),
     r"""["']modalities\['brain'\]["'] parameter of MDBN"""),
    (MDBN, dict(modalities={}), "'modalities' parameter of MDBN must be a non-empty dict"),
    (MDBN, dict(joint_units=()), "'joint_units' parameter of MDBN"),
    (MDBN, dict(joint_units=(4, 0)), r"'joint_units\[1\]' parameter of MDBN"),
    (MDBN, dict(pathway_params={"brain": {"learning_rate": np.nan}}),
     r"pathway_params\['brain'\]: The 'learning_rate' parameter of DBN"),
    (MDBN, dict(pathway_params={"joint": {"layer_params": [{"clip": -1.0}]}}),
     r"pathway_params\['joint'\]: layer_params\[0\]: The 'clip' parameter of RBM"),
    (MDBN, dict(pathway_params={"brain": {"nonsense": 1}}),
     r"pathway_params\['brain'\]: Invalid parameter 'nonsense'"),
])
def test_sequence_parameters_are_checked_entry_by_entry(cls, params, match):
    est = _small(cls)
    est.set_params(**params)
    with pytest.raises(ValueError, match=match):
        _fit(est)


# --- an int is one layer, as scikit-learn's hidden_layer_sizes ----------------------

def test_int_layer_sizes_mean_one_layer():
    dbn = DBN(hidden_layers=5, n_iter=1, fine_tune_epochs=1, random_state=0).fit(X_FLAT, Y)
    assert len(dbn.rbms_) == 1 and dbn.layers_[0]["W"].shape == (22, 5)
    assert dbn.transform(X_FLAT).shape == (40, 5)
    model = MDBN({"brain": 6, "bone": (5, 3)}, joint_units=4, pretrain_epochs=1, max_epochs=1,
                 random_state=0).fit(X_MM, Y)
    assert [lay["W"].shape for lay in model.pathways_["brain"]] == [(16, 6)]
    assert [lay["W"].shape for lay in model.pathways_["bone"]] == [(6, 5), (5, 3)]
    assert [lay["W"].shape for lay in model.joint_] == [(9, 4)]
    assert model.transform(X_MM).shape == (40, 4)
    # The same network as the one-element tuples.
    tuples = MDBN({"brain": (6,), "bone": (5, 3)}, joint_units=(4,), pretrain_epochs=1,
                  max_epochs=1, random_state=0).fit(X_MM, Y)
    np.testing.assert_array_equal(model.decision_function(X_MM),
                                  tuples.decision_function(X_MM))
    ef = EarlyFusionDBN(DBN(hidden_layers=7, n_iter=1, fine_tune_epochs=1)).fit(X_MM, Y)
    assert ef.dbn_.layers_[0]["W"].shape == (22, 7)


# --- inputs without features or samples -------------------------------------------

@pytest.mark.parametrize("shape", [(40, 0), (40, 0, 0), (40, 4, 0)])
@pytest.mark.parametrize("make", [
    lambda: MDBN({"brain": (3,), "bone": (3,)}, joint_units=(2,), pretrain_epochs=1,
                 max_epochs=1),
    lambda: EarlyFusionDBN(DBN(hidden_layers=(3,), n_iter=1, fine_tune_epochs=1)),
    lambda: ModalityScaler(),
])
def test_a_modality_without_features_is_named(make, shape):
    X = {**X_MM, "bone": np.zeros(shape)}
    with pytest.raises(ValueError, match=rf"modality 'bone': samples of shape "
                                         rf"\{shape[1:]}".replace(",)", r",\)")
                       .replace("0)", r"0\)") + " have no features"):
        make().fit(X, Y)


@pytest.mark.parametrize("make", [
    lambda: MDBN({"brain": (3,), "bone": (3,)}, joint_units=(2,)),
    lambda: EarlyFusionDBN(DBN(hidden_layers=(3,))),
])
def test_empty_or_sampleless_input_at_fit(make):
    with pytest.raises(ValueError, match="X has no modalities"):
        make().fit({}, Y)
    with pytest.raises(ValueError, match="modality 'brain': no samples"):
        make().fit({"brain": np.zeros((0, 4, 4)), "bone": np.zeros((0, 6))}, Y[:0])


def test_dbn_without_features_or_samples():
    with pytest.raises(ValueError, match="0 feature"):
        DBN(hidden_layers=(3,)).fit(np.zeros((40, 0)), Y)
    with pytest.raises(ValueError, match="0 sample"):
        DBN(hidden_layers=(3,)).fit(np.zeros((0, 5)), Y[:0])


@pytest.fixture(scope="module")
def early_fusion():
    return EarlyFusionDBN(DBN(hidden_layers=(6,), n_iter=2, fine_tune_epochs=20,
                              optimizer="adam", fine_tune_learning_rate=0.02,
                              random_state=0)).fit(X_MM, NAMES[Y])


@pytest.mark.parametrize("edit,match", [
    (lambda X: {"brain": X["brain"]}, "missing modality 'bone'"),
    (lambda X: {**X, "lung": X["bone"]}, "unknown modality 'lung'"),
    (lambda X: {**X, "bone": X["bone"][:, :5]}, r"modality 'bone': expected samples of "
                                                r"shape \(6,\)"),
    (lambda X: {**X, "bone": np.zeros((40, 0))}, "modality 'bone': samples of shape"),
    (lambda X: {}, "X has no modalities"),
])
def test_early_fusion_predict_checks_modalities(early_fusion, edit, match):
    with pytest.raises(ValueError, match=match):
        early_fusion.predict(edit(X_MM))


# --- class names ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def named_models(early_fusion):
    dbn = DBN(hidden_layers=(6,), n_iter=2, fine_tune_epochs=20, optimizer="adam",
              fine_tune_learning_rate=0.02, random_state=0).fit(X_FLAT, NAMES[Y])
    mdbn = MDBN({"brain": (6,), "bone": (6,)}, joint_units=(4,), pretrain_epochs=2,
                max_epochs=20, optimizer="adam", learning_rate=0.02,
                random_state=0).fit(X_MM, NAMES[Y].astype(object))
    return {"DBN": (dbn, X_FLAT), "MDBN": (mdbn, X_MM), "EarlyFusionDBN": (early_fusion, X_MM)}


@pytest.mark.parametrize("name", ["DBN", "MDBN", "EarlyFusionDBN"])
def test_class_names_in_classes_predict_and_proba(named_models, name):
    model, X = named_models[name]
    assert model.classes_.tolist() == ["cancer", "healthy"]
    pred = model.predict(X)
    assert set(pred.tolist()) <= {"cancer", "healthy"}
    assert np.mean(pred == NAMES[Y]) > 0.9
    proba = model.predict_proba(X)
    np.testing.assert_array_equal(model.classes_[np.argmax(proba, axis=1)], pred)
    cancer = list(model.classes_).index("cancer")
    # The 'cancer' column is the probability of cancer, whatever the label order.
    assert proba[Y == 1, cancer].mean() > proba[Y == 0, cancer].mean() + 0.2


@pytest.mark.parametrize("name", ["DBN", "MDBN", "EarlyFusionDBN"])
def test_explain_takes_a_class_name_or_an_index(named_models, name):
    model, X = named_models[name]
    cancer = list(model.classes_).index("cancer")
    by_index = model.explain(X, target=cancer)
    by_name = model.explain(X, target="cancer")
    np.testing.assert_array_equal(by_name.target, np.full(40, cancer))
    for m in by_index.relevance:
        np.testing.assert_array_equal(by_name.relevance[m], by_index.relevance[m])
    per_sample = model.explain(X, target=NAMES[Y].astype(object))  # names, object dtype
    np.testing.assert_array_equal(model.classes_[per_sample.target], NAMES[Y])
    with pytest.raises(ValueError, match="target label 'tumour' is not a class"):
        model.explain(X, target="tumour")


# --- early stopping, said and recorded ------------------------------------------------

def _stopping(cls, **params):
    # tol=10: no epoch after the first improves enough, so fine-tuning stops after
    # 1 + n_iter_no_change epochs and restores epoch 1.
    common = {"early_stopping": True, "n_iter_no_change": 2, "tol": 10.0,
              "validation_fraction": 0.25, "random_state": 0}
    if cls is DBN:
        return DBN(**{"hidden_layers": (4,), "n_iter": 1, "fine_tune_epochs": 20, **common,
                      **params})
    return MDBN(**{"modalities": {"brain": (4,), "bone": (4,)}, "joint_units": (3,),
                   "pretrain_epochs": 1, "max_epochs": 20, **common, **params})


@pytest.mark.parametrize("cls", [DBN, MDBN])
def test_early_stop_is_on_the_progress_line_and_recorded(cls, capsys, tmp_path):
    model = _fit(_stopping(cls, verbose=1))
    err = capsys.readouterr().err
    fine_tune = [line for line in err.replace("\r", "\n").splitlines()
                 if line.startswith("fine-tune")]
    assert fine_tune[-1].endswith("stopped early at epoch 3 of 20: validation loss did not "
                                  "improve by tol=10 for 2 epochs; restored the weights of "
                                  "epoch 1")
    assert "3/20" in fine_tune[-1]
    assert (model.n_iter_, model.stopped_early_, model.best_epoch_) == (3, True, 1)
    history = model.fine_tune_history_ if cls is DBN else model.history_
    assert len(history) == 3
    model.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert (back.n_iter_, back.stopped_early_, back.best_epoch_) == (3, True, 1)


@pytest.mark.parametrize("cls", [DBN, MDBN])
def test_no_early_stop_no_note(cls, capsys):
    model = _fit(_stopping(cls, verbose=1, early_stopping=False))
    assert "stopped early" not in capsys.readouterr().err
    assert (model.n_iter_, model.stopped_early_, model.best_epoch_) == (20, False, None)


def test_early_fusion_exposes_the_summary():
    ef = EarlyFusionDBN(_stopping(DBN)).fit(X_MM, Y)
    assert (ef.n_iter_, ef.stopped_early_, ef.best_epoch_) == (3, True, 1)


def test_presets_take_int_sizes():
    from pymdbn import presets

    model = presets.proposed(["brain", "bone"], pathway=5, joint_units=3, pretrain_epochs=1,
                             max_epochs=1, random_state=0).fit(X_MM, Y)
    assert model.modalities == {"brain": 5, "bone": 5}
    assert [lay["W"].shape for lay in model.pathways_["bone"]] == [(6, 5)]
    assert [lay["W"].shape for lay in model.joint_] == [(10, 3)]
    ef = presets.early_fusion_dbn(4, n_iter=1, fine_tune_epochs=1).fit(X_MM, Y)
    assert ef.dbn_.layers_[0]["W"].shape == (22, 4)


@pytest.mark.parametrize("name", ["DBN", "MDBN", "EarlyFusionDBN"])
def test_explanations_carry_the_class_names(named_models, name):
    model, X = named_models[name]
    e = model.explain(X[:5] if name == "DBN" else {m: x[:5] for m, x in X.items()})
    assert e.classes == ("cancer", "healthy")
    assert e.class_name(int(e.target[0])) == model.predict(
        X[:1] if name == "DBN" else {m: x[:1] for m, x in X.items()})[0]
