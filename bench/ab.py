"""Two builds side by side in one run: the same benchmarks, alternating, same machine.

For a change that must not cost speed (a refactor, a new dispatch layer), install the
old commit into one virtual environment and the new one into another, then

    python bench/ab.py --before /path/old-venv/bin/python:/path/old-checkout \\
                       --after  /path/new-venv/bin/python:. --rounds 3

Each round runs every benchmark once per build, in alternating order (A B, then B A), so
a drift in machine load falls on both. Reported per figure: the median over rounds for
each build and after/before (below 1 is faster). Figures: one CD-1 epoch at two shapes
(``bench_rbm.py``: pymdbn's raw epoch and its ratio to the NumPy CD-1 measured in the
same worker), an MDBN fit on phantoms (``bench_mdbn.py``), and an LRP batch
(``bench_lrp.py``: forward, explain, the fitted model's decision_function and explain).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

RBM_SHAPES = ("784,512,128", "4096,1024,256")
FIGURES = ("rbm", "mdbn", "lrp")


def _run(python, tree, args, json_path=None):
    cmd = [python, *args] + (["--json", json_path] if json_path else [])
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {tree}) failed:\n{proc.stderr[-2000:]}")
    if json_path:
        with open(json_path) as f:
            return json.load(f)
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def measure(python, tree, n_rbm, n_mdbn, n_lrp, tmp, figures=FIGURES):
    """One pass of every benchmark with one build: {figure: seconds or ratio}."""
    out = {}
    if "rbm" in figures:
        out.update(_rbm(python, tree, n_rbm, tmp))
    if "mdbn" in figures:
        rec = _run(python, tree, ["bench/bench_mdbn.py", "--n", str(n_mdbn), "--size", "32"])
        out["mdbn fit (s)"] = rec["fit_seconds"]
    if "lrp" in figures:
        out.update(_lrp(python, tree, n_lrp, tmp))
    return out


def _rbm(python, tree, n_rbm, tmp):
    out = {}
    rec = _run(python, tree, ["bench/bench_rbm.py", "--n", str(n_rbm), "--shapes", *RBM_SHAPES,
                              "--threads", "2", "--visible", "bernoulli", "--no-pcd",
                              "--repeat", "3"], os.path.join(tmp, "rbm.json"))
    for r in rec["results"]:
        key = f"rbm {r['V']}x{r['H']} b{r['B']}"
        out[f"{key} epoch (s)"] = r["best"]["pymdbn_epoch"]
        out[f"{key} np/pym"] = r["numpy_over_pymdbn"]
    return out


def _lrp(python, tree, n_lrp, tmp):
    out = {}
    rec = _run(python, tree, ["bench/bench_lrp.py", "--n", str(n_lrp)], os.path.join(tmp, "lrp.json"))
    out["lrp forward (s)"] = rec["forward_s"]
    out["lrp explain (s)"] = rec["explain_s"]
    out["lrp explain/forward"] = rec["explain_over_forward"]
    out["model decision_function (s)"] = rec["model_forward_s"]
    out["model explain (s)"] = rec["model_explain_s"]
    return out


def _build(spec):
    python, _, tree = spec.partition(":")
    return python, os.path.abspath(tree or ".")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, type=_build, help="PYTHON[:CHECKOUT]")
    ap.add_argument("--after", required=True, type=_build, help="PYTHON[:CHECKOUT]")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-rbm", type=int, default=10000, help="rows of the CD-1 epoch")
    ap.add_argument("--n-mdbn", type=int, default=1000, help="phantom patients (32x32)")
    ap.add_argument("--n-lrp", type=int, default=1000, help="samples explained")
    ap.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES),
                    help="run only these benchmarks")
    ap.add_argument("--json", help="also write every measurement here")
    args = ap.parse_args(argv)
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for which in order:
                python, tree = getattr(args, which)
                runs[which].append(measure(python, tree, args.n_rbm, args.n_mdbn, args.n_lrp, tmp,
                                           args.only))
                print(f"round {i + 1} {which}: done", file=sys.stderr, flush=True)
    keys = list(runs["before"][0])
    med = {w: {k: statistics.median(r[k] for r in runs[w]) for k in keys} for w in runs}
    print(f"{'figure':32} {'before':>10} {'after':>10} {'after/before':>13}   "
          f"(median of {args.rounds} alternating rounds)")
    for k in keys:
        b, a = med["before"][k], med["after"][k]
        print(f"{k:32} {b:10.4f} {a:10.4f} {a / b:13.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "median": med, "argv": sys.argv}, f, indent=1)


if __name__ == "__main__":
    main()
