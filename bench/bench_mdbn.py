"""Time an MDBN fit on 64x64 phantoms and the share of it spent in the C++ kernels.

    python bench/bench_mdbn.py [--n 2000] [--size 64] [--epochs 2] [--profile]

With ``--profile`` every op of ``pymdbn.backend.ops`` is wrapped in a timing counter
(all modules call the kernels through that one module object), and the report gives
the time per kernel and the share of the fit spent in C++ versus Python.
"""

import argparse
import functools
import json
import time
from collections import defaultdict

from _common import machine_info

from pymdbn import MDBN
from pymdbn import backend
from pymdbn.backend import OPS, ops
from pymdbn.data import make_phantoms


def instrument():
    """Wrap each op of the seam; returns {name: [calls, seconds]}."""
    stats = defaultdict(lambda: [0, 0.0])
    for name in OPS:
        fn = getattr(ops, name)

        def timed(*args, _fn=fn, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                entry = stats[_name]
                entry[0] += 1
                entry[1] += time.perf_counter() - t0
        setattr(ops, name, functools.wraps(fn)(timed))
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every phase")
    ap.add_argument("--pathway", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    X, y, _, _ = make_phantoms(args.n, size=args.size, random_state=0)
    t_data = time.perf_counter() - t0
    # The kernels load on first use: load them here, or the fit's time includes it.
    backend.get(backend.host_backend())
    stats = instrument() if args.profile else None
    model = MDBN({m: tuple(args.pathway) for m in X}, fusion="joint", joint_units=(256,),
                 clip=4.0, pretrain_epochs=args.epochs, max_epochs=args.epochs,
                 random_state=0)
    t0 = time.perf_counter()
    model.fit(X, y)
    t_fit = time.perf_counter() - t0
    fit_stats = {k: tuple(v) for k, v in stats.items()} if stats is not None else None
    report = {"machine": machine_info(), "n": args.n, "size": args.size,
              "pathway": args.pathway, "epochs_per_phase": args.epochs,
              "data_seconds": round(t_data, 2), "fit_seconds": round(t_fit, 2),
              "train_accuracy": model.score(X, y)}
    if fit_stats is not None:  # the fit only, not the scoring above
        in_core = sum(s for _, s in fit_stats.values())
        report["kernels"] = {k: {"calls": c, "seconds": round(s, 3)} for k, (c, s)
                             in sorted(fit_stats.items(), key=lambda kv: -kv[1][1])}
        report["cpp_share"] = round(in_core / t_fit, 3)
        report["python_share"] = round(1 - in_core / t_fit, 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
