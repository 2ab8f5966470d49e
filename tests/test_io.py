"""Persistence: round trips, atomic pickle-free files, tamper detection, checkpoints."""

import json
import os
import zipfile

import numpy as np
import pytest

import pymdbn._atomic
from pymdbn import DBN, MDBN, RBM, load, presets
from pymdbn.io import HEADER_MEMBER, save
from pymdbn.preprocessing import ModalityScaler
from test_mdbn import FAST, MODS, separable


@pytest.fixture(scope="module")
def data():
    return separable(120, 0)


@pytest.fixture(scope="module")
def model(data):
    return MDBN(MODS, missing="infer", **{**FAST, "max_epochs": 4}).fit(*data)


def test_mdbn_round_trip_identical(model, data, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # temp file replaced, none left
    back = load(path)
    assert type(back) is MDBN and back.get_params() == model.get_params()
    X = data[0]
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))
    partial = {"bone": X["bone"]}
    np.testing.assert_array_equal(back.predict_proba(partial), model.predict_proba(partial))
    assert back.history_ == model.history_
    np.testing.assert_array_equal(back.classes_, model.classes_)
    for m in model.modalities_:  # 0-d scaler statistics stay 0-d
        assert back.scaler_.mean_[m].shape == model.scaler_.mean_[m].shape == ()


def test_to_dict_layout(model, data):
    d = model.to_dict()
    assert set(d) == {"modalities", "pathways", "joint", "output", "clip", "scalers", "meta"}
    assert d["modalities"] == ["brain", "breast", "bone"]
    assert [x["W"].shape for x in d["pathways"]["breast"]] == [(25, 24), (24, 12)]
    assert d["joint"][0]["W"].shape == (24 + 12 + 16, 16) and d["output"]["W"].shape == (16, 2)
    assert set(d["scalers"]["brain"]) == {"mean", "scale", "per_image"}
    assert d["scalers"]["brain"]["per_image"] is False and "data_range" not in d["meta"]
    json.dumps(d["meta"], allow_nan=False)
    assert d["meta"]["image_shapes"]["brain"] == [6, 6] and d["meta"]["classes"] == ["none",
                                                                                    "tumour"]
    # The documented forward pass reproduces the logits.
    X = data[0]
    tops = []
    for m in d["modalities"]:
        s = d["scalers"][m]
        x = ((X[m] - s["mean"]) / s["scale"]).reshape(len(X[m]), -1)
        for layer in d["pathways"][m]:
            x = 1 / (1 + np.exp(-(x @ layer["W"] + layer["b"])))
        tops.append(x)
    code = np.concatenate(tops, axis=1)
    for layer in d["joint"]:
        code = 1 / (1 + np.exp(-(code @ layer["W"] + layer["b"])))
    logits = code @ d["output"]["W"] + d["output"]["b"]
    np.testing.assert_allclose(logits, model.decision_function(X), rtol=1e-4, atol=1e-4)
    again = MDBN.from_dict(d)
    np.testing.assert_array_equal(again.decision_function(X), model.decision_function(X))
    # LRP explains the very logits the model outputs: one forward pass, kept or not.
    from pymdbn.lrp import explain
    np.testing.assert_array_equal(explain(model, X).logits, model.decision_function(X))


def test_other_estimators_round_trip(data, tmp_path, rng):
    X, y = data
    flat = rng.standard_normal((50, 7)).astype(np.float32)
    rbm = RBM(n_components=3, n_iter=2, random_state=0).fit(flat > 0)
    dbn = DBN(hidden_layers=(5, 3), n_iter=1, fine_tune_epochs=2, random_state=0)
    dbn.fit(flat, flat[:, 0] > 0)
    ef = presets.early_fusion_dbn((6,), n_iter=1, fine_tune_epochs=2, random_state=0).fit(X, y)
    scaler = ModalityScaler(per_feature=True).fit(X)
    for est, check in [(rbm, lambda e: e.transform(flat > 0)),
                       (dbn, lambda e: e.predict_proba(flat)),
                       (DBN(hidden_layers=(4,), n_iter=1, random_state=0).fit(flat),
                        lambda e: e.transform(flat)),
                       (ef, lambda e: e.predict_proba(X)),
                       (scaler, lambda e: e.transform(X)["brain"])]:
        path = save(est, tmp_path / f"{type(est).__name__}.npz")
        back = load(path)
        assert type(back) is type(est)
        np.testing.assert_array_equal(check(back), check(est))
    assert load(tmp_path / "EarlyFusionDBN.npz").slices_ == ef.slices_


# -- class labels keep their dtype and values ------------------------------------------
LABELS = {
    "int32": np.array([3, 7], dtype=np.int32),
    "int64": np.array([-1, 1], dtype=np.int64),
    "str": np.array(["benign", "malignant"], dtype="<U12"),  # wider than its longest
    "object str": np.array(["healthy", "tumour"], dtype=object),
    "bool": np.array([False, True]),
    "float32": np.array([0.0, 1.0], dtype=np.float32),
}


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("estimator", ["MDBN", "DBN", "EarlyFusionDBN"])
def test_class_labels_keep_dtype_and_values(estimator, kind, data, tmp_path):
    X, y01 = data
    y = LABELS[kind][(y01 == "tumour").astype(int)]
    if estimator == "MDBN":
        est = MDBN(MODS, **{**FAST, "max_epochs": 1, "pretrain_epochs": 1}).fit(X, y)
        Xp = X
    elif estimator == "DBN":
        Xp = X["bone"]
        est = DBN(hidden_layers=(4,), n_iter=1, fine_tune_epochs=1, random_state=0).fit(Xp, y)
    else:
        Xp = X
        est = presets.early_fusion_dbn((4,), n_iter=1, fine_tune_epochs=1,
                                       random_state=0).fit(X, y)
    assert est.classes_.dtype == LABELS[kind].dtype  # what fit gives, the file must keep
    back = load(est.save(tmp_path / "m.npz"))
    assert back.classes_.dtype == est.classes_.dtype
    assert back.classes_.tolist() == est.classes_.tolist()
    assert [type(c) for c in back.classes_.tolist()] == [type(c) for c in
                                                          est.classes_.tolist()]
    pred, pred_back = est.predict(Xp), back.predict(Xp)
    assert pred_back.dtype == pred.dtype
    np.testing.assert_array_equal(pred_back, pred)


# -- interrupts while saving ------------------------------------------------------------
def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_interrupt_before_the_rename_leaves_nothing(where, tmp_path, monkeypatch):
    X = (np.random.default_rng(0).random((20, 6)) > 0.5).astype(np.float64)
    rbm = RBM(n_components=3, n_iter=1, random_state=0).fit(X)
    path = tmp_path / "rbm.npz"
    path.write_bytes(b"previous")
    target = {"write": (np.lib.format, "write_array"), "fsync": (os, "fsync"),
              "replace": (os, "replace")}[where]
    monkeypatch.setattr(*target, _interrupt)
    with pytest.raises(KeyboardInterrupt):
        save(rbm, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["rbm.npz"] and path.read_bytes() == b"previous"


def test_interrupt_after_the_rename_propagates_and_keeps_the_file(tmp_path, monkeypatch):
    X = (np.random.default_rng(0).random((20, 6)) > 0.5).astype(np.float64)
    rbm = RBM(n_components=3, n_iter=1, random_state=0).fit(X)
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt  # Ctrl-C right after the checkpoint is in place
    monkeypatch.setattr(pymdbn._atomic.os, "replace", replace_then_interrupt)
    path = tmp_path / "rbm.npz"
    with pytest.raises(KeyboardInterrupt):  # not a FileNotFoundError from the cleanup
        save(rbm, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["rbm.npz"]
    np.testing.assert_array_equal(load(path).components_, rbm.components_)


# -- rejected files -------------------------------------------------------------------
def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


def _header(members):
    return json.loads(members[HEADER_MEMBER])


def test_tampered_and_truncated_files_rejected(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="trunc.npz"):
        load(tmp_path / "trunc.npz")
    members = _members(path)
    key = _header(members)["arrays"][0]["key"] + ".npy"
    members[key] = members[key][:-4] + bytes(b ^ 0xFF for b in members[key][-4:])
    with pytest.raises(ValueError, match="checksum mismatch"):
        load(_zip(tmp_path / "tampered.npz", members))
    (tmp_path / "plain.npz").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="plain.npz: not a pymdbn model file"):
        load(tmp_path / "plain.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="no header"):
        load(tmp_path / "foreign.npz")
    # A version-1 file (header in __meta__.npy) gets a clear message.
    np.savez(tmp_path / "v1.npz", __meta__=np.array(json.dumps({"format_version": 1})),
             a0=np.zeros(3))
    with pytest.raises(ValueError, match="v1.npz: format version 1 is not supported"):
        load(tmp_path / "v1.npz")


def test_checkpoint_resume_equals_uninterrupted(data, tmp_path):
    X, y = data
    kw = {**FAST, "max_epochs": 4}
    full = MDBN(MODS, **kw).fit(X, y)
    ck = tmp_path / "ck.npz"
    MDBN(MODS, **{**kw, "max_epochs": 2}, checkpoint_every=1, checkpoint_path=str(ck)).fit(X, y)
    resumed = MDBN(MODS, **kw).fit(X, y, resume_from=ck)
    np.testing.assert_array_equal(resumed.decision_function(X), full.decision_function(X))
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"parameters \['fusion'\] differ"):
        MDBN(MODS, **{**kw, "fusion": "concat"}).fit(X, y, resume_from=ck)
    plain = tmp_path / "plain.npz"
    full.save(plain)
    with pytest.raises(ValueError, match="not an MDBN checkpoint"):
        MDBN(MODS, **kw).fit(X, y, resume_from=plain)


def test_saved_file_has_the_usual_permissions(tmp_path):
    X = (np.random.default_rng(0).random((20, 6)) > 0.5).astype(np.float64)
    path = save(RBM(n_components=3, n_iter=1, random_state=0).fit(X), tmp_path / "rbm.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_load_peak_memory_is_the_arrays(tmp_path):
    # Arrays are read once and hashed in place: no second copy of the largest one.
    import tracemalloc

    X = np.random.default_rng(0).standard_normal((20, 8192)).astype(np.float32)
    dbn = DBN(hidden_layers=(256,), n_iter=1, random_state=0).fit(X)
    path = save(dbn, tmp_path / "dbn.npz")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(HEADER_MEMBER))["arrays"]
    total = sum(np.prod(e["shape"], dtype=np.int64) * np.dtype(e["dtype"]).itemsize
                for e in manifest)  # three 8 MiB arrays: components_, its velocity, W
    tracemalloc.start()
    try:
        load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.15 * total + (1 << 20), (peak, total)  # a copy of one: 1.33x
