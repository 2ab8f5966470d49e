"""Model files of convolutional models: ConvRBM, DBN and MDBN with Conv and Pool layers
round-trip exactly, and a file whose arrays or specs do not fit is rejected, naming
the array or field, before any array data is read."""

import copy
import json
import random
import tracemalloc
import zipfile

import numpy as np
import pytest

from pymdbn import DBN, MDBN, Conv, ConvRBM, Pool, load
from pymdbn.io import HEADER_MEMBER, decode_params, encode_params, save
from test_io_hostile import _entry, _header, _members, _replace_array, _set_header, _zip

SPECS = [Conv(3, 3), Pool(2), 8]  # 12x12 -> 10x10x3 -> 5x5x3 = 75 -> 8
DBN_KW = dict(n_iter=2, fine_tune_epochs=2, visible="bernoulli", random_state=0)
MDBN_KW = dict(pretrain_epochs=1, max_epochs=2, optimizer="adam", learning_rate=0.01,
               random_state=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    pattern = np.random.default_rng(1).random((12, 12))
    images = (0.5 * rng.random((40, 12, 12)) + 0.5 * y[:, None, None] * pattern)
    return {"brain": images.astype(np.float32),
            "v": rng.standard_normal((40, 5)) + y[:, None]}, y


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    X, y = data
    tmp = tmp_path_factory.mktemp("conv")
    models = {
        "ConvRBM": ConvRBM(3, (3, 2), n_iter=2, random_state=0).fit(X["brain"]),
        "DBN": DBN([Conv(3, 3, momentum=0.6), Pool(2), 8], **DBN_KW).fit(X["brain"], y),
        "DBN_unsupervised": DBN(SPECS, **DBN_KW).fit(X["brain"]),
        "DBN_flat": DBN((Conv(2, (3, 2)), Pool(2, "avg"), Conv(2, 2), 6), image_shape=(12, 12),
                        **DBN_KW).fit(X["brain"].reshape(40, -1), y),
        "MDBN": MDBN({"brain": SPECS, "v": (6,)}, **MDBN_KW).fit(X, y),
    }
    return {name: (model, save(model, tmp / f"{name}.pmdbn")) for name, model in models.items()}


def _load_checked(path):
    """load(path), asserting the file was rejected before any array data was read."""
    read = []
    real = np.lib.format.read_array
    np.lib.format.read_array = lambda *a, **k: read.append(1) or real(*a, **k)
    tracemalloc.start()
    try:
        load(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.lib.format.read_array = real
        assert not read, "array data was read before the file was rejected"
        assert peak < 16 << 20


def _rejected(members, tmp_path, match, name="bad"):
    path = _zip(tmp_path / f"{name}.pmdbn", members)
    with pytest.raises(ValueError, match=match) as info:
        _load_checked(path)
    assert str(info.value).startswith(f"{path}: ")
    return info


# -- encoding of the specs --------------------------------------------------------------
def test_specs_round_trip_through_the_parameter_encoding():
    params = {"hidden_layers": (Conv(4, (3, 2), momentum=np.float32(0.25), n_iter=3),
                                Pool(3, "avg"), Conv(2, 1), 16),
              "modalities": {"a": [Pool(2)], "b": Conv(1, 5)}}
    enc = encode_params(params)
    json.dumps(enc, allow_nan=False)
    assert enc["hidden_layers"]["__tuple__"][1] == {"__layer__": {"type": "pool", "size": 3,
                                                                  "mode": "avg"}}
    dec = decode_params(json.loads(json.dumps(enc)))
    assert dec == params
    assert dec["hidden_layers"][0].params == {"momentum": 0.25, "n_iter": 3}


@pytest.mark.parametrize("spec", [
    "Conv(3, 3)", [], None,
    {"type": "exec"},
    {"type": "conv", "filters": 0, "kernel_size": [3, 3], "params": {}},
    {"type": "conv", "filters": True, "kernel_size": [3, 3], "params": {}},
    {"type": "conv", "filters": 3.0, "kernel_size": [3, 3], "params": {}},
    {"type": "conv", "filters": 3, "kernel_size": [3], "params": {}},
    {"type": "conv", "filters": 3, "kernel_size": 3, "params": {}},
    {"type": "conv", "filters": 3, "kernel_size": [3, -1], "params": {}},
    {"type": "conv", "filters": 3, "kernel_size": [3, 3]},
    {"type": "conv", "filters": 3, "kernel_size": [3, 3], "params": []},
    {"type": "conv", "filters": 3, "kernel_size": [3, 3], "params": {}, "extra": 1},
    {"type": "conv", "filters": 3, "kernel_size": [3, 3], "params": {"filters": 4}},
    {"type": "conv", "filters": 3, "kernel_size": [3, 3], "params": {"exec": "rm"}},
    {"type": "pool", "size": 2, "mode": "min"},
    {"type": "pool", "size": 0, "mode": "max"},
    {"type": "pool", "size": 2},
    {"type": "pool", "size": 2, "mode": "max", "filters": 3},
])
def test_malformed_spec_encodings_are_value_errors(spec):
    with pytest.raises(ValueError, match="layer spec|Conv spec|Pool spec"):
        decode_params({"hidden_layers": [{"__layer__": spec}, 8]})


# -- round trips ----------------------------------------------------------------------------
def test_conv_rbm_round_trip(files, data):
    model, path = files["ConvRBM"]
    loaded = load(path)
    assert type(loaded) is ConvRBM and loaded.get_params() == model.get_params()
    for name in ("components_", "intercept_hidden_", "intercept_visible_",
                 "velocity_components_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.components_.shape == (3, 3, 2, 1)
    assert (loaded.image_shape_, loaded.output_shape_) == ((12, 12, 1), (10, 11, 3))
    assert (loaded.seed_, loaded.n_steps_, loaded.n_features_in_) == (
        model.seed_, model.n_steps_, 144)
    assert loaded.history_ == model.history_
    X = data[0]["brain"]
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    # Training goes on where it stopped.
    np.testing.assert_array_equal(loaded.partial_fit(X).components_,
                                  copy.deepcopy(model).partial_fit(X).components_)


@pytest.mark.parametrize("name", ["DBN", "DBN_flat"])
def test_supervised_conv_dbn_round_trip(files, data, name):
    model, path = files[name]
    X = data[0]["brain"]
    if name == "DBN_flat":
        X = X.reshape(len(X), -1)
    loaded = load(path)
    assert loaded.get_params() == model.get_params()
    assert [type(r) for r in loaded.rbms_] == [type(r) for r in model.rbms_]
    assert loaded.image_shape_ == model.image_shape_ == (12, 12, 1)
    assert len(loaded.layers_) == len(model.layers_)
    for a, b in zip(loaded.layers_, model.layers_):
        assert a.keys() == b.keys()
        for k in a:
            if k in ("W", "b"):
                np.testing.assert_array_equal(a[k], b[k])
                assert a[k].dtype == b[k].dtype and a[k].flags.c_contiguous
            else:
                assert tuple(np.atleast_1d(a[k])) == tuple(np.atleast_1d(b[k])), k
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    assert loaded.fine_tune_history_ == model.fine_tune_history_
    # repr: a Gaussian RBM's pseudo-likelihood is NaN, which == does not match
    assert repr(loaded.history_) == repr(model.history_)
    ex_model, ex_loaded = model.explain(X[:4]), loaded.explain(X[:4])
    np.testing.assert_array_equal(ex_loaded.relevance["x"], ex_model.relevance["x"])
    # Pools store no array; conv layers store only W and b.
    with zipfile.ZipFile(path) as zf:
        names = {e["name"] for e in json.loads(zf.read(HEADER_MEMBER))["arrays"]}
    assert not any(n.startswith("layer1/") for n in names)
    assert {"layer0/W", "layer0/b"} <= names


def test_unsupervised_conv_dbn_round_trip(files, data):
    model, path = files["DBN_unsupervised"]
    X = data[0]["brain"]
    loaded = load(path)
    assert not hasattr(loaded, "classes_")
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    assert loaded.transform(X).shape == (40, 8)
    # The loaded model is a working DBN: refitting gives the same as the original's refit.
    np.testing.assert_array_equal(loaded.fit(X).transform(X),
                                  copy.deepcopy(model).fit(X).transform(X))


def test_mdbn_with_a_conv_modality_round_trip(files, data):
    model, path = files["MDBN"]
    X, y = data
    loaded = load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    assert [lay.get("type", "dense") for lay in loaded.pathways_["brain"]] == [
        "conv", "pool", "dense"]
    ex_model, ex_loaded = model.explain(X), loaded.explain(X)
    for m in ("brain", "v"):
        np.testing.assert_array_equal(ex_loaded.relevance[m], ex_model.relevance[m])


def test_mdbn_conv_checkpoint_resumes(data, tmp_path):
    X, y = data
    full = MDBN({"brain": SPECS, "v": (6,)}, **{**MDBN_KW, "max_epochs": 3}).fit(X, y)
    ck = tmp_path / "ck.pmdbn"
    MDBN({"brain": SPECS, "v": (6,)}, **{**MDBN_KW, "max_epochs": 2}, checkpoint_every=1,
         checkpoint_path=str(ck)).fit(X, y)
    resumed = MDBN({"brain": SPECS, "v": (6,)}, **{**MDBN_KW, "max_epochs": 3}).fit(
        X, y, resume_from=ck)
    np.testing.assert_array_equal(resumed.decision_function(X), full.decision_function(X))
    # Adam's moments of the conv layer must have its W's shape (9, 3).
    members = _members(ck)
    names = [e["name"] for e in _header(members)["arrays"]]
    assert "__train__/slot0" in names
    _replace_array(members, "__train__/slot0", np.zeros((75, 3), np.float32))
    with pytest.raises(ValueError, match=r"'__train__/slot0' has shape \(75, 3\).*\(9, 3\)"):
        MDBN({"brain": SPECS, "v": (6,)}, **MDBN_KW).fit(
            X, y, resume_from=_zip(tmp_path / "bad.pmdbn", members))


# -- hostile files ------------------------------------------------------------------------
def _set_spec(params, index, spec):
    """Put the encoded ``spec`` at ``hidden_layers[index]`` of encoded DBN params."""
    layers = params["hidden_layers"]
    layers = layers["__tuple__"] if isinstance(layers, dict) else layers
    layers[index] = encode_params({"s": spec})["s"]


def _edit_dbn_spec(members, index, spec, rbm_params=None):
    h = _header(members)
    _set_spec(h["params"], index, spec)
    if rbm_params:  # a careful forger edits the ConvRBM's parameters too
        h["state"]["rbms"][0]["params"].update(rbm_params)
    _set_header(members, h)
    return members


@pytest.mark.parametrize("array, shape, match", [
    ("layer0/W", (9, 4), r"'layer0/W' has shape \(9, 4\), .* imply \(9, 3\)"),
    ("layer0/W", (25, 3), r"'layer0/W' has shape \(25, 3\), .* imply \(9, 3\)"),
    ("layer0/b", (4,), r"'layer0/b' has shape \(4,\), .* imply \(3,\)"),
    ("rbm0/components_", (3, 3, 3, 2), r"'rbm0/components_' has shape \(3, 3, 3, 2\)"),
    ("rbm0/intercept_visible_", (3,), r"'rbm0/intercept_visible_' has shape \(3,\)"),
    ("layer2/W", (100, 8), r"'layer2/W' has shape \(100, 8\), .* imply \(75, 8\)"),
    ("output/W", (9, 2), r"'output/W' has shape \(9, 2\), .* imply \(8, 2\)"),
])
def test_conv_dbn_array_of_the_wrong_shape(files, tmp_path, array, shape, match):
    members = _members(files["DBN"][1])
    _replace_array(members, array, np.zeros(shape, np.float32))
    _rejected(members, tmp_path, match)


def test_conv_dbn_spec_edits(files, tmp_path):
    path = files["DBN"][1]
    # More filters in the spec than the stored ConvRBM has.
    _rejected(_edit_dbn_spec(_members(path), 0, Conv(4, 3, momentum=0.6)), tmp_path,
              r"ConvRBM 0 has 3 filters of \(3, 3\), the DBN's hidden_layers\[0\] is Conv\(4, 3")
    # ... and in the ConvRBM's parameters too: now the arrays do not fit.
    members = _edit_dbn_spec(_members(path), 0, Conv(4, 3, momentum=0.6), {"filters": 4})
    _rejected(members, tmp_path, r"'rbm0/components_' has shape \(3, 3, 3, 1\), .* "
                                 r"imply \(4, 3, 3, 1\)")
    # Kernel size.
    members = _edit_dbn_spec(_members(path), 0, Conv(3, 5, momentum=0.6),
                             {"kernel_size": {"__tuple__": [5, 5]}})
    _rejected(members, tmp_path, r"'rbm0/components_' has shape \(3, 3, 3, 1\), .* "
                                 r"imply \(3, 5, 5, 1\)")
    # Pool size: 10x10x3 pooled by 3 is 3x3x3 = 27 inputs to the dense RBM, not 75.
    _rejected(_edit_dbn_spec(_members(path), 1, Pool(3)), tmp_path,
              "RBM n_features_in is 75, the layer below has 27 units")
    # A dense layer where the pool was: one more model than the file holds.
    _rejected(_edit_dbn_spec(_members(path), 1, 5), tmp_path,
              r"the file has 2 RBMs, hidden_layers 3")
    # A conv spec that does not fit the images.
    _rejected(_edit_dbn_spec(_members(path), 0, Conv(3, 13), {"kernel_size": 13}), tmp_path,
              r"layer 0 Conv\(3, 13\): a 13x13 filter does not fit a 12x12 input")
    # Dense before conv.
    h = _header(_members(path))
    layers = h["params"]["hidden_layers"]
    layers.reverse()
    members = _members(path)
    _set_header(members, h)
    _rejected(members, tmp_path, r"hidden_layers\[1\] is Pool\(2\) after a dense layer")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["state"].__setitem__("image_shape", [6, 24, 1]),
     r"ConvRBM image_shape is \(12, 12, 1\), the layer below gives \(6, 24, 1\)"),
    (lambda h: h["state"].__setitem__("image_shape", [12, 12, 2]),
     r"image shape \(12, 12, 2\) has 288 pixels, the input 144 features"),
    (lambda h: h["state"].__setitem__("image_shape", [12, 12]), r"must be \(H, W, C\)"),
    (lambda h: h["state"].pop("image_shape"), "lacks its image_shape"),
    (lambda h: h["state"]["rbms"][0].__setitem__("estimator", "RBM"),
     r"rbms\[0\] is a 'RBM', hidden_layers\[0\] Conv\(3, 3.* needs a ConvRBM"),
    (lambda h: h["state"]["rbms"][1].__setitem__("estimator", "ConvRBM"),
     r"rbms\[1\] is a 'ConvRBM', hidden_layers\[2\] 8 needs a RBM"),
    (lambda h: h["params"].__setitem__("image_shape", {"__tuple__": [12, 13]}),
     r"image_shape \(12, 12, 1\) differs from the parameter"),
    (lambda h: h["params"].__setitem__("layer_params", encode_params(
        {"p": [{"filters": 5}, {}, {}]})["p"]),
     r"layer_params\[0\] sets filters 5, the layer's spec is Conv\(3, 3"),
    (lambda h: h["params"]["hidden_layers"][0]["__layer__"].__setitem__("kernel_size", [3]),
     "malformed Conv spec"),
    (lambda h: h["params"]["hidden_layers"][1]["__layer__"].__setitem__("mode", "min"),
     "malformed Pool spec"),
    (lambda h: h["params"]["hidden_layers"][0]["__layer__"]["params"].__setitem__("x", 1),
     "sets 'x', which is not a ConvRBM parameter"),
    (lambda h: h["params"]["hidden_layers"][0]["__layer__"].__setitem__("type", "Popen"),
     "malformed layer spec"),
])
def test_conv_dbn_header_edits(files, tmp_path, edit, match):
    members = _members(files["DBN"][1])
    h = _header(members)
    edit(h)
    _set_header(members, h)
    _rejected(members, tmp_path, match)


def test_pool_layer_holding_an_array_rejected(files, tmp_path):
    members = _members(files["DBN"][1])
    h = _header(members)
    e = copy.deepcopy(_entry(h, "layer0/b"))
    e.update(name="layer1/W", key="a999")
    h["arrays"].append(e)
    members["a999.npy"] = members[_entry(h, "layer0/b")["key"] + ".npy"]
    _set_header(members, h)
    _rejected(members, tmp_path, "unexpected array 'layer1/W'")


def test_conv_rbm_hostile_files(files, tmp_path):
    path = files["ConvRBM"][1]
    members = _members(path)
    _replace_array(members, "components_", np.zeros((3, 3, 3, 1), np.float32))
    _rejected(members, tmp_path, r"'components_' has shape \(3, 3, 3, 1\), .* "
                                 r"imply \(3, 3, 2, 1\)")
    members = _members(path)
    h = _header(members)
    h["params"]["filters"] = 5
    _set_header(members, h)
    _rejected(members, tmp_path, r"'components_' has shape \(3, 3, 2, 1\), .* "
                                 r"imply \(5, 3, 2, 1\)")
    members = _members(path)
    h = _header(members)
    h["state"]["n_features_in"] = 100
    _set_header(members, h)
    _rejected(members, tmp_path, r"n_features_in is 100, its images \(12, 12, 1\) have 144")
    members = _members(path)
    h = _header(members)
    h["state"]["image_shape"] = [2, 72, 1]
    h["params"]["kernel_size"] = {"__tuple__": [3, 3]}
    _set_header(members, h)
    _rejected(members, tmp_path, r"a 3x3 ConvRBM filter does not fit \(2, 72, 1\) images")


@pytest.mark.parametrize("spec, match", [
    (Conv(4, 3), r"'pathways/brain/0/W' has shape \(9, 3\), .* imply \(9, 4\)"),
    (Conv(3, 2), r"'pathways/brain/0/W' has shape \(9, 3\), .* imply \(4, 3\)"),
    (Pool(3), r"'pathways/brain/2/W' has shape \(75, 8\), .* imply \(27, 8\)"),
    (Conv(3, 20), r"layer 0 Conv\(3, 20\): a 20x20 filter does not fit a 12x12 input"),
])
def test_mdbn_conv_spec_edits(files, tmp_path, spec, match):
    members = _members(files["MDBN"][1])
    h = _header(members)
    index = 1 if isinstance(spec, Pool) else 0
    for params in (h["params"], h["state"]["meta"]["params"]):
        brain = dict(params["modalities"]["__dict__"])["brain"]
        brain[index] = encode_params({"s": spec})["s"]
    _set_header(members, h)
    _rejected(members, tmp_path, match)


def test_mdbn_conv_array_and_image_shape_edits(files, tmp_path):
    path = files["MDBN"][1]
    members = _members(path)
    _replace_array(members, "pathways/brain/0/W", np.zeros((9, 5), np.float32))
    _rejected(members, tmp_path, r"'pathways/brain/0/W' has shape \(9, 5\), .* imply \(9, 3\)")
    members = _members(path)
    h = _header(members)
    e = copy.deepcopy(_entry(h, "output/b"))
    e.update(name="pathways/brain/1/W", key="a999")
    h["arrays"].append(e)
    members["a999.npy"] = members[_entry(h, "output/b")["key"] + ".npy"]
    _set_header(members, h)
    _rejected(members, tmp_path, "unexpected array 'pathways/brain/1/W'")
    members = _members(path)
    h = _header(members)
    h["state"]["meta"]["image_shapes"]["brain"] = [14, 14]
    _set_header(members, h)
    _rejected(members, tmp_path, r"'scalers/brain/mean' has shape|"
                                 r"'pathways/brain/2/W' has shape \(75, 8\), .* imply \(108, 8\)")


_FUZZ = [None, True, 0, -1, 3, 2.5, "x", [], {}, [1], [3, 3], {"a": 1},
         {"__layer__": {"type": "pool", "size": 2, "mode": "max"}},
         {"__layer__": {"type": "conv", "filters": 2, "kernel_size": [2, 2], "params": {}}},
         {"__layer__": "x"}, 10**30]


def _paths(obj, path=()):
    yield path
    items = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, list) else ())
    for k, v in items:
        yield from _paths(v, path + (k,))


@pytest.mark.parametrize("name", ["DBN", "MDBN", "ConvRBM"])
def test_random_header_edits_load_or_raise_value_error(files, tmp_path, name):
    members = _members(files[name][1])
    paths = [p for p in _paths(_header(members)) if p]
    rnd = random.Random(1)
    for trial in range(120):
        header = _header(members)
        path = rnd.choice(paths)
        node = header
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(rnd.choice(_FUZZ))
        edited = dict(members)
        _set_header(edited, header)
        file = _zip(tmp_path / f"fuzz{trial}.pmdbn", edited)
        try:
            load(file)
        except ValueError as exc:
            assert str(exc).startswith(f"{file}: "), (path, exc)
        file.unlink()
