"""The ``pymdbn`` command: demo, train, evaluate, explain, experiment, bench, digits.

Rules every command follows: an output that exists is never replaced without
``--overwrite``; the output location is created and test-written, and every
optional dependency the command needs is imported, before any data is loaded or
model trained; numbers are checked when parsed; an error is one line on stderr
with exit status 2.

The positive class (sensitivity, specificity, ROC AUC, the explained class) is
``--positive-class`` when given, else the rule of
:func:`pymdbn.metrics.positive_class`: of two named classes the one that is not a
known negative name ('healthy', 'normal', 'benign', 'no-tumor', ...), of the integer
classes 0 and 1 the class 1; when no rule decides, the command asks for
``--positive-class``.
"""

import argparse
import os
import re
import sys

__all__ = ["main", "build_parser"]

#: Files ``pymdbn explain`` writes into its output folder.
EXPLAIN_OUTPUTS = ("heatmaps.png", "relevance.npz", "shares.json")


def _load_data(spec, size, modality=None, split=None, classes=None, default_split="test"):
    """Dispatch on the data path: .csv manifest, .npz (MedMNIST layout), or a folder.

    ``split`` applies to .npz files only (``default_split`` when None); ``classes``
    names the labels (a folder's: the subfolders to load, in label order).
    """
    from pymdbn import data

    if not os.path.exists(spec):
        raise ValueError(f"data path does not exist: {spec}")
    if split is not None and not spec.endswith(".npz"):
        raise ValueError(f"--split applies to .npz data only, not to {spec}")
    if spec.endswith(".csv"):
        return data.load_manifest(spec, size=size, classes=classes)
    if spec.endswith(".npz"):
        return data.load_medmnist_npz(spec, split=split or default_split,
                                      modality=modality or "image", size=size,
                                      classes=classes)
    if os.path.isdir(spec):
        return data.load_image_folder(spec, modality=modality or "image", size=size,
                                      classes=classes)
    raise ValueError(f"cannot tell the format of {spec}: use a folder, a .csv manifest or a "
                     ".npz file")


def _names(ds):
    """The class name of every sample (``classes[y]``); models are fitted on these."""
    import numpy as np

    if len(ds.y) and ds.y.min() < 0:
        raise ValueError("the data has unlabelled samples")
    if ds.classes and len(ds.classes) <= int(ds.y.max()):
        raise ValueError(f"labels go up to {int(ds.y.max())} but only {len(ds.classes)} class "
                         f"names are known: {list(ds.classes)}")
    return np.asarray([str(c) for c in ds.classes])[ds.y]


def _labels_for(model, ds):
    """The data's labels in the model's terms: names for a model fitted on names, label
    indices for a model fitted on integers (models saved before names were kept)."""
    classes = model.classes_
    if classes.dtype.kind in "iub":
        return ds.y
    names = _names(ds)
    unknown = sorted(set(names.tolist()) - set(classes.tolist()))
    if unknown:
        raise ValueError(f"the data's classes {unknown} are not classes of the model "
                         f"{classes.tolist()} (name the labels with --classes)")
    return names


def _explained_class(model, positive):
    """The positive class of a model, by --positive-class or the documented rule."""
    from pymdbn.metrics import positive_class

    return positive_class(model.classes_, positive)


def _output_file(path, overwrite):
    """Check an output file's folder is writable and the file may be written."""
    from pymdbn.experiments import prepare_output

    if path.endswith(os.sep) or os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give a file name")
    folder, name = os.path.split(os.path.abspath(path))
    prepare_output(folder, [name], overwrite)


def _check_sizes(args):
    if args.size % args.model_size:
        raise ValueError(f"--model-size {args.model_size} must divide --size {args.size}")


def _cmd_demo(args):
    from pymdbn.experiments import run_demo

    _check_sizes(args)
    run_demo(args.out, n_patients=args.n_patients, size=args.size, model_size=args.model_size,
             difficulty=args.difficulty, random_state=args.seed,
             pretrain_epochs=args.pretrain_epochs, verbose=not args.quiet,
             overwrite=args.overwrite, device=args.device, dtype=args.dtype)


def _cmd_train(args):
    import numpy as np

    from pymdbn import presets
    from pymdbn.metrics import positive_class

    _output_file(args.out, args.overwrite)
    ds = _load_data(args.data, args.size, args.modality, args.split, args.classes,
                    default_split="train")
    y = _names(ds)
    classes = np.unique(y)
    if len(classes) == 2 or args.positive_class is not None:
        try:
            positive = positive_class(classes, args.positive_class)
        except ValueError:
            if args.positive_class is not None:
                raise
            positive = None  # evaluate and explain will ask for --positive-class
    else:
        positive = None
    factory = {"proposed": presets.proposed, "e-mdbn": presets.e_mdbn, "mdbn": presets.mdbn,
               "dbn": presets.early_fusion_dbn}[args.preset]
    kw = {} if args.preset == "dbn" else {"modalities": sorted(ds.X)}
    model = factory(random_state=args.seed, verbose=not args.quiet, device=args.device, **kw)
    model.fit(ds.X, y)
    model.save(args.out)
    note = (f"positive class {positive}" if positive is not None else
            "no rule decides the positive class: pass --positive-class to evaluate and "
            "explain" if len(classes) == 2 else "multi-class")
    print(f"saved {args.out} ({len(y)} samples, classes {classes.tolist()}, {note}, "
          f"modalities {sorted(ds.X)})")


def _cmd_evaluate(args):
    import pymdbn
    from pymdbn._atomic import write_json
    from pymdbn.metrics import classification_report, format_report

    if args.out:
        _output_file(args.out, args.overwrite)
    model = pymdbn.load(args.model, device=args.device)
    binary = len(model.classes_) == 2
    positive = _explained_class(model, args.positive_class) if binary else None
    ds = _load_data(args.data, _model_size(model), args.modality, args.split, args.classes)
    y_true = _labels_for(model, ds)
    proba = model.predict_proba(ds.X)
    # Score columns follow model.classes_: the positive one is not necessarily column 1.
    score = proba[:, list(model.classes_).index(positive)] if binary else proba
    report = classification_report(y_true, model.predict(ds.X), score, pos_label=positive,
                                   labels=model.classes_)
    print(format_report(report))
    if args.out:
        write_json(args.out, report)


def _model_size(model):
    shapes = model.to_dict()["meta"].get("image_shapes", {})
    sizes = {tuple(s)[0] for s in shapes.values() if len(s) == 2}
    return sizes.pop() if len(sizes) == 1 else None


def _cmd_explain(args):
    import numpy as np

    import pymdbn
    from pymdbn._atomic import atomic_write, write_json
    from pymdbn.experiments import healthy_reference, prepare_output, require
    from pymdbn.lrp import explain

    require("matplotlib", "pymdbn explain (its heatmaps)")

    if args.reference_data is not None and args.reference_class is None:
        raise ValueError("--reference-data needs --reference-class")
    prepare_output(args.out, EXPLAIN_OUTPUTS, args.overwrite)
    model = pymdbn.load(args.model, device=args.device)
    # The explained class: the positive one, so that every heatmap shows the evidence
    # for it (e.g. cancer), whatever the model predicted for that patient.
    explained = _explained_class(model, args.positive_class)
    target = list(model.classes_).index(explained)
    size = _model_size(model)
    ds = _load_data(args.data, size, args.modality, args.split, args.classes)
    reference = None
    if args.reference_class is not None:
        # The reference is a training mean: an .npz reference file gives its train split.
        src = ds if args.reference_data is None else _load_data(
            args.reference_data, size, args.modality, None, args.classes,
            default_split="train")
        if args.reference_class not in src.classes:
            raise ValueError(f"--reference-class {args.reference_class!r} is not a class of "
                             f"the reference data; classes are {list(src.classes)}")
        reference = healthy_reference(src.X, _names(src), args.reference_class)
    idx = np.arange(min(args.n, len(ds.y)))
    X = {k: v[idx] for k, v in ds.X.items()}
    expl = explain(model, X, target=target, composite=args.composite, reference=reference)
    masks = None
    if ds.masks and all(ds.masks.get(k) is not None for k in X):
        masks = {k: ds.masks[k][idx] for k in X}
    # Rows name the patient and, when the data is labelled with the model's classes, the
    # true class; the default colour scale is the 99.5th percentile of |R|.
    try:
        truth = np.asarray(_labels_for(model, ds))[idx]
    except (ValueError, TypeError, IndexError):  # unlabelled, or classes the model lacks
        truth = None
    expl.heatmaps(X, masks=masks, path=os.path.join(args.out, "heatmaps.png"), y_true=truth,
                  sample_ids=None if ds.patient_ids is None else [ds.patient_ids[i] for i in idx],
                  reference="none" if args.reference_class is None
                  else f"mean of the '{args.reference_class}' patients")
    with atomic_write(os.path.join(args.out, "relevance.npz")) as f:
        np.savez(f, **{f"relevance_{k}": v for k, v in expl.relevance.items()})
    shares = {k: [float(x) for x in v] for k, v in expl.shares.items()}
    write_json(os.path.join(args.out, "shares.json"),
               {"explained_class": explained, "classes": model.classes_.tolist(),
                "target": [int(t) for t in expl.target], "shares": shares,
                "reference_class": args.reference_class})
    print(f"explained class {explained}; wrote heatmaps.png, relevance.npz and shares.json "
          f"to {args.out}")


def _cmd_experiment(args):
    from pymdbn.experiments import run_table1

    if args.name != "table1":
        raise ValueError(f"unknown experiment {args.name!r}; available: table1")
    _check_sizes(args)
    run_table1(args.out, seeds=tuple(range(args.seeds)), n_patients=args.n_patients,
               size=args.size, model_size=args.model_size, difficulty=args.difficulty,
               pretrain_epochs=args.pretrain_epochs, verbose=not args.quiet,
               overwrite=args.overwrite)


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


#: Options of pymdbn's own benchmark (pymdbn.benchmark), which the scripts do not take.
_BENCH_OPTIONS = ("suite", "shapes", "n", "threads", "dtype", "rounds", "implementations",
                  "unset_openblas_env", "json", "markdown")


def _cmd_bench(args):
    if not args.names:
        _run_benchmark(args)
        return
    given = [f"--{k.replace('_', '-')}" for k in _BENCH_OPTIONS if getattr(args, k)]
    if given:
        raise ValueError(f"{given[0]} is an option of pymdbn's own benchmark, not of the "
                         f"benchmark scripts ({', '.join(args.names)}): give one or the other")
    _run_scripts(args)


def _run_benchmark(args):
    from pymdbn import benchmark
    from pymdbn._atomic import write_json, write_text

    outputs = [p for p in (args.json, args.markdown) if p]
    if len(outputs) == 2 and os.path.abspath(outputs[0]) == os.path.abspath(outputs[1]):
        raise ValueError("--json and --markdown name the same file")
    for path in outputs:
        _output_file(path, args.overwrite)
    record = benchmark.run_benchmark(
        args.suite or "all", shapes=args.shapes, n_samples=args.n,
        threads=args.threads or (1, 2), dtypes=args.dtype or ("float32",),
        rounds=args.rounds, implementations=args.implementations,
        unset_openblas_env=args.unset_openblas_env, quick=args.quick,
        argv=_bench_command(args), quiet=args.quiet)
    text = benchmark.to_markdown(record)
    print(text)
    if args.json:
        write_json(args.json, record)
    if args.markdown:
        write_text(args.markdown, text + "\n")


def _bench_command(args):
    """The options of this run, as a command line for the record."""
    out = []
    for key in _BENCH_OPTIONS + ("quick", "overwrite", "quiet"):
        value = getattr(args, key)
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            out.append(flag)
        elif value:
            items = value if isinstance(value, list) else [value]
            out += [flag] + [",".join(map(str, v)) if isinstance(v, tuple) else str(v)
                             for v in items]
    return out


def _run_scripts(args):
    import subprocess

    names = [n.removesuffix(".py") + ".py" for n in args.names]
    unknown = [n[:-3] for n in names if n not in _BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from "
                         f"{', '.join(s[:-3] for s in _BENCHES)} (the suites of pymdbn's own "
                         "benchmark are chosen with --suite)")
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
        # "argument --n: --n must be ..." -> "--n must be ..."
        m = re.match(r"argument ([^:]+): (.*)", message)
        if m and any(m.group(2).startswith(f + " ") for f in m.group(1).split("/")):
            message = m.group(2)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(flag, convert, ok, what):
    """argparse ``type=``: ``convert(text)`` where ``ok`` holds, else a message naming ``flag``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):  # a NaN fails every comparison in ``ok``
            raise argparse.ArgumentTypeError(f"{flag} must be {what}, got {text}")
        return value
    return parse


def _positive_int(flag):
    """argparse ``type=``: an integer >= 1."""
    return _number(flag, int, lambda v: v >= 1, "a positive integer")


def _fraction(flag):
    """argparse ``type=``: a float in [0, 1]."""
    return _number(flag, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def _shape(text):
    """argparse ``type=``: V,H,B, three positive integers."""
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--shapes must be V,H,B (visible, hidden and batch "
                                         f"sizes, positive integers), got {text}")
    return shape


def _class_list(text):
    """argparse ``type=``: comma-separated class names, in label order."""
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--classes must be two or more distinct names "
                                         f"separated by commas, got {text!r}")
    return names


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

    def device(sp):
        sp.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the model computes (default cpu; cuda needs the CUDA "
                             "build and a GPU: see pymdbn.show_config())")

    def overwrite(sp):
        sp.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (default: refuse, exit status 2)")

    def phantom_args(sp, n):
        sp.add_argument("--n-patients", type=_positive_int("--n-patients"), default=n,
                        help=f"phantom patients to generate (default {n})")
        sp.add_argument("--size", type=_positive_int("--size"), default=64,
                        help="side of the generated scans in pixels (default 64)")
        sp.add_argument("--model-size", type=_positive_int("--model-size"), default=MODEL_SIZE,
                        help=f"side the scans are resized to for the models, a divisor of "
                             f"--size (default {MODEL_SIZE})")
        sp.add_argument("--pretrain-epochs", type=_positive_int("--pretrain-epochs"),
                        default=DEMO_PRETRAIN_EPOCHS,
                        help=f"RBM pretraining epochs of every belief network (default "
                             f"{DEMO_PRETRAIN_EPOCHS})")
        sp.add_argument("--difficulty", type=_fraction("--difficulty"), default=0.5,
                        help="lesion subtlety and noise in [0, 1] (default 0.5)")

    positive_help = ("the positive (disease) class, to which sensitivity, specificity, "
                     "ROC AUC and the heatmaps refer (default: of two named classes the one "
                     "not named healthy, normal, benign, no-tumor, negative, ...; of the "
                     "classes 0 and 1, 1)")

    def data_args(sp, split_default, positive=positive_help):
        sp.add_argument("--data", required=True, help=data_help)
        sp.add_argument("--split", choices=["train", "val", "test"],
                        help=f"split of a MedMNIST-style .npz file (default {split_default})")
        sp.add_argument("--classes", type=_class_list, metavar="NAME,NAME",
                        help="class names of integer labels (.npz, manifest), in label "
                             "order, e.g. malignant,benign (default: the label values)")
        sp.add_argument("--modality", help="modality name for single-modality folders/npz")
        sp.add_argument("--positive-class", metavar="CLASS", help=positive)

    sp = sub.add_parser("demo", help="train, evaluate and explain the proposed model on "
                                     "built-in phantoms (the main job)")
    sp.add_argument("--out", required=True, help="output folder")
    phantom_args(sp, DEMO_PATIENTS)
    overwrite(sp)
    device(sp)
    sp.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="bfloat16: bfloat16 operands of the products, float32 weights "
                         "(needs pymdbn[bf16] and AVX512_BF16/AMX; else float32 with a warning)")
    common(sp)
    sp.set_defaults(func=_cmd_demo)

    data_help = "a folder with one subfolder per class, a CSV manifest or a MedMNIST .npz"
    sp = sub.add_parser("train", help="train a model on your data and save it")
    data_args(sp, "train", positive="the positive class, checked and reported (the model "
                                    "stores the class names; evaluate and explain take it)")
    sp.add_argument("--out", required=True, help="model file to write (.npz)")
    sp.add_argument("--preset", choices=["proposed", "e-mdbn", "mdbn", "dbn"],
                    default="proposed", help="system to train (default proposed)")
    sp.add_argument("--size", type=_positive_int("--size"), default=64,
                    help="resize images to SIZE x SIZE")
    overwrite(sp)
    device(sp)
    common(sp)
    sp.set_defaults(func=_cmd_train)

    sp = sub.add_parser("evaluate", help="metrics of a saved model on labelled data")
    sp.add_argument("--model", required=True, help="model file written by train or demo")
    data_args(sp, "test")
    sp.add_argument("--out", help="write the report as JSON here")
    overwrite(sp)
    device(sp)
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_evaluate)

    sp = sub.add_parser("explain", help="LRP heatmaps of a saved model's decisions, for the "
                                        "positive class")
    sp.add_argument("--model", required=True, help="model file written by train or demo")
    data_args(sp, "test", positive=positive_help.replace(
        "the heatmaps refer", "the heatmaps refer: the explained class of every sample"))
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--n", type=_positive_int("--n"), default=8,
                    help="samples to explain (default 8)")
    sp.add_argument("--composite", default="epsilon",
                    choices=["epsilon", "epsilon_plus", "epsilon_gamma_box",
                             "epsilon_plus_flat"], help="LRP composite (default epsilon)")
    sp.add_argument("--reference-class", metavar="CLASS",
                    help="explain against the mean image of this class (e.g. the healthy "
                         "one); Epsilon layers then propagate differences from it")
    sp.add_argument("--reference-data", metavar="PATH",
                    help="take the reference class's mean from this data (default: --data; "
                         "the train split of an .npz file)")
    overwrite(sp)
    device(sp)
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_explain)

    sp = sub.add_parser("experiment", help="reproduce the source paper's comparison")
    sp.add_argument("name", choices=["table1"], help="experiment to run")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--seeds", type=_positive_int("--seeds"), default=5,
                    help="number of seeds (default 5)")
    phantom_args(sp, DEMO_PATIENTS)
    overwrite(sp)
    common(sp, seed=False)
    sp.set_defaults(func=_cmd_experiment)

    from pymdbn.benchmark import IMPLEMENTATIONS, SUITES

    sp = sub.add_parser("bench", help="time a CD-1 epoch against its GEMM bound, NumPy, "
                        "scikit-learn and PyTorch, and how it scales; or run the benchmark "
                        "scripts by NAME")
    sp.add_argument("names", nargs="*", metavar="NAME",
                    help=f"run these benchmark scripts instead (bench/ of the checkout, or the "
                         f"copy installed with pymdbn): {', '.join(s[:-3] for s in _BENCHES)}")
    sp.add_argument("--suite", choices=SUITES,
                    help="cd: one CD-1 epoch every way; scaling: against N, V H, the batch "
                         "size, threads, and an MDBN fit's peak memory; all (default)")
    sp.add_argument("--shapes", nargs="+", type=_shape, metavar="V,H,B",
                    help="visible, hidden and batch sizes of the cd suite (default 784,512,128 "
                         "4096,1024,256; 784,512,128 with --quick)")
    sp.add_argument("--n", type=_positive_int("--n"),
                    help="rows per epoch (default 10000, 1000 with --quick)")
    sp.add_argument("--threads", nargs="+", type=_positive_int("--threads"), metavar="T",
                    help="thread counts (default 1 2)")
    sp.add_argument("--dtype", nargs="+", choices=["float32", "bfloat16"],
                    help="dtypes of the cd suite (default float32)")
    sp.add_argument("--rounds", type=_positive_int("--rounds"),
                    help="timed epochs per implementation and configuration, taken in turns "
                         "(default 5, 2 with --quick)")
    sp.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS, metavar="IMPL",
                    help=f"columns of the cd suite to measure, of {', '.join(IMPLEMENTATIONS)} "
                         "(default all)")
    sp.add_argument("--unset-openblas-env", action="store_true",
                    help="drop OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the workers' "
                         "environment (the record says so)")
    sp.add_argument("--json", metavar="PATH", help="write the full record here")
    sp.add_argument("--markdown", metavar="PATH", help="write the tables here (also printed)")
    sp.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    overwrite(sp)
    common(sp, seed=False)
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
    from pymdbn.backend import DeviceUnavailableError

    try:
        args.func(args)
    except (ValueError, ImportError, OSError, DeviceUnavailableError) as exc:
        print(f"pymdbn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
