"""The pymdbn command: the demo end to end, train/evaluate/explain, bad arguments."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pymdbn.cli import main


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-patients", "40", "--size", "16",
                 "--model-size", "8", "--pretrain-epochs", "2", "--quiet"]) == 0
    for name in ("metrics.md", "metrics.json", "heatmaps.png", "modality_shares.png",
                 "explanation_quality.json", "explanation_quality.md", "model.npz"):
        assert (out / name).exists(), name
    from pymdbn import load
    model = load(out / "model.npz")
    assert model.scaler_.shapes_["brain"] == (8, 8)  # resized for the model
    assert model.pretrain_epochs == 2 and model.per_image and model.dropout == 0.5
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_samples"] == 10
    assert 0 <= report["accuracy"] <= 1
    quality = json.loads((out / "explanation_quality.json").read_text())
    assert "modality_attribution_accuracy" in quality["epsilon"]
    assert "modality_attribution_accuracy" in quality["epsilon_plus"]
    assert "modality_attribution_accuracy" in quality["epsilon_plus/healthy_mean"]
    rows = [r for r in quality["epsilon_plus"].values() if isinstance(r, dict)]
    assert rows and all(0 <= r["lesion_relevance_positive"] <= 1 for r in rows)


def _image_folder(root, rng):
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 120, (20, 24)).astype(np.uint8)
            if label == "malignant":
                img[6:12, 8:14] = 250
            Image.fromarray(img).save(root / label / f"{i}.png")


def test_train_evaluate_explain_on_an_image_folder(tmp_path):
    _image_folder(tmp_path / "data", np.random.default_rng(0))
    model = tmp_path / "model.npz"
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(model), "--size", "16",
                 "--preset", "mdbn", "--quiet"]) == 0
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--out", str(report)]) == 0
    assert json.loads(report.read_text())["n_samples"] == 24
    assert main(["explain", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "expl"), "--n", "4"]) == 0
    assert (tmp_path / "expl" / "heatmaps.png").exists()
    rel = np.load(tmp_path / "expl" / "relevance.npz")
    assert rel["relevance_image"].shape == (4, 16, 16)
    assert main(["explain", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "ref"), "--n", "4", "--reference-class", "benign"]) == 0
    against = np.load(tmp_path / "ref" / "relevance.npz")["relevance_image"]
    assert against.shape == (4, 16, 16) and not np.allclose(against, rel["relevance_image"])
    assert json.loads((tmp_path / "ref" / "shares.json").read_text())["reference_class"] == \
        "benign"
    proc = subprocess.run([sys.executable, "-m", "pymdbn", "explain", "--model", str(model),
                           "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bad"),
                           "--reference-class", "healthy"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0 and "'healthy' is not a class" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["demo"],
    ["demo", "--out", "x", "--size", "abc"],
    ["demo", "--out", "x", "--size", "16", "--model-size", "6"],
    ["explain", "--model", "nowhere.npz", "--data", "nowhere", "--out", "x"],
    ["frobnicate"],
])
def test_bad_arguments_exit_non_zero_with_one_line(argv, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pymdbn", *argv], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "error" in proc.stderr


def test_help_lists_every_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pymdbn", "--help"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0
    for cmd in ("demo", "train", "evaluate", "explain", "experiment", "bench", "digits"):
        assert cmd in proc.stdout


def test_experiment_table1_writes_the_table_and_figures(tmp_path):
    out = tmp_path / "t1"
    assert main(["experiment", "table1", "--out", str(out), "--seeds", "1", "--n-patients",
                 "40", "--size", "16", "--model-size", "16", "--quiet"]) == 0
    for name in ("table1.md", "table1.csv", "figure4.png", "localisation.json"):
        assert (out / name).exists(), name
    table = (out / "table1.md").read_text()
    for system in ("DBN", "MDBN", "e-MDBN", "proposed"):
        assert f"| {system} |" in table
    loc = json.loads((out / "localisation.json").read_text())
    assert set(loc) == {"epsilon_plus", "epsilon_plus/healthy_mean"}
    assert all("lesion_relevance_positive" in row for row in loc["epsilon_plus"].values())


def test_healthy_reference():
    from pymdbn.experiments import healthy_reference

    X = {"brain": np.arange(12.0).reshape(3, 2, 2)}
    ref = healthy_reference(X, [0, 1, 0])
    np.testing.assert_array_equal(ref["brain"], (X["brain"][0] + X["brain"][2]) / 2)
    with pytest.raises(ValueError, match="no training sample of class 0"):
        healthy_reference(X, [1, 1, 1])


def test_sensitivity_by_lesion_subset():
    from pymdbn.experiments import sensitivity_by_lesion_subset

    lesions = {"brain": np.array([1, 1, 0, 0, 1], bool), "bone": np.array([0, 1, 1, 0, 0], bool)}
    got = sensitivity_by_lesion_subset([1, 1, 1, 0, 1], [1, 0, 1, 1, 0], lesions)
    assert list(got) == ["bone", "brain", "brain+bone"]
    assert got["brain"] == {"n": 2, "sensitivity": 0.5}
    assert got["brain+bone"] == {"n": 1, "sensitivity": 0.0}


# --- class names, the positive class, --split --------------------------------------


def _two_class_folder(root, names, n_each, rng, unmarked=0):
    """PNG folders for two classes; the first name's images carry a bright block, except
    its last ``unmarked`` ones (which look like the second class)."""
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(n_each[c]):
            img = rng.integers(0, 100, (16, 16)).astype(np.uint8)
            if c == 0 and i < n_each[c] - unmarked:
                img[4:10, 5:11] = 250
            Image.fromarray(img).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def cancer_model(tmp_path_factory):
    """A model trained by the CLI on cancer/ and healthy/ folders, and held-out folders
    where the recall of cancer and of healthy differ."""
    tmp = tmp_path_factory.mktemp("names")
    rng = np.random.default_rng(0)
    _two_class_folder(tmp / "train", ("cancer", "healthy"), (16, 16), rng)
    _two_class_folder(tmp / "test", ("cancer", "healthy"), (10, 10), rng, unmarked=4)
    model = tmp / "model.npz"
    assert main(["train", "--data", str(tmp / "train"), "--out", str(model), "--size", "8",
                 "--preset", "mdbn", "--quiet"]) == 0
    return tmp, model


def test_train_keeps_class_names_and_evaluate_reports_cancer_as_positive(cancer_model,
                                                                         capsys):
    import pymdbn
    from pymdbn.data import load_image_folder

    tmp, path = cancer_model
    model = pymdbn.load(path)
    assert model.classes_.tolist() == ["cancer", "healthy"]  # names, not [0, 1]
    ds = load_image_folder(tmp / "test", size=8)
    truth = np.asarray(ds.classes)[ds.y]
    pred = model.predict(ds.X)
    recall = {c: float(np.mean(pred[truth == c] == c)) for c in ("cancer", "healthy")}
    assert recall["cancer"] != recall["healthy"]  # the case tells the two apart
    out = tmp / "report.json"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(path), "--data", str(tmp / "test"),
                 "--out", str(out)]) == 0
    assert "positive class: cancer" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["positive_class"] == "cancer"
    assert report["labels"] == ["cancer", "healthy"]
    assert report["sensitivity"] == pytest.approx(recall["cancer"])
    assert report["specificity"] == pytest.approx(recall["healthy"])
    # ROC AUC from the cancer column of predict_proba (column 0 here, not column 1).
    from sklearn.metrics import roc_auc_score
    score = model.predict_proba(ds.X)[:, 0]
    assert report["roc_auc"] == pytest.approx(roc_auc_score(truth == "cancer", score))

    flipped = tmp / "flipped.json"
    assert main(["evaluate", "--model", str(path), "--data", str(tmp / "test"),
                 "--out", str(flipped), "--positive-class", "healthy"]) == 0
    report = json.loads(flipped.read_text())
    assert report["positive_class"] == "healthy"
    assert report["sensitivity"] == pytest.approx(recall["healthy"])


def test_explain_explains_the_positive_class(cancer_model):
    tmp, model = cancer_model
    out = tmp / "expl"
    assert main(["explain", "--model", str(model), "--data", str(tmp / "test"),
                 "--out", str(out), "--n", "3"]) == 0
    shares = json.loads((out / "shares.json").read_text())
    assert shares["explained_class"] == "cancer" and shares["target"] == [0, 0, 0]
    assert main(["explain", "--model", str(model), "--data", str(tmp / "test"),
                 "--out", str(out), "--n", "3", "--positive-class", "healthy",
                 "--overwrite"]) == 0
    shares = json.loads((out / "shares.json").read_text())
    assert shares["explained_class"] == "healthy" and shares["target"] == [1, 1, 1]


def test_ambiguous_class_names_ask_for_positive_class(tmp_path, capsys):
    _two_class_folder(tmp_path / "data", ("a", "b"), (6, 6), np.random.default_rng(1))
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(model),
                 "--size", "8", "--preset", "mdbn", "--quiet"]) == 0
    assert "pass --positive-class" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "--positive-class" in err and "['a', 'b']" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--positive-class", "a"]) == 0
    assert "positive class: a" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--positive-class", "c"]) == 2
    assert "'c' is not one of the classes" in capsys.readouterr().err


def _npz(path, rng):
    arrays = {}
    for split, n in (("train", 30), ("val", 6), ("test", 20)):
        y = np.arange(n) % 2
        images = rng.integers(0, 80, (n, 8, 8)).astype(np.uint8)
        images[y == 1, 2:5, 2:5] = 250
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, y[:, None]
    np.savez(path, **arrays)


def test_npz_train_uses_the_train_split_and_evaluate_the_test_split(tmp_path, capsys):
    import pymdbn

    _npz(tmp_path / "m.npz", np.random.default_rng(2))
    model = tmp_path / "model.npz"
    assert main(["train", "--data", str(tmp_path / "m.npz"), "--out", str(model), "--size",
                 "8", "--preset", "mdbn", "--quiet", "--classes", "benign,malignant"]) == 0
    assert "(30 samples" in capsys.readouterr().out  # the train split, not test's 20
    assert pymdbn.load(model).classes_.tolist() == ["benign", "malignant"]
    report = tmp_path / "r.json"
    common = ["evaluate", "--model", str(model), "--data", str(tmp_path / "m.npz"),
              "--classes", "benign,malignant", "--out", str(report), "--overwrite"]
    assert main(common) == 0
    got = json.loads(report.read_text())
    assert got["n_samples"] == 20 and got["positive_class"] == "malignant"
    assert main(common + ["--split", "val"]) == 0
    assert json.loads(report.read_text())["n_samples"] == 6
    # Without names the labels are the strings '0'/'1', which no rule ranks.
    assert main([a for a in common if a not in ("--classes", "benign,malignant")]) == 2
    assert "not classes of the model" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "m.npz"), "--out", str(tmp_path / "x.npz"),
                 "--split", "test", "--size", "8", "--preset", "mdbn", "--quiet"]) == 0
    assert "(20 samples" in capsys.readouterr().out
    assert pymdbn.load(tmp_path / "x.npz").classes_.tolist() == ["0", "1"]
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "y.npz"),
                 "--split", "val"]) == 2
    assert "--split applies to .npz data only" in capsys.readouterr().err


# --- outputs: never overwritten silently, checked before any work ------------------


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any model is built or phantoms generated."""
    import pymdbn.experiments
    import pymdbn.presets

    def boom(*args, **kwargs):
        raise AssertionError("work started before the checks")

    monkeypatch.setattr(pymdbn.experiments, "_make_system", boom)
    monkeypatch.setattr(pymdbn.experiments, "_phantoms", boom)
    for name in ("proposed", "e_mdbn", "mdbn", "early_fusion_dbn"):
        monkeypatch.setattr(pymdbn.presets, name, boom)


def test_existing_outputs_are_refused_without_overwrite(tmp_path, capsys, no_training):
    model = tmp_path / "model.npz"
    model.write_bytes(b"precious")
    data = tmp_path / "nowhere"  # the output check comes before the data are read
    assert main(["train", "--data", str(data), "--out", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{model} exists" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and model.read_bytes() == b"precious"
    assert main(["train", "--data", str(data), "--out", str(model), "--overwrite"]) == 2
    assert "data path does not exist" in capsys.readouterr().err  # got past the check

    report = tmp_path / "report.json"
    report.write_text("{}")
    assert main(["evaluate", "--model", str(model), "--data", str(data),
                 "--out", str(report)]) == 2
    assert f"{report} exists" in capsys.readouterr().err

    (tmp_path / "expl").mkdir()
    (tmp_path / "expl" / "shares.json").write_text("{}")
    assert main(["explain", "--model", str(model), "--data", str(data),
                 "--out", str(tmp_path / "expl")]) == 2
    assert "shares.json exists" in capsys.readouterr().err

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "metrics.md").write_text("old")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    assert "metrics.md exists" in capsys.readouterr().err
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "table1.md").write_text("old")
    assert main(["experiment", "table1", "--out", str(tmp_path / "t1"), "--quiet"]) == 2
    assert "table1.md exists" in capsys.readouterr().err
    assert (tmp_path / "demo" / "metrics.md").read_text() == "old"


def test_unwritable_output_is_reported_before_any_work(tmp_path, capsys, no_training):
    blocker = tmp_path / "file.txt"  # a regular file: nothing can be created under it,
    blocker.write_text("x")          # even as root
    cases = [["train", "--data", str(tmp_path / "nowhere"), "--out",
              str(blocker / "x" / "model.npz")],
             ["demo", "--out", str(blocker / "x"), "--quiet"],
             ["experiment", "table1", "--out", str(blocker / "x"), "--quiet"],
             ["evaluate", "--model", "nowhere.npz", "--data", "nowhere", "--out",
              str(blocker / "x" / "r.json")],
             ["explain", "--model", "nowhere.npz", "--data", "nowhere", "--out",
              str(blocker / "x")]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "cannot write to the output folder" in err and str(blocker) in err, err
        assert len(err.strip().splitlines()) == 1
    assert main(["demo", "--out", str(blocker), "--quiet"]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys, no_training):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["demo", "--out", str(folder), "--quiet"]) == 2
        assert "cannot write to the output folder" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("argv, message", [
    (["explain", "--model", "m", "--data", "d", "--out", "o", "--n", "0"],
     "--n must be a positive integer, got 0"),
    (["demo", "--out", "o", "--n-patients", "-3"], "--n-patients must be a positive integer"),
    (["demo", "--out", "o", "--size", "1.5"], "--size must be a positive integer, got 1.5"),
    (["demo", "--out", "o", "--model-size", "0"], "--model-size must be a positive integer"),
    (["demo", "--out", "o", "--pretrain-epochs", "0"],
     "--pretrain-epochs must be a positive integer"),
    (["demo", "--out", "o", "--difficulty", "1.5"], "--difficulty must be a number in [0, 1]"),
    (["demo", "--out", "o", "--difficulty", "nan"], "--difficulty must be a number in [0, 1]"),
    (["experiment", "table1", "--out", "o", "--seeds", "0"],
     "--seeds must be a positive integer, got 0"),
    (["train", "--data", "d", "--out", "o", "--size", "0"], "--size must be a positive"),
    (["train", "--data", "d", "--out", "o", "--classes", "a"], "--classes must be two"),
])
def test_numbers_are_validated(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_model_size_must_divide_size_before_any_work(tmp_path, capsys, no_training):
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "16", "--model-size",
                 "6"]) == 2
    assert "--model-size 6 must divide --size 16" in capsys.readouterr().err


# --- optional dependencies are checked first ----------------------------------------


def test_missing_matplotlib_fails_before_training(tmp_path, capsys, monkeypatch, no_training):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    for argv in (["demo", "--out", str(tmp_path / "d"), "--quiet"],
                 ["experiment", "table1", "--out", str(tmp_path / "t"), "--quiet"],
                 ["explain", "--model", "nowhere.npz", "--data", "nowhere", "--out",
                  str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "needs matplotlib" in err and "pip install matplotlib" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # nothing written either


def test_table1_notes_a_missing_torch_at_the_start(tmp_path, capsys, monkeypatch):
    import importlib.util

    import pymdbn.experiments as ex

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else find_spec(name, *a))

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the start")

    monkeypatch.setattr(ex, "_phantoms", stop)
    with pytest.raises(RuntimeError, match="stopped"):
        ex.run_table1(tmp_path / "t1", seeds=(0,), verbose=True)
    assert "CNN skipped: PyTorch is not installed" in capsys.readouterr().out


def test_demo_saves_the_model_before_evaluating(tmp_path, monkeypatch):
    import pymdbn.experiments as ex

    def fail(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(ex, "sensitivity_by_lesion_subset", fail)
    monkeypatch.setattr("pymdbn.metrics.classification_report", fail)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        ex.run_demo(tmp_path / "d", n_patients=40, size=16, model_size=8, pretrain_epochs=1,
                    verbose=False)
    import pymdbn
    assert pymdbn.load(tmp_path / "d" / "model.npz").classes_.tolist() == ["cancer",
                                                                            "healthy"]


def test_healthy_reference_of_named_classes():
    from pymdbn.experiments import healthy_reference

    X = {"bone": np.arange(12.0).reshape(3, 2, 2)}
    ref = healthy_reference(X, np.array(["cancer", "healthy", "cancer"]))  # the negative one
    np.testing.assert_array_equal(ref["bone"], X["bone"][1])
    ref = healthy_reference(X, ["normal", "normal", "normal"])
    np.testing.assert_array_equal(ref["bone"], X["bone"].mean(axis=0))
    with pytest.raises(ValueError, match=r"among \['a', 'b'\]: pass negative="):
        healthy_reference(X, ["a", "b", "a"])
    with pytest.raises(ValueError, match="negative="):
        healthy_reference(X, ["cancer", "cancer", "cancer"])
    np.testing.assert_array_equal(healthy_reference(X, ["a", "b", "a"], "b")["bone"],
                                  X["bone"][1])
