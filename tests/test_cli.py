"""The pymdbn command: the demo end to end, train/evaluate/explain, bad arguments."""

import json
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
