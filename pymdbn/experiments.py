"""The main job (``pymdbn demo``) and the source paper's comparison (``table1``)."""

import importlib.util
import json
import os
import time

import numpy as np

__all__ = ["SYSTEMS", "split_indices", "run_demo", "run_table1"]

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


def _log(verbose, msg):
    if verbose:
        print(msg, flush=True)


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
    from pymdbn.datasets import make_phantoms

    data = make_phantoms(n_patients, size=size, difficulty=difficulty,
                         random_state=random_state)
    return data if model_size in (None, size) else data.resized(model_size)


def sensitivity_by_lesion_subset(y_true, y_pred, lesion_labels):
    """Fraction of cancer patients detected, grouped by which modalities show lesions.

    Returns
    -------
    dict of str to dict
        ``'brain+bone'`` etc. -> ``{'n': patients, 'sensitivity': detected fraction}``,
        ordered by the number of lesioned modalities, then by name.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    names = list(lesion_labels)
    keys = np.array(["+".join(m for m in names if lesion_labels[m][i])
                     for i in range(len(y_true))])
    out = {}
    for key in sorted(set(keys[y_true == 1]), key=lambda k: (k.count("+"), k)):
        sel = (y_true == 1) & (keys == key)
        out[str(key) or "none"] = {"n": int(sel.sum()),
                                   "sensitivity": float((y_pred[sel] == 1).mean())}
    return out


def split_indices(y, test_fraction=0.25, random_state=0):
    """Stratified train/test split of sample indices (same split for every system)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    return train_test_split(idx, test_size=test_fraction, stratify=y, random_state=random_state)


def _take(X, idx):
    return {name: arr[idx] for name, arr in X.items()}


def _write_text(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_json(path, obj):
    _write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


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


def _positive_scores(model, X):
    proba = model.predict_proba(X)
    return proba[:, list(model.classes_).index(1)] if proba.shape[1] == 2 else proba


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def _nanmean(values):
    """Mean over the defined values; None when there are none (JSON has no NaN)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def healthy_reference(X, y, negative=0):
    """Per modality, the mean image of the training patients of class ``negative``.

    A reference for :meth:`pymdbn.MDBN.explain` (``reference=``): relevance then
    explains how a patient differs from an average healthy one.
    """
    y = np.asarray(y)
    if not (y == negative).any():
        raise ValueError(f"no training sample of class {negative!r} to average")
    return {m: np.asarray(a)[y == negative].mean(axis=0) for m, a in X.items()}


def _explanation_quality(model, X, masks, lesion_labels, composite="epsilon", reference=None):
    """LRP localisation scores of the explained positive class, per modality."""
    from pymdbn.lrp import explain
    from pymdbn.lrp import metrics as lm

    expl = explain(model, X, target=1, composite=composite, reference=reference)
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
             random_state=0, n_heatmaps=4, pretrain_epochs=DEMO_PRETRAIN_EPOCHS, verbose=True):
    """Generate phantoms, train the proposed model, evaluate and explain it.

    Writes to ``out``: ``metrics.md`` / ``metrics.json`` (held-out classification
    report), ``heatmaps.png`` (per-modality LRP heatmaps of cancer patients),
    ``modality_shares.png``, ``relevance_bars.png``, ``explanation_quality.json`` /
    ``.md`` (relevance mass accuracy, pointing game, sign of the lesions' relevance,
    modality attribution accuracy against the phantoms' lesion masks, for 'epsilon' and
    'epsilon_plus', without and with the healthy-mean reference) and ``model.npz``.

    Returns
    -------
    dict
        The metrics and explanation-quality figures.
    """
    from pymdbn import plot
    from pymdbn.metrics import classification_report, format_report

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    _log(verbose, f"Generating {n_patients} phantom patients ({size}x{size}, 3 modalities, "
                  f"resized to {model_size}x{model_size} for the model)")
    data = _phantoms(n_patients, size, model_size, difficulty, random_state)
    train, test = split_indices(data.y, random_state=random_state)
    Xtr, Xte = _take(data.X, train), _take(data.X, test)
    model = _make_system("proposed", random_state, verbose, pretrain_epochs)
    _log(verbose, f"Training the proposed model on {len(train)} patients")
    model.fit(Xtr, data.y[train])
    y_pred = model.predict(Xte)
    report = classification_report(data.y[test], y_pred, _positive_scores(model, Xte))
    by_subset = sensitivity_by_lesion_subset(data.y[test], y_pred,
                                             _take(data.lesion_labels, test))
    setup = (f"{len(train)} training and {len(test)} test patients, {size}x{size} scans "
             f"resized to {model_size}x{model_size}, difficulty {difficulty}, seed "
             f"{random_state}")
    _write_json(os.path.join(out, "metrics.json"),
                {**report, "sensitivity_by_lesion_modalities": by_subset, "setup": setup})
    lines = ["# Held-out metrics: proposed model on phantoms", "", setup + ".", "",
             format_report(report), "",
             "Sensitivity by the modalities that show lesions (cancer patients only):", "",
             "| lesions in | patients | detected |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['sensitivity']:.3f} |" for k, v in by_subset.items()]
    _write_text(os.path.join(out, "metrics.md"), "\n".join(lines) + "\n")
    _log(verbose, format_report(report))

    masks_te = _take(data.masks, test)
    lesions_te = _take(data.lesion_labels, test)
    # The method's epsilon rule with zennit's epsilon (1e-6) lets a few pixels whose
    # denominators nearly vanish dominate the maps; epsilon_plus (ZPlus below the
    # fused code) localises better on the phantoms, and explaining against the healthy
    # mean better still, so the heatmaps use both and the report scores all four.
    references = {"none": None,
                  "healthy_mean": healthy_reference(Xtr, data.y[train])}
    quality, expl = {}, None
    lines = ["# LRP localisation against lesion masks (class 'cancer')", ""]
    for ref_name in references:
        for composite in ("epsilon", HEATMAP_COMPOSITE):
            key = composite if ref_name == "none" else f"{composite}/{ref_name}"
            e, q = _explanation_quality(model, Xte, masks_te, lesions_te, composite,
                                        references[ref_name])
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
              "cancer; the positive-only scores cannot see the others. Reference "
              "'healthy_mean': relevance of the difference from the mean image of the "
              "healthy training patients.", ""]
    _write_json(os.path.join(out, "explanation_quality.json"), quality)
    _write_text(os.path.join(out, "explanation_quality.md"), "\n".join(lines))

    # Heatmaps of the first few correctly detected cancer patients (any cancer patients
    # when none was detected, so a failing model shows what it looked at too).
    y_te = data.y[test]
    pos = np.flatnonzero((y_te == 1) & (y_pred == 1))[:n_heatmaps]
    if len(pos) == 0:
        pos = np.flatnonzero(y_te == 1)[:n_heatmaps]
    if len(pos) == 0:
        pos = np.arange(min(n_heatmaps, len(y_te)))
    plot.heatmaps(_take(Xte, pos), {k: v[pos] for k, v in expl.relevance.items()},
                  masks=_take(masks_te, pos), path=os.path.join(out, "heatmaps.png"),
                  vmax=HEATMAP_VMAX)
    plot.relevance_bars(np.concatenate([expl.relevance[k][pos[0]].ravel()
                                        for k in expl.relevance]), top=40,
                        path=os.path.join(out, "relevance_bars.png"))
    plot.modality_shares(expl.shares, path=os.path.join(out, "modality_shares.png"))
    model.save(os.path.join(out, "model.npz"))
    summary = {"metrics": report, "explanation_quality": quality,
               "seconds": time.perf_counter() - t0, "n_train": int(len(train)),
               "n_test": int(len(test))}
    _log(verbose, f"Done in {summary['seconds']:.0f} s; results in {out}")
    return summary


def run_table1(out, seeds=(0, 1, 2, 3, 4), n_patients=DEMO_PATIENTS, size=64,
               model_size=MODEL_SIZE, difficulty=0.5, systems=SYSTEMS,
               pretrain_epochs=DEMO_PRETRAIN_EPOCHS, verbose=True):
    """Reproduce the paper's Table 1 and Figures 1-4 on phantoms.

    Every system is trained on the same split per seed (the seed sets the phantoms'
    split and each model's initialisation). Writes ``table1.md``, ``table1.csv``,
    ``figure4.png`` (grouped bars of the metrics), ``figure1_brain.png``,
    ``figure2_breast.png``, ``figure3_bone.png`` (heatmaps of the proposed model)
    and ``localisation.json`` (LRP localisation scores of the proposed model, without
    and with the healthy-mean reference; the heatmaps use the reference).
    CNN is skipped, with a note in the table, when PyTorch is not installed.
    """
    from pymdbn import plot
    from pymdbn.metrics import classification_report, summarize

    os.makedirs(out, exist_ok=True)
    notes, localisation = [], []
    if "CNN" in systems and importlib.util.find_spec("torch") is None:
        notes.append("CNN skipped: PyTorch is not installed (pip install pymdbn[baselines])")
        systems = tuple(s for s in systems if s != "CNN")
    data = _phantoms(n_patients, size, model_size, difficulty, 0)
    reports = {s: [] for s in systems}
    for seed in seeds:
        train, test = split_indices(data.y, random_state=seed)
        Xtr, Xte = _take(data.X, train), _take(data.X, test)
        for system in systems:
            model = _make_system(system, seed, False, pretrain_epochs)
            t = time.perf_counter()
            model.fit(Xtr, data.y[train])
            rep = classification_report(data.y[test], model.predict(Xte),
                                        _positive_scores(model, Xte))
            rep["fit_seconds"] = time.perf_counter() - t
            reports[system].append(rep)
            _log(verbose, f"seed {seed} {system:9s} accuracy {rep['accuracy']:.3f} "
                          f"({rep['fit_seconds']:.0f} s)")
            if system == "proposed":
                truth = (_take(data.masks, test), _take(data.lesion_labels, test))
                _, plain = _explanation_quality(model, Xte, *truth, HEATMAP_COMPOSITE)
                expl, quality = _explanation_quality(model, Xte, *truth, HEATMAP_COMPOSITE,
                                                     healthy_reference(Xtr, data.y[train]))
                localisation.append({"none": plain, HEATMAP_REFERENCE: quality})
                if seed == seeds[0]:
                    y_te = data.y[test]
                    for i, name in enumerate(("brain", "breast", "bone"), start=1):
                        if name not in expl.relevance:
                            continue
                        sel = np.flatnonzero(np.asarray(data.lesion_labels[name])[test]
                                             & (y_te == 1))[:4]
                        if len(sel):
                            plot.heatmaps(Xte[name][sel], expl.relevance[name][sel],
                                          masks=data.masks[name][test][sel],
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
            f"mean ± sd)\n\n" + "\n".join(rows) + "\n")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    _write_text(os.path.join(out, "table1.md"), text)
    _write_text(os.path.join(out, "table1.csv"), "\n".join(csv) + "\n")
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
    _write_json(os.path.join(out, "localisation.json"), loc)
    _write_json(os.path.join(out, "table1.json"), {"table": table, "reports": reports,
                                                   "notes": notes})
    _log(verbose, text)
    return {"table": table, "localisation": loc, "notes": notes}
