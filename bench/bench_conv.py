"""Convolutional pathway epochs against the GEMM bound of their im2col products (issue 13).

For the preset's pathway (``Conv(32, 5), Pool(2), Conv(64, 5), Pool(2), 256``) on
64x64x1 images (layer 2 on 30x30x32) and the 128x128 variant (layer 2 on 62x62x32):

(a) a ConvRBM CD-1 epoch of each conv layer (``partial_fit`` over the images);
(b) its im2col products alone, NumPy matmul into preallocated outputs on the same im2col
    matrices with OpenBLAS's own threads: per batch cols0 W^T, h W, cols W^T (forward)
    and cols0^T ph0, cols^T phn (weight gradients). Each product is timed with NumPy's
    OpenBLAS at the run's thread count and at 1 thread; the bound is the sum of the
    faster of the two (on a loaded 2-core machine OpenBLAS's threads can be far slower
    than one: cols^T ph of 25 x 115200 x 32 took 2 s with 2 threads, 4.5 ms with 1);
(a + b) the pathway's greedy pretraining epoch: the sum of its layers' epochs against the
    sum of their bounds;
(c) a fine-tuning epoch of the whole pathway (``Network.forward`` + softmax +
    ``backward``)
    against its products (forward x W, weight gradients x^T dz, input gradients dz W^T of
    every layer but the first) and against PyTorch CPU (conv2d + sigmoid + max_pool2d,
    linear, cross-entropy, forward and backward), when torch imports.

Variants are interleaved, ``--rounds`` rounds, medians reported; ratios are taken within
this one process. Output: a JSON record (``--json``) and a markdown table (``--md``, also
printed), with the machine/versions header of ``pymdbn bench``.

    python bench/bench_conv.py --threads 2 --images 512 --rounds 5 --json conv.json --md conv.md
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import pymdbn
from pymdbn import ConvRBM, backend
from pymdbn.backend import ops
from pymdbn.benchmark import _cpu_info, _versions
from pymdbn.models import finetune
from pymdbn.models.network import Network

CLASSES = 4
DENSE = 256


def _blas_limit(threads):
    """A context capping NumPy's OpenBLAS (and only BLAS) at ``threads``."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def _product(a, b):
    """``a @ b`` into a preallocated output, as the dense suite's bound: the bound
    counts the multiplication, not a fresh output's page faults."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    return lambda: np.matmul(a, b, out=out)


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pathway_shapes(size):
    """(input shape, kernel, filters) of the two conv layers, and the pooled shapes."""
    h1 = size - 4
    p1 = h1 // 2
    h2 = p1 - 4
    p2 = h2 // 2
    return [((size, size, 1), (5, 5), 32), ((p1, p1, 32), (5, 5), 64)], (p2, p2, 64)


# -- (a) + (b): ConvRBM epochs and their products ------------------------------------
def crbm_case(shape, kernel, filters, n_images, batch, rng):
    h, w, c = shape
    X = rng.standard_normal((n_images, h, w, c), dtype=np.float32)
    model = ConvRBM(filters, kernel, n_iter=1, batch_size=batch, random_state=0)
    model.partial_fit(X[:batch])  # initialised (and warm)
    n_batches = -(-n_images // batch)
    # The products of one batch on its own im2col matrices (the step's shapes).
    v = X[:batch].reshape(batch, -1)
    wf = model.components_.reshape(filters, -1)
    cols0 = ops.im2col(v, shape, kernel)
    ph0, hs = ops.gibbs_hidden(cols0, wf, model.intercept_hidden_, None, 1, 0, 0)
    cols = cols0.copy()
    phn = ph0.copy()
    wt = np.ascontiguousarray(wf.T)
    products = {
        "cols0 W^T": _product(cols0, wt),
        "h W": _product(hs, wf),
        "cols W^T": _product(cols, wt),
        "cols0^T ph0": _product(cols0.T, ph0),
        "cols^T phn": _product(cols.T, phn),
    }
    return {"epoch": lambda: model.partial_fit(X), "products": products,
            "n_batches": n_batches, "rows": len(cols0), "cols": cols0.shape[1]}


# -- (c): the fine-tuning epoch --------------------------------------------------------
def network_case(size, n_images, batch, rng):
    (s1, k1, f1), (s2, k2, f2) = pathway_shapes(size)[0]
    top = pathway_shapes(size)[1]
    conv1_out = (s1[0] - 4, s1[1] - 4, f1)
    conv2_out = (s2[0] - 4, s2[1] - 4, f2)

    def conv(shape, kernel, filters):
        n_in = kernel[0] * kernel[1] * shape[2]
        return {"type": "conv", "W": (rng.standard_normal((n_in, filters)) / np.sqrt(n_in))
                .astype(np.float32), "b": np.zeros(filters, np.float32), "shape": shape,
                "kernel": kernel}

    n_top = top[0] * top[1] * top[2]
    path = [conv(s1, k1, f1), {"type": "pool", "size": 2, "mode": "max", "shape": conv1_out},
            conv(s2, k2, f2), {"type": "pool", "size": 2, "mode": "max", "shape": conv2_out},
            finetune.new_layer(n_top, DENSE, rng, np.float32, 1.0 / np.sqrt(n_top))]
    out = finetune.new_layer(DENSE, CLASSES, rng, np.float32, 0.1)
    net = Network({"img": path}, ["img"], [], out, clip=None)
    X = rng.standard_normal((n_images, s1[0] * s1[1]), dtype=np.float32)
    y = rng.integers(0, CLASSES, n_images).astype(np.int64)
    n_batches = -(-n_images // batch)

    def epoch():
        for s in range(0, n_images, batch):
            cache = net.forward({"img": X[s:s + batch]})
            _, g, _ = ops.softmax_cross_entropy(cache["logits"], y[s:s + batch], None)
            net.backward(cache, g)

    # The products of one batch: operands of the shapes the epoch multiplies.
    cache = net.forward({"img": X[:batch]})
    products = {}
    for i, (layer, (x, z, a)) in enumerate(zip(path, cache["pathways"]["img"])):
        if "W" not in layer:
            continue
        wl = layer["W"]
        dz = np.ascontiguousarray(z if z.ndim == 2 else z.reshape(len(x), -1))
        products[f"L{i} x W"] = _product(x, wl)
        products[f"L{i} x^T dz"] = _product(x.T, dz)
        if i > 0:
            products[f"L{i} dz W^T"] = _product(dz, wl.T)
    code = cache["code"]
    gl = np.ones((len(code), CLASSES), np.float32)
    products["out x W"] = _product(code, out["W"])
    products["out x^T dz"] = _product(code.T, gl)
    products["out dz W^T"] = _product(gl, out["W"].T)

    torch_epoch = None
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    if torch is not None:
        def tparam(a, shape=None):
            t = torch.tensor(np.asarray(a) if shape is None else np.asarray(a).reshape(shape))
            return t.requires_grad_(True)

        def conv_weight(layer):  # im2col (dy, dx, c) x F -> (F, C, kh, kw)
            kh, kw = layer["kernel"]
            c = layer["shape"][2]
            return tparam(layer["W"].reshape(kh, kw, c, -1).transpose(3, 2, 0, 1).copy())

        tw1, tb1 = conv_weight(path[0]), tparam(path[0]["b"])
        tw2, tb2 = conv_weight(path[2]), tparam(path[2]["b"])
        tw3, tb3 = tparam(path[4]["W"].T.copy()), tparam(path[4]["b"])
        tw4, tb4 = tparam(out["W"].T.copy()), tparam(out["b"])
        tX = torch.tensor(X.reshape(n_images, 1, s1[0], s1[1]))
        ty = torch.tensor(y)

        def torch_epoch():
            for s in range(0, n_images, batch):
                h = torch.sigmoid(F.conv2d(tX[s:s + batch], tw1, tb1))
                h = F.max_pool2d(h, 2)
                h = torch.sigmoid(F.conv2d(h, tw2, tb2))
                h = F.max_pool2d(h, 2).flatten(1)
                h = torch.sigmoid(F.linear(h, tw3, tb3))
                loss = F.cross_entropy(F.linear(h, tw4, tb4), ty[s:s + batch])
                for p in (tw1, tb1, tw2, tb2, tw3, tb3, tw4, tb4):
                    p.grad = None
                loss.backward()

    return {"epoch": epoch, "products": products, "n_batches": n_batches,
            "torch_epoch": torch_epoch}


def measure(case, threads, rounds, with_torch=False):
    """Interleaved rounds: the epoch, each product (n_batches times) at ``threads`` and at
    1 OpenBLAS thread, and torch's epoch; medians in seconds per epoch."""
    nb = case["n_batches"]
    times = {"epoch": [], "torch": []}
    for name in case["products"]:
        times[name + "@t"] = []
        times[name + "@1"] = []
    case["epoch"]()  # warm: allocations, oneDNN/OpenBLAS buffers
    if with_torch and case.get("torch_epoch"):
        case["torch_epoch"]()
    for r in range(rounds):
        times["epoch"].append(_timed(case["epoch"]))
        for name, fn in case["products"].items():
            for key, t in ((name + "@t", threads), (name + "@1", 1)):
                # A product that OpenBLAS's threads made 3x slower than one thread in
                # round 1 (see the module docstring) is not timed threaded again.
                if r and t > 1 and times[name + "@t"][0] > 3 * times[name + "@1"][0]:
                    continue
                with _blas_limit(t):
                    fn()
                    times[key].append(_timed(lambda: [fn() for _ in range(nb)]))
        if with_torch and case.get("torch_epoch"):
            times["torch"].append(_timed(case["torch_epoch"]))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    prod_t = sum(med[n + "@t"] for n in case["products"])
    prod_1 = sum(med[n + "@1"] for n in case["products"])
    bound = sum(min(med[n + "@t"], med[n + "@1"]) for n in case["products"])
    rec = {"epoch_s": med["epoch"], "products_threads_s": prod_t, "products_1thread_s": prod_1,
           "bound_s": bound, "ratio": med["epoch"] / bound,
           "products": {n: {"threads_s": med[n + "@t"], "one_thread_s": med[n + "@1"]}
                        for n in case["products"]},
           "epoch_rounds_s": times["epoch"]}
    if "torch" in med:
        rec["torch_s"] = med["torch"]
        rec["ratio_torch"] = med["epoch"] / med["torch"]
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=512, help="images per epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--parts", nargs="+", default=["crbm", "finetune"],
                    choices=["crbm", "finetune"])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)

    pymdbn.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    model, flags = _cpu_info()
    record = {
        "benchmark": "bench_conv",
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {"threads": args.threads, "images": args.images, "batch": args.batch,
                     "rounds": args.rounds, "sizes": args.sizes, "parts": args.parts},
        "machine": {"cpu": model, "cpu_count": os.cpu_count(), "flags": flags,
                    "platform": platform.platform(), "loadavg_before": os.getloadavg()},
        "versions": _versions(),
        "results": [],
    }
    rng = np.random.default_rng(0)
    for size in args.sizes:
        layers, _ = pathway_shapes(size)
        if "crbm" in args.parts:
            for i, (shape, kernel, filters) in enumerate(layers):
                case = crbm_case(shape, kernel, filters, args.images, args.batch, rng)
                # partial_fit per epoch, buffers kept between epochs as ConvRBM.fit keeps them
                with backend.array_pool():
                    rec = measure(case, args.threads, args.rounds)
                rec.update(case="ConvRBM CD-1", size=size, layer=i + 1, input=list(shape),
                           filters=filters, gemm_rows=case["rows"], gemm_cols=case["cols"])
                record["results"].append(rec)
                print(f"# {size}x{size} ConvRBM layer {i + 1}: epoch {rec['epoch_s']:.3f} s, "
                      f"bound {rec['bound_s']:.3f} s, ratio {rec['ratio']:.2f}", flush=True)
            # The pathway's greedy pretraining epoch: one epoch of every layer, each on
            # its own input, against the sum of the layers' bounds (the per-layer rows
            # above stay the finer figure).
            mine = [r for r in record["results"]
                    if r["case"] == "ConvRBM CD-1" and r["size"] == size]
            epoch, bound = sum(r["epoch_s"] for r in mine), sum(r["bound_s"] for r in mine)
            record["results"].append({
                "case": "ConvRBM CD-1, all layers", "size": size,
                "layer": "+".join(str(r["layer"]) for r in mine), "epoch_s": epoch,
                "products_threads_s": sum(r["products_threads_s"] for r in mine),
                "products_1thread_s": sum(r["products_1thread_s"] for r in mine),
                "bound_s": bound, "ratio": epoch / bound})
            print(f"# {size}x{size} pretraining, all layers: epoch {epoch:.3f} s, bound "
                  f"{bound:.3f} s, ratio {epoch / bound:.2f}", flush=True)
        if "finetune" in args.parts:
            case = network_case(size, args.images, args.batch, rng)
            with backend.array_pool():  # as pymdbn.models.finetune.train holds it
                rec = measure(case, args.threads, args.rounds, with_torch=not args.no_torch)
            rec.update(case="fine-tune epoch", size=size, layer="pathway")
            record["results"].append(rec)
            print(f"# {size}x{size} fine-tune: epoch {rec['epoch_s']:.3f} s, bound "
                  f"{rec['bound_s']:.3f} s, ratio {rec['ratio']:.2f}"
                  + (f", torch {rec['torch_s']:.3f} s" if "torch_s" in rec else ""), flush=True)
    record["machine"]["loadavg_after"] = os.getloadavg()
    md = markdown(record)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return record


def markdown(record):
    s, m, v = record["settings"], record["machine"], record["versions"]
    lines = [f"# bench_conv ({record['date']})", "",
             f"{m['cpu']}, {m['cpu_count']} CPUs, load {m['loadavg_before'][0]:.1f} before / "
             f"{m['loadavg_after'][0]:.1f} after; pymdbn {v.get('pymdbn')}, numpy "
             f"{v.get('numpy')}, torch {v.get('torch')}", "",
             f"{s['threads']} threads, {s['images']} images per epoch, batch {s['batch']}, "
             f"medians of {s['rounds']} interleaved rounds. Products: NumPy matmul at "
             f"{s['threads']} OpenBLAS threads / at 1; bound = sum of the faster of the two.", "",
             "| case | size | layer | epoch s | products s (t / 1 thr) | bound s | epoch / bound "
             "| torch s | epoch / torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in record["results"]:
        torch_s = f"{r['torch_s']:.3f}" if "torch_s" in r else "-"
        torch_r = f"{r['ratio_torch']:.2f}" if "ratio_torch" in r else "-"
        lines.append(f"| {r['case']} | {r['size']} | {r['layer']} | {r['epoch_s']:.3f} | "
                     f"{r['products_threads_s']:.3f} / {r['products_1thread_s']:.3f} | "
                     f"{r['bound_s']:.3f} | {r['ratio']:.2f} | {torch_s} | {torch_r} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
