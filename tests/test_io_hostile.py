"""Hostile and malformed model files: every one is a ValueError naming the file, raised
before any array data is read (no large allocation, no pickle, no late failure)."""

import hashlib
import io
import json
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import pymdbn.io
from pymdbn import DBN, MDBN, RBM, load, presets
from pymdbn.io import DIGEST_MEMBER, FORMAT_VERSION, HEADER_MEMBER, save
from pymdbn.preprocessing import ModalityScaler
from test_mdbn import FAST, MODS, separable

SMALL = {**FAST, "max_epochs": 2, "pretrain_epochs": 1}


@pytest.fixture(scope="module")
def data():
    return separable(60, 0)


@pytest.fixture(scope="module")
def model_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    MDBN(MODS, **SMALL).fit(*data).save(path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate-name case
        for name, raw in (members.items() if isinstance(members, dict) else members):
            zf.writestr(name, raw)
    return path


def _header(members):
    return json.loads(members[HEADER_MEMBER])


def _set_raw_header(members, raw, redigest=True):
    members[HEADER_MEMBER] = raw
    if redigest:  # a careful forger recomputes the digest
        members[DIGEST_MEMBER] = hashlib.sha256(raw).hexdigest().encode()


def _set_header(members, header, redigest=True):
    _set_raw_header(members, json.dumps(header).encode(), redigest)


def _npy(arr, fortran=False, version=None):
    buf = io.BytesIO()
    if fortran:
        arr = np.asfortranarray(arr)
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def _entry(header, name):
    return next(e for e in header["arrays"] if e["name"] == name)


def _replace_array(members, name, arr, manifest=True, **npy):
    """Put ``arr`` in place of array ``name``; with ``manifest``, a consistent manifest."""
    header = _header(members)
    e = _entry(header, name)
    members[e["key"] + ".npy"] = _npy(arr, **npy)
    if manifest:
        e.update(shape=list(arr.shape), dtype=arr.dtype.str,
                 sha256=hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest())
        _set_header(members, header)


# -- edits: each takes the members of a valid MDBN file and returns (members, match) ----
def reversed_classes_unsigned(m):
    h = _header(m)
    h["state"]["meta"]["classes"].reverse()
    _set_header(m, h, redigest=False)
    return m, "header does not match its SHA-256"


def clip_changed_unsigned(m):
    h = _header(m)
    h["params"]["clip"] = 0.5
    h["state"]["clip"] = 0.5
    _set_header(m, h, redigest=False)
    return m, "header does not match its SHA-256"


def reversed_classes_redigested(m):
    # Consistent digest, but the labels no longer match the stored label array.
    h = _header(m)
    h["state"]["meta"]["classes"].reverse()
    _set_header(m, h)
    return m, "class labels .* differ"


def clip_changed_redigested(m):
    h = _header(m)
    h["params"]["clip"] = 0.5
    _set_header(m, h)
    return m, "differ"  # the state's clip and the stored parameters disagree


def extra_member(m):
    m["payload.npy"] = _npy(np.zeros(3))
    return m, "unknown member 'payload.npy'"


def missing_member(m):
    key = _header(m)["arrays"][0]["key"] + ".npy"
    del m[key]
    return m, f"member '{key}' of the manifest is missing"


def duplicate_member(m):
    key = _header(m)["arrays"][0]["key"] + ".npy"
    return list(m.items()) + [(key, m[key])], f"repeats member '{key}'"


def digest_missing(m):
    del m[DIGEST_MEMBER]
    return m, "no header"


def _claim_elements(m, n):
    # The manifest and the .npy header agree on n float32 elements; 12 bytes of data.
    h = _header(m)
    e = h["arrays"][0]
    e["shape"] = [n]
    e["dtype"] = "<f4"
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False,
                                               "shape": (n,)})
    m[e["key"] + ".npy"] = hdr.getvalue() + bytes(12)
    _set_header(m, h)
    return m


def npy_header_claims_3e9_elements(m):
    # 11.2 GiB: over the total cap.
    return _claim_elements(m, 3_000_000_000), "MAX_TOTAL_BYTES"


def npy_header_claims_1e9_elements(m):
    # Under the total cap (4 GB), but the member holds 12 bytes of data.
    return _claim_elements(m, 1_000_000_000), "its header implies"


def npy_header_differs_from_manifest(m):
    name = _header(m)["arrays"][0]["name"]
    _replace_array(m, name, np.zeros((2, 2), np.float32), manifest=False)
    return m, "the manifest says"


def object_dtype_array(m):
    _replace_array(m, "output/b", np.array([None, {"x": 1}], dtype=object))
    return m, "unsupported dtype"


def object_npy_under_float_manifest(m):
    h = _header(m)
    e = _entry(h, "output/b")
    m[e["key"] + ".npy"] = _npy(np.array([None, None], dtype=object))
    return m, "the manifest says"


def fortran_order(m):
    h = _header(m)
    W = np.load(io.BytesIO(m[_entry(h, "output/W")["key"] + ".npy"]))
    _replace_array(m, "output/W", W, manifest=False, fortran=True)  # same values, same sha
    return m, "Fortran order"


def wrong_shape_vs_hyperparameters(m):
    # A consistent manifest, but the first brain layer has 23 units, not 24.
    _replace_array(m, "pathways/brain/0/W", np.zeros((36, 23), np.float32))
    return m, r"'pathways/brain/0/W' has shape \(36, 23\).*imply \(36, 24\)"


def output_for_three_classes(m):
    _replace_array(m, "output/W", np.zeros((16, 3), np.float32))
    return m, r"'output/W' has shape \(16, 3\)"


def hidden_layers_edited(m):
    h = _header(m)
    for params in (h["params"], h["state"]["meta"]["params"]):
        params["modalities"]["__dict__"][0][1]["__tuple__"] = [30]
    _set_header(m, h)
    return m, "'pathways/brain/0/W' has shape"


def deep_json(m):
    _set_raw_header(m, b"[" * 100_000 + b"]" * 100_000)
    return m, "nests too deeply"


def non_dict_header(m):
    _set_header(m, [1, 2, 3])
    return m, "the header must be a JSON object"


def not_json(m):
    _set_raw_header(m, b"\xff\xfe{")
    return m, "not JSON"


def missing_header_key(m):
    h = _header(m)
    del h["state"]
    _set_header(m, h)
    return m, "the header's fields"


def params_not_a_dict(m):
    h = _header(m)
    h["params"] = ["clip", 4]
    _set_header(m, h)
    return m, "params must be a JSON object"


def unknown_param(m):
    h = _header(m)
    h["params"]["exec"] = "rm -rf /"
    _set_header(m, h)
    return m, r"unknown MDBN parameters \['exec'\]"


def param_wrong_type(m):
    h = _header(m)
    h["params"]["modalities"] = "brain"
    h["state"]["meta"]["params"]["modalities"] = "brain"
    _set_header(m, h)
    return m, "modalities must be a dict"


def state_wrong_type(m):
    h = _header(m)
    h["state"]["meta"] = [1]
    _set_header(m, h)
    return m, "MDBN meta must be a JSON object"


def state_missing_key(m):
    h = _header(m)
    del h["state"]["depths"]
    _set_header(m, h)
    return m, r"lacks \['depths'\]"


def manifest_shape_wrong_type(m):
    h = _header(m)
    h["arrays"][0]["shape"] = "big"
    _set_header(m, h)
    return m, "shape must be a list"


def manifest_entry_not_a_dict(m):
    h = _header(m)
    h["arrays"][0] = "a0"
    _set_header(m, h)
    return m, "manifest entry 0 must be a JSON object"


def unknown_estimator(m):
    h = _header(m)
    h["estimator"] = "os.system"
    _set_header(m, h)
    return m, "unknown estimator 'os.system'"


def nested_unknown_estimator(m):
    h = _header(m)
    h["params"]["pathway_params"] = {"__estimator__": "Popen", "params": {}}
    _set_header(m, h)
    return m, "unknown estimator 'Popen'"


def future_version(m):
    h = _header(m)
    h["format_version"] = FORMAT_VERSION + 1
    _set_header(m, h)
    return m, f"format version {FORMAT_VERSION + 1} is not supported"


def digest_garbage(m):
    m[DIGEST_MEMBER] = b"\x00" * 64
    return m, "header does not match its SHA-256"


CASES = [reversed_classes_unsigned, clip_changed_unsigned, reversed_classes_redigested,
         clip_changed_redigested, extra_member, missing_member, duplicate_member,
         digest_missing, npy_header_claims_3e9_elements, npy_header_claims_1e9_elements,
         npy_header_differs_from_manifest, object_dtype_array,
         object_npy_under_float_manifest, fortran_order, wrong_shape_vs_hyperparameters,
         output_for_three_classes, hidden_layers_edited, deep_json, non_dict_header,
         not_json, missing_header_key, params_not_a_dict, unknown_param, param_wrong_type,
         state_wrong_type, state_missing_key, manifest_shape_wrong_type,
         manifest_entry_not_a_dict, unknown_estimator, nested_unknown_estimator,
         future_version, digest_garbage]


@pytest.mark.parametrize("edit", CASES, ids=[c.__name__ for c in CASES])
def test_hostile_file_rejected_before_reading_data(edit, model_file, tmp_path, monkeypatch):
    members, match = edit(_members(model_file))
    path = _zip(tmp_path / f"{edit.__name__}.npz", members)
    read = []
    real_read_array = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array",
                        lambda *a, **k: read.append(1) or real_read_array(*a, **k))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f"{path}: ")
    assert peak < 16 << 20  # nothing near the sizes the hostile headers declare
    if edit not in (reversed_classes_redigested,):  # only that one is caught after reading
        assert not read, "array data was read before the file was rejected"


def test_unedited_file_loads_through_the_same_helpers(model_file, tmp_path):
    # The helpers above keep a valid file valid: the rejections come from the edits.
    path = _zip(tmp_path / "same.npz", _members(model_file))
    assert isinstance(load(path), MDBN)
    members = _members(model_file)
    _set_header(members, _header(members))
    assert isinstance(load(_zip(tmp_path / "redigested.npz", members)), MDBN)


def test_compressed_zip_bomb_rejected_fast(model_file, tmp_path):
    # A 512 MiB array of zeros deflates to about 0.5 MB; its member is never inflated.
    members = _members(model_file)
    header = _header(members)
    e = header["arrays"][0]
    n = 512 << 20
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "|u1", "fortran_order": False,
                                               "shape": (n,)})
    e.update(shape=[n], dtype="|u1", sha256="0" * 64)
    _set_header(members, header)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, raw in members.items():
            if name != e["key"] + ".npy":
                zf.writestr(name, raw)
        info = zipfile.ZipInfo(e["key"] + ".npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as member:
            member.write(hdr.getvalue())
            chunk = bytes(8 << 20)
            for _ in range(n // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="bomb.npz: .*compressed"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 16 << 20


def test_forged_central_directory_size_rejected(model_file, tmp_path):
    # A stored member whose directory entry claims far more bytes than the file has.
    path = _zip(tmp_path / "forged.npz", _members(model_file))
    raw = bytearray(path.read_bytes())
    start, patched = raw.find(b"PK\x01\x02"), False
    while start != -1:  # the header member's central-directory entry: both sizes 1e9
        name_len = int.from_bytes(raw[start + 28:start + 30], "little")
        if raw[start + 46:start + 46 + name_len] == HEADER_MEMBER.encode():
            raw[start + 20:start + 28] = (10**9).to_bytes(4, "little") * 2
            patched = True
        start = raw.find(b"PK\x01\x02", start + 4)
    assert patched
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="forged.npz: the archive declares more data"):
        load(path)


def test_size_caps_are_module_constants(model_file, monkeypatch):
    monkeypatch.setattr(pymdbn.io, "MAX_HEADER_BYTES", 100)
    with pytest.raises(ValueError, match="'header.json' is .* bytes, more than the 100"):
        load(model_file)
    monkeypatch.undo()
    monkeypatch.setattr(pymdbn.io, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(ValueError, match="MAX_TOTAL_BYTES"):
        load(model_file)


def test_not_a_zip_and_truncated(model_file, tmp_path):
    raw = model_file.read_bytes()
    for name, content in [("empty.npz", b""), ("text.npz", b"hello"),
                          ("head.npz", raw[:100]), ("tail.npz", raw[-300:]),
                          ("half.npz", raw[: len(raw) // 2])]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load(tmp_path / name)
    with pytest.raises(ValueError, match="not a readable"):
        load(tmp_path)  # a directory


# -- shapes against the hyperparameters, for every estimator ----------------------------
@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    X, y = data
    rng = np.random.default_rng(0)
    flat = rng.standard_normal((40, 7)).astype(np.float32)
    folder = tmp_path_factory.mktemp("estimators")
    ests = {"RBM": RBM(n_components=3, n_iter=1, random_state=0).fit(flat > 0),
            "DBN": DBN(hidden_layers=(5, 3), n_iter=1, fine_tune_epochs=1,
                       random_state=0).fit(flat, flat[:, 0] > 0),
            "EarlyFusionDBN": presets.early_fusion_dbn((4,), n_iter=1, fine_tune_epochs=1,
                                                       random_state=0).fit(X, y),
            "ModalityScaler": ModalityScaler(per_feature=True).fit(X)}
    return {k: save(e, folder / f"{k}.npz") for k, e in ests.items()}


@pytest.mark.parametrize("estimator, array, shape", [
    ("RBM", "components_", (3, 6)),
    ("RBM", "intercept_visible_", (8,)),
    ("RBM", "h_samples_", (10, 4)),
    ("DBN", "layer0/W", (7, 4)),
    ("DBN", "layer1/W", (4, 3)),
    ("DBN", "rbm1/components_", (3, 4)),
    ("DBN", "output/W", (3, 3)),
    ("DBN", "output/b", (1,)),
    ("EarlyFusionDBN", "dbn/layer0/W", (70, 4)),
    ("EarlyFusionDBN", "scaler/brain/mean", (5, 5)),
    ("ModalityScaler", "brain/scale", ()),
])
def test_shapes_inconsistent_with_hyperparameters_rejected(saved, estimator, array, shape,
                                                          tmp_path):
    members = _members(saved[estimator])
    dtype = np.dtype(_entry(_header(members), array)["dtype"])
    _replace_array(members, array, np.zeros(shape, dtype))
    path = _zip(tmp_path / "bad.npz", members)
    with pytest.raises(ValueError, match=f"bad.npz: array '{array}' has shape"):
        load(path)


def test_dbn_n_components_edited_rejected(saved, tmp_path):
    members = _members(saved["DBN"])
    header = _header(members)
    header["params"]["hidden_layers"]["__tuple__"][0] = 6
    _set_header(members, header)
    with pytest.raises(ValueError, match="RBM 0 has 5 units, the DBN's hidden_layers 6"):
        load(_zip(tmp_path / "bad.npz", members))


def test_dropped_array_and_extra_array_rejected(saved, tmp_path):
    members = _members(saved["RBM"])
    header = _header(members)
    entry = _entry(header, "velocity_hidden_")
    entry["name"] = "velocity_hidden_extra"
    _set_header(members, header)
    with pytest.raises(ValueError, match="array 'velocity_hidden_' is missing"):
        load(_zip(tmp_path / "bad.npz", members))


def test_checkpoint_optimiser_state_must_fit(data, tmp_path):
    X, y = data
    ck = tmp_path / "ck.npz"
    MDBN(MODS, **{**SMALL, "max_epochs": 1}, checkpoint_every=1,
         checkpoint_path=str(ck)).fit(X, y)
    members = _members(ck)
    _replace_array(members, "__train__/slot0", np.zeros((36, 5), np.float32))
    with pytest.raises(ValueError, match="array '__train__/slot0' has shape"):
        MDBN(MODS, **SMALL).fit(X, y, resume_from=_zip(tmp_path / "bad.npz", members))


def test_parameter_of_the_wrong_type_rejected_at_load(saved, tmp_path):
    # Shapes are fine, but a clip of "x" would fail only when predicting.
    members = _members(saved["RBM"])
    header = _header(members)
    header["params"]["clip"] = "x"
    _set_header(members, header)
    with pytest.raises(ValueError, match="bad.npz: invalid RBM parameter: .*'clip'"):
        load(_zip(tmp_path / "bad.npz", members))


FUZZ_VALUES = [None, True, 0, -1, 2, 3.5, 1e300, "", "x", "float32", [], {}, [1], [[1]],
               {"a": 1}, {"__tuple__": [1]}, {"__tuple__": "x"}, {"__dict__": [[[1], 2]]},
               {"__estimator__": "RBM", "params": {"n_components": "x"}}, 10**30]


def _paths(obj, path=()):
    yield path
    items = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, list) else ())
    for k, v in items:
        yield from _paths(v, path + (k,))


@pytest.mark.parametrize("estimator", ["MDBN", "DBN", "EarlyFusionDBN"])
def test_random_header_edits_load_or_raise_value_error(estimator, model_file, saved,
                                                       tmp_path):
    # Any field replaced by a value of another type, with a recomputed digest: the file
    # either loads or is a ValueError naming it, never another exception.
    import copy
    import random

    members = _members(model_file if estimator == "MDBN" else saved[estimator])
    paths = [p for p in _paths(_header(members)) if p]
    rnd = random.Random(0)
    for trial in range(150):
        header = _header(members)
        path = rnd.choice(paths)
        node = header
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(rnd.choice(FUZZ_VALUES))
        edited = dict(members)
        _set_header(edited, header)
        file = _zip(tmp_path / f"fuzz{trial}.npz", edited)
        try:
            load(file, return_train_state=True)
        except ValueError as exc:
            assert str(exc).startswith(f"{file}: "), (path, exc)
        file.unlink()
