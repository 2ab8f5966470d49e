"""Classify and explain real scans: pymdbn's models against logistic regression and a CNN.

Usage::

    python bench/bench_realscan.py FOLDER [--size 64] [--seed 0] [--test-size 0.25]
        [--models logistic proposed conv cnn] [--composites epsilon epsilon_plus]
        [--target true|predicted] [--limit N] [--out DIR]

FOLDER holds one subfolder per class of images, each with an optional YOLO box file
``NAME.txt`` of the lesion beside ``NAME.png`` (the layout that
:func:`pymdbn.data.load_image_folder` reads, e.g. the figshare brain tumour slices). One
stratified random train/test split of the images; every model is trained and evaluated
in the same run, with fixed seeds, so a rerun gives the same split and models.

The split is at the level of images (slices): a folder of images does not say which
slices come from one patient, so slices of one patient may be on both sides and the
accuracy is optimistic against a patient-level split. The output says so.

Per model: accuracy, per-class sensitivity and specificity (one class against the
rest), macro F1, macro ROC AUC, fit and predict seconds. For pymdbn's models and each
LRP composite, over the test images with a box: the share of positive relevance inside
the box, the box's share of the image, their ratio (1 = no better than relevance spread
uniformly) and the pointing game (the most relevant pixel inside the box; chance is the
box's area share), explaining the true class by default (``--target predicted``: the
predicted class).

Prints a markdown table and a line starting with ``JSON `` (the whole record); ``--out
DIR`` also writes ``realscan.json`` and ``realscan.md`` there.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine_info  # noqa: E402

MODELS = ("logistic", "proposed", "conv", "cnn")
LABELS = {"logistic": "logistic regression", "proposed": "proposed MDBN (dense)",
          "conv": "convolutional MDBN", "cnn": "CNN"}
SPLIT_NOTE = ("slice-level split: the folder does not say which slices come from one patient, "
              "so slices of one patient may be on both sides and accuracy is optimistic")


class BenchError(Exception):
    """A problem with the input folder or the options, reported without a traceback."""


# -- data ---------------------------------------------------------------------------------------
def load(folder, size, limit, seed):
    """The folder's images, labels, box masks and class names, optionally subsampled."""
    from pymdbn.data import DataLoadError, load_image_folder

    if not os.path.isdir(folder):
        raise BenchError(f"{folder} is not a folder (expected one subfolder per class of "
                         "images, e.g. glioma/ meningioma/ pituitary/, with YOLO NAME.txt boxes)")
    try:
        data = load_image_folder(folder, size=size)
    except DataLoadError as exc:
        raise BenchError(f"cannot read {folder} as an image folder (one subfolder per class "
                         f"of images, YOLO NAME.txt boxes beside them): {exc}") from None
    (modality,) = data.X
    X, y, masks = data.X[modality], data.y, data.masks[modality]
    if len(data.classes) < 2:
        raise BenchError(f"{folder} has one class folder ({data.classes[0]}); "
                         "classification needs at least two")
    if limit is not None and limit < len(y):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y,
                                   random_state=seed)
        keep = np.sort(keep)
        X, y = X[keep], y[keep]
        masks = None if masks is None else masks[keep]
    return modality, X, y, masks, list(data.classes)


def split(y, test_size, seed):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(np.arange(len(y)), test_size=test_size, stratify=y,
                                random_state=seed)
    except ValueError as exc:
        raise BenchError(f"cannot split {len(y)} images stratified with test size "
                         f"{test_size}: {exc}") from None


# -- models -------------------------------------------------------------------------------------
def have_torch():
    return importlib.util.find_spec("torch") is not None


def augmenter(seed):
    """pymdbn.ImageAugmenter when the package has it, else the CNN's own flips and shifts."""
    try:
        from pymdbn.augment import ImageAugmenter
    except ImportError:
        return "flip_shift", "flips and shifts (pymdbn.baselines.flip_shift)"
    return ImageAugmenter(), "pymdbn.ImageAugmenter()"


def make_model(name, modality, args):
    """(estimator, description, input kind 'flat' or 'dict')."""
    from pymdbn import presets

    seed = args.seed
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(),
                              LogisticRegression(C=args.logistic_c, max_iter=2000,
                                                 random_state=seed))
        return model, (f"pixels z-scored per pixel, LogisticRegression(C={args.logistic_c}, "
                       "max_iter=2000)"), "flat"
    overrides = {"random_state": seed}
    if args.pretrain_epochs is not None:
        overrides["pretrain_epochs"] = args.pretrain_epochs
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.patience is not None:
        overrides["n_iter_no_change"] = args.patience
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    if args.augment is not None:
        from pymdbn.augment import ImageAugmenter

        shift, flip, rotation = args.augment
        overrides["augment"] = ImageAugmenter(shift=shift, flip=flip, rotation=rotation)
    if name == "proposed":
        kwargs = dict(overrides)
        if args.pathway:
            kwargs["pathway"] = tuple(args.pathway)
        if args.joint_units:
            kwargs["joint_units"] = tuple(args.joint_units)
        model = presets.proposed([modality], **kwargs)
        return model, f"pymdbn.presets.proposed([{modality!r}], {_kw(kwargs)})", "dict"
    if name == "conv":
        kwargs = dict(overrides)
        if args.conv_pathway:
            kwargs["pathway"] = parse_conv_pathway(args.conv_pathway)
        elif hasattr(presets, "conv_pathway") and args.size != 64:
            kwargs["pathway"] = presets.conv_pathway(args.size)
        model = presets.convolutional([modality], **kwargs)
        return model, f"pymdbn.presets.convolutional([{modality!r}], {_kw(kwargs)})", "dict"
    if name == "cnn":
        from pymdbn.baselines import SmallCNN

        augment, how = augmenter(seed)
        model = SmallCNN(blocks=len(args.cnn_channels), channels=tuple(args.cnn_channels),
                         batch_norm=True, augment=augment, epochs=args.cnn_epochs,
                         random_state=seed)
        return model, (f"SmallCNN: {len(args.cnn_channels)} blocks of 3x3 conv + batch norm + "
                       f"ReLU + 2x2 max-pool, channels {tuple(args.cnn_channels)}, "
                       f"{args.cnn_epochs} epochs of Adam, augmentation: {how}"), "dict"
    raise BenchError(f"unknown model {name!r}")


def _augment_spec(text):
    """``SHIFT,FLIP,ROTATION`` (e.g. ``0.1,horizontal,10``) as (float, str, float)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected SHIFT,FLIP,ROTATION, got {text!r}")
    try:
        return float(parts[0]), parts[1], float(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"SHIFT and ROTATION must be numbers, got {text!r}")


def parse_conv_pathway(tokens):
    """``c32x5`` Conv(32, 5), ``p2`` Pool(2), ``p2avg`` Pool(2, 'avg'), ``256`` dense."""
    from pymdbn import Conv, Pool

    layers = []
    for token in tokens:
        t = token.lower()
        try:
            if t.startswith("c"):
                filters, kernel = t[1:].split("x")
                layers.append(Conv(int(filters), int(kernel)))
            elif t.startswith("p"):
                mode = "avg" if t.endswith("avg") else "max"
                layers.append(Pool(int(t[1:].removesuffix("avg").removesuffix("max")), mode))
            else:
                layers.append(int(t))
        except ValueError:
            raise BenchError(f"--conv-pathway: cannot read {token!r} (c<filters>x<kernel>, "
                             "p<size>[avg|max] or a number of dense units)") from None
    return tuple(layers)


def _kw(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# -- metrics ------------------------------------------------------------------------------------
def classification(y_true, y_pred, proba, classes):
    from pymdbn.metrics.classification import classification_report

    labels = list(range(len(classes)))
    report = classification_report(y_true, y_pred, y_score=proba if len(classes) > 2 else
                                   proba[:, 1], labels=labels,
                                   pos_label=1 if len(classes) == 2 else None)
    cm = np.asarray(report["confusion_matrix"], float)
    n = cm.sum()
    per_class = {}
    for k, name in enumerate(classes):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        tn = n - tp - fn - fp
        per_class[name] = {
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
            "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else None,
            "support": int(tp + fn)}
    f1 = [v["f1"] for v in per_class.values() if v["f1"] is not None]
    return {"accuracy": report["accuracy"], "macro_f1": float(np.mean(f1)),
            "macro_sensitivity": float(np.mean([v["sensitivity"] for v in per_class.values()
                                                if v["sensitivity"] is not None])),
            "macro_specificity": float(np.mean([v["specificity"] for v in per_class.values()
                                                if v["specificity"] is not None])),
            "roc_auc": report.get("roc_auc"), "per_class": per_class,
            "confusion_matrix": report["confusion_matrix"]}


def localisation(model, modality, X, masks, targets, composite, classes=None):
    """LRP of ``targets`` on X scored against the box masks (per target class too, when
    ``classes`` names them)."""
    from pymdbn.metrics.relevance import pointing_game, relevance_mass_accuracy

    has_box = masks.reshape(len(masks), -1).any(axis=1)
    t0 = time.perf_counter()
    explanation = model.explain({modality: X[has_box]}, target=targets[has_box],
                                composite=composite)
    seconds = time.perf_counter() - t0
    R = np.asarray(explanation.relevance[modality], float)
    boxes = masks[has_box]
    area = boxes.reshape(len(boxes), -1).mean(axis=1)
    mass = relevance_mass_accuracy(R, boxes)
    pointing = pointing_game(R, boxes).astype(float)
    # Zhang et al.'s 15-pixel tolerance was for ~224-pixel inputs: the same share of the side.
    tolerance = max(1, round(15 * boxes.shape[-1] / 224))
    pointing_tol = pointing_game(R, boxes, tolerance=tolerance).astype(float)
    defined = np.isfinite(mass)
    per_class = {}
    for k, name in enumerate(classes or []):
        of = targets[has_box] == k
        if of.any():
            per_class[name] = {"n_images": int(of.sum()),
                               "pointing_game": float(np.mean(pointing[of])),
                               "mass_to_area_ratio": (float(np.mean(
                                   mass[of & defined] / area[of & defined]))
                                   if (of & defined).any() else None)}
    return {"composite": composite, "per_class": per_class, "n_images": int(has_box.sum()),
            "n_without_positive_relevance": int((~defined).sum()),
            "mass_in_box": float(np.mean(mass[defined])) if defined.any() else None,
            "box_area_share": float(np.mean(area)),
            "mass_to_area_ratio": (float(np.mean(mass[defined] / area[defined]))
                                   if defined.any() else None),
            "pointing_game": float(np.mean(pointing)),
            "pointing_tolerance": tolerance,
            "pointing_game_tolerant": float(np.mean(pointing_tol)),
            "pointing_chance": float(np.mean(area)),
            "explain_seconds": seconds}


def occlusion(predict, X, y, masks, fill):
    """Accuracy over the images with a box, unchanged, with the box hidden (its pixels
    replaced by ``fill``, the mean training image: what an average slice has there) and
    with only the box shown (:func:`pymdbn.metrics.relevance.lesion_occlusion`)."""
    from pymdbn.metrics.relevance import lesion_occlusion

    has_box = masks.reshape(len(masks), -1).any(axis=1)
    r = lesion_occlusion(predict, X[has_box], y[has_box], masks[has_box], fill)
    return {"n_images": int(has_box.sum()),
            "accuracy_all": float(r.correct.mean()),
            "accuracy_box_hidden": float(r.correct_hidden.mean()),
            "accuracy_box_only": float(r.correct_shown.mean())}


def load_fitted(model, name, description, folder):
    """The model saved as ``folder/<name>.pmdbn`` by ``--save-models``, or None (no folder,
    no such file, or not a pymdbn model). Its parameters must be this run's."""
    if not folder or not hasattr(model, "save"):
        return None
    path = os.path.join(folder, f"{name}.pmdbn")
    if not os.path.exists(path):
        return None
    import pymdbn

    fitted = pymdbn.load(path)
    mine, theirs = model.get_params(deep=False), fitted.get_params(deep=False)
    differ = sorted(k for k in mine if k not in theirs or repr(mine[k]) != repr(theirs[k]))
    if differ:
        raise BenchError(f"{path} was fitted with other parameters than this run's "
                         f"{description} ({', '.join(differ)} differ)")
    return fitted


# -- one model ----------------------------------------------------------------------------------
def run_model(name, modality, data, train, test, classes, args, log):
    X, y, masks = data
    model, description, kind = make_model(name, modality, args)
    log(f"== {LABELS[name]}: {description}")
    if kind == "flat":
        def as_input(images):
            return images.reshape(len(images), -1)
    else:
        def as_input(images):
            return {modality: images}

    def inputs(idx):
        return as_input(X[idx])
    loaded = load_fitted(model, name, description, args.load_models)
    if loaded is not None:
        model = loaded
        log(f"   loaded {os.path.join(args.load_models, name + '.pmdbn')} (not refitted)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if loaded is None:
            model.fit(inputs(train), y[train])
        fit_seconds = None if loaded is not None else time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = np.asarray(model.predict_proba(inputs(test)))
        predict_seconds = time.perf_counter() - t0
    classes_fit = np.asarray(model.classes_)
    pred = classes_fit[np.argmax(proba, axis=1)]
    # Columns of predict_proba follow classes_; the metrics want one column per label.
    full = np.zeros((len(test), len(classes)))
    full[:, classes_fit.astype(int)] = proba
    result = {"model": name, "label": LABELS[name], "description": description,
              "fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
              "loaded": loaded is not None,
              **classification(y[test], pred, full, classes),
              "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})}
    for w in result["warnings"]:
        log(f"   warning: {w}")
    log(f"   accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f}, "
        f"fit {_seconds(fit_seconds)}")
    if args.save_models and hasattr(model, "save") and loaded is None:
        path = os.path.join(args.save_models, f"{name}.pmdbn")
        model.save(path)
        log(f"   saved {path}")
    if masks is not None:
        def predict(images):
            return classes_fit[np.argmax(model.predict_proba(as_input(images)), axis=1)]

        result["occlusion"] = occlusion(predict, X[test], y[test], masks[test],
                                        X[train].mean(axis=0))
        o = result["occlusion"]
        log(f"   box hidden: accuracy {o['accuracy_box_hidden']:.3f}, box only: "
            f"{o['accuracy_box_only']:.3f} (all {o['accuracy_all']:.3f})")
    if hasattr(model, "explain") and masks is not None and args.composites:
        if args.target == "true":
            targets = np.searchsorted(classes_fit, y[test])
        else:
            targets = np.argmax(proba, axis=1)
        result["relevance"] = []
        for composite in args.composites:
            scores = localisation(model, modality, X[test], masks[test], targets, composite,
                                  [classes[int(c)] for c in classes_fit])
            result["relevance"].append(scores)
            log(f"   LRP {composite}: mass in box {_f(scores['mass_in_box'])} "
                f"(x{_f(scores['mass_to_area_ratio'], 2)} the box's area share "
                f"{scores['box_area_share']:.3f}), pointing game {scores['pointing_game']:.3f} "
                f"({scores['pointing_game_tolerant']:.3f} within "
                f"{scores['pointing_tolerance']} px; per class "
                + ", ".join(f"{c} {v['pointing_game']:.3f}"
                            for c, v in scores["per_class"].items()) + "), "
                f"{scores['explain_seconds']:.1f} s")
    return result


# -- output -------------------------------------------------------------------------------------
def _seconds(value):
    return "loaded" if value is None else f"{value:.1f} s"


def _f(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(record):
    classes = record["classes"]
    lines = [f"# Real scans: {record['folder_name']}", "",
             f"{record['n_images']} images at {record['args']['size']}x{record['args']['size']} "
             f"({', '.join(f'{c} {n}' for c, n in record['class_counts'].items())}); "
             f"train {record['n_train']}, test {record['n_test']}, seed {record['args']['seed']}. "
             f"{SPLIT_NOTE[0].upper() + SPLIT_NOTE[1:]}.", ""]
    head = (["model", "accuracy", "macro F1", "macro AUC"]
            + [f"sens {c}" for c in classes] + [f"spec {c}" for c in classes] + ["fit s"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in record["results"]:
        if "error" in r:
            continue
        cells = [r["label"], _f(r["accuracy"]), _f(r["macro_f1"]), _f(r["roc_auc"])]
        cells += [_f(r["per_class"][c]["sensitivity"]) for c in classes]
        cells += [_f(r["per_class"][c]["specificity"]) for c in classes]
        cells.append("loaded" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    relevance = [(r, s) for r in record["results"] for s in r.get("relevance", [])]
    if relevance:
        lines += ["", f"LRP against the tumour boxes, {record['target_note']}, over the "
                  f"{relevance[0][1]['n_images']} test images with a box. Mass in box: share of "
                  "positive relevance inside the box; ratio: that share over the box's share of "
                  "the image (1 = uniform relevance); pointing game: the most relevant pixel lies "
                  "in the box (chance = the box's mean area share).", "",
                  "| model | composite | mass in box | box area share | ratio | pointing game "
                  "| within tol. | chance | explain s |", "|---|---|---|---|---|---|---|---|---|"]
        for r, s in relevance:
            tol = (f"{s['pointing_game_tolerant']:.3f} ({s['pointing_tolerance']} px)"
                   if "pointing_game_tolerant" in s else "n/a")
            lines.append(f"| {r['label']} | {s['composite']} | {_f(s['mass_in_box'])} | "
                         f"{s['box_area_share']:.3f} | {_f(s['mass_to_area_ratio'], 2)} | "
                         f"{s['pointing_game']:.3f} | {tol} | {s['pointing_chance']:.3f} | "
                         f"{s['explain_seconds']:.1f} |")
    if relevance and relevance[0][1].get("per_class"):
        lines += ["", "Pointing game per class (of the explained target):", "",
                  "| model | composite | " + " | ".join(classes) + " |",
                  "|---|---|" + "---|" * len(classes)]
        for r, s in relevance:
            cells = [_f(s["per_class"][c]["pointing_game"]) if c in s["per_class"] else "n/a"
                     for c in classes]
            lines.append(f"| {r['label']} | {s['composite']} | " + " | ".join(cells) + " |")
    occluded = [r for r in record["results"] if "occlusion" in r]
    if occluded:
        lines += ["", "Occlusion: test accuracy with the tumour box replaced by the mean "
                  "training image (box hidden), and with everything outside the box replaced "
                  "(box only). Evidence a model takes from outside the box survives hiding it.",
                  "", "| model | all | box hidden | box only |", "|---|---|---|---|"]
        for r in occluded:
            o = r["occlusion"]
            lines.append(f"| {r['label']} | {o['accuracy_all']:.3f} | "
                         f"{o['accuracy_box_hidden']:.3f} | {o['accuracy_box_only']:.3f} |")
    if record["notes"]:
        lines += [""] + [f"Note: {n}" for n in record["notes"]]
    threads = record["threads"]
    lines += ["", f"Total {record['total_seconds']:.0f} s (loading {record['load_seconds']:.0f} s) "
              f"on {record['machine']['cpu']}, {record['machine']['host_cpus']} CPUs; pymdbn "
              f"threads: OpenMP {threads.get('openmp')}, BLAS {threads.get('blas')}"
              + (f", torch {record['versions']['torch_threads']}"
                 if "torch_threads" in record["versions"] else "") + "; 1-minute load average "
              f"{_f(record['load_average']['before'], 1)} before, "
              f"{_f(record['load_average']['after'], 1)} after."]
    return "\n".join(lines) + "\n"


def _loadavg():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _versions():
    import sklearn

    import pymdbn

    versions = {"pymdbn": pymdbn.__version__, "sklearn": sklearn.__version__}
    if have_torch():
        import torch

        versions["torch"] = torch.__version__
        versions["torch_threads"] = torch.get_num_threads()
    return versions


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="one subfolder per class of images (YOLO boxes beside)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="split, subsample and model seed")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--composites", nargs="*", default=["epsilon", "epsilon_plus"],
                        help="LRP composites for pymdbn's models (none: skip relevance)")
    parser.add_argument("--target", choices=("true", "predicted"), default="true",
                        help="class whose relevance is scored against the box")
    parser.add_argument("--limit", type=int, help="stratified subsample of N images first")
    parser.add_argument("--out", help="folder for realscan.json and realscan.md")
    parser.add_argument("--threads", type=int,
                        help="threads of pymdbn's kernels and of PyTorch (default: as set up)")
    tuning = parser.add_argument_group("model settings (defaults: the presets')")
    tuning.add_argument("--pretrain-epochs", type=int, help="RBM pretraining epochs")
    tuning.add_argument("--max-epochs", type=int, help="fine-tuning epochs at most")
    tuning.add_argument("--pathway", type=int, nargs="+", help="dense pathway layer sizes")
    tuning.add_argument("--joint-units", type=int, nargs="+", help="joint layer sizes")
    tuning.add_argument("--conv-pathway", nargs="+", metavar="LAYER",
                        help="the convolutional model's pathway, e.g. c32x5 p2 c64x5 p2 256 "
                        "(default: presets.conv_pathway(size))")
    tuning.add_argument("--patience", type=int,
                        help="fine-tuning epochs without improvement before early stopping")
    tuning.add_argument("--dropout", type=float, help="fine-tuning dropout of the dense units")
    tuning.add_argument("--augment", type=_augment_spec, metavar="SHIFT,FLIP,ROTATION",
                        help="augment the pymdbn models' fine-tuning, e.g. 0.1,horizontal,10 "
                        "(pymdbn.augment.ImageAugmenter's shift, flip and rotation)")
    tuning.add_argument("--cnn-epochs", type=int, default=15)
    tuning.add_argument("--cnn-channels", type=int, nargs="+", default=[16, 32, 64, 128],
                        help="channels per CNN block (one block each)")
    tuning.add_argument("--logistic-c", type=float, default=1.0)
    parser.add_argument("--save-models", metavar="DIR",
                        help="save the fitted pymdbn models there (DIR/<model>.pmdbn)")
    parser.add_argument("--load-models", metavar="DIR",
                        help="take pymdbn models from DIR/<model>.pmdbn (saved by "
                        "--save-models with the same settings) instead of fitting them")
    args = parser.parse_args(argv)
    if not 0 < args.test_size < 1:
        parser.error(f"--test-size must lie in (0, 1), got {args.test_size}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.limit is not None and args.limit < 2:
        parser.error(f"--limit must be at least 2, got {args.limit}")
    return args


def main(argv=None):
    args = parse(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench_realscan: error: {exc}", file=sys.stderr)
        return 2


def run(args, log=print):
    import pymdbn
    from pymdbn import presets

    start = time.perf_counter()
    load_before = _loadavg()
    notes = []
    models = list(dict.fromkeys(args.models))
    if "conv" in models and not hasattr(presets, "convolutional"):
        notes.append("convolutional MDBN skipped: this pymdbn has no "
                     "pymdbn.presets.convolutional")
        models.remove("conv")
    if "cnn" in models and not have_torch():
        notes.append("CNN skipped: PyTorch is not installed (pip install pymdbn[baselines])")
        models.remove("cnn")
    if args.threads:
        pymdbn.set_num_threads(args.threads)
        if have_torch():
            import torch

            torch.set_num_threads(args.threads)
    for folder in (args.out, args.save_models):
        if folder:
            os.makedirs(folder, exist_ok=True)

    t0 = time.perf_counter()
    modality, X, y, masks, classes = load(args.folder, args.size, args.limit, args.seed)
    load_seconds = time.perf_counter() - t0
    train, test = split(y, args.test_size, args.seed)
    if masks is None and args.composites:
        notes.append("relevance not scored: the folder has no lesion boxes or masks")
    log(f"{len(y)} images of {len(classes)} classes, train {len(train)}, test {len(test)} "
        f"({SPLIT_NOTE})")
    for note in notes:
        log(f"note: {note}")

    results = []
    for name in models:
        try:
            results.append(run_model(name, modality, (X, y, masks), train, test, classes,
                                     args, log))
        except Exception as exc:
            if name != "conv":
                raise
            # The convolutional preset is new; a failure there should not cost the others.
            message = f"convolutional MDBN failed: {type(exc).__name__}: {exc}"
            log(f"   {message}")
            notes.append(message)
            results.append({"model": name, "label": LABELS[name], "error": message})
    record = {
        "benchmark": "bench_realscan",
        "folder": os.path.abspath(args.folder),
        "folder_name": os.path.basename(os.path.normpath(args.folder)),
        "args": vars(args),
        "machine": machine_info(),
        "config": pymdbn.show_config(mode="dicts"),
        "versions": _versions(),
        "threads": pymdbn.get_num_threads(),
        "modality": modality,
        "classes": classes,
        "class_counts": {c: int(np.sum(y == k)) for k, c in enumerate(classes)},
        "n_images": int(len(y)), "n_train": int(len(train)), "n_test": int(len(test)),
        "split": "slice-level (image-level) stratified random split",
        "split_note": SPLIT_NOTE,
        "target": args.target,
        "target_note": ("explaining the true class" if args.target == "true"
                        else "explaining the predicted class"),
        "box_area_share_test": (None if masks is None else
                                float(masks[test].reshape(len(test), -1).mean())),
        "notes": notes,
        "load_seconds": load_seconds,
        "results": results,
    }
    record["total_seconds"] = time.perf_counter() - start
    record["load_average"] = {"before": load_before, "after": _loadavg()}
    table = markdown(record)
    log("")
    log(table)
    log("JSON " + json.dumps(record, default=_json_default))
    if args.out:
        with open(os.path.join(args.out, "realscan.json"), "w") as f:
            json.dump(record, f, indent=2, default=_json_default)
        with open(os.path.join(args.out, "realscan.md"), "w") as f:
            f.write(table)
    return 0


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
