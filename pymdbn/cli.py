"""The ``pymdbn`` command: demo, train, evaluate, explain, experiment, bench, digits."""

import argparse
import os
import sys

__all__ = ["main"]


def _load_data(spec, size, modality=None):
    """Dispatch on the data path: .csv manifest, .npz (MedMNIST layout), or a folder."""
    from pymdbn import data

    if not os.path.exists(spec):
        raise ValueError(f"data path does not exist: {spec}")
    if spec.endswith(".csv"):
        return data.load_manifest(spec, size=size)
    if spec.endswith(".npz"):
        return data.load_medmnist_npz(spec, split="test", modality=modality or "image",
                                      size=size)
    if os.path.isdir(spec):
        return data.load_image_folder(spec, modality=modality or "image", size=size)
    raise ValueError(f"cannot tell the format of {spec}: use a folder, a .csv manifest or a "
                     ".npz file")


def _cmd_demo(args):
    from pymdbn.experiments import run_demo

    run_demo(args.out, n_patients=args.n_patients, size=args.size, model_size=args.model_size,
             difficulty=args.difficulty, random_state=args.seed,
             pretrain_epochs=args.pretrain_epochs, verbose=not args.quiet)


def _cmd_train(args):
    from pymdbn import presets

    ds = _load_data(args.data, args.size, args.modality)
    factory = {"proposed": presets.proposed, "e-mdbn": presets.e_mdbn, "mdbn": presets.mdbn,
               "dbn": presets.early_fusion_dbn}[args.preset]
    kw = {} if args.preset == "dbn" else {"modalities": sorted(ds.X)}
    model = factory(random_state=args.seed, verbose=not args.quiet, **kw)
    model.fit(ds.X, ds.y)
    model.save(args.out)
    print(f"saved {args.out} ({len(ds.y)} samples, modalities {sorted(ds.X)})")


def _cmd_evaluate(args):
    import pymdbn
    from pymdbn.metrics import classification_report, format_report

    model = pymdbn.load(args.model)
    ds = _load_data(args.data, _model_size(model), args.modality)
    proba = model.predict_proba(ds.X)
    score = proba[:, 1] if proba.shape[1] == 2 else proba
    report = classification_report(ds.y, model.predict(ds.X), score)
    print(format_report(report))
    if args.out:
        from pymdbn.experiments import _write_json

        _write_json(args.out, report)


def _model_size(model):
    shapes = model.to_dict()["meta"].get("image_shapes", {})
    sizes = {tuple(s)[0] for s in shapes.values() if len(s) == 2}
    return sizes.pop() if len(sizes) == 1 else None


def _cmd_explain(args):
    import numpy as np

    import pymdbn
    from pymdbn import plot
    from pymdbn.experiments import _write_json, healthy_reference
    from pymdbn.lrp import explain

    model = pymdbn.load(args.model)
    size = _model_size(model)
    ds = _load_data(args.data, size, args.modality)
    reference = None
    if args.reference_class is not None:
        src = ds if args.reference_data is None else _load_data(args.reference_data, size,
                                                                args.modality)
        if args.reference_class not in src.classes:
            raise ValueError(f"--reference-class {args.reference_class!r} is not a class of "
                             f"the reference data; classes are {list(src.classes)}")
        reference = healthy_reference(src.X, src.y, src.classes.index(args.reference_class))
    elif args.reference_data is not None:
        raise ValueError("--reference-data needs --reference-class")
    idx = np.arange(min(args.n, len(ds.y)))
    X = {k: v[idx] for k, v in ds.X.items()}
    expl = explain(model, X, composite=args.composite, reference=reference)
    os.makedirs(args.out, exist_ok=True)
    masks = None
    if ds.masks and all(ds.masks.get(k) is not None for k in X):
        masks = {k: ds.masks[k][idx] for k in X}
    plot.heatmaps(X, expl.relevance, masks=masks, path=os.path.join(args.out, "heatmaps.png"))
    path = os.path.join(args.out, "relevance.npz")
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **{f"relevance_{k}": v for k, v in expl.relevance.items()})
    os.replace(tmp, path)
    shares = {k: [float(x) for x in v] for k, v in expl.shares.items()}
    _write_json(os.path.join(args.out, "shares.json"),
                {"target": [int(t) for t in expl.target], "shares": shares,
                 "reference_class": args.reference_class})
    print(f"wrote heatmaps.png, relevance.npz and shares.json to {args.out}")


def _cmd_experiment(args):
    from pymdbn.experiments import run_table1

    if args.name != "table1":
        raise ValueError(f"unknown experiment {args.name!r}; available: table1")
    run_table1(args.out, seeds=tuple(range(args.seeds)), n_patients=args.n_patients,
               size=args.size, model_size=args.model_size, difficulty=args.difficulty,
               pretrain_epochs=args.pretrain_epochs, verbose=not args.quiet)


#: The benchmark suite (bench/ in a checkout, shipped in the wheel as pymdbn/_bench), with
#: the arguments of a quick smoke run.
_BENCHES = {
    "bench_rbm.py": ["--quick"],
    "bench_mdbn.py": ["--n", "400", "--epochs", "1"],
    "bench_lrp.py": ["--n", "200", "--repeat", "2", "--no-model"],
    "bench_phantoms.py": ["--n", "1000"],
}


def bench_dir():
    """The folder of the benchmark scripts: the installed copy, else the checkout's bench/."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(here, "_bench"), os.path.join(os.path.dirname(here), "bench")):
        if all(os.path.isfile(os.path.join(folder, s)) for s in _BENCHES):
            return folder
    raise ValueError(f"the benchmark scripts are missing: neither {here}/_bench (an installed "
                     "pymdbn) nor a source checkout's bench/ folder has them; reinstall pymdbn")


def _cmd_bench(args):
    import subprocess

    names = [n.removesuffix(".py") + ".py" for n in args.names] or list(_BENCHES)
    unknown = [n[:-3] for n in names if n not in _BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from "
                         f"{', '.join(s[:-3] for s in _BENCHES)}")
    folder = bench_dir()
    failed = []
    for script in names:
        print(f"== {script}", flush=True)
        cmd = [sys.executable, os.path.join(folder, script)]
        cmd += _BENCHES[script] if args.quick else []
        if subprocess.run(cmd).returncode != 0:
            failed.append(script)
    if failed:
        raise ValueError(f"benchmarks failed: {', '.join(failed)}")


def _cmd_digits(args):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from pymdbn import RBM

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0)
    pipe = Pipeline([("rbm", RBM(n_components=100, learning_rate=0.06, n_iter=10,
                                 random_state=args.seed, verbose=not args.quiet)),
                     ("logistic", LogisticRegression(C=6000, max_iter=1000))])
    pipe.fit(Xtr, ytr)
    print(f"RBM features + logistic regression on digits: accuracy {pipe.score(Xte, yte):.4f}")


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    """The argument parser of the ``pymdbn`` command."""
    p = _Parser(prog="pymdbn", description="Multimodal deep belief networks explained by LRP.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    from pymdbn.experiments import DEMO_PATIENTS, DEMO_PRETRAIN_EPOCHS, MODEL_SIZE

    def common(sp, seed=True):
        if seed:
            sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sp.add_argument("--quiet", action="store_true", help="no progress output")

    def phantom_args(sp, n):
        sp.add_argument("--n-patients", type=int, default=n,
                        help=f"phantom patients to generate (default {n})")
        sp.add_argument("--size", type=int, default=64,
                        help="side of the generated scans in pixels (default 64)")
        sp.add_argument("--model-size", type=int, default=MODEL_SIZE,
                        help=f"side the scans are resized to for the models, a divisor of "
                             f"--size (default {MODEL_SIZE})")
        sp.add_argument("--pretrain-epochs", type=int, default=DEMO_PRETRAIN_EPOCHS,
                        help=f"RBM pretraining epochs of every belief network (default "
                             f"{DEMO_PRETRAIN_EPOCHS})")
        sp.add_argument("--difficulty", type=float, default=0.5,
                        help="lesion subtlety and noise in [0, 1] (default 0.5)")

    sp = sub.add_parser("demo", help="train, evaluate and explain the proposed model on "
                                     "built-in phantoms (the main job)")
    sp.add_argument("--out", required=True, help="output folder")
    phantom_args(sp, DEMO_PATIENTS)
    common(sp)
    sp.set_defaults(func=_cmd_demo)

    data_help = "a folder with one subfolder per class, a CSV manifest or a MedMNIST .npz"
    sp = sub.add_parser("train", help="train a model on your data and save it")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("--out", required=True, help="model file to write (.npz)")
    sp.add_argument("--preset", choices=["proposed", "e-mdbn", "mdbn", "dbn"],
                    default="proposed", help="system to train (default proposed)")
    sp.add_argument("--size", type=int, default=64, help="resize images to SIZE x SIZE")
    sp.add_argument("--modality", help="modality name for single-modality folders/npz")
    common(sp)
    sp.set_defaults(func=_cmd_train)

    sp = sub.add_parser("evaluate", help="metrics of a saved model on labelled data")
    sp.add_argument("--model", required=True, help="model file written by train or demo")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("--modality", help="modality name for single-modality folders/npz")
    sp.add_argument("--out", help="write the report as JSON here")
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_evaluate)

    sp = sub.add_parser("explain", help="LRP heatmaps of a saved model's decisions")
    sp.add_argument("--model", required=True, help="model file written by train or demo")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--n", type=int, default=8, help="samples to explain (default 8)")
    sp.add_argument("--composite", default="epsilon",
                    choices=["epsilon", "epsilon_plus", "epsilon_gamma_box",
                             "epsilon_plus_flat"], help="LRP composite (default epsilon)")
    sp.add_argument("--reference-class", metavar="CLASS",
                    help="explain against the mean image of this class (e.g. the healthy "
                         "one); Epsilon layers then propagate differences from it")
    sp.add_argument("--reference-data", metavar="PATH",
                    help="take the reference class's mean from this data (default: --data)")
    sp.add_argument("--modality", help="modality name for single-modality folders/npz")
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_explain)

    sp = sub.add_parser("experiment", help="reproduce the source paper's comparison")
    sp.add_argument("name", choices=["table1"], help="experiment to run")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    phantom_args(sp, DEMO_PATIENTS)
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_experiment)

    sp = sub.add_parser("bench", help="run the benchmark suite (bench/ of the checkout, or "
                        "the copy installed with pymdbn)")
    sp.add_argument("names", nargs="*", metavar="NAME",
                    help=f"benchmarks to run (default all: {', '.join(s[:-3] for s in _BENCHES)})")
    sp.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    sp.set_defaults(func=_cmd_bench)

    sp = sub.add_parser("digits", help="RBM features for digit classification "
                                       "(scikit-learn's example, with pymdbn.RBM)")
    common(sp)
    sp.set_defaults(func=_cmd_digits)
    return p


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, ImportError, OSError) as exc:
        print(f"pymdbn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
