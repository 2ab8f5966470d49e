"""The main job (``pymdbn demo``) and the source paper's comparison (``table1``)."""

import importlib
import importlib.util
import os
import tempfile
import time

import numpy as np

from pymdbn import backend
from pymdbn._atomic import write_json, write_text

__all__ = ["SYSTEMS", "DEMO_OUTPUTS", "TABLE1_OUTPUTS", "split_indices", "run_demo",
           "run_table1", "healthy_reference", "prepare_output", "require"]

#: Systems of the paper's Table 1, in its order; "CNN" needs the [baselines] extra.
SYSTEMS = ("CNN", "DBN", "MDBN", "e-MDBN", "proposed")
TABLE_METRICS = ("accuracy", "specificity", "f1", "sensitivity")
#: LRP composite of the demo's and Table 1's heatmaps.
HEATMAP_COMPOSITE = "epsilon_plus"
#: Colour scale of the figures: the 99.5th percentile of |R|, so that a few extreme
#: pixels do not wash out every other map (larger values saturate; the colour bar shows
#: arrows).
HEATMAP_VMAX = "p99.5"
#: Reference of the heatmaps' explanations (see :func:`healthy_reference`). Sigmoid
#: units are never off, so without a reference a lesion the model relies on can carry
#: negative relevance: in the demo (seed 0), 12% of the correctly detected bone-only
#: patients had a negative bone map, though P(cancer) fell from 0.999 to 0.02 when their
#: bone scan was replaced by the healthy mean. Against the healthy mean, 'epsilon_plus'
#: gave positive net relevance to 100% / 99.8% / 99.9% of brain / breast / bone lesions
#: (78% / 66% / 91% without) and the pointing game rose from 0.79 / 0.23 / 0.90 to
#: 0.94 / 0.29 / 0.97.
HEATMAP_REFERENCE = "healthy_mean"


#: Files :func:`run_demo` writes into its output folder.
DEMO_OUTPUTS = ("model.npz", "metrics.json", "metrics.md", "explanation_quality.json",
                "explanation_quality.md", "heatmaps.png", "relevance_bars.png",
                "modality_shares.png")
#: Files :func:`run_table1` writes into its output folder (figures 1-3 only for the
#: modalities with lesions among the first seed's test patients).
TABLE1_OUTPUTS = ("model.npz", "table1.md", "table1.csv", "table1.json", "figure4.png",
                  "figure1_brain.png", "figure2_breast.png", "figure3_bone.png",
                  "localisation.json")


def _log(verbose, msg):
    if verbose:
        print(msg, flush=True)


def require(module, needed_for, install=None):
    """Import an optional dependency now, before any long work that needs it.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``'matplotlib'``.
    needed_for : str
        What needs it, for the message (e.g. ``'pymdbn demo'``).
    install : str, optional
        The command that installs it (default ``pip install <module>``).

    Returns
    -------
    module

    Raises
    ------
    ImportError
        Naming the package and the command that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{needed_for} needs {module}, which cannot be imported ({exc}); "
                          f"install it with: {install or f'pip install {module}'}") from exc


def prepare_output(folder, names, overwrite=False):
    """Create ``folder``, refuse to replace existing outputs, and check it is writable.

    Called before any data is loaded or any model trained, so that a run does not
    end, after its work, on an output it may not write.

    Parameters
    ----------
    folder : str or os.PathLike
        Output folder; created (with its parents) when missing. ``''`` means the
        current folder.
    names : iterable of str
        Files the caller will write into ``folder``.
    overwrite : bool, default=False
        Allow replacing those files.

    Returns
    -------
    str
        The folder.

    Raises
    ------
    FileExistsError
        If one of the files exists and ``overwrite`` is false, or a file is in
        the way of the folder.
    OSError
        If the folder cannot be created or written to.
    """
    folder = os.fspath(folder) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{folder} exists and is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        # A real write: permission bits alone do not tell (root, read-only mounts).
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(f"cannot write to the output folder {folder}: "
                      f"{exc.strerror or exc}") from None
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            raise FileExistsError(f"{path} is a folder; cannot write a file there")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to "
                                  "replace it")
    return folder


#: Patients the demo and Table 1 generate by default (75% train, 25% test). Dense
#: pathways need many examples to find lesions anywhere in their region: with the
#: presets and 32x32 inputs (seed 0, difficulty 0.5) the proposed model reached 0.948
#: test accuracy on 6400 patients (50 pretraining epochs), 0.961 on 12800 (20 epochs)
#: and 0.969 on 25600 (10 epochs; ROC AUC 0.978, 0.984, 0.988).
DEMO_PATIENTS = 25600
#: RBM pretraining epochs in the demo and Table 1 (every belief network alike). The
#: presets' 50 (:data:`pymdbn.presets.PRETRAIN_EPOCHS`) suit a few thousand patients;
#: on 12800 the proposed model gave 0.966 with 50 epochs in 294 s and 0.961 with 20 in
#: 126 s, so the 25600-patient default runs 10 (about 5400 updates per RBM); 20 epochs
#: on 25600 gave 0.968 (236 s), 10 gave 0.969 (168 s).
DEMO_PRETRAIN_EPOCHS = 10
#: Side of the images the models see: phantoms are generated at 64x64 (the scans) and
#: area-resized, as the loaders resize real scans. Dense pathways generalise better from
#: 1024 than from 4096 inputs per modality at these sample sizes, and a 4x smaller input
#: trains 4x more patients in the same time: on 1600 patients at 64x64 the proposed model
#: reached 0.830 accuracy; on 6400 patients resized to 32x32, in about the same time,
#: 0.932 (difficulty 0.5, seed 0). Keeping only the mammograms at 64x64, for their small
#: masses and microcalcifications, did not help on 25600 patients: 0.968 (breast-only
#: cancers found 69% vs 67% of the time) for 292 s of fitting instead of 168 s.
MODEL_SIZE = 32


def _phantoms(n_patients, size, model_size, difficulty, random_state):
    from pymdbn.data.phantoms import make_phantoms

    data = make_phantoms(n_patients, size=size, difficulty=difficulty,
                         random_state=random_state)
    return data if model_size in (None, size) else data.resized(model_size)


def sensitivity_by_lesion_subset(y_true, y_pred, lesion_labels, pos_label=None):
    """Fraction of cancer patients detected, grouped by which modalities show lesions.

    ``pos_label`` is the cancer class; by default :func:`pymdbn.metrics.positive_class`
    picks it from the labels present.

    Returns
    -------
    dict of str to dict
        ``'brain+bone'`` etc. -> ``{'n': patients, 'sensitivity': detected fraction}``,
        ordered by the number of lesioned modalities, then by name.
    """
    from pymdbn.metrics import positive_class

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    pos = positive_class(np.unique(np.concatenate([y_true, y_pred])), pos_label)
    names = list(lesion_labels)
    keys = np.array(["+".join(m for m in names if lesion_labels[m][i])
                     for i in range(len(y_true))])
    out = {}
    for key in sorted(set(keys[y_true == pos]), key=lambda k: (k.count("+"), k)):
        sel = (y_true == pos) & (keys == key)
        out[str(key) or "none"] = {"n": int(sel.sum()),
                                   "sensitivity": float((y_pred[sel] == pos).mean())}
    return out


def split_indices(y, test_fraction=0.25, random_state=0):
    """Stratified train/test split of sample indices (same split for every system)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    return train_test_split(idx, test_size=test_fraction, stratify=y, random_state=random_state)


def _take(X, idx):
    return {name: arr[idx] for name, arr in X.items()}


def _make_system(name, seed, verbose, pretrain_epochs=None, **overrides):
    """A Table 1 system; ``pretrain_epochs`` (every RBM, all belief networks alike)
    overrides :data:`pymdbn.presets.PRETRAIN_EPOCHS`."""
    from pymdbn import presets

    if name == "CNN":
        from pymdbn.baselines import SmallCNN

        return SmallCNN(random_state=seed, verbose=verbose)
    factory = {"DBN": presets.early_fusion_dbn, "MDBN": presets.mdbn, "e-MDBN": presets.e_mdbn,
               "proposed": presets.proposed}[name]
    if pretrain_epochs is not None:
        overrides["n_iter" if name == "DBN" else "pretrain_epochs"] = pretrain_epochs
    return factory(random_state=seed, verbose=verbose, **overrides)


def _positive_scores(model, X, positive):
    """Scores of the ``positive`` class: its column of ``predict_proba``, which follows
    ``model.classes_`` (column 1 only when the positive class sorts second)."""
    proba = model.predict_proba(X)
    return proba[:, list(model.classes_).index(positive)] if proba.shape[1] == 2 else proba


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def _nanmean(values):
    """Mean over the defined values; None when there are none (JSON has no NaN)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def healthy_reference(X, y, negative=None):
    """Per modality, the mean image of the training patients of class ``negative``.

    A reference for :meth:`pymdbn.MDBN.explain` (``reference=``): relevance then
    explains how a patient differs from an average healthy one.

    ``negative`` defaults to the class that :func:`pymdbn.metrics.positive_class`
    leaves negative: of two classes the one that is not positive (``'healthy'`` of
    ``['cancer', 'healthy']``, 0 of ``[0, 1]``), of one class a known negative name,
    or 0 for integer labels.
    """
    from pymdbn.metrics import is_negative_name, positive_class

    y = np.asarray(y)
    if negative is None:
        classes = np.unique(y).tolist()
        if len(classes) == 2:
            try:
                negative = classes[1 - classes.index(positive_class(classes))]
            except ValueError:
                raise ValueError(f"cannot tell the negative class among {classes}: pass "
                                 "negative=") from None
        elif y.dtype.kind in "iu":
            negative = 0
        elif len(classes) == 1 and is_negative_name(classes[0]):
            negative = classes[0]
        else:
            raise ValueError(f"cannot tell the negative class among {classes}: pass "
                             "negative=")
    if not (y == negative).any():
        raise ValueError(f"no training sample of class {negative!r} to average")
    return {m: np.asarray(a)[y == negative].mean(axis=0) for m, a in X.items()}


def _explanation_quality(model, X, masks, lesion_labels, composite="epsilon", reference=None,
                         target=1):
    """LRP localisation scores of the explained class ``target`` (the index of the
    positive class in ``model.classes_``), per modality."""
    from pymdbn.lrp import explain
    from pymdbn.metrics import relevance as lm

    expl = explain(model, X, target=target, composite=composite, reference=reference)
    rows = {}
    for name in expl.relevance:
        has = np.asarray(lesion_labels[name], bool)
        if not has.any():
            continue
        R, M = expl.relevance[name][has], masks[name][has]
        sign = lm.lesion_relevance_sign(R, M)
        rows[name] = {
            "n": int(has.sum()),
            "relevance_mass_accuracy": _nanmean(lm.relevance_mass_accuracy(R, M)),
            "relevance_rank_accuracy": _nanmean(lm.relevance_rank_accuracy(R, M)),
            "lesion_relevance_positive": _nanmean(np.where(np.isnan(sign), np.nan, sign > 0)),
            "pointing_game": float(np.mean(lm.pointing_game(R, M))),
            "pointing_game_tolerance_2px": float(np.mean(lm.pointing_game(R, M, tolerance=2))),
            "mask_fraction": float(M.mean()),
        }
    shares = {k: np.asarray(v) for k, v in expl.shares.items()}
    rows["modality_attribution_accuracy"] = _nanmean(lm.modality_attribution_accuracy(
        shares, lesion_labels))
    return expl, rows


def run_demo(out, n_patients=DEMO_PATIENTS, size=64, model_size=MODEL_SIZE, difficulty=0.5,
             random_state=0, n_heatmaps=4, pretrain_epochs=DEMO_PRETRAIN_EPOCHS, verbose=True,
             overwrite=False, device="cpu", dtype="float32"):
    """Generate phantoms, train the proposed model, evaluate and explain it.

    Writes to ``out``: ``model.npz`` (saved right after training, before anything
    else can fail), ``metrics.md`` / ``metrics.json`` (held-out classification
    report), ``heatmaps.png`` (per-modality LRP heatmaps of cancer patients),
    ``modality_shares.png``, ``relevance_bars.png``, ``explanation_quality.json`` /
    ``.md`` (relevance mass accuracy, pointing game, sign of the lesions' relevance,
    modality attribution accuracy against the phantoms' lesion masks, for 'epsilon' and
    'epsilon_plus', without and with the healthy-mean reference).

    The model is fitted on the class names (``classes_`` is ``['cancer', 'healthy']``);
    'cancer' is the positive class (:func:`pymdbn.metrics.positive_class`) of the
    report and the explained class of the heatmaps. matplotlib and the output folder
    are checked before the phantoms are generated.

    Parameters
    ----------
    overwrite : bool, default=False
        Replace files of :data:`DEMO_OUTPUTS` already in ``out``; otherwise their
        presence raises ``FileExistsError`` before any work.
    device : {'cpu', 'cuda'}, default='cpu'
        Where the model trains, predicts and is explained (checked before any work).
    dtype : {'float32', 'bfloat16'}, default='float32'
        The model's ``dtype``: 'bfloat16' trains, predicts and explains with bfloat16
        operands of the products (float32 weights; see :class:`pymdbn.MDBN`).

    Returns
    -------
    dict
        The metrics and explanation-quality figures.
    """
    require("matplotlib", "pymdbn demo (its figures)")
    from pymdbn import plot
    from pymdbn.data.phantoms import CLASSES
    from pymdbn.metrics import classification_report, format_report, positive_class

    backend.check_device(device)
    prepare_output(out, DEMO_OUTPUTS, overwrite)
    positive = positive_class(sorted(CLASSES))
    t0 = time.perf_counter()
    _log(verbose, f"Generating {n_patients} phantom patients ({size}x{size}, 3 modalities, "
                  f"resized to {model_size}x{model_size} for the model)")
    data = _phantoms(n_patients, size, model_size, difficulty, random_state)
    labels = np.asarray(data.classes)[data.y]
    train, test = split_indices(data.y, random_state=random_state)
    Xtr, Xte = _take(data.X, train), _take(data.X, test)
    model = _make_system("proposed", random_state, verbose, pretrain_epochs, device=device,
                         dtype=dtype)
    _log(verbose, f"Training the proposed model on {len(train)} patients")
    model.fit(Xtr, labels[train])
    model.save(os.path.join(out, "model.npz"))  # before anything after training can fail
    y_pred = model.predict(Xte)
    report = classification_report(labels[test], y_pred,
                                   _positive_scores(model, Xte, positive),
                                   pos_label=positive, labels=model.classes_)
    by_subset = sensitivity_by_lesion_subset(labels[test], y_pred,
                                             _take(data.lesion_labels, test), positive)
    setup = (f"{len(train)} training and {len(test)} test patients, {size}x{size} scans "
             f"resized to {model_size}x{model_size}, difficulty {difficulty}, seed "
             f"{random_state}")
    write_json(os.path.join(out, "metrics.json"),
               {**report, "sensitivity_by_lesion_modalities": by_subset, "setup": setup})
    lines = ["# Held-out metrics: proposed model on phantoms", "", setup + ".", "",
             format_report(report), "",
             f"Sensitivity by the modalities that show lesions ({positive} patients only):",
             "",
             "| lesions in | patients | detected |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['sensitivity']:.3f} |" for k, v in by_subset.items()]
    write_text(os.path.join(out, "metrics.md"), "\n".join(lines) + "\n")
    _log(verbose, format_report(report))

    masks_te = _take(data.masks, test)
    lesions_te = _take(data.lesion_labels, test)
    # The method's epsilon rule with zennit's epsilon (1e-6) lets a few pixels whose
    # denominators nearly vanish dominate the maps; epsilon_plus (ZPlus below the
    # fused code) localises better on the phantoms, and explaining against the healthy
    # mean better still, so the heatmaps use both and the report scores all four.
    references = {"none": None,
                  "healthy_mean": healthy_reference(Xtr, labels[train])}
    target = list(model.classes_).index(positive)
    quality, expl = {}, None
    lines = [f"# LRP localisation against lesion masks (class '{positive}')", ""]
    for ref_name in references:
        for composite in ("epsilon", HEATMAP_COMPOSITE):
            key = composite if ref_name == "none" else f"{composite}/{ref_name}"
            e, q = _explanation_quality(model, Xte, masks_te, lesions_te, composite,
                                        references[ref_name], target)
            quality[key] = q
            if composite == HEATMAP_COMPOSITE and ref_name == HEATMAP_REFERENCE:
                expl = e
            lines += [f"## composite '{composite}', reference: {ref_name}", "",
                      "| modality | n | relevance mass acc. | rank acc. | pointing game | "
                      "lesion relevance > 0 | mask fraction |", "|---|---|---|---|---|---|---|"]
            for name, row in q.items():
                if isinstance(row, dict):
                    cells = [row[k] for k in ("relevance_mass_accuracy",
                                              "relevance_rank_accuracy", "pointing_game",
                                              "lesion_relevance_positive", "mask_fraction")]
                    lines.append(f"| {name} | {row['n']} | "
                                 + " | ".join(_fmt(c) for c in cells) + " |")
            lines += ["", "Modality attribution accuracy (largest share on a lesioned "
                      f"modality): {_fmt(q['modality_attribution_accuracy'])}", ""]
    lines += ["'lesion relevance > 0': share of lesions whose net relevance is evidence for "
              f"{positive}; the positive-only scores cannot see the others. Reference "
              "'healthy_mean': relevance of the difference from the mean image of the "
              "healthy training patients.", ""]
    write_json(os.path.join(out, "explanation_quality.json"), quality)
    write_text(os.path.join(out, "explanation_quality.md"), "\n".join(lines))

    # Heatmaps of the first few correctly detected cancer patients (any cancer patients
    # when none was detected, so a failing model shows what it looked at too).
    y_te = labels[test]
    pos = np.flatnonzero((y_te == positive) & (y_pred == positive))[:n_heatmaps]
    if len(pos) == 0:
        pos = np.flatnonzero(y_te == positive)[:n_heatmaps]
    if len(pos) == 0:
        pos = np.arange(min(n_heatmaps, len(y_te)))
    expl.heatmaps(Xte, samples=pos, y_true=y_te, sample_ids=test,
                  reference=HEATMAP_REFERENCE.replace("_", " "), masks=_take(masks_te, pos),
                  path=os.path.join(out, "heatmaps.png"), vmax=HEATMAP_VMAX)
    plot.relevance_bars({k: v[pos[0]] for k, v in expl.relevance.items()}, top=40,
                        title=f"patient {test[pos[0]]}: the 40 pixels of largest |relevance| "
                              f"for '{positive}'",
                        path=os.path.join(out, "relevance_bars.png"))
    of_class = y_te == positive  # the shares of the class the explanations are of
    plot.modality_shares({k: v[of_class] for k, v in expl.shares.items()},
                         lesions={k: np.asarray(v)[of_class] for k, v in lesions_te.items()},
                         title=f"held-out '{positive}' patients: each modality's share of the "
                               f"evidence for '{positive}'",
                         path=os.path.join(out, "modality_shares.png"))
    summary = {"metrics": report, "explanation_quality": quality,
               "seconds": time.perf_counter() - t0, "n_train": int(len(train)),
               "n_test": int(len(test))}
    _log(verbose, f"Done in {summary['seconds']:.0f} s; results in {out}")
    return summary


def run_table1(out, seeds=(0, 1, 2, 3, 4), n_patients=DEMO_PATIENTS, size=64,
               model_size=MODEL_SIZE, difficulty=0.5, systems=SYSTEMS,
               pretrain_epochs=DEMO_PRETRAIN_EPOCHS, verbose=True, overwrite=False):
    """Reproduce the paper's Table 1 and Figures 1-4 on phantoms.

    Every system is trained on the same split per seed (the seed sets the phantoms'
    split and each model's initialisation), on the class names; 'cancer' is the
    positive class (:func:`pymdbn.metrics.positive_class`) of every metric. Writes
    ``table1.md``, ``table1.csv``, ``table1.json``, ``figure4.png`` (grouped bars of
    the metrics), ``figure1_brain.png``, ``figure2_breast.png``, ``figure3_bone.png``
    (heatmaps of the proposed model), ``localisation.json`` (LRP localisation scores
    of the proposed model, without and with the healthy-mean reference; the heatmaps
    use the reference) and ``model.npz`` (the proposed model of the first seed, the
    one the figures show, saved right after its training).

    matplotlib and the output folder are checked before any work; files of
    :data:`TABLE1_OUTPUTS` already in ``out`` raise ``FileExistsError`` unless
    ``overwrite``. CNN is skipped, with a note printed at the start and kept in the
    table, when PyTorch is not installed.
    """
    require("matplotlib", "pymdbn experiment table1 (its figures)")
    from pymdbn import plot
    from pymdbn.data.phantoms import CLASSES
    from pymdbn.metrics import classification_report, positive_class, summarize

    prepare_output(out, TABLE1_OUTPUTS, overwrite)
    positive = positive_class(sorted(CLASSES))
    notes, localisation = [], []
    if "CNN" in systems and importlib.util.find_spec("torch") is None:
        notes.append("CNN skipped: PyTorch is not installed (pip install pymdbn[baselines])")
        systems = tuple(s for s in systems if s != "CNN")
        _log(verbose, f"Note: {notes[-1]}")
    data = _phantoms(n_patients, size, model_size, difficulty, 0)
    labels = np.asarray(data.classes)[data.y]
    reports = {s: [] for s in systems}
    for seed in seeds:
        train, test = split_indices(data.y, random_state=seed)
        Xtr, Xte = _take(data.X, train), _take(data.X, test)
        for system in systems:
            model = _make_system(system, seed, False, pretrain_epochs)
            t = time.perf_counter()
            model.fit(Xtr, labels[train])
            if system == "proposed" and seed == seeds[0]:
                model.save(os.path.join(out, "model.npz"))
            rep = classification_report(labels[test], model.predict(Xte),
                                        _positive_scores(model, Xte, positive),
                                        pos_label=positive, labels=model.classes_)
            rep["fit_seconds"] = time.perf_counter() - t
            reports[system].append(rep)
            _log(verbose, f"seed {seed} {system:9s} accuracy {rep['accuracy']:.3f} "
                          f"({rep['fit_seconds']:.0f} s)")
            if system == "proposed":
                truth = (_take(data.masks, test), _take(data.lesion_labels, test))
                target = list(model.classes_).index(positive)
                _, plain = _explanation_quality(model, Xte, *truth, HEATMAP_COMPOSITE,
                                                target=target)
                expl, quality = _explanation_quality(model, Xte, *truth, HEATMAP_COMPOSITE,
                                                     healthy_reference(Xtr, labels[train]),
                                                     target)
                localisation.append({"none": plain, HEATMAP_REFERENCE: quality})
                if seed == seeds[0]:
                    y_te = labels[test]
                    for i, name in enumerate(("brain", "breast", "bone"), start=1):
                        if name not in expl.relevance:
                            continue
                        sel = np.flatnonzero(np.asarray(data.lesion_labels[name])[test]
                                             & (y_te == positive))[:4]
                        if len(sel):
                            expl.heatmaps({name: Xte[name]}, samples=sel, ncols=4,
                                          y_true=y_te, sample_ids=test,
                                          reference=HEATMAP_REFERENCE.replace("_", " "),
                                          masks={name: data.masks[name][test][sel]},
                                          path=os.path.join(out, f"figure{i}_{name}.png"),
                                          vmax=HEATMAP_VMAX)
    table = {s: summarize(r) for s, r in reports.items() if r}
    header = "| system | " + " | ".join(TABLE_METRICS) + " |"
    rows = [header, "|" + "---|" * (len(TABLE_METRICS) + 1)]
    csv = ["system," + ",".join(f"{m}_mean,{m}_sd" for m in TABLE_METRICS)]
    def sd(value, digits):  # one seed has no standard deviation
        return "" if value is None else f"{value:.{digits}f}"

    for s, summ in table.items():
        cells = [f"{summ[m]['mean']:.3f}" + (f" ± {sd(summ[m]['sd'], 3)}"
                                             if summ[m]["sd"] is not None else "")
                 for m in TABLE_METRICS]
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
        csv.append(s + "," + ",".join(f"{summ[m]['mean']:.4f},{sd(summ[m]['sd'], 4)}"
                                      for m in TABLE_METRICS))
    text = (f"# Table 1 on phantoms ({n_patients} patients, {size}x{size} resized to "
            f"{model_size}x{model_size}, difficulty {difficulty}, seeds {list(seeds)}; "
            f"mean ± sd; positive class: {positive})\n\n" + "\n".join(rows) + "\n")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    write_text(os.path.join(out, "table1.md"), text)
    write_text(os.path.join(out, "table1.csv"), "\n".join(csv) + "\n")
    plot.metric_bars({s: {m: summ[m] for m in TABLE_METRICS} for s, summ in table.items()},
                     path=os.path.join(out, "figure4.png"))
    loc = {}
    for ref_name in ("none", HEATMAP_REFERENCE):
        key = HEATMAP_COMPOSITE if ref_name == "none" else f"{HEATMAP_COMPOSITE}/{ref_name}"
        for name in ("brain", "breast", "bone"):
            vals = [q[ref_name][name] for q in localisation if name in q[ref_name]]
            if vals:
                loc.setdefault(key, {})[name] = {
                    k: _nanmean([np.nan if v[k] is None else v[k] for v in vals])
                    for k in ("relevance_mass_accuracy", "pointing_game",
                              "lesion_relevance_positive", "mask_fraction")}
    write_json(os.path.join(out, "localisation.json"), loc)
    write_json(os.path.join(out, "table1.json"), {"table": table, "reports": reports,
                                                  "notes": notes, "positive_class": positive})
    _log(verbose, text)
    return {"table": table, "localisation": loc, "notes": notes, "positive_class": positive}
