"""Where a CD-1 epoch's time goes: each phase of one mini-batch step, timed alone.

The fused epoch (``cd_epoch``) runs, per batch: the gather of the batch rows, the hidden
half-step (product V0 W^T, bias and clipped sigmoid, Bernoulli draws), the visible
half-step (H0 W, sigmoid, draws), the hidden probabilities of the sample (Vs W^T,
sigmoid), and the update (the weight gradient product [ph0; -phn]^T [v0; vs], applied
chunk by chunk, plus the bias sums). Here each is called through its own binding on the
same arrays, with the products alone beside them (the same ``affine`` binding without the
sigmoid and the draws, and the gradient product through NumPy's matmul for reference), so
``phase - product`` is what the element-wise work and the plumbing cost. The sum of the
phases is compared with the fused epoch.

    python bench/profile_epoch.py                          # L = (4096, 1024, 256), 2 threads
    python bench/profile_epoch.py --shape 784,512,128 --precision bfloat16
    OMP_NUM_THREADS=1 python bench/profile_epoch.py

Times are medians of ``--repeat`` calls, in ms per batch and s per epoch of ``--n`` rows.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit_json, machine_info  # noqa: E402

from pymdbn import backend  # noqa: E402


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="4096,1024,256", metavar="V,H,B")
    p.add_argument("--n", type=int, default=10000, help="rows per epoch (the fused epoch's)")
    p.add_argument("--precision", default="float32", choices=backend.PRECISIONS)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    V, H, B = (int(v) for v in args.shape.split(","))
    cpu = backend.get("cpu")
    rng = np.random.default_rng(0)
    X = (rng.random((args.n, V)) < 0.3).astype(np.float32)
    W = (0.01 * rng.standard_normal((H, V))).astype(np.float32)
    bv, bh = np.zeros(V, np.float32), np.zeros(H, np.float32)
    order = np.arange(args.n, dtype=np.int64)
    batches = -(-args.n // B)
    with backend.matmul_precision(args.precision):
        v0 = X[order[:B]]
        ph0 = cpu.affine_sigmoid(v0, W, bh, None, True)
        h0 = cpu.sample_bernoulli(ph0, 1, 0, 0)
        pv = cpu.affine_sigmoid(h0, W, bv, None, False)
        vs = cpu.sample_bernoulli(pv, 1, 1, 0)
        phn = cpu.affine_sigmoid(vs, W, bh, None, True)
        h, v = np.vstack([ph0, -phn]), np.vstack([v0, vs])
        state = [W.copy(), bv.copy(), bh.copy(), np.zeros_like(W), bv.copy(), bh.copy()]
        r = args.repeat
        phases = {
            "gather (X[order[:B]])": median_time(lambda: X.take(order[:B], axis=0), r),
            "hidden: V0 W^T alone": median_time(lambda: cpu.affine(v0, W, bh, True), r),
            "hidden: + sigmoid": median_time(lambda: cpu.affine_sigmoid(v0, W, bh, None, True),
                                             r),
            "hidden: draws": median_time(lambda: cpu.sample_bernoulli(ph0, 1, 0, 0), r),
            "visible: H0 W alone": median_time(lambda: cpu.affine(h0, W, bv, False), r),
            "visible: + sigmoid": median_time(
                lambda: cpu.affine_sigmoid(h0, W, bv, None, False), r),
            "visible: draws": median_time(lambda: cpu.sample_bernoulli(pv, 1, 1, 0), r),
            "negative: Vs W^T + sigmoid": median_time(
                lambda: cpu.affine_sigmoid(vs, W, bh, None, True), r),
            "update: gradient product (NumPy)": median_time(lambda: np.matmul(h.T, v), r),
            "update: cd_apply": median_time(
                lambda: cpu.cd_apply(h, v, *state, 0.01, 0.5, 0.0, 0.1, 0.0), r),
        }
        epoch_state = [W.copy(), bv.copy(), bh.copy(), np.zeros_like(W), bv.copy(), bh.copy()]
        chain = np.zeros((1, 1), np.float32)
        fused = median_time(lambda: cpu.cd_epoch(
            X, order, B, *epoch_state, chain, 1, False, "bernoulli", None, 0.01, 0.5, 0.0, 0.1,
            0.0, 1, 0), max(3, r // 5))
    steps = ("gather (X[order[:B]])", "hidden: + sigmoid", "hidden: draws",
             "visible: + sigmoid", "visible: draws", "negative: Vs W^T + sigmoid",
             "update: cd_apply")
    total = sum(phases[k] for k in steps)
    print(f"(V, H, B) = ({V}, {H}, {B}), N = {args.n} ({batches} batches), "
          f"{args.precision} products, threads {cpu.get_num_threads()}")
    print(f"{'phase':36} {'ms/batch':>9} {'s/epoch':>8}")
    for k, t in phases.items():
        print(f"{k:36} {1e3 * t:9.3f} {batches * t:8.3f}")
    print(f"{'sum of the phases':36} {1e3 * total:9.3f} {batches * total:8.3f}")
    print(f"{'fused epoch (cd_epoch)':36} {1e3 * fused / batches:9.3f} {fused:8.3f}")
    emit_json({"benchmark": "profile_epoch", "shape": [V, H, B], "n": args.n,
               "precision": args.precision, "machine": machine_info(),
               "threads": cpu.get_num_threads(), "phases_s_per_batch": phases,
               "sum_of_phases_s_per_batch": total, "fused_epoch_s": fused}, args.json)


if __name__ == "__main__":
    main()
