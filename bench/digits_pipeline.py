"""scikit-learn's "Restricted Boltzmann Machine features for digit classification"
example (examples/neural_networks/plot_rbm_logistic_classification.py) with
sklearn.neural_network.BernoulliRBM and with pymdbn.RBM in its place.

Same data (digits, nudged by 1 pixel in 4 directions -> 5x, minmax-scaled to [0, 1]),
same split (test_size=0.2, random_state=0), same hyperparameters (rbm.learning_rate=0.06,
rbm.n_iter=10, rbm.n_components=100, LogisticRegression(max_iter=1000) with C=6000;
raw-pixel LogisticRegression with C=100). Then both RBM pipelines over 5 seeds.

    python bench/digits_pipeline.py [--seeds 0 1 2 3 4] [--json PATH]
"""

import argparse
import os
import sys
import time

import numpy as np
from scipy.ndimage import convolve
from sklearn import datasets, linear_model, metrics
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import minmax_scale

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit_json, machine_info  # noqa: E402


def nudge_dataset(X, Y):
    """5x bigger dataset: the 8x8 images moved by 1px left, right, down, up."""
    direction_vectors = [
        [[0, 1, 0], [0, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 1, 0]],
    ]

    def shift(x, w):
        return convolve(x.reshape((8, 8)), mode="constant", weights=w).ravel()

    X = np.concatenate([X] + [np.apply_along_axis(shift, 1, X, vector)
                              for vector in direction_vectors])
    Y = np.concatenate([Y for _ in range(5)], axis=0)
    return X, Y


def load():
    X, y = datasets.load_digits(return_X_y=True)
    X = np.asarray(X, "float32")
    X, Y = nudge_dataset(X, y)
    X = minmax_scale(X, feature_range=(0, 1))  # 0-1 scaling
    return train_test_split(X, Y, test_size=0.2, random_state=0)


def make_pipeline(rbm_cls, seed):
    logistic = linear_model.LogisticRegression(max_iter=1000)
    rbm = rbm_cls(random_state=seed)
    clf = Pipeline(steps=[("rbm", rbm), ("logistic", logistic)])
    # hyperparameters of the example (set by grid search there)
    rbm.learning_rate = 0.06
    rbm.n_iter = 10
    rbm.n_components = 100
    logistic.C = 6000
    return clf, logistic


def evaluate(clf, X_train, Y_train, X_test, Y_test):
    t0 = time.perf_counter()
    clf.fit(X_train, Y_train)
    fit = time.perf_counter() - t0
    rbm_time = None
    if isinstance(clf, Pipeline):
        # time of the RBM step alone (refit on the same data, same seed)
        rbm = clone(clf.named_steps["rbm"])
        t0 = time.perf_counter()
        rbm.fit(X_train)
        rbm_time = time.perf_counter() - t0
    pred = clf.predict(X_test)
    return {"accuracy": float(metrics.accuracy_score(Y_test, pred)),
            "macro_f1": float(metrics.f1_score(Y_test, pred, average="macro")),
            "fit_s": fit, "rbm_fit_s": rbm_time}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--bfloat16", action="store_true",
                   help="also pymdbn.RBM(dtype='bfloat16') (bfloat16 products, float32 weights)")
    args = p.parse_args()

    import functools

    import pymdbn
    from pymdbn import RBM

    systems = [("sklearn", BernoulliRBM), ("pymdbn", RBM)]
    if args.bfloat16:
        systems.append(("pymdbn-bf16", functools.partial(RBM, dtype="bfloat16")))

    X_train, X_test, Y_train, Y_test = load()
    print(f"digits nudged: train {X_train.shape}, test {X_test.shape}, dtype {X_train.dtype}")

    # the example as written (random_state=0)
    single = {}
    for name, cls in (("sklearn BernoulliRBM + LR", BernoulliRBM), ("pymdbn RBM + LR", RBM)):
        clf, _ = make_pipeline(cls, 0)
        single[name] = evaluate(clf, X_train, Y_train, X_test, Y_test)
        if name.startswith("sklearn"):
            sk_report = metrics.classification_report(Y_test, clf.predict(X_test), digits=4)
        else:
            pym_report = metrics.classification_report(Y_test, clf.predict(X_test), digits=4)
    raw = clone(linear_model.LogisticRegression(max_iter=1000))
    raw.C = 100.0
    single["raw-pixel LR (C=100)"] = evaluate(raw, X_train, Y_train, X_test, Y_test)

    print("\nLogistic regression using sklearn BernoulliRBM features:\n" + sk_report)
    print("Logistic regression using pymdbn RBM features:\n" + pym_report)

    print("The example (random_state=0):")
    hdr = f"{'model':28} {'accuracy':>8} {'macro F1':>8} {'fit (s)':>8} {'RBM fit (s)':>11}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in single.items():
        rb = "-" if r["rbm_fit_s"] is None else f"{r['rbm_fit_s']:.2f}"
        print(f"{name:28} {r['accuracy']:8.4f} {r['macro_f1']:8.4f} {r['fit_s']:8.2f} "
              f"{rb:>11}")

    # over seeds
    runs = {name: [] for name, _ in systems}
    for seed in args.seeds:
        for name, cls in systems:
            clf, _ = make_pipeline(cls, seed)
            r = evaluate(clf, X_train, Y_train, X_test, Y_test)
            r["seed"] = seed
            runs[name].append(r)
    summary = {}
    print(f"\nOver random_state in {args.seeds} (mean +/- sd, ddof=1):")
    hdr = (f"{'RBM':8} {'accuracy':>17} {'macro F1':>17} {'pipeline fit (s)':>17} "
           f"{'RBM fit (s)':>15}")
    print(hdr)
    print("-" * len(hdr))
    for name, rs in runs.items():
        s = {}
        for key in ("accuracy", "macro_f1", "fit_s", "rbm_fit_s"):
            vals = np.array([r[key] for r in rs])
            s[key] = {"mean": float(vals.mean()),
                      "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                      "values": vals.tolist()}
        summary[name] = s
        print(f"{name:11} {s['accuracy']['mean']:8.4f} +/- {s['accuracy']['sd']:.4f} "
              f"{s['macro_f1']['mean']:8.4f} +/- {s['macro_f1']['sd']:.4f} "
              f"{s['fit_s']['mean']:8.2f} +/- {s['fit_s']['sd']:.2f} "
              f"{s['rbm_fit_s']['mean']:6.2f} +/- {s['rbm_fit_s']['sd']:.2f}")
    sp = summary["sklearn"]["rbm_fit_s"]["mean"] / summary["pymdbn"]["rbm_fit_s"]["mean"]
    print(f"RBM fit speed-up sklearn/pymdbn: {sp:.2f}x")

    record = {"benchmark": "digits_pipeline", "machine": machine_info(),
              "threads_env": {k: os.environ.get(k) for k in
                              ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")},
              "pymdbn_config": pymdbn.show_config(mode="dicts"),
              "train_shape": list(X_train.shape), "test_shape": list(X_test.shape),
              "example_seed0": single, "seeds": args.seeds, "per_seed": runs,
              "summary": summary, "rbm_fit_speedup_sklearn_over_pymdbn": sp}
    emit_json(record, args.json)


if __name__ == "__main__":
    main()
