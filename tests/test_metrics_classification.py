"""Tests for pymdbn.metrics, checked against scikit-learn."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from pymdbn.metrics import METRICS, classification_report, format_report, summarize


def _sk_specificity(y_true, y_pred, labels):
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    fp = cm.sum(axis=0) - np.diag(cm)
    tn = cm.sum() - cm.sum(axis=1) - fp
    return tn / (tn + fp)


@pytest.mark.parametrize("seed", range(5))
def test_binary_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, 60)
    score = np.clip(0.3 * y_true + rng.uniform(size=60) * 0.8, 0, 1)
    score = np.round(score, 1)  # ties, to exercise the rank-based AUC
    y_pred = (score > 0.5).astype(int)
    r = classification_report(y_true, y_pred, y_score=score)

    assert r["average"] == "binary" and r["n_samples"] == 60
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert r["sensitivity"] == pytest.approx(skm.recall_score(y_true, y_pred))
    assert r["specificity"] == pytest.approx(skm.recall_score(y_true, y_pred, pos_label=0))
    assert r["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))
    assert r["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, score))
    assert r["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    proba = np.stack([1 - score, score], axis=1)
    assert classification_report(y_true, y_pred, y_score=proba)["roc_auc"] == r["roc_auc"]


def test_binary_pos_label_and_string_labels():
    rng = np.random.default_rng(7)
    names = np.array(["benign", "malignant"])
    y_true = names[rng.integers(0, 2, 40)]
    y_pred = names[rng.integers(0, 2, 40)]
    score = rng.uniform(size=40)
    r = classification_report(y_true, y_pred, y_score=score, pos_label="malignant")
    kw = dict(pos_label="malignant")
    assert r["sensitivity"] == pytest.approx(skm.recall_score(y_true, y_pred, **kw))
    assert r["specificity"] == pytest.approx(skm.recall_score(y_true, y_pred, pos_label="benign"))
    assert r["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, **kw))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "malignant", score))
    assert r["labels"] == ["benign", "malignant"]
    # (N, 2) probability columns follow `labels`; pos_label=0 picks column 0.
    y01 = (y_true == "malignant").astype(int)
    proba = np.stack([1 - score, score], axis=1)
    r0 = classification_report(y01, 1 - (y_pred == "malignant"), y_score=proba, pos_label=0)
    assert r0["roc_auc"] == pytest.approx(skm.roc_auc_score(1 - y01, 1 - score))


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 80
    y_true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = proba.argmax(axis=1)
    r = classification_report(y_true, y_pred, y_score=proba)

    macro = dict(average="macro", zero_division=0)
    assert r["average"] == "macro"
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert r["sensitivity"] == pytest.approx(skm.recall_score(y_true, y_pred, **macro))
    assert r["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, **macro))
    assert r["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, **macro))
    assert r["specificity"] == pytest.approx(_sk_specificity(y_true, y_pred, range(k)).mean())
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba, multi_class="ovr"))
    assert r["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()


def test_zero_division_reports_zero_without_warnings():
    # No positive predictions and no positives: precision, recall, F1 undefined.
    r = classification_report([0, 0, 0], [0, 0, 0], labels=[0, 1])
    assert (r["sensitivity"], r["precision"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["specificity"] == 1.0 and r["accuracy"] == 1.0
    assert r["confusion_matrix"] == [[3, 0], [0, 0]]
    # Multi-class with a class never predicted nor present.
    r = classification_report([0, 1, 1], [0, 1, 0], labels=[0, 1, 2])
    sk = skm.precision_score(
        [0, 1, 1], [0, 1, 0], labels=[0, 1, 2], average="macro", zero_division=0
    )
    assert r["precision"] == pytest.approx(sk)


def test_auc_undefined_with_one_class_is_none():
    r = classification_report([1, 1, 1], [1, 0, 1], y_score=[0.9, 0.2, 0.8], labels=[0, 1])
    assert r["roc_auc"] is None
    assert "roc_auc" not in classification_report([0, 1], [0, 1])


def test_labels_fix_layout_and_order():
    r = classification_report([2, 0, 1], [2, 1, 1], labels=[2, 1, 0])
    assert r["labels"] == [2, 1, 0]
    sk = skm.confusion_matrix([2, 0, 1], [2, 1, 1], labels=[2, 1, 0])
    assert r["confusion_matrix"] == sk.tolist()


def test_report_is_json_serialisable_plain_types():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    r = classification_report(y, rng.integers(0, 3, 30), y_score=rng.dirichlet(np.ones(3), 30))
    assert json.loads(json.dumps(r)) == r
    assert all(type(r[m]) is float for m in METRICS)
    assert type(r["n_samples"]) is int


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(y_true=[0, 1], y_pred=[0]), "differ in length"),
        (dict(y_true=[], y_pred=[]), "empty"),
        (dict(y_true=[0, 1], y_pred=[0, 1], y_score=[0.1, np.nan]), "NaN"),
        (dict(y_true=[0, 1], y_pred=[0, 1], y_score=[0.1, 0.2, 0.3]), "rows"),
        (dict(y_true=[0, 1], y_pred=[0, 1], y_score=np.ones((2, 3))), "shape"),
        (dict(y_true=[0, 1, 2], y_pred=[0, 1, 2], y_score=np.ones((3, 2))), r"\(3, 3\)"),
        (dict(y_true=[0, 1], y_pred=[0, 1], pos_label=2), "pos_label"),
        (dict(y_true=[0, 3], y_pred=[0, 1], labels=[0, 1]), "not in labels"),
        (dict(y_true=[[0, 1]], y_pred=[[0, 1]]), "1-D"),
        (dict(y_true=[0.0, np.nan], y_pred=[0, 1]), "NaN"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        classification_report(**kwargs)


def test_summarize_mean_sd_over_seeds():
    reports = [
        classification_report([0, 1, 1, 0], [0, 1, 0, 0], y_score=s)
        for s in ([0.1, 0.9, 0.4, 0.3], [0.5, 0.4, 0.6, 0.1], [0.2, 0.8, 0.7, 0.3])
    ]
    s = summarize(reports)
    aucs = [r["roc_auc"] for r in reports]
    assert s["roc_auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert s["roc_auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert s["roc_auc"]["n"] == 3
    assert s["accuracy"] == {"mean": 0.75, "sd": 0.0, "n": 3}
    assert set(s) == set(METRICS)


def test_summarize_skips_undefined_and_rejects_bad_input():
    a = classification_report([1, 1], [1, 0], y_score=[0.9, 0.1], labels=[0, 1])
    b = classification_report([0, 1], [0, 1], y_score=[0.1, 0.9])
    s = summarize([a, b])
    assert s["roc_auc"] == {"mean": 1.0, "sd": None, "n": 1}
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    multi = classification_report([0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="mix"):
        summarize([b, multi])


def test_format_report_tables():
    r = classification_report([0, 1, 1, 0], [0, 1, 0, 0], y_score=[0.1, 0.9, 0.4, 0.3])
    text = format_report(r)
    assert "| sensitivity | 0.500 |" in text
    assert "| roc_auc | 1.000 |" in text
    assert "| 1 | 1 | 1 |" in text  # confusion-matrix row of true class 1
    s = format_report(summarize([r, classification_report([0, 1], [1, 1])]))
    assert "| accuracy | 0.625 ± 0.177 |" in s
    assert "Confusion" not in s
    undefined = classification_report([1, 1], [1, 0], y_score=[0.9, 0.1], labels=[0, 1])
    assert "| roc_auc | n/a |" in format_report(undefined)


@pytest.mark.parametrize(
    "classes, expected",
    [
        (["cancer", "healthy"], "cancer"),  # alphabetical order would make it 0
        (["healthy", "cancer"], "cancer"),
        (["Normal", "tumor"], "tumor"),
        (["glioma", "No_Tumor"], "glioma"),
        (["notumor", "meningioma"], "meningioma"),
        (["benign", "malignant"], "malignant"),
        (np.array(["malignant", "negative"]), "malignant"),
        ([0, 1], 1),
        (np.array([1, 0]), 1),
        ([0], 1),
    ],
)
def test_positive_class_rule(classes, expected):
    from pymdbn.metrics import positive_class

    got = positive_class(classes)
    assert got == expected and type(got) is type(expected)


def test_positive_class_explicit_and_errors():
    from pymdbn.metrics import positive_class

    assert positive_class(["cancer", "healthy"], pos_label="healthy") == "healthy"
    assert positive_class(np.array([0, 1]), pos_label="0") == 0  # a CLI string
    with pytest.raises(ValueError, match=r"pos_label='x' is not one of the classes"):
        positive_class(["cancer", "healthy"], pos_label="x")
    for ambiguous in (["a", "b"], ["healthy", "normal"], ["0", "1"], [1, 2],
                      ["cancer", "healthy", "other"]):
        with pytest.raises(ValueError, match="--positive-class"):
            positive_class(ambiguous)


def test_report_names_the_positive_class_by_the_rule():
    # Alphabetically 'cancer' is class 0; sensitivity must still be its recall.
    y_true = np.array(["cancer"] * 10 + ["healthy"] * 30)
    y_pred = y_true.copy()
    y_pred[:1] = "healthy"   # cancer recall 0.9
    y_pred[10:20] = "cancer"  # healthy recall 2/3
    proba = np.where(y_pred == "cancer", 0.8, 0.3)
    r = classification_report(y_true, y_pred, np.stack([proba, 1 - proba], 1),
                              labels=["cancer", "healthy"])
    assert r["positive_class"] == "cancer"
    assert r["sensitivity"] == pytest.approx(0.9)
    assert r["specificity"] == pytest.approx(20 / 30)
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "cancer", proba))
    assert "positive class: cancer" in format_report(r)
    flipped = classification_report(y_true, y_pred, pos_label="healthy")
    assert flipped["positive_class"] == "healthy"
    assert flipped["sensitivity"] == pytest.approx(20 / 30)
    assert json.loads(json.dumps(r)) == r
    with pytest.raises(ValueError, match="pos_label"):
        classification_report(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="labels="):
        classification_report(["healthy"], ["healthy"])
    assert classification_report([0, 1], [0, 1])["positive_class"] == 1
    assert "positive_class" not in classification_report([0, 1, 2], [0, 1, 2])
