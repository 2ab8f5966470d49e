"""LRP of a three-modality MDBN, side by side with PyTorch and zennit on the same network.

The network has the layout of ``MDBN.to_dict()``: three 64x64 modalities, pathways
(512, 256), a joint layer of 256 and 2 classes, random weights (std 1/sqrt(n_in)), per-pixel
scalers and ``--clip`` (default 4, the proposed model's). pymdbn runs it as an ``MDBN``
rebuilt from that dict (``MDBN.from_dict``: what a user of a fitted model calls); PyTorch
runs an equivalent module with the same float32 weights. One run measures, on the same
inputs, interleaved round by round (so that every column sees the same machine load):

* pymdbn forward: ``MDBN.decision_function(X)`` (input checks, z-scoring, forward pass);
* pymdbn explain: ``MDBN.explain(X, composite=...)``;
* NumPy twins: epsilon-LRP with ``pymdbn.backend.reference`` (pre-activations reused),
  whatever the composite; and pymdbn explaining against a reference (the batch's mean
  images, dict API);
* torch forward: the equivalent ``torch.nn.Module`` under ``torch.no_grad()``: float32,
  ``(x - mean) / scale`` per pixel, ``Linear`` layers with the same weights,
  ``sigmoid(clamp(z, -clip, clip))``, concatenation, joint layer, linear output;
* zennit explain: zennit's ``Gradient``-style attribution of that module (composite
  registered once, then forward + ``torch.autograd.grad`` per call) with the equivalent
  composite, relevance of the predicted logit (``one_hot * logits``);
* one-patient latency (N=1, median of ``--latency-calls`` calls) of pymdbn's and zennit's
  explain;
* with ``--bfloat16``: the same MDBN with ``dtype='bfloat16'`` (forward, explain, one
  patient), PyTorch's forward and zennit under ``torch.autocast('cpu', torch.bfloat16)``,
  and the bfloat16 relevance against float32's (max deviation and Pearson r per sample:
  with Epsilon(1e-6) pre-activations near zero amplify any rounding, zennit's too).

Before timing, pymdbn's relevance is checked against zennit's in float32 (and against the
NumPy twins in float64), see ``check_zennit``. torch and zennit are optional: without them
their columns are skipped with a message.

    python bench/bench_lrp.py                        # N=1000, 2 threads, epsilon
    python bench/bench_lrp.py --composite epsilon_plus --json out.json
    python bench/bench_lrp.py --bfloat16              # also dtype='bfloat16' (oneDNN, AMX)
    python bench/bench_lrp.py --n 200 --repeat 2 --no-model   # smoke run (pymdbn bench --quick)
"""

import argparse
import os
import sys
import time


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--widths", default="512,256")
    p.add_argument("--joint", default="256")
    p.add_argument("--clip", type=float, default=4.0)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--composite", default="epsilon", choices=["epsilon", "epsilon_plus"])
    p.add_argument("--threads", type=int, default=2,
                   help="OpenMP, OpenBLAS, MKL and torch threads (default 2)")
    p.add_argument("--repeat", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--latency-calls", type=int, default=200,
                   help="one-patient calls per library (0: skip)")
    p.add_argument("--no-model", action="store_true",
                   help="time pymdbn through the dict API (pymdbn.lrp.explain on the dict, "
                        "z-scoring + Network.logits) instead of an MDBN")
    p.add_argument("--no-torch", action="store_true", help="skip the torch and zennit columns")
    p.add_argument("--profile", action="store_true",
                   help="only profile pymdbn: time per kernel (op and shape) and the Python "
                        "around them, of forward and explain at N and at N=1")
    p.add_argument("--bfloat16", action="store_true",
                   help="also time the MDBN with dtype='bfloat16' (bfloat16 operands of the "
                        "products, float32 weights and sums), and PyTorch's forward and "
                        "zennit under bfloat16 autocast; its relevance is compared with "
                        "float32's")
    p.add_argument("--json")
    return p


if __name__ == "__main__":
    # Thread counts are read when the BLAS libraries load: set them before any import.
    _ARGS = _parser().parse_args()
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, machine_info  # noqa: E402

import pymdbn  # noqa: E402
from pymdbn import MDBN  # noqa: E402
from pymdbn.backend import reference as ref  # noqa: E402
from pymdbn.lrp import explain  # noqa: E402
from pymdbn.models.network import Network  # noqa: E402
from pymdbn.preprocessing import standardize  # noqa: E402

MODALITIES = ("brain", "breast", "bone")
# Samples checked against the NumPy twins (in float64) before timing.
CHECK_ROWS = 64
# pymdbn against zennit, per modality and per sample: the deviation max |R_pymdbn -
# R_zennit| / max |R_zennit| over the sample's pixels. In float64 the two agree on every
# sample within ZENNIT_F64 (measured: 3e-10 at most over 200 samples, both composites):
# same rules, epsilon, bias and composite. In float32, which is timed, epsilon-LRP with
# eps = 1e-6 is ill-conditioned: a pre-activation near 0 turns rounding into large
# relevance errors, and the two libraries round differently (OpenBLAS against MKL
# products, other summation orders). Measured on this network over 4 batches (N=200 and
# 1000, seeds 1, 5, 7), the float32 deviation had median 2e-4 to 3e-4 and 90th
# percentile 2e-3 to 5e-3 ('epsilon'; 'epsilon_plus' 10x less), its maximum up to 0.4
# on a few samples whose relevance reaches 1e6 (the float64 error shows the same
# amplification, ~4e3 at the median). Allowed: median and 90th percentile below
# ZENNIT_F32, about 5x the measured ones.
ZENNIT_F64 = 1e-8
ZENNIT_F32 = {"median": 2e-3, "p90": 2e-2}


def make_model(side, widths, joint, n_classes, dtype, seed=0, clip=4.0):
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
        "clip": clip,
        "scalers": {m: {"mean": rng.uniform(0.3, 0.5, d), "scale": rng.uniform(0.1, 0.3, d)}
                    for m in MODALITIES},
        "meta": {"image_shapes": {m: [side, side] for m in MODALITIES}},
    }


def cast_model(model, dtype):
    """``model`` with its layers in ``dtype``."""
    def cast(layer):
        return {"W": np.asarray(layer["W"], dtype), "b": np.asarray(layer["b"], dtype)}
    return {**model, "pathways": {m: [cast(layer) for layer in layers]
                                  for m, layers in model["pathways"].items()},
            "joint": [cast(layer) for layer in model["joint"]], "output": cast(model["output"])}


def as_mdbn(model, dtype):
    """An MDBN holding ``model``'s weights and scalers, as a fitted one would (no training:
    ``from_dict`` of the dict with the metadata ``to_dict`` writes)."""
    widths = {m: tuple(layer["W"].shape[1] for layer in model["pathways"][m])
              for m in model["modalities"]}
    joint = tuple(layer["W"].shape[1] for layer in model["joint"])
    est = MDBN(widths, joint_units=joint, clip=model["clip"], per_feature=True,
               dtype=np.dtype(dtype).name)
    n_classes = model["output"]["W"].shape[1]
    meta = {"classes": list(range(n_classes)), "image_shapes": model["meta"]["image_shapes"],
            "fusion": est.fusion, "params": pymdbn.io.encode_params(est.get_params(deep=False)),
            "dtype": np.dtype(dtype).name, "per_feature": True, "per_image": False,
            "n_samples_seen": 1, "joint_visible_bias": None, "history": [],
            "pretrain_history": {}, "seed": 0,
            "fine_tune_summary": {"n_iter": 0, "stopped_early": False, "best_epoch": None}}
    return MDBN.from_dict({**model, "meta": meta})


def dict_forward(model, X, dtype):
    """Logits through the dict API's steps: compiled z-scoring, then ``Network.logits``."""
    x = {m: standardize(m, X[m], model["scalers"][m]["mean"], model["scalers"][m]["scale"],
                        dtype) for m in model["modalities"]}
    return Network(model["pathways"], model["modalities"], model["joint"], model["output"],
                   model["clip"]).logits(x)


def _scaled(model, X, dtype):
    """Z-scored, flattened inputs in ``dtype``, with NumPy (for the NumPy propagation)."""
    out = {}
    for m in model["modalities"]:
        s = model["scalers"][m]
        x = np.subtract(X[m].reshape(len(X[m]), -1), s["mean"].astype(dtype), dtype=dtype)
        x /= s["scale"].astype(dtype)
        out[m] = x
    return out


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


# ------------------------------------------------------------------- PyTorch and zennit
ZENNIT_NOTES = []


def import_zennit():
    """Import zennit; None, or why it cannot be used.

    zennit imports torchvision at import time for two ResNet block classes (its ResNet
    canonizers, unused here). A torchvision wheel built for another torch (PyPI's CUDA
    wheel beside a CPU torch) fails to load its operators; zennit then gets a stand-in
    module with those two names, and the run records that it did."""
    import types

    try:
        import zennit  # noqa: F401
        return None
    except ImportError as exc:
        if "torchvision" not in str(exc):
            return f"zennit is not installed ({exc})"
        error = exc
    except Exception as exc:  # torchvision's own import fails with RuntimeError
        error = exc
    import torch

    for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "zennit")]:
        del sys.modules[name]
    resnet = types.ModuleType("torchvision.models.resnet")
    resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
    resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
    models = types.ModuleType("torchvision.models")
    models.resnet = resnet
    vision = types.ModuleType("torchvision")
    vision.models = models
    sys.modules.update({"torchvision": vision, "torchvision.models": models,
                        "torchvision.models.resnet": resnet})
    try:
        import zennit  # noqa: F401, F811
    except Exception as exc:
        return f"zennit does not import ({exc})"
    ZENNIT_NOTES.append(f"torchvision does not load ({type(error).__name__}: "
                        f"{str(error).splitlines()[0]}); zennit runs with a stand-in for "
                        f"torchvision.models.resnet")
    print("note: " + ZENNIT_NOTES[-1])
    return None


def torch_side(model, composite_name, epsilon=1e-6, stabilizer=1e-6):
    """(module, zennit composite, explain function) for ``model``, or a reason string
    when torch or zennit cannot be imported."""
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    zennit_reason = import_zennit()
    if zennit_reason is None:
        from zennit.composites import NameMapComposite
        from zennit.rules import Epsilon, Pass, ZPlus

    class Standardize(torch.nn.Module):
        """(x - mean) / scale in the weights' dtype, as pymdbn's z-scoring computes it."""

        def __init__(self, mean, scale, d):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(
                np.broadcast_to(np.asarray(mean, dtype), (d,)).copy()))
            self.register_buffer("scale", torch.from_numpy(
                np.broadcast_to(np.asarray(scale, dtype), (d,)).copy()))

        def forward(self, x):
            return (x - self.mean) / self.scale

    class ClippedSigmoid(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, z):
            return torch.sigmoid(z if self.clip is None else torch.clamp(z, -self.clip,
                                                                         self.clip))

    dtype = np.asarray(model["output"]["W"]).dtype

    def linear(layer):
        w = np.asarray(layer["W"], dtype)
        lin = torch.nn.Linear(*w.shape, dtype=getattr(torch, dtype.name))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer["b"], dtype)))
        return lin

    def stack(layers):
        mods = []
        for layer in layers:
            mods += [linear(layer), ClippedSigmoid(model["clip"])]
        return torch.nn.Sequential(*mods)

    class TorchMDBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.order = list(model["modalities"])
            self.scalers = torch.nn.ModuleDict({
                m: Standardize(model["scalers"][m]["mean"], model["scalers"][m]["scale"],
                               model["pathways"][m][0]["W"].shape[0]) for m in self.order})
            self.pathways = torch.nn.ModuleDict({m: stack(model["pathways"][m])
                                                 for m in self.order})
            self.joint = stack(model["joint"])
            self.output = linear(model["output"])

        def forward(self, *xs):
            tops = [self.pathways[m](self.scalers[m](x)) for m, x in zip(self.order, xs)]
            return self.output(self.joint(torch.cat(tops, dim=1)))

    tm = TorchMDBN().eval()
    if zennit_reason is not None:
        return tm, zennit_reason, None

    # pymdbn's roles -> zennit rules per module name. zennit's own EpsilonPlus and
    # EpsilonAlpha2Beta1 give fully connected layers Epsilon and keep ZPlus / alpha2-beta1
    # for convolutions, so on this dense network both are pymdbn's 'epsilon', not its
    # 'epsilon_plus' (ZPlus in the pathways, Epsilon above).
    epsilon_rule, plus_rule = Epsilon(epsilon=epsilon), ZPlus(stabilizer=stabilizer)
    pathway_rule = plus_rule if composite_name == "epsilon_plus" else epsilon_rule
    pathway, head, passed = [], [], []
    for name, module in tm.named_modules():
        if isinstance(module, torch.nn.Linear):
            (pathway if name.startswith("pathways.") else head).append(name)
        elif isinstance(module, (Standardize, ClippedSigmoid)):
            # Relevance passes the sigmoids and the z-scoring unchanged (zennit maps its
            # activation types to Pass; these are ours): relevance at the raw input is
            # then the relevance at the z-scored pixels, as pymdbn reports it.
            passed.append(name)
    composite = NameMapComposite([(tuple(pathway), pathway_rule), (tuple(head), epsilon_rule),
                                  (tuple(passed), Pass())])

    def zennit_explain(X):
        """(logits, relevance per modality) of the predicted class; the composite must be
        registered on ``tm``."""
        xs = [torch.from_numpy(np.ascontiguousarray(X[m]).reshape(len(X[m]), -1))
              .requires_grad_(True) for m in tm.order]
        out = tm(*xs)
        target = out.argmax(dim=1, keepdim=True)
        seed = torch.zeros_like(out).scatter_(1, target, out.gather(1, target))
        rel = torch.autograd.grad(out, xs, grad_outputs=seed)
        return out.detach(), dict(zip(tm.order, rel))

    return tm, composite, zennit_explain


def zennit_relevance(tm, composite, zennit_explain, X):
    """zennit's (logits, relevance per modality) of X, as NumPy arrays."""
    composite.register(tm)
    try:
        logits, rel = zennit_explain(X)
    finally:
        composite.remove()
    return logits.numpy(), {m: r.numpy() for m, r in rel.items()}


def sample_deviation(p, z):
    """Per sample: max |p - z| over its features / max |z| (1 where z is all zero)."""
    scale = np.abs(z).max(axis=1)
    return np.abs(p - z).max(axis=1) / np.where(scale > 0, scale, 1)


def check_zennit(tm, composite, zennit_explain, pym, X):
    """pymdbn's float32 explanation ``pym`` of X against zennit's (float32): the same
    logits and targets, and relevance per modality within ZENNIT_F32. Returns the
    deviations' median, 90th percentile and maximum per modality."""
    logits, rel = zennit_relevance(tm, composite, zennit_explain, X)
    np.testing.assert_allclose(pym.logits, logits, rtol=1e-4, atol=1e-5 * np.abs(logits).max())
    np.testing.assert_array_equal(pym.target, logits.argmax(axis=1))
    found = {}
    for m, z in rel.items():
        dev = sample_deviation(pym.relevance[m].reshape(len(z), -1), z)
        med, p90 = np.median(dev), np.quantile(dev, 0.9)
        found[m] = {"median": float(med), "p90": float(p90), "max": float(dev.max())}
        if med > ZENNIT_F32["median"] or p90 > ZENNIT_F32["p90"]:
            raise AssertionError(f"pymdbn vs zennit relevance, {m}: per-sample deviation "
                                 f"median {med:.2e}, 90th percentile {p90:.2e}; allowed "
                                 f"{ZENNIT_F32}")
    return found


def check_zennit64(model, composite_name, X):
    """The definitions: pymdbn and zennit in float64 on the same network agree on every
    sample within ZENNIT_F64; returns the largest deviation per modality."""
    model64 = cast_model(model, np.float64)
    X64 = {m: X[m][:CHECK_ROWS].astype(np.float64) for m in MODALITIES}
    tm, composite, zennit_explain = torch_side(model64, composite_name)
    logits, rel = zennit_relevance(tm, composite, zennit_explain, X64)
    pym = explain(model64, X64, composite=composite_name)
    np.testing.assert_allclose(pym.logits, logits, rtol=1e-12, atol=1e-12)
    worst = {}
    for m, z in rel.items():
        dev = sample_deviation(pym.relevance[m].reshape(len(z), -1), z)
        worst[m] = float(dev.max())
        if worst[m] > ZENNIT_F64:
            raise AssertionError(f"pymdbn vs zennit relevance in float64, {m}: deviation "
                                 f"{worst[m]:.2e} > {ZENNIT_F64}")
    return worst


def _load():
    return os.getloadavg()[0]


def profile(calls, repeat):
    """Mean time per call of each kernel (op and input shape) inside each of ``calls``
    (name -> function, run ``repeat`` times), and the rest (Python: checks, dispatch,
    allocation, bookkeeping). The kernels are timed through ``pymdbn.backend.ops``, which
    every model calls."""
    import collections

    from pymdbn.backend import ops

    spent = collections.defaultdict(float)
    names = ("standardize", "dense_forward", "affine", "affine_sigmoid", "lrp_dense")
    originals = {name: getattr(ops, name) for name in names}

    def timed(name, fn):
        def call(x, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(x, *args, **kwargs)
            finally:
                spent[f"{name} {'x'.join(map(str, x.shape))}"] += time.perf_counter() - t0
        return call

    for name, fn in originals.items():
        setattr(ops, name, timed(name, fn))
    try:
        for label, f in calls.items():
            f()  # warm-up
            spent.clear()
            total = sum(best_of(f, repeat=repeat, warmup=0))
            print(f"{label}: {1e3 * total / repeat:.2f} ms per call")
            for key, v in sorted(spent.items(), key=lambda kv: -kv[1]):
                print(f"  {key:28s} {1e3 * v / repeat:8.3f} ms")
            print(f"  {'Python and the rest':28s} {1e3 * (total - sum(spent.values())) / repeat:8.3f} ms")
    finally:
        for name in names:  # ops caches its dispatchers as attributes: drop the wrappers
            delattr(ops, name)


def main():
    args = _parser().parse_args()
    pymdbn.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    widths = [int(w) for w in args.widths.split(",")]
    joint = [int(w) for w in args.joint.split(",") if w]
    model = make_model(args.side, widths, joint, 2, dtype, clip=args.clip)
    est = as_mdbn(model, dtype)
    rng = np.random.default_rng(1)
    X = {m: rng.uniform(0, 1, (args.n, args.side, args.side)).astype(dtype) for m in MODALITIES}
    X1 = {m: X[m][:1].copy() for m in MODALITIES}
    if args.no_model:
        def pym_forward(x):
            return dict_forward(model, x, dtype)

        def pym_explain(x):
            return explain(model, x, composite=args.composite)
    else:
        def pym_forward(x):
            return est.decision_function(x)

        def pym_explain(x):
            return est.explain(x, composite=args.composite)

    est16 = None
    if args.bfloat16:
        if args.no_model or dtype != np.float32:
            raise SystemExit("--bfloat16 times an MDBN of float32 weights (not with --no-model "
                             "or --dtype float64)")
        ok, detail = pymdbn.backend.bfloat16_status()
        if not ok:
            raise SystemExit(f"--bfloat16: bfloat16 products unavailable: {detail}")
        est16 = as_mdbn(model, dtype).set_params(dtype="bfloat16")

    if args.profile:
        profile({f"pymdbn forward, N={args.n}": lambda: pym_forward(X),
                 f"pymdbn explain, N={args.n}": lambda: pym_explain(X)}, args.repeat)
        profile({"pymdbn forward, N=1": lambda: pym_forward(X1),
                 "pymdbn explain, N=1": lambda: pym_explain(X1)}, max(args.latency_calls, 1))
        return

    # Same numbers every way before timing anything.
    ex = pym_explain(X)
    np.testing.assert_allclose(ex.logits, pym_forward(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ex.logits, dict_forward(model, X, dtype), rtol=1e-4, atol=1e-5)
    # Against the twins in float64: with epsilon = 1e-6 a nearly cancelling denominator
    # amplifies float32 rounding without bound (measured: 16 of 4096000 values 2.5% apart
    # at magnitudes near 6e4 with the Haswell kernel), so float32 agreement is a property
    # of the data, not of the code; tests/ hold the float32 kernels to the twins.
    if args.composite == "epsilon":
        model64 = cast_model(model, np.float64)
        X64 = {m: X[m][:CHECK_ROWS].astype(np.float64) for m in MODALITIES}
        e64, twin = explain(model64, X64), numpy_explain(model64, X64, np.float64)
        for m in MODALITIES:
            r = e64.relevance[m].reshape(len(X64[m]), -1)
            np.testing.assert_allclose(r, twin[m], rtol=1e-7,
                                       atol=1e-9 * np.abs(twin[m]).max(), err_msg=m)

    side = None if args.no_torch else torch_side(model, args.composite)
    if isinstance(side, str):
        print(f"skipping the torch and zennit columns: {side}")
        side = None
    tm = composite = zennit_explain = None
    zennit_check = None
    if side is not None:
        import torch

        torch.set_num_threads(args.threads)
        tm, composite, zennit_explain = side
        if zennit_explain is None:
            print(f"skipping the zennit columns: {composite}")
        elif dtype != np.float32:
            print("skipping the zennit columns: the comparison runs in float32")
            zennit_explain = None
        else:
            zennit_check = {"float32": check_zennit(tm, composite, zennit_explain, ex, X),
                            "float64_max": check_zennit64(model, args.composite, X)}
        xt = {m: torch.from_numpy(X[m]) for m in MODALITIES}
        with torch.no_grad():
            tl = tm(*(xt[m].reshape(args.n, -1) for m in MODALITIES)).numpy()
        np.testing.assert_allclose(tl, ex.logits, rtol=1e-4, atol=1e-5 * np.abs(tl).max())

        def torch_forward():
            with torch.no_grad():
                return tm(*(xt[m].reshape(args.n, -1) for m in MODALITIES))

    bf16_check = None
    if est16 is not None:
        # bfloat16 relevance against float32's, per sample: max |diff| / max |float32|,
        # and the Pearson correlation of the two heatmaps. An Epsilon rule's small epsilon
        # amplifies the rounding of pre-activations near zero (s = R / z), so these
        # measure the composite's conditioning as much as the arithmetic.
        e16 = est16.explain(X, composite=args.composite)
        bf16_check = {}
        for m in MODALITIES:
            a = ex.relevance[m].reshape(args.n, -1).astype(np.float64)
            c = e16.relevance[m].reshape(args.n, -1).astype(np.float64)
            dev = sample_deviation(c, a)
            ac, cc = a - a.mean(axis=1, keepdims=True), c - c.mean(axis=1, keepdims=True)
            norm = np.sqrt((ac * ac).sum(axis=1) * (cc * cc).sum(axis=1))
            corr = (ac * cc).sum(axis=1) / np.where(norm > 0, norm, 1)
            bf16_check[m] = {"median": float(np.median(dev)), "p90": float(np.quantile(dev, 0.9)),
                             "max": float(dev.max()), "pearson_median": float(np.median(corr)),
                             "pearson_p10": float(np.quantile(corr, 0.1))}
        bf16_check["same_prediction"] = float(np.mean(
            e16.logits.argmax(axis=1) == ex.logits.argmax(axis=1)))

    reference = {m: X[m].mean(axis=0) for m in MODALITIES}
    columns = {"forward": lambda: pym_forward(X), "explain": lambda: pym_explain(X),
               "explain_reference": lambda: explain(model, X, reference=reference,
                                                      composite=args.composite)}
    if est16 is not None:
        columns["forward_bf16"] = lambda: est16.decision_function(X)
        columns["explain_bf16"] = lambda: est16.explain(X, composite=args.composite)
    if side is not None:
        columns["torch_forward"] = torch_forward
        if est16 is not None:
            def torch_forward_bf16():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return tm(*(xt[m].reshape(args.n, -1) for m in MODALITIES))

            columns["torch_forward_bf16"] = torch_forward_bf16
    if zennit_explain is not None:
        columns["zennit_explain"] = lambda: zennit_explain(X)
        if est16 is not None:
            def zennit_explain_bf16():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return zennit_explain(X)

            columns["zennit_explain_bf16"] = zennit_explain_bf16
    times = {k: [] for k in columns}
    load_before = _load()
    if composite is not None and zennit_explain is not None:
        composite.register(tm)  # once, as zennit's attributors do per `with` block
    try:
        for f in columns.values():  # warm-up
            f()
        # Interleaved rounds: on a shared machine every column sees the same load.
        for _ in range(args.repeat):
            for k, f in columns.items():
                times[k] += best_of(f, repeat=1, warmup=0)
        times["numpy_explain"] = best_of(lambda: numpy_explain(model, X, dtype),
                                         repeat=max(1, args.repeat // 2), warmup=0)
        latency = {}
        if args.latency_calls > 0:
            one = {"pymdbn": lambda: pym_explain(X1)}
            if est16 is not None:
                one["pymdbn_bf16"] = lambda: est16.explain(X1, composite=args.composite)
            if zennit_explain is not None:
                one["zennit"] = lambda: zennit_explain(X1)
            lat = {k: [] for k in one}
            for k, f in one.items():
                best_of(f, repeat=0, warmup=10)
            block = max(1, args.latency_calls // 10)
            for _ in range(10):  # alternating blocks of calls
                for k, f in one.items():
                    lat[k] += best_of(f, repeat=block, warmup=0)
            latency = {k: statistics.median(v) for k, v in lat.items()}
    finally:
        if composite is not None and zennit_explain is not None:
            composite.remove()
    load_after = _load()

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "n": args.n, "side": args.side, "modalities": len(MODALITIES), "widths": widths,
        "joint": joint, "clip": args.clip, "dtype": args.dtype, "composite": args.composite,
        "api": "dict" if args.no_model else "MDBN", "threads": pymdbn.get_num_threads(),
        "torch_threads": None, "repeat": args.repeat,
        **{f"{k}_s": v for k, v in med.items()},
        "min_s": {k: min(v) for k, v in times.items()},
        "explain_over_forward": med["explain"] / med["forward"],
        "reference_over_explain": med["explain_reference"] / med["explain"],
        "numpy_over_explain": med["numpy_explain"] / med["explain"],
        "explain_us_per_sample": 1e6 * med["explain"] / args.n,
        "latency_s": latency, "zennit_max_deviation": zennit_check,
        "bfloat16_deviation": bf16_check,
        "load_1min": [load_before, load_after], "times": times, "notes": ZENNIT_NOTES,
        "machine": machine_info(),
    }
    if side is not None:
        import torch

        result["torch_threads"] = torch.get_num_threads()
        result["torch_over_forward"] = med["torch_forward"] / med["forward"]
        result["versions"] = {"torch": torch.__version__}
    if "zennit_explain" in med:
        from importlib import metadata

        result["zennit_over_explain"] = med["zennit_explain"] / med["explain"]
        result["zennit_explain_over_torch_forward"] = med["zennit_explain"] / med["torch_forward"]
        result["versions"]["zennit"] = metadata.version("zennit")
    if "zennit" in latency:
        result["latency_zennit_over_pymdbn"] = latency["zennit"] / latency["pymdbn"]
    if "explain_bf16" in med:
        result["explain_bf16_over_forward_bf16"] = med["explain_bf16"] / med["forward_bf16"]
        if "zennit_explain" in med:
            result["zennit_over_explain_bf16"] = med["zennit_explain"] / med["explain_bf16"]
        if "zennit_explain_bf16" in med:
            result["zennit_bf16_over_explain_bf16"] = (med["zennit_explain_bf16"]
                                                       / med["explain_bf16"])
        if "torch_forward_bf16" in med:
            result["torch_bf16_over_forward_bf16"] = (med["torch_forward_bf16"]
                                                      / med["forward_bf16"])

    def ms(seconds):
        return f"{1e3 * seconds:8.1f} ms"

    print(f"N={args.n}, 3 x {args.side}x{args.side}, pathways {widths}, joint {joint}, "
          f"{args.dtype}, clip {args.clip}, composite {args.composite}, pymdbn "
          f"{result['api']}, threads {result['threads']} / torch {result['torch_threads']}, "
          f"median of {args.repeat} rounds, load {load_before:.2f} -> {load_after:.2f}")
    print(f"  pymdbn forward       {ms(med['forward'])}")
    print(f"  pymdbn explain       {ms(med['explain'])}  = {result['explain_over_forward']:.2f} x "
          f"forward, {result['explain_us_per_sample']:.0f} us/sample")
    print(f"  with a reference     {ms(med['explain_reference'])}  = "
          f"{result['reference_over_explain']:.2f} x explain (dict API)")
    print(f"  NumPy twins (eps)    {ms(med['numpy_explain'])}  = "
          f"{result['numpy_over_explain']:.2f} x explain")
    if "torch_forward" in med:
        print(f"  torch forward        {ms(med['torch_forward'])}  torch / pymdbn = "
              f"{result['torch_over_forward']:.2f}")
    if "zennit_explain" in med:
        print(f"  zennit explain       {ms(med['zennit_explain'])}  zennit / pymdbn = "
              f"{result['zennit_over_explain']:.2f}")
        f32 = zennit_check["float32"]
        print("  relevance vs zennit, per sample max|diff| / max|zennit|: float32 median "
              + ", ".join(f"{m} {v['median']:.1e}" for m, v in f32.items()) + "; 90th pct "
              + ", ".join(f"{v['p90']:.1e}" for v in f32.values()) + "; float64 max "
              + ", ".join(f"{v:.1e}" for v in zennit_check["float64_max"].values()))
    if "explain_bf16" in med:
        line = (f"  bfloat16: pymdbn forward {ms(med['forward_bf16'])}, explain "
                f"{ms(med['explain_bf16'])} (= {result['explain_bf16_over_forward_bf16']:.2f} x "
                f"forward)")
        if "zennit_over_explain_bf16" in result:
            line += f"; zennit (float32) / explain = {result['zennit_over_explain_bf16']:.2f}"
        if "zennit_bf16_over_explain_bf16" in result:
            line += (f"; zennit under bfloat16 autocast {ms(med['zennit_explain_bf16'])}, "
                     f"zennit / pymdbn = {result['zennit_bf16_over_explain_bf16']:.2f}")
        if "torch_bf16_over_forward_bf16" in result:
            line += (f"; torch autocast forward {ms(med['torch_forward_bf16'])}, torch / pymdbn "
                     f"= {result['torch_bf16_over_forward_bf16']:.2f}")
        print(line)
        print("  bfloat16 relevance vs float32, per sample max|diff| / max|float32|: median "
              + ", ".join(f"{m} {bf16_check[m]['median']:.1e}" for m in MODALITIES)
              + "; Pearson r median "
              + ", ".join(f"{bf16_check[m]['pearson_median']:.3f}" for m in MODALITIES)
              + ", 10th pct "
              + ", ".join(f"{bf16_check[m]['pearson_p10']:.3f}" for m in MODALITIES)
              + f"; same predicted class {bf16_check['same_prediction']:.3f}")
    if latency:
        line = f"  one patient: pymdbn explain {1e3 * latency['pymdbn']:.3f} ms"
        if "pymdbn_bf16" in latency:
            line += f" (bfloat16 {1e3 * latency['pymdbn_bf16']:.3f} ms)"
        if "zennit" in latency:
            line += (f", zennit {1e3 * latency['zennit']:.3f} ms "
                     f"(= {result['latency_zennit_over_pymdbn']:.1f} x)")
        print(line + f" (median of {len(lat['pymdbn'])} calls)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
