"""bench/bench_realscan.py on a tiny synthetic image folder, and the CNN baseline's options.

The folder is made here (3 classes of 32x32 PNGs with a bright blob and its YOLO box);
nothing outside tmp_path is read.
"""

import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

import pymdbn.cli as cli

CLASSES = ("glioma", "meningioma", "pituitary")
# Tiny models: a few seconds in all.
TINY = ["--size", "16", "--pretrain-epochs", "1", "--max-epochs", "2", "--pathway", "16",
        "--joint-units", "8", "--cnn-epochs", "1", "--cnn-channels", "4", "8",
        "--logistic-c", "0.1"]


@pytest.fixture(scope="module")
def bench():
    path = os.path.join(cli.bench_dir(), "bench_realscan.py")
    spec = importlib.util.spec_from_file_location("bench_realscan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_folder(root, per_class=12, side=32, seed=0):
    """Class k has a bright square blob around column (k + 1) / 4 of the image."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.normal(60, 15, (side, side))
            cx = int((k + 1) * side / 4) + int(rng.integers(-1, 2))
            cy = int(rng.integers(side // 4, 3 * side // 4))
            r = side // 8
            image[cy - r:cy + r, cx - r:cx + r] += 150
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                root / name / f"{k}{i:03d}.png")
            (root / name / f"{k}{i:03d}.txt").write_text(
                f"{k} {cx / side} {cy / side} {2 * r / side} {2 * r / side}\n")
    return root


def test_realscan_writes_every_figure(bench, tmp_path, capsys):
    folder = make_folder(tmp_path / "scans")
    out = tmp_path / "out"
    models = ["logistic", "proposed"]
    if importlib.util.find_spec("torch") is not None:
        models.append("cnn")
    rc = bench.main([str(folder), *TINY, "--models", *models, "--composites", "epsilon",
                     "epsilon_plus", "--out", str(out), "--save-models", str(tmp_path / "m")])
    assert rc == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "realscan.json").read_text())
    line = [s for s in printed.splitlines() if s.startswith("JSON ")]
    assert json.loads(line[0][5:])["results"] == record["results"]

    assert record["classes"] == list(CLASSES)
    assert (record["n_images"], record["n_train"], record["n_test"]) == (36, 27, 9)
    assert "slice-level" in record["split"] and "optimistic" in record["split_note"]
    assert record["target"] == "true"
    assert record["config"]["version"] and record["versions"]["pymdbn"]
    assert record["machine"]["cpu"] is not None
    assert [r["model"] for r in record["results"]] == models
    for r in record["results"]:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
        assert r["fit_seconds"] > 0 and r["predict_seconds"] >= 0
        assert set(r["per_class"]) == set(CLASSES)
        for c in CLASSES:
            assert 0 <= r["per_class"][c]["sensitivity"] <= 1
            assert 0 <= r["per_class"][c]["specificity"] <= 1
        assert np.sum(r["confusion_matrix"]) == 9
        o = r["occlusion"]
        assert o["n_images"] == 9 and o["accuracy_all"] == pytest.approx(r["accuracy"])
        assert 0 <= o["accuracy_box_hidden"] <= 1 and 0 <= o["accuracy_box_only"] <= 1
    by = {r["model"]: r for r in record["results"]}
    assert "relevance" not in by["logistic"]
    scores = by["proposed"]["relevance"]
    assert [s["composite"] for s in scores] == ["epsilon", "epsilon_plus"]
    for s in scores:
        assert s["n_images"] == 9
        assert 0 < s["box_area_share"] < 1 and s["pointing_chance"] == s["box_area_share"]
        assert 0 <= s["pointing_game"] <= 1
        # A dilated box can only add hits; 15 px at 224 is 1 px at 16.
        assert s["pointing_tolerance"] == 1
        assert s["pointing_game"] <= s["pointing_game_tolerant"] <= 1
        # Per class: the true classes of the 9 test images, 3 each; their mean is the whole.
        assert {c: v["n_images"] for c, v in s["per_class"].items()} == dict.fromkeys(CLASSES, 3)
        assert np.mean([v["pointing_game"] for v in s["per_class"].values()]) == \
            pytest.approx(s["pointing_game"])
        assert s["mass_in_box"] is None or 0 <= s["mass_in_box"] <= 1
        assert s["mass_to_area_ratio"] is None or s["mass_to_area_ratio"] >= 0
        assert s["explain_seconds"] >= 0

    table = (out / "realscan.md").read_text()
    assert table in printed
    assert table.startswith("# Real scans: scans")
    assert "Slice-level split" in table
    rows = [s for s in table.splitlines() if s.startswith("| ")]
    header = rows[0]
    assert "sens meningioma" in header and "spec pituitary" in header
    for r in record["results"]:
        assert any(row.startswith(f"| {r['label']} | {r['accuracy']:.3f} |") for row in rows)
    assert "| proposed MDBN (dense) | epsilon_plus |" in table
    assert all(row.count("|") == header.count("|") for row in rows[:len(models) + 1])
    assert "| proposed MDBN (dense) | " + f"{by['proposed']['accuracy']:.3f}" in table
    assert "box hidden" in table and "Pointing game per class" in table

    # The saved model is the one measured: it loads and predicts the same classes.
    import pymdbn.io

    saved = pymdbn.io.load(tmp_path / "m" / "proposed.pmdbn")
    assert sorted(os.listdir(tmp_path / "m")) == ["proposed.pmdbn"]
    modality, X, y, masks, _ = bench.load(str(folder), 16, None, 0)
    _, test = bench.split(y, 0.25, 0)
    pred = saved.predict({modality: X[test]})
    assert np.mean(pred == y[test]) == pytest.approx(by["proposed"]["accuracy"])


def test_saved_models_are_loaded_not_refitted(bench, tmp_path, capsys):
    folder = make_folder(tmp_path / "scans")
    saved = tmp_path / "m"
    base = [str(folder), *TINY, "--models", "proposed", "--composites", "epsilon"]
    assert bench.main([*base, "--out", str(tmp_path / "a"), "--save-models", str(saved)]) == 0
    assert bench.main([*base, "--out", str(tmp_path / "b"), "--load-models", str(saved)]) == 0
    a, b = (json.loads((tmp_path / d / "realscan.json").read_text())["results"][0]
            for d in "ab")
    assert not a["loaded"] and a["fit_seconds"] > 0
    assert b["loaded"] and b["fit_seconds"] is None
    for key in ("accuracy", "confusion_matrix", "occlusion"):
        assert a[key] == b[key]
    assert a["relevance"][0]["pointing_game"] == b["relevance"][0]["pointing_game"]
    assert "| loaded |" in (tmp_path / "b" / "realscan.md").read_text()
    capsys.readouterr()
    # Another setting than the saved model's is refused, naming it.
    other = [a if a != "2" else "3" for a in base]  # --max-epochs 3
    assert bench.main([*other, "--load-models", str(saved)]) == 2
    assert "max_epochs differ" in capsys.readouterr().err


def test_conv_pathway_option(bench):
    from pymdbn import Conv, Pool

    assert bench.parse_conv_pathway(["c32x5", "p2", "C8x3", "p3avg", "p2max", "64"]) == (
        Conv(32, 5), Pool(2), Conv(8, 3), Pool(3, "avg"), Pool(2), 64)
    with pytest.raises(bench.BenchError, match="cannot read 'c32'"):
        bench.parse_conv_pathway(["c32"])
    with pytest.raises(bench.BenchError, match="cannot read 'q2'"):
        bench.parse_conv_pathway(["q2"])


def test_tuning_options_reach_the_pymdbn_models(bench, tmp_path):
    args = bench.parse([str(tmp_path), "--augment", "0.05,none,5", "--patience", "7",
                             "--dropout", "0.2"])
    model, description, _ = bench.make_model("proposed", "image", args)
    params = model.get_params()
    assert params["n_iter_no_change"] == 7 and params["dropout"] == 0.2
    aug = params["augment"]
    assert (aug.shift, aug.flip, aug.rotation) == (0.05, "none", 5.0)
    assert "n_iter_no_change=7" in description
    for bad in ("0.1,horizontal", "x,none,5"):
        with pytest.raises(SystemExit):
            bench.parse([str(tmp_path), "--augment", bad])


def test_occlusion_counts_images_with_a_box(bench):
    """The bench's accuracies are lesion_occlusion's over the images that have a box."""
    from pymdbn.metrics.relevance import lesion_occlusion

    rng = np.random.default_rng(1)
    X, y = rng.uniform(0, 1, (30, 12, 12)), rng.integers(0, 3, 30)
    masks = np.zeros_like(X, bool)
    masks[:20, 5:7, 3:6] = True  # the last 10 images have no box

    def predict(images):
        return (np.argmax(images.reshape(len(images), -1), axis=1) % 12) // 4

    o = bench.occlusion(predict, X, y, masks, X.mean(axis=0))
    r = lesion_occlusion(predict, X[:20], y[:20], masks[:20], X.mean(axis=0))
    assert o == {"n_images": 20, "accuracy_all": r.correct.mean(),
                 "accuracy_box_hidden": r.correct_hidden.mean(),
                 "accuracy_box_only": r.correct_shown.mean()}


def test_realscan_is_reproducible_and_subsamples(bench, tmp_path, capsys):
    folder = make_folder(tmp_path / "scans", per_class=14)
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert bench.main([str(folder), *TINY, "--models", "logistic", "proposed", "--limit",
                           "36", "--composites", "epsilon", "--target", "predicted",
                           "--out", str(out)]) == 0
        runs.append(json.loads((out / "realscan.json").read_text()))
    capsys.readouterr()
    a, b = runs
    assert a["n_images"] == 36 and a["class_counts"] == {c: 12 for c in CLASSES}
    assert a["target"] == "predicted"
    for ra, rb in zip(a["results"], b["results"]):
        assert ra["confusion_matrix"] == rb["confusion_matrix"]
        assert ra["accuracy"] == rb["accuracy"]
    assert a["results"][1]["relevance"][0]["pointing_game"] == \
        b["results"][1]["relevance"][0]["pointing_game"]


def test_realscan_says_what_is_wrong_with_the_folder(bench, tmp_path, capsys):
    assert bench.main([str(tmp_path / "missing"), "--models", "logistic"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert bench.main([str(tmp_path / "empty"), "--models", "logistic"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "no class subfolders" in err
    (tmp_path / "flat" / "one").mkdir(parents=True)
    (tmp_path / "flat" / "one" / "notes.csv").write_text("x")
    assert bench.main([str(tmp_path / "flat"), "--models", "logistic"]) == 2
    assert "has no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path), "--test-size", "1.5"])
    capsys.readouterr()


def test_realscan_skips_what_it_cannot_run(bench, tmp_path, capsys, monkeypatch):
    folder = make_folder(tmp_path / "scans")
    from pymdbn import presets

    monkeypatch.delattr(presets, "convolutional", raising=False)
    monkeypatch.setattr(bench, "have_torch", lambda: False)
    assert bench.main([str(folder), *TINY, "--models", "logistic", "conv", "cnn",
                       "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    record = json.loads((tmp_path / "out" / "realscan.json").read_text())
    assert [r["model"] for r in record["results"]] == ["logistic"]
    notes = " ".join(record["notes"])
    assert "presets.convolutional" in notes and "PyTorch is not installed" in notes
    assert "Note: convolutional MDBN skipped" in (tmp_path / "out" / "realscan.md").read_text()


# -- the CNN baseline's options -----------------------------------------------------------------
def _squares(n=96, side=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.random((n, side, side)).astype(np.float32)
    X[y == 1, 4:10, 4:10] += 1.5
    return {"image": X}, y


def test_small_cnn_blocks_batch_norm_and_augmentation():
    pytest.importorskip("torch")
    from pymdbn.baselines import SmallCNN

    X, y = _squares()
    cnn = SmallCNN(blocks=3, channels=(4, 8, 8), batch_norm=True, augment="flip_shift",
                   epochs=6, batch_size=32, random_state=1).fit(X, y)
    assert len(cnn.history_) == 6
    convs = [m for m in cnn.net_ if type(m).__name__ == "Conv2d"]
    assert [c.out_channels for c in convs] == [4, 8, 8, 8]
    assert sum(type(m).__name__ == "BatchNorm2d" for m in cnn.net_) == 4
    assert np.mean(cnn.predict(X) == y) > 0.8
    again = SmallCNN(blocks=3, channels=(4, 8, 8), batch_norm=True, augment="flip_shift",
                     epochs=6, batch_size=32, random_state=1).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), cnn.predict_proba(X), rtol=1e-5)
    assert cnn.predict_proba({"image": X["image"][:0]}).shape == (0, 2)

    seen = []

    def augment(images, seed):
        seen.append((images.shape, list(seed)))
        return images[:, :, ::-1]  # channels last: a left-right mirror

    SmallCNN(epochs=2, batch_size=64, augment=augment, random_state=3).fit(X, y)
    assert seen == [((64, 16, 16, 1), [3, 0, 0]), ((32, 16, 16, 1), [3, 0, 1]),
                    ((64, 16, 16, 1), [3, 1, 0]), ((32, 16, 16, 1), [3, 1, 1])]


def test_small_cnn_rejects_bad_options():
    pytest.importorskip("torch")
    from pymdbn.baselines import SmallCNN

    X, y = _squares(n=8, side=8)
    with pytest.raises(ValueError, match="at least 16 pixels"):
        SmallCNN(blocks=4, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="channels must be 2"):
        SmallCNN(channels=(4,), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="augment must be"):
        SmallCNN(augment="rotate", epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="augment returned shape"):
        SmallCNN(augment=lambda images, seed: images[:, :4], epochs=1).fit(X, y)


def test_flip_shift_moves_all_channels_alike():
    torch = pytest.importorskip("torch")
    from pymdbn.baselines import flip_shift

    x = np.arange(6 * 8 * 8 * 2, dtype=np.float32).reshape(6, 8, 8, 2)
    out = flip_shift(x, [0, 1, 2], max_shift=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    # The second channel is the first plus 1 everywhere, before and after.
    np.testing.assert_array_equal(out[..., 1] - out[..., 0], 1)
    # Without shifts every image is itself or its mirror; both happen.
    flipped = flip_shift(x, 7, max_shift=0)
    same = [np.array_equal(a, b) for a, b in zip(flipped, x)]
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(flipped, x)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
    # A shift repeats the edge: each row of an image is a clamped, maybe mirrored window.
    assert set(np.unique(out)) <= set(np.unique(x))
    np.testing.assert_array_equal(flip_shift(x, [0, 1, 2], max_shift=2), out)
    assert not np.array_equal(flip_shift(x, [0, 1, 3], max_shift=2), out)
    t = flip_shift(torch.from_numpy(x[..., 0]), 5)
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == (6, 8, 8)
