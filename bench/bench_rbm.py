"""Time one CD-1 epoch: pymdbn.RBM vs an efficient NumPy CD-1 vs sklearn BernoulliRBM.

Each (shape, visible, threads) configuration runs in its own subprocess with
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set, so NumPy's, SciPy's and pymdbn's OpenBLAS
and pymdbn's OpenMP all use that many threads.

    python bench/bench_rbm.py                       # full run (N=10000)
    python bench/bench_rbm.py --quick               # smoke run (N=2000)
    python bench/bench_rbm.py --shapes 784,512,128 --threads 2 --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (OPENBLAS_ENV, best_of, binary_data, emit_json, gaussian_data,  # noqa: E402
                     machine_info)

# The efficient NumPy CD-1 lives in the package, so that `pymdbn bench` (installed) has it.
from pymdbn.benchmark import NumpyCD1  # noqa: E402

DEFAULT_SHAPES = ["784,512,128", "4096,1024,256"]
LR = 0.01


def _check_numpy_against_reference():
    """Sanity check: NumpyCD1's update equals pymdbn.backend.reference.cd_epoch's given the
    same hidden/visible samples (we only compare the deterministic part: with
    probabilities forced to 0/1 the samples are the same)."""
    from pymdbn.backend import reference as ref

    rng = np.random.default_rng(1)
    V, H, B, N = 20, 7, 4, 10
    X = (rng.random((N, V)) > 0.5).astype(np.float32)
    X[:, 0] = 1
    m = NumpyCD1(V, H, B, "bernoulli", learning_rate=0.05, momentum=0.5, seed=3)
    # rows of +40 or -40 make every probability (numerically) 0 or 1, so the Philox
    # samples of the reference and NumPy's samples agree (every row of X has a 1)
    m.W[...] = (40.0 * np.array([1, -1, 1, 1, -1, 1, -1])[:, None]
                * np.ones((H, V))).astype(np.float32)
    m.bh[...] = 1.0
    st = {"w": m.W.copy(), "b_visible": m.bv.copy(), "b_hidden": m.bh.copy(),
          "v_w": m.VW.copy(), "v_b_visible": m.Vbv.copy(), "v_b_hidden": m.Vbh.copy(),
          "chain": np.zeros((B, H), np.float32)}
    order = np.arange(N)
    m.epoch(X, order)
    ref.cd_epoch(X, order, B, st, k=1, persistent=False, visible="bernoulli", clip=None,
                 learning_rate=0.05, momentum=0.5, weight_decay=0.0, sparsity_target=0.1,
                 sparsity_cost=0.0, seed=0, first_step=0)
    for key, mine in (("w", m.W), ("b_visible", m.bv), ("b_hidden", m.bh), ("v_w", m.VW)):
        np.testing.assert_allclose(mine, st[key], rtol=1e-5, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------
# Worker: one configuration, in the current process (threads fixed by the environment)
# ---------------------------------------------------------------------------------------
PYM_STATE = ("components_", "intercept_hidden_", "intercept_visible_", "velocity_components_",
             "velocity_hidden_", "velocity_visible_")


def _snapshot(obj, names):
    """Copy the arrays ``names`` of obj now; return a function that copies them back."""
    saved = {n: getattr(obj, n).copy() for n in names}

    def restore():
        for n, a in saved.items():
            np.copyto(getattr(obj, n), a)
    return restore


def worker(args):
    import threadpoolctl
    import pymdbn
    from pymdbn import RBM
    from sklearn.neural_network import BernoulliRBM

    V, H, B = (int(t) for t in args.shape.split(","))
    vis = args.visible[0]
    X = binary_data(args.n, V) if vis == "bernoulli" else gaussian_data(args.n, V)
    rec = {"V": V, "H": H, "B": B, "N": args.n, "visible": vis, "threads": args.threads_now,
           "data_mean": float(X.mean())}
    rep = args.repeat

    def make(persistent=False, n_iter=1):
        return RBM(n_components=H, batch_size=B, n_iter=n_iter, persistent=persistent, k=1,
                   visible=vis, learning_rate=LR, random_state=0, dtype=np.float32)

    # 1. pymdbn fit (1 epoch + per-epoch pseudo-likelihood estimate for Bernoulli)
    rec["pymdbn_fit"] = best_of(lambda: make().fit(X), rep)
    # raw epoch: the model is initialised (fit with n_iter=0), one untimed warmup epoch,
    # then each timed epoch restarts from the initial state (like the NumPy baseline;
    # at lr=0.01 a second epoch diverges on 4096-dim Gaussian data)
    rbm = make(n_iter=0).fit(X)
    order = np.random.default_rng(1).permutation(len(X))
    restore = _snapshot(rbm, PYM_STATE)
    rec["pymdbn_epoch"] = best_of(lambda: rbm._run_epoch(X, order), rep, warmup=1,
                                  setup=restore)
    restore()
    rec["pymdbn_recon_err"] = float(rbm._run_epoch(X, order))
    if vis == "bernoulli" and not args.no_pcd:
        # sklearn always does PCD: pymdbn's PCD epoch for a like-for-like comparison
        pcd = make(persistent=True, n_iter=0).fit(X)
        rec["pymdbn_pcd_epoch"] = best_of(lambda: pcd._run_epoch(X, order), rep, warmup=1,
                                          setup=_snapshot(pcd, PYM_STATE + ("h_samples_",)))

    # 2. efficient NumPy CD-1
    npcd = NumpyCD1(V, H, B, vis)
    rec["numpy_gemm_backend"] = npcd.acc.backend
    restore = _snapshot(npcd, ("W", "bv", "bh", "VW", "Vbv", "Vbh"))
    rec["numpy_epoch"] = best_of(lambda: npcd.epoch(X, order), rep, setup=restore)
    restore()
    rec["numpy_recon_err"] = float(npcd.epoch(X, order))

    # 3. scikit-learn BernoulliRBM (PCD, Bernoulli visible units only)
    if vis == "bernoulli":
        def sk():
            return BernoulliRBM(n_components=H, batch_size=B, n_iter=1,
                                random_state=0).fit(X)
        rec["sklearn_fit"] = best_of(sk, rep)
        rec["sklearn_dtype"] = str(sk().components_.dtype)

    rec["pymdbn_config"] = pymdbn.show_config(mode="dicts")
    rec["threadpool_info"] = threadpoolctl.threadpool_info()
    print("RESULT " + json.dumps(rec), flush=True)


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------
def fmt(t):
    return "-" if t is None else f"{t:8.3f}"


def ratio(a, b):
    return None if a is None or b is None else a / b


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N=2000 smoke run")
    p.add_argument("--n", type=int, default=None, help="rows (default 10000, 2000 --quick)")
    p.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, metavar="V,H,B")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--visible", nargs="+", default=["bernoulli", "gaussian"])
    p.add_argument("--repeat", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--no-pcd", action="store_true", help="skip the pymdbn PCD epoch timing")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help="remove OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the workers' env")
    p.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra environment for the workers, e.g. OMP_WAIT_POLICY=passive")
    p.add_argument("--json", metavar="PATH", help="also write the JSON record here")
    p.add_argument("--check", action="store_true",
                   help="only check the NumPy baseline against pymdbn.backend.reference.cd_epoch")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    p.add_argument("--threads-now", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.n is None:
        args.n = 2000 if args.quick else 10000
    if args.worker:
        return worker(args)
    _check_numpy_against_reference()
    if args.check:
        print("NumPy baseline matches pymdbn.backend.reference.cd_epoch")
        return

    env_before = {k: os.environ.get(k) for k in OPENBLAS_ENV}
    results = []
    t_start = time.time()
    for shape in args.shapes:
        for vis in args.visible:
            for th in args.threads:
                env = dict(os.environ)
                for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                    env[k] = str(th)
                for kv in args.env:
                    k, v = kv.split("=", 1)
                    env[k] = v
                if args.unset_openblas_env:
                    for k in OPENBLAS_ENV:
                        env.pop(k, None)
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--shape", shape,
                       "--visible", vis, "--threads-now", str(th), "--n", str(args.n),
                       "--repeat", str(args.repeat)] + (["--no-pcd"] if args.no_pcd else [])
                t0 = time.time()
                load0 = os.getloadavg()[0]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.stderr.write(out.stderr)
                    raise SystemExit(f"worker failed: {shape} {vis} {th}")
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
                rec = json.loads(line[len("RESULT "):])
                rec["loadavg_1min_before_after"] = [load0, os.getloadavg()[0]]
                print(f"  done {shape:>14} {vis:9} threads={th} in {time.time() - t0:5.1f}s",
                      file=sys.stderr, flush=True)
                results.append(rec)
                if args.json:
                    with open(args.json + ".partial", "w") as f:
                        json.dump(results, f)

    # summary table (best of repeats)
    rows = []
    for r in results:
        best = {k: (min(r[k]) if k in r else None) for k in
                ("pymdbn_epoch", "pymdbn_fit", "pymdbn_pcd_epoch", "numpy_epoch", "sklearn_fit")}
        r["best"] = best
        r["numpy_over_pymdbn"] = ratio(best["numpy_epoch"], best["pymdbn_epoch"])
        r["sklearn_over_pymdbn"] = ratio(best["sklearn_fit"], best["pymdbn_epoch"])
        r["sklearn_over_pymdbn_fit"] = ratio(best["sklearn_fit"], best["pymdbn_fit"])
        r["sklearn_over_pymdbn_pcd"] = ratio(best["sklearn_fit"], best["pymdbn_pcd_epoch"])
        rows.append(r)

    hdr = (f"{'V':>5} {'H':>5} {'B':>4} {'visible':9} {'thr':>3} | {'pymdbn':>8} "
           f"{'pym fit':>8} {'pym PCD':>8} {'numpy':>8} {'sklearn':>8} | {'np/pym':>6} "
           f"{'sk/pym':>6} {'sk/fit':>6} {'sk/PCD':>6}")
    print(f"\nOne CD-1 epoch, N={args.n}, extra env {args.env or 'none'}, float32, best of {args.repeat} (seconds)")
    print("pymdbn = raw CD-1 epoch (_run_epoch); pym fit = RBM.fit(n_iter=1) incl. init and "
          "pseudo-likelihood;\npym PCD = raw PCD-1 epoch; sklearn = BernoulliRBM.fit(n_iter=1) "
          "(always PCD-1)")
    print(hdr)
    print("-" * len(hdr))

    def rf(x):
        return "     -" if x is None else f"{x:6.2f}"

    for r in rows:
        b = r["best"]
        print(f"{r['V']:5d} {r['H']:5d} {r['B']:4d} {r['visible']:9} {r['threads']:3d} | "
              f"{fmt(b['pymdbn_epoch'])} {fmt(b['pymdbn_fit'])} {fmt(b['pymdbn_pcd_epoch'])} "
              f"{fmt(b['numpy_epoch'])} {fmt(b['sklearn_fit'])} | {rf(r['numpy_over_pymdbn'])} "
              f"{rf(r['sklearn_over_pymdbn'])} {rf(r['sklearn_over_pymdbn_fit'])} "
              f"{rf(r['sklearn_over_pymdbn_pcd'])}")

    # goals
    goals = []
    for r in rows:
        goals.append({"goal": "pymdbn faster than numpy", "V": r["V"], "visible": r["visible"],
                      "threads": r["threads"], "ratio": r["numpy_over_pymdbn"],
                      "met": r["numpy_over_pymdbn"] is not None and r["numpy_over_pymdbn"] > 1})
    big = max(rows, key=lambda r: r["V"] * r["H"])
    for r in rows:
        if (r["V"], r["H"]) == (big["V"], big["H"]) and r["threads"] == 2 and \
                r["sklearn_over_pymdbn"] is not None:
            goals.append({"goal": ">=2x faster than BernoulliRBM (large shape, 2 threads)",
                          "V": r["V"], "visible": r["visible"], "threads": 2,
                          "ratio": r["sklearn_over_pymdbn"],
                          "met": r["sklearn_over_pymdbn"] >= 2})
    print("\nGoals:")
    for g in goals:
        rr = "n/a" if g["ratio"] is None else f"{g['ratio']:.2f}x"
        print(f"  [{'MET ' if g['met'] else 'MISS'}] {g['goal']}: V={g['V']} {g['visible']} "
              f"threads={g['threads']}: {rr}")

    first = results[0]
    record = {
        "benchmark": "bench_rbm",
        "argv": sys.argv[1:],
        "machine": machine_info(),
        "openblas_env_set": {k: v is not None for k, v in env_before.items()},
        "openblas_env_unset_for_workers": bool(args.unset_openblas_env),
        "extra_worker_env": args.env,
        "N": args.n, "repeat": args.repeat, "learning_rate": LR,
        "pymdbn_config": first["pymdbn_config"],
        "threadpool_info": first["threadpool_info"],
        "results": [{k: v for k, v in r.items() if k not in ("pymdbn_config", "threadpool_info")}
                    for r in rows],
        "goals": goals,
        "wall_s": time.time() - t_start,
    }
    emit_json(record, args.json)


if __name__ == "__main__":
    main()
