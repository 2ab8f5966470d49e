"""Time LRP explanations of a three-modality DBN against a forward pass of the same batch.

The network has the layout of ``MDBN.to_dict()``: three 64x64 modalities, pathways
(512, 256), a joint layer of 256 and 2 classes, random weights. Timed on one batch:

* forward: z-scoring (``pymdbn.preprocessing.standardize``) and the models' forward
  pass (``pymdbn.models.network.Network.logits``: ``affine_sigmoid`` per layer, then
  ``affine``), as a model's ``decision_function`` computes it;
* explain: ``pymdbn.lrp.explain`` with the 'epsilon' composite (forward with the
  pre-activations kept, then one ``lrp_dense`` per layer), from the same raw inputs;
* numpy: the same propagation with the NumPy twins (``pymdbn.backend.reference.dense_forward`` and
  ``reference.lrp_dense``, pre-activations reused as well).

The target is explain / forward <= 2.

    python bench/bench_lrp.py                      # N=1000, float32
    python bench/bench_lrp.py --n 200 --dtype float64 --json out.json
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, machine_info  # noqa: E402

from pymdbn.backend import reference as ref  # noqa: E402
from pymdbn._config import get_num_threads  # noqa: E402
from pymdbn.lrp import explain  # noqa: E402
from pymdbn.models.network import Network  # noqa: E402
from pymdbn.preprocessing import standardize  # noqa: E402

MODALITIES = ("brain", "breast", "bone")
# Samples checked against the NumPy twins (in float64) before timing.
CHECK_ROWS = 64


def make_model(side, widths, joint, n_classes, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        return {"W": (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype),
                "b": (0.1 * rng.standard_normal(n_out)).astype(dtype)}

    d = side * side
    sizes = [d, *widths]
    code = widths[-1] * len(MODALITIES)
    jsizes = [code, *joint]
    return {
        "modalities": list(MODALITIES),
        "pathways": {m: [dense(a, b) for a, b in zip(sizes[:-1], sizes[1:])] for m in MODALITIES},
        "joint": [dense(a, b) for a, b in zip(jsizes[:-1], jsizes[1:])],
        "output": dense(jsizes[-1], n_classes),
        "clip": 30.0,
        "scalers": {m: {"mean": rng.uniform(0.3, 0.5, d), "scale": rng.uniform(0.1, 0.3, d)}
                    for m in MODALITIES},
        "meta": {"image_shapes": {m: [side, side] for m in MODALITIES}},
    }


def _scaled(model, X, dtype):
    """Z-scored, flattened inputs in ``dtype``, with NumPy (for the NumPy propagation)."""
    out = {}
    for m in model["modalities"]:
        s = model["scalers"][m]
        x = np.subtract(X[m].reshape(len(X[m]), -1), s["mean"].astype(dtype), dtype=dtype)
        x /= s["scale"].astype(dtype)
        out[m] = x
    return out


def forward(model, X, dtype):
    """Logits through the models' own forward pass (``pymdbn.models.network.Network``,
    nothing kept), after the compiled z-scoring (NaN check included) that
    ``decision_function`` and ``explain`` use."""
    x = {m: standardize(m, X[m], model["scalers"][m]["mean"], model["scalers"][m]["scale"],
                        dtype) for m in model["modalities"]}
    return Network(model["pathways"], model["modalities"], model["joint"], model["output"],
                   model["clip"]).logits(x)


def numpy_explain(model, X, dtype, epsilon=1e-6):
    """Epsilon-LRP of the predicted class with the NumPy twins."""
    x = _scaled(model, X, dtype)
    clip = model["clip"]

    def fw(layers, a):
        trace = []
        for layer in layers:
            z, a_next = ref.dense_forward(a, layer["W"], layer["b"], clip)
            trace.append((a, z, layer))
            a = a_next
        return trace, a

    def bw(trace, r):
        for a, z, layer in trace[::-1]:
            r = ref.lrp_dense(a, layer["W"], layer["b"], r, "epsilon", epsilon=epsilon, z=z)
        return r

    traces, tops = {}, []
    for m in model["modalities"]:
        traces[m], top = fw(model["pathways"][m], x[m])
        tops.append(top)
    jtrace, h = fw(model["joint"], np.concatenate(tops, axis=1))
    out = model["output"]
    logits = h @ out["W"] + out["b"]
    rows, t = np.arange(len(logits)), logits.argmax(axis=1)
    r = np.zeros_like(logits)
    r[rows, t] = logits[rows, t]
    r = bw(jtrace, ref.lrp_dense(h, out["W"], out["b"], r, "epsilon", epsilon=epsilon, z=logits))
    relevance, start = {}, 0
    for m in model["modalities"]:
        width = model["pathways"][m][-1]["W"].shape[1]
        relevance[m] = bw(traces[m], r[:, start:start + width])
        start += width
    return relevance


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--widths", default="512,256")
    p.add_argument("--joint", default="256")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-model", action="store_true",
                   help="skip the fitted-MDBN measurement (decision_function vs explain)")
    p.add_argument("--json")
    args = p.parse_args()

    dtype = np.dtype(args.dtype)
    widths = [int(w) for w in args.widths.split(",")]
    joint = [int(w) for w in args.joint.split(",") if w]
    model = make_model(args.side, widths, joint, 2, dtype)
    rng = np.random.default_rng(1)
    X = {m: rng.uniform(0, 1, (args.n, args.side, args.side)).astype(dtype) for m in MODALITIES}

    # Same numbers three ways before timing anything. The relevance is compared in float64:
    # with epsilon = 1e-6 a nearly cancelling denominator amplifies float32 rounding without
    # bound (measured: 16 of 4096000 values 2.5% apart at magnitudes near 6e4 with the
    # Haswell kernel), so float32 agreement is a property of the data, not of the code;
    # tests/ hold the float32 kernels to the twins at stated tolerances.
    np.testing.assert_allclose(explain(model, X).logits, forward(model, X, dtype),
                               rtol=1e-4, atol=1e-5)
    model64 = make_model(args.side, widths, joint, 2, np.float64)
    X64 = {m: X[m][:CHECK_ROWS].astype(np.float64) for m in MODALITIES}
    ex, twin = explain(model64, X64), numpy_explain(model64, X64, np.float64)
    for m in MODALITIES:
        r = ex.relevance[m].reshape(len(X64[m]), -1)
        np.testing.assert_allclose(r, twin[m], rtol=1e-7, atol=1e-9 * np.abs(twin[m]).max(),
                                   err_msg=m)

    # Interleaved, best of each: on a shared machine both see the same load.
    reference = {m: X[m].mean(axis=0) for m in MODALITIES}
    t_fwd = t_lrp = t_ref = float("inf")
    for _ in range(args.repeat):
        t_fwd = min(t_fwd, *best_of(lambda: forward(model, X, dtype), repeat=1, warmup=0))
        t_lrp = min(t_lrp, *best_of(lambda: explain(model, X), repeat=1, warmup=0))
        t_ref = min(t_ref, *best_of(lambda: explain(model, X, reference=reference), repeat=1,
                                    warmup=0))
    t_np = min(best_of(lambda: numpy_explain(model, X, dtype), repeat=max(1, args.repeat // 2)))
    result = {
        "n": args.n, "side": args.side, "modalities": len(MODALITIES), "widths": widths,
        "joint": joint, "dtype": args.dtype, "threads": get_num_threads(),
        "forward_s": t_fwd, "explain_s": t_lrp, "numpy_explain_s": t_np,
        "explain_reference_s": t_ref, "reference_over_explain": t_ref / t_lrp,
        "explain_over_forward": t_lrp / t_fwd,
        "explain_us_per_sample": 1e6 * t_lrp / args.n,
        "numpy_over_explain": t_np / t_lrp,
        "machine": machine_info(),
    }
    print(f"N={args.n}, 3 x {args.side}x{args.side}, pathways {widths}, joint {joint}, "
          f"{args.dtype}, threads {result['threads']}")
    print(f"  forward            {1e3 * t_fwd:8.1f} ms")
    print(f"  explain (epsilon)  {1e3 * t_lrp:8.1f} ms  = {t_lrp / t_fwd:.2f} x forward, "
          f"{result['explain_us_per_sample']:.0f} us/sample")
    print(f"  with a reference   {1e3 * t_ref:8.1f} ms  = {t_ref / t_lrp:.2f} x explain")
    print(f"  NumPy twins        {1e3 * t_np:8.1f} ms  = {t_np / t_lrp:.2f} x explain")
    if not args.no_model:
        result.update(model_level(args, widths, joint, dtype, X))
        print(f"  fitted MDBN: decision_function {1e3 * result['model_forward_s']:.1f} ms, "
              f"explain {1e3 * result['model_explain_s']:.1f} ms = "
              f"{result['model_explain_over_forward']:.2f} x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def model_level(args, widths, joint, dtype, X):
    """The same comparison through a fitted MDBN's public API (briefly trained weights,
    input validation and z-scoring included on both sides)."""
    from pymdbn import MDBN

    rng = np.random.default_rng(2)
    Xtr = {m: rng.uniform(0, 1, (300, args.side, args.side)).astype(dtype) for m in MODALITIES}
    model = MDBN({m: tuple(widths) for m in MODALITIES}, joint_units=tuple(joint), clip=4.0,
                 pretrain_epochs=1, max_epochs=1, per_feature=True, random_state=0,
                 dtype=dtype.name).fit(Xtr, rng.integers(0, 2, 300))
    t_fwd = t_lrp = float("inf")
    for _ in range(args.repeat):
        t_fwd = min(t_fwd, *best_of(lambda: model.decision_function(X), repeat=1, warmup=1))
        t_lrp = min(t_lrp, *best_of(lambda: model.explain(X), repeat=1, warmup=1))
    return {"model_forward_s": t_fwd, "model_explain_s": t_lrp,
            "model_explain_over_forward": t_lrp / t_fwd}


if __name__ == "__main__":
    main()
