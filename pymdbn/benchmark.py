"""Speed of pymdbn's CD-1 epoch against its GEMM bound and other libraries, and its scaling.

The engine of ``pymdbn bench``. Two suites:

* ``cd``: one CD-1 epoch (Bernoulli units, not persistent, learning rate 0.01, no
  momentum, weight decay or sparsity; data of :func:`binary_data`) per (V, H, B) shape,
  dtype and thread count, measured several ways:

  - ``pymdbn``: the raw epoch of :class:`pymdbn.RBM` (``RBM._run_epoch``);
  - ``bound``: the epoch's products alone at their shapes, per batch V0 W^T (B x V by
    V x H), H0 W (B x H by H x V), Vs W^T and the weight gradient H^T V (H x 2B by
    2B x V, merged as pymdbn does; ``bound_split`` does it as two H x B by B x V
    products), into preallocated outputs, with scipy-openblas32's ``cblas_sgemm`` (the
    library pymdbn links) using its own threads; for bfloat16, ``torch.matmul`` on
    bfloat16 tensors. The bound is the faster of the two formulations;
  - ``bound_numpy``: the same products with ``np.matmul(out=)`` (NumPy's OpenBLAS);
  - ``numpy``: :class:`NumpyCD1`, an efficient NumPy CD-1;
  - ``sklearn``: ``BernoulliRBM(n_iter=1).fit`` (always PCD-1), when importable;
  - ``torch``: :class:`TorchCD1`, an efficient PyTorch CPU CD-1, when importable.

* ``scaling``: epoch time against N, against V H and against the batch size, thread
  scaling, and the peak memory of an MDBN fit against N.

Every configuration runs in fresh subprocesses (one per implementation) with
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set; each does
one untimed warm-up epoch, then the implementations take turns, one epoch each per
round, in an order rotated every round, every epoch from the same initial state.
Cells are the median and range over the rounds; ratios are of medians.
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = ["LEARNING_RATE", "SHAPE_S", "SHAPE_L", "GOALS", "THREAD_SPEEDUP_GOAL", "SUITES",
           "IMPLEMENTATIONS", "binary_data", "NumpyCD1", "TorchCD1", "openblas_core",
           "run_benchmark", "to_markdown"]

LEARNING_RATE = 0.01
#: (n_visible, n_hidden, batch_size) of the issue's goals.
SHAPE_S = (784, 512, 128)
SHAPE_L = (4096, 1024, 256)
SUITES = ("cd", "scaling", "all")
#: Columns of the cd suite, in table order.
IMPLEMENTATIONS = ("pymdbn", "bound", "bound_numpy", "numpy", "sklearn", "torch")
#: Goals, stated as ratios of medians measured in one run, at 2 threads in float32.
#: ``pymdbn_over_bound`` is an upper limit, the others lower limits (speed-ups).
GOALS = {
    SHAPE_L: {"pymdbn_over_bound": 1.10, "numpy_over_pymdbn": 1.25,
              "sklearn_over_pymdbn": 2.5, "torch_over_pymdbn": 1.0},
    SHAPE_S: {"pymdbn_over_bound": 1.25},
}
#: Goal of the thread scaling at SHAPE_L: epoch time on 1 thread / on 2 threads.
THREAD_SPEEDUP_GOAL = 1.8

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")

_PREFIX = "@@pymdbn-bench "
# After a worker's turn its OpenBLAS threads spin-yield and its OpenMP threads spin for a
# while before sleeping: wait that out so that they do not share the cores with the next.
_SETTLE_S = 0.25

# Grids of the scaling suite: full run, quick run.
_GRIDS = {
    False: {"vh": [(784, 512), (1024, 1024), (2048, 1024), (4096, 1024), (4096, 2048)],
            "vh_batch": 256, "batches": [32, 64, 128, 256, 512], "n_factors": [0.25, 0.5, 1, 2],
            "memory_n": [2000, 4000, 8000, 16000], "large": SHAPE_L},
    True: {"vh": [(256, 128), (512, 256), (784, 512)], "vh_batch": 128,
           "batches": [32, 128], "n_factors": [0.25, 0.5, 1], "memory_n": [100, 200],
           "large": SHAPE_S},
}


# ---------------------------------------------------------------------------------------
# Data and the baselines
# ---------------------------------------------------------------------------------------
def binary_data(n_samples, n_features, seed=0, ones=0.3, width=9):
    """Binary float32 data with some structure: Gaussian noise smoothed along the features
    by a box filter of ``width``, thresholded so that a fraction ``ones`` are 1.

    bench/_common.py takes it from here, so every CD benchmark times the same data.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features + width), dtype=np.float32)
    c = np.cumsum(x, axis=1, dtype=np.float32)
    smooth = c[:, width:] - c[:, :-width]
    thr = np.quantile(smooth[: min(n_samples, 1000)], 1.0 - ones)
    return np.ascontiguousarray(smooth > thr, dtype=np.float32)


def _numpy_cblas_sgemm():
    """ctypes handle on cblas_sgemm of the OpenBLAS that NumPy itself links (so that the
    baseline uses one BLAS library and one thread pool), or None."""
    import ctypes

    import threadpoolctl

    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # make sure it is loaded
    for info in threadpoolctl.threadpool_info():
        path = info.get("filepath", "")
        if info.get("internal_api") != "openblas" or "numpy" not in path:
            continue
        lib = ctypes.CDLL(path)
        for name, ilp64 in (("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True),
                            ("scipy_cblas_sgemm", False), ("cblas_sgemm", False)):
            fn = getattr(lib, name, None)
            if fn is not None:
                it = ctypes.c_int64 if ilp64 else ctypes.c_int
                fp = ctypes.c_void_p
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, it, it, it,
                               ctypes.c_float, fp, it, fp, it, ctypes.c_float, fp, it]
                return fn
    return None


def _gemm_accumulate():
    """Return acc(alpha, a, b, beta, c): c <- alpha * a.T @ b + beta * c, in place.

    a: (B, H), b: (B, V), c: (H, V), all C-contiguous float32. Calls sgemm with beta
    (NumPy's own OpenBLAS through ctypes) so that the two gradient GEMMs accumulate
    straight into the velocity with no temporary H x V matrix. Without it, falls back
    to np.dot into a scratch matrix and an in-place combine."""
    try:
        fn = _numpy_cblas_sgemm()
    except ImportError:  # threadpoolctl (a scikit-learn dependency) missing
        fn = None
    if fn is not None:
        ROW, NT, TR = 101, 111, 112

        def acc(alpha, a, b, beta, c):
            assert a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous
            m, n, k = c.shape[0], c.shape[1], a.shape[0]
            fn(ROW, TR, NT, m, n, k, alpha, a.ctypes.data, a.shape[1], b.ctypes.data,
               b.shape[1], beta, c.ctypes.data, c.shape[1])
        acc.backend = "numpy-openblas cblas_sgemm (ctypes)"
        return acc

    tmp = {}

    def acc(alpha, a, b, beta, c):  # pragma: no cover - only without a usable cblas
        t = tmp.get(c.shape)
        if t is None:
            t = tmp[c.shape] = np.empty_like(c)
        np.dot(a.T, b, out=t)
        if beta != 1.0:
            c *= np.float32(beta)
        t *= np.float32(alpha)
        c += t
    acc.backend = "np.dot + in-place combine"
    return acc


class NumpyCD1:
    """CD-1 (non-persistent) in NumPy, written efficiently: the baseline of the benchmarks.

    Bernoulli hidden units, Bernoulli or unit-variance Gaussian visible units; the update
    of pymdbn's ``cd_epoch`` with k=1, ``persistent=False``, no weight decay or sparsity
    pull. float32 throughout, preallocated buffers, in-place ufuncs, the two gradient
    GEMMs accumulated into the velocity by sgemm with beta.

    Parameters
    ----------
    n_visible, n_hidden, batch_size : int
    visible : {'bernoulli', 'gaussian'}, default='bernoulli'
    learning_rate : float, default=0.01
    momentum : float, default=0.0
    seed : int, default=0
        Seeds the weights (N(0, 0.01^2)) and the samples.

    Attributes
    ----------
    W : ndarray of shape (n_hidden, n_visible)
    bv, bh : ndarray
        Visible and hidden biases.
    VW, Vbv, Vbh : ndarray
        Velocities of W, bv and bh.
    """

    def __init__(self, n_visible, n_hidden, batch_size, visible="bernoulli",
                 learning_rate=LEARNING_RATE, momentum=0.0, seed=0):
        f = np.float32
        rng = np.random.default_rng(seed)
        self.visible = visible
        self.lr, self.mom = float(learning_rate), float(momentum)
        self.rng = rng
        self.W = (rng.standard_normal((n_hidden, n_visible), dtype=f) * f(0.01))
        self.bv = np.zeros(n_visible, f)
        self.bh = np.zeros(n_hidden, f)
        self.VW = np.zeros_like(self.W)
        self.Vbv = np.zeros_like(self.bv)
        self.Vbh = np.zeros_like(self.bh)
        B = batch_size
        self.B = B
        self.V0 = np.empty((B, n_visible), f)
        self.PH0 = np.empty((B, n_hidden), f)
        self.H0 = np.empty((B, n_hidden), f)
        self.UH = np.empty((B, n_hidden), f)
        self.VM = np.empty((B, n_visible), f)
        self.VS = np.empty((B, n_visible), f)
        self.UV = np.empty((B, n_visible), f)
        self.PHN = np.empty((B, n_hidden), f)
        self.ones = np.ones(B, f)
        self.sv0 = np.empty(n_visible, f)
        self.svs = np.empty(n_visible, f)
        self.sh0 = np.empty(n_hidden, f)
        self.shn = np.empty(n_hidden, f)
        self.acc = _gemm_accumulate()

    @staticmethod
    def _sigmoid_(x):
        np.negative(x, out=x)
        np.exp(x, out=x)
        np.add(x, np.float32(1.0), out=x)
        np.reciprocal(x, out=x)

    def epoch(self, X, order):
        """One epoch over the rows ``order`` of X; returns the mean squared
        reconstruction error (against the visible means)."""
        W, bv, bh = self.W, self.bv, self.bh
        sq = 0.0
        n = len(order)
        with np.errstate(over="ignore"):
            for s in range(0, n, self.B):
                idx = order[s:s + self.B]
                b = len(idx)
                v0, ph0, h0, uh = self.V0[:b], self.PH0[:b], self.H0[:b], self.UH[:b]
                vm, vs, uv, phn = self.VM[:b], self.VS[:b], self.UV[:b], self.PHN[:b]
                ones = self.ones[:b]
                np.take(X, idx, axis=0, out=v0)
                # positive phase: P(h|v0) and a Bernoulli sample h0
                np.dot(v0, W.T, out=ph0)
                ph0 += bh
                self._sigmoid_(ph0)
                self.rng.random(out=uh, dtype=np.float32)
                np.less(uh, ph0, out=h0)
                # negative phase: visible mean + sample from h0
                np.dot(h0, W, out=vm)
                vm += bv
                if self.visible == "gaussian":
                    self.rng.standard_normal(out=vs, dtype=np.float32)
                    vs += vm
                else:
                    self._sigmoid_(vm)
                    self.rng.random(out=uv, dtype=np.float32)
                    np.less(uv, vm, out=vs)
                # reconstruction error against the visible mean (uv is free now)
                np.subtract(v0, vm, out=uv)
                r = uv.ravel()
                sq += float(np.dot(r, r))
                # hidden probabilities of the sampled visible
                np.dot(vs, W.T, out=phn)
                phn += bh
                self._sigmoid_(phn)
                # updates: velocity <- mom * velocity + lr * mean gradient; param += velocity
                a = self.lr / b
                self.acc(a, ph0, v0, self.mom, self.VW)
                self.acc(-a, phn, vs, 1.0, self.VW)
                W += self.VW
                np.dot(ones, v0, out=self.sv0)
                np.dot(ones, vs, out=self.svs)
                np.dot(ones, ph0, out=self.sh0)
                np.dot(ones, phn, out=self.shn)
                self.sv0 -= self.svs
                self.sh0 -= self.shn
                self.Vbv *= np.float32(self.mom)
                self.Vbh *= np.float32(self.mom)
                self.Vbv += np.float32(a) * self.sv0
                self.Vbh += np.float32(a) * self.sh0
                bv += self.Vbv
                bh += self.Vbh
        return sq / (n * X.shape[1])


class TorchCD1:
    """CD-1 (non-persistent) in PyTorch on the CPU, written plainly and efficiently.

    The update of :class:`NumpyCD1` (same initial weights for the same seed). Per batch:
    ``index_select`` into a preallocated ``[v0; vs]`` buffer, ``addmm`` with the bias
    for V0 W^T, H0 W and Vs W^T, in-place ``sigmoid_``, Bernoulli samples as
    ``torch.rand(out=)`` then in-place ``lt_`` against the probabilities, and the weight
    update as one GEMM ``VW <- mom VW + lr/b [ph0; -phn]^T [v0; vs]`` (``addmm_``), the
    bias velocities as two GEMVs. Threads: ``torch.set_num_threads`` (the caller's).

    Parameters
    ----------
    n_visible, n_hidden, batch_size : int
    visible : {'bernoulli', 'gaussian'}, default='bernoulli'
    learning_rate : float, default=0.01
    momentum : float, default=0.0
    seed : int, default=0
    dtype : str or torch.dtype, default='float32'
        'bfloat16' for the low-precision variant.

    Attributes
    ----------
    W, bv, bh, VW, Vbv, Vbh : torch.Tensor
        As in :class:`NumpyCD1`.
    """

    def __init__(self, n_visible, n_hidden, batch_size, visible="bernoulli",
                 learning_rate=LEARNING_RATE, momentum=0.0, seed=0, dtype="float32"):
        import torch

        self.torch = torch
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        dt, V, H, B = self.dtype, n_visible, n_hidden, batch_size
        self.visible, self.B = visible, B
        self.lr, self.mom = float(learning_rate), float(momentum)
        w = np.random.default_rng(seed).standard_normal((H, V), dtype=np.float32)
        self.W = torch.from_numpy(w * np.float32(0.01)).to(dt)
        self.bv, self.bh = torch.zeros(V, dtype=dt), torch.zeros(H, dtype=dt)
        self.VW = torch.zeros((H, V), dtype=dt)
        self.Vbv, self.Vbh = torch.zeros(V, dtype=dt), torch.zeros(H, dtype=dt)
        self.generator = torch.Generator().manual_seed(seed)
        self._v = torch.empty((2 * B, V), dtype=dt)  # [v0; vs]
        self._h = torch.empty((2 * B, H), dtype=dt)  # [ph0; -phn]
        self._h0 = torch.empty((B, H), dtype=dt)
        self._vm = torch.empty((B, V), dtype=dt)
        self._ones = torch.ones(2 * B, dtype=dt)
        self._signs = {}

    def _sign(self, b):
        s = self._signs.get(b)
        if s is None:
            s = self._signs[b] = self.torch.ones(2 * b, dtype=self.dtype)
            s[b:] = -1
        return s

    def epoch(self, X, order):
        """One epoch over the rows ``order`` of X (an array or a tensor of this dtype);
        returns the mean squared reconstruction error (against the visible means)."""
        t, g = self.torch, self.generator
        X = t.as_tensor(X)
        if X.dtype != self.dtype:
            X = X.to(self.dtype)
        order = t.as_tensor(np.asarray(order, dtype=np.int64))
        W, bv, bh = self.W, self.bv, self.bh
        n, B = len(order), self.B
        sq = 0.0
        for start in range(0, n, B):
            idx = order[start:start + B]
            b = len(idx)
            v, h = self._v[:2 * b], self._h[:2 * b]
            v0, vs, ph0, phn = v[:b], v[b:], h[:b], h[b:]
            h0, vm = self._h0[:b], self._vm[:b]
            t.index_select(X, 0, idx, out=v0)
            # positive phase: P(h|v0) and a Bernoulli sample h0 (u < p)
            t.addmm(bh, v0, W.t(), out=ph0)
            ph0.sigmoid_()
            t.rand(h0.shape, generator=g, dtype=self.dtype, out=h0)
            h0.lt_(ph0)
            # negative phase: visible means, the reconstruction error (vs is free until
            # sampled), then the sample vs
            t.addmm(bv, h0, W, out=vm)
            if self.visible != "gaussian":
                vm.sigmoid_()
            t.sub(v0, vm, out=vs)
            flat = vs.reshape(-1)
            sq += float(t.dot(flat, flat))
            if self.visible == "gaussian":
                t.randn(vs.shape, generator=g, dtype=self.dtype, out=vs)
                vs.add_(vm)
            else:
                t.rand(vs.shape, generator=g, dtype=self.dtype, out=vs)
                vs.lt_(vm)
            t.addmm(bh, vs, W.t(), out=phn)
            phn.sigmoid_()
            phn.neg_()
            # update: one GEMM over 2b rows, bias velocities as GEMVs, params += velocities
            a = self.lr / b
            self.VW.addmm_(h.t(), v, beta=self.mom, alpha=a)
            self.Vbv.addmv_(v.t(), self._sign(b), beta=self.mom, alpha=a)
            self.Vbh.addmv_(h.t(), self._ones[:2 * b], beta=self.mom, alpha=a)
            W.add_(self.VW)
            bv.add_(self.Vbv)
            bh.add_(self.Vbh)
        return sq / (n * X.shape[1])


# ---------------------------------------------------------------------------------------
# Workers: one implementation of one configuration, in a fresh process
# ---------------------------------------------------------------------------------------
def _send(kind, payload):
    sys.stdout.write(f"{_PREFIX}{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _snapshot(obj, names):
    """Copy the arrays ``names`` of obj now; return a function that copies them back."""
    saved = {n: getattr(obj, n).copy() for n in names}

    def restore():
        for n, a in saved.items():
            getattr(obj, n)[...] = a
    return restore


def _timed(impl, fn):
    def run():
        t0 = time.perf_counter()
        fn()
        return {impl: time.perf_counter() - t0}
    return run


def _openblas32():
    """scipy-openblas32, the library pymdbn links, through ctypes; and its path."""
    import ctypes

    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(),
                        scipy_openblas32.get_library(fullname=True))
    return ctypes.CDLL(path), path


def openblas_core():
    """The OpenBLAS core type picked by scipy-openblas32 in this process, and its config."""
    import ctypes

    lib, path = _openblas32()
    out = {"library": path}
    for key, symbol in (("core", "scipy_openblas_get_corename"),
                        ("config", "scipy_openblas_get_config")):
        fn = getattr(lib, symbol)
        fn.restype = ctypes.c_char_p
        out[key] = fn().decode()
    return out


def _epoch_products(V, H, B, N, rng):
    """Operands of one epoch's products, outputs preallocated.

    Returns (W, outputs, sizes, batches): W (H, V); outputs ``ph`` (B, H), ``vm`` (B, V),
    ``vw`` (H, V); the batch sizes of the epoch in order; and per distinct batch size b
    the operands v0 / vs (b, V), h0 / ph0 / phn (b, H) and the merged [ph0; -phn]
    (2b, H) and [v0; vs] (2b, V). Values do not change OpenBLAS's speed, so the data
    rows are the first 2B of :func:`binary_data` rather than a gather per batch.
    """
    f = np.float32
    W = rng.standard_normal((H, V), dtype=f) * f(0.01)
    v2 = binary_data(2 * B, V)
    h2 = rng.random((2 * B, H), dtype=f)
    h2[B:] *= -1
    out = {"ph": np.empty((B, H), f), "vm": np.empty((B, V), f), "vw": np.empty((H, V), f)}
    sizes = [min(B, N - s) for s in range(0, N, B)]
    batches = []
    for b in sorted(set(sizes)):
        hh = np.concatenate([h2[:b], h2[B:B + b]])
        vv = np.concatenate([v2[:b], v2[B:B + b]])
        batches.append({"b": b, "v0": vv[:b], "vs": vv[b:], "h0": (hh[:b] > 0.5).astype(f),
                        "hh": hh, "vv": vv, "ph0": hh[:b], "phn": hh[b:]})
    return W, out, sizes, batches


def _bound_openblas(spec):
    """The epoch's products with scipy-openblas32's cblas_sgemm, OpenBLAS threading."""
    import ctypes

    V, H, B, N, threads = spec["V"], spec["H"], spec["B"], spec["N"], spec["threads"]
    lib, _ = _openblas32()
    lib.scipy_openblas_set_num_threads(int(threads))
    sgemm = lib.scipy_cblas_sgemm
    i, fp = ctypes.c_int, ctypes.c_void_p
    sgemm.restype = None
    sgemm.argtypes = [i, i, i, i, i, i, ctypes.c_float, fp, i, fp, i, ctypes.c_float, fp, i]
    ROW, NT, TR = 101, 111, 112
    W, out, sizes, batches = _epoch_products(V, H, B, N, np.random.default_rng(0))

    def call(a, ta, b_, tb, c, alpha=1.0, beta=0.0):
        m, n = c.shape
        k = a.shape[0] if ta == TR else a.shape[1]
        return (ROW, ta, tb, m, n, k, alpha, a.ctypes.data, a.shape[1], b_.ctypes.data,
                b_.shape[1], beta, c.ctypes.data, c.shape[1])

    plans = {"bound": {}, "bound_split": {}}
    for bt in batches:
        b = bt["b"]
        ph, vm = out["ph"][:b], out["vm"][:b]
        fwd = [call(bt["v0"], NT, W, TR, ph), call(bt["h0"], NT, W, NT, vm),
               call(bt["vs"], NT, W, TR, ph)]
        plans["bound"][b] = fwd + [call(bt["hh"], TR, bt["vv"], NT, out["vw"])]
        plans["bound_split"][b] = fwd + [
            call(bt["ph0"], TR, bt["v0"], NT, out["vw"]),
            call(bt["phn"], TR, bt["vs"], NT, out["vw"], beta=1.0)]

    def run():
        times = {}
        for name, plan in plans.items():
            t0 = time.perf_counter()
            for b in sizes:
                for args in plan[b]:
                    sgemm(*args)
            times[name] = time.perf_counter() - t0
        return times
    run.operands = (W, out, batches)  # the plans hold raw pointers into these

    def info():
        return {"openblas": openblas_core(),
                "openblas_threads": int(lib.scipy_openblas_get_num_threads())}
    return None, run, info


def _bound_numpy(spec):
    """The same products with np.matmul(out=): NumPy's own OpenBLAS and its threads."""
    V, H, B, N = spec["V"], spec["H"], spec["B"], spec["N"]
    W, out, sizes, batches = _epoch_products(V, H, B, N, np.random.default_rng(0))
    by_b = {bt["b"]: bt for bt in batches}

    def run():
        t0 = time.perf_counter()
        for b in sizes:
            bt = by_b[b]
            ph, vm = out["ph"][:b], out["vm"][:b]
            np.matmul(bt["v0"], W.T, out=ph)
            np.matmul(bt["h0"], W, out=vm)
            np.matmul(bt["vs"], W.T, out=ph)
            np.matmul(bt["hh"].T, bt["vv"], out=out["vw"])
        return {"bound_numpy": time.perf_counter() - t0}
    return None, run, lambda: {}


def _bound_torch(spec):
    """bfloat16 bound: the same products with torch.matmul(out=) on bfloat16 tensors."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    V, H, B, N = spec["V"], spec["H"], spec["B"], spec["N"]
    W, out, sizes, batches = _epoch_products(V, H, B, N, np.random.default_rng(0))
    bf = torch.bfloat16

    def tens(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(bf)

    Wt = tens(W)
    o = {k: tens(v) for k, v in out.items()}
    by_b = {bt["b"]: {k: tens(v) if isinstance(v, np.ndarray) else v for k, v in bt.items()}
            for bt in batches}

    def run():
        t0 = time.perf_counter()
        for b in sizes:
            bt = by_b[b]
            ph, vm = o["ph"][:b], o["vm"][:b]
            torch.matmul(bt["v0"], Wt.t(), out=ph)
            torch.matmul(bt["h0"], Wt, out=vm)
            torch.matmul(bt["vs"], Wt.t(), out=ph)
            torch.matmul(bt["hh"].t(), bt["vv"], out=o["vw"])
        return {"bound": time.perf_counter() - t0}

    def info():
        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return None, run, info


def _pymdbn(spec):
    import pymdbn
    from pymdbn import backend
    from pymdbn.models.rbm import RBM

    X, order = _data(spec)
    dtype = np.float32 if spec["dtype"] == "float32" else spec["dtype"]
    rbm = RBM(n_components=spec["H"], batch_size=spec["B"], n_iter=0, persistent=False, k=1,
              visible="bernoulli", learning_rate=LEARNING_RATE, random_state=0,
              dtype=dtype).fit(X)
    X = rbm._input(X, False, "cpu")  # the X that fit hands to _run_epoch (dtype included)
    restore = _snapshot(rbm, ("components_", "intercept_hidden_", "intercept_visible_",
                              "velocity_components_", "velocity_hidden_", "velocity_visible_"))
    steps = rbm.n_steps_

    def prepare():
        restore()
        rbm.n_steps_ = steps

    def info():
        native = precision == "bfloat16" and backend.bfloat16_status()[0]
        return {"num_threads": pymdbn.get_num_threads(),
                "dtype": str(rbm.components_.dtype),
                "products": backend.bfloat16_status()[1] if precision == "bfloat16"
                else "float32",
                "bfloat16_products": bool(native)}

    precision = backend.precision_of(spec["dtype"])

    def epoch():  # the raw epoch, as RBM.fit runs it (no scoring, no validation)
        with backend.matmul_precision(precision):
            rbm._run_epoch(X, order)

    return prepare, _timed("pymdbn", epoch), info


def _numpy(spec):
    X, order = _data(spec)
    model = NumpyCD1(spec["V"], spec["H"], spec["B"])
    restore = _snapshot(model, ("W", "bv", "bh", "VW", "Vbv", "Vbh"))
    return restore, _timed("numpy", lambda: model.epoch(X, order)), \
        lambda: {"gemm_backend": model.acc.backend}


def _sklearn(spec):
    import sklearn
    from sklearn.neural_network import BernoulliRBM

    X, _ = _data(spec)
    box = {}

    def prepare():
        box["rbm"] = BernoulliRBM(n_components=spec["H"], batch_size=spec["B"], n_iter=1,
                                  learning_rate=LEARNING_RATE, random_state=0)

    return prepare, _timed("sklearn", lambda: box["rbm"].fit(X)), \
        lambda: {"sklearn": sklearn.__version__, "dtype": str(box["rbm"].components_.dtype)}


def _torch(spec):
    import torch

    torch.set_num_threads(int(spec["threads"]))
    X, order = _data(spec)
    model = TorchCD1(spec["V"], spec["H"], spec["B"], dtype=spec["dtype"])
    Xt = torch.from_numpy(X).to(model.dtype)
    saved = {k: getattr(model, k).clone() for k in ("W", "bv", "bh", "VW", "Vbv", "Vbh")}

    def prepare():
        for k, v in saved.items():
            getattr(model, k).copy_(v)

    def info():
        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return prepare, _timed("torch", lambda: model.epoch(Xt, order)), info


_RUNNERS = {"pymdbn": _pymdbn, "bound": _bound_openblas, "bound_numpy": _bound_numpy,
            "numpy": _numpy, "sklearn": _sklearn, "torch": _torch}


def _data(spec):
    X = binary_data(spec["N"], spec["V"])
    return X, np.random.default_rng(1).permutation(spec["N"])


def _worker(spec):
    """Set up one implementation, warm it up, then time one epoch per 'run' on stdin."""
    impl = spec["impl"]
    runner = _bound_torch if impl == "bound" and spec["dtype"] == "bfloat16" else _RUNNERS[impl]
    try:
        prepare, run, info = runner(spec)
        prepare = prepare or (lambda: None)
        prepare()
        run()  # warm-up
    except Exception as exc:  # noqa: BLE001 - a column that cannot run here is recorded
        _send("SKIP", {"reason": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        return
    _send("READY", {})
    for line in sys.stdin:
        if line.strip() == "run":
            prepare()
            _send("TIME", run())
        else:
            break
    _send("DONE", info())


def _probe():
    """What the workers see: pymdbn's config, the OpenBLAS cores picked, the threads."""
    import threadpoolctl

    import pymdbn

    rec = {"pymdbn_config": pymdbn.show_config(mode="dicts")}
    try:
        rec["scipy_openblas32"] = openblas_core()
    except (ImportError, OSError, AttributeError) as exc:
        rec["scipy_openblas32"] = {"error": f"{type(exc).__name__}: {exc}"}
    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    keys = ("filepath", "version", "architecture", "num_threads", "threading_layer")
    rec["threadpools"] = [{k: i.get(k) for k in ("internal_api", *keys)}
                          for i in threadpoolctl.threadpool_info()]
    numpy_blas = [i for i in rec["threadpools"]
                  if i["internal_api"] == "openblas" and "numpy" in (i["filepath"] or "")]
    rec["numpy_openblas"] = numpy_blas[0] if numpy_blas else None
    _send("PROBE", rec)


def _memory(spec):
    """Peak RSS of a process that imports what an MDBN fit needs and, unless this is the
    baseline, fits ``presets.proposed`` (1 pretraining and 1 fine-tuning epoch) on N
    samples of 3 modalities of 32x32 float32 images."""
    import importlib
    import resource

    from pymdbn import backend, presets

    # What the fit loads besides these imports (the compiled core, scikit-learn's
    # splitter) belongs to the baseline too: the fit then imports no further module.
    importlib.import_module("sklearn.model_selection")
    backend.get(backend.host_backend())
    rec = {}
    if spec["fit"]:
        n = spec["n"]
        rng = np.random.default_rng(0)
        X = {m: rng.random((n, 32, 32), dtype=np.float32) for m in ("brain", "breast", "bone")}
        y = np.where(np.arange(n) % 2 == 0, "healthy", "cancer")
        rec["data_bytes"] = int(sum(a.nbytes for a in X.values()))
        model = presets.proposed(random_state=0, pretrain_epochs=1, max_epochs=1, verbose=0)
        t0 = time.perf_counter()
        model.fit(X, y)
        rec["fit_s"] = time.perf_counter() - t0
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec["maxrss_bytes"] = int(kib if sys.platform == "darwin" else kib * 1024)
    _send("MEMORY", rec)


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------
def _log(msg, quiet):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _worker_env(threads, unset_openblas_env):
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads)
    if unset_openblas_env:
        for k in OPENBLAS_ENV:
            env.pop(k, None)
    return env


class _Worker:
    """A worker process and its line protocol."""

    def __init__(self, mode, spec, env):
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymdbn.benchmark", mode, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
            env=env, bufsize=1,
            # Not the caller's folder: `-m` puts it first on sys.path, and a source checkout
            # there would shadow the installed package (which has the compiled core).
            cwd=tempfile.gettempdir())

    def read(self):
        for line in self.proc.stdout:
            if line.startswith(_PREFIX):
                kind, _, payload = line[len(_PREFIX):].partition(" ")
                return kind, json.loads(payload)
        self.proc.wait()
        self.err.seek(0)
        tail = self.err.read().strip().splitlines()[-3:]
        raise ChildProcessError(f"a benchmark worker exited with status "
                                f"{self.proc.returncode}: " + " | ".join(tail))

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:  # the worker is gone already
            pass
        self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def _one_shot(mode, spec, env):
    w = _Worker(mode, spec, env)
    try:
        return w.read()[1]
    finally:
        w.close()


def _stats(times):
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def _measure(spec, impls, rounds, env, quiet):
    """Time ``impls`` on one configuration: workers started together, then ``rounds``
    rounds of one epoch each, in an order rotated every round."""
    row = {k: spec[k] for k in ("V", "H", "B", "N", "threads", "dtype")}
    row.update(times={}, median={}, min={}, max={}, skipped={}, workers={})
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    workers = {i: _Worker("--worker", {**spec, "impl": i}, env) for i in impls}
    live = []
    for impl, w in workers.items():
        try:
            kind, payload = w.read()
        except OSError as exc:
            kind, payload = "SKIP", {"reason": str(exc)}
        if kind == "SKIP":
            row["skipped"][impl] = payload["reason"]
            w.close()
        else:
            live.append(impl)
    for r in range(rounds):
        k = r % len(live) if live else 0
        for impl in live[k:] + live[:k]:
            if impl in row["skipped"]:
                continue
            time.sleep(_SETTLE_S)
            w = workers[impl]
            try:
                w.send("run")
                _, got = w.read()
            except OSError as exc:
                row["skipped"][impl] = f"failed in round {r + 1}: {exc}"
                continue
            for name, t in got.items():
                row["times"].setdefault(name, []).append(t)
    for impl in live:
        w = workers[impl]
        if impl not in row["skipped"]:
            try:
                w.send("quit")
                row["workers"][impl] = w.read()[1]
            except OSError as exc:
                row["workers"][impl] = {"error": str(exc)}
        w.close()
    for name, ts in row["times"].items():
        st = _stats(ts)
        for key in ("median", "min", "max"):
            row[key][name] = st[key]
    med = row["median"]
    bounds = [med[b] for b in ("bound", "bound_split") if b in med]
    if bounds:
        med_bound = min(bounds)
        row["bound_used"] = "bound" if med.get("bound") == med_bound else "bound_split"
    else:
        med_bound = None
    row["ratios"] = _ratios(med, med_bound)
    if _fell_back(row):
        # pymdbn ran float32 and torch emulated bfloat16: no bfloat16 bound to compare with.
        row["ratios"]["pymdbn_over_bound"] = None
    row["loadavg_1min_before_after"] = [load0, os.getloadavg()[0]]
    _log(f"  {spec['V']},{spec['H']},{spec['B']} N={spec['N']} threads={spec['threads']} "
         f"{spec['dtype']}: " + ", ".join(f"{k} {v:.4f}s" for k, v in med.items())
         + (f"; skipped {sorted(row['skipped'])}" if row["skipped"] else "")
         + f" ({time.perf_counter() - t_start:.0f} s)", quiet)
    return row


def _fell_back(row):
    """A bfloat16 row whose pymdbn worker computed in float32 (no bfloat16 products)."""
    info = row.get("workers", {}).get("pymdbn", {})
    return row["dtype"] == "bfloat16" and info.get("bfloat16_products") is False


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _ratios(med, bound):
    p = med.get("pymdbn")
    return {"pymdbn_over_bound": _ratio(p, bound),
            "numpy_over_pymdbn": _ratio(med.get("numpy"), p),
            "sklearn_over_pymdbn": _ratio(med.get("sklearn"), p),
            "torch_over_pymdbn": _ratio(med.get("torch"), p)}


def _spec(V, H, B, N, threads, dtype="float32"):
    return {"V": int(V), "H": int(H), "B": int(B), "N": int(N), "threads": int(threads),
            "dtype": dtype}


def _cd_impls(dtype):
    # NumPy and scikit-learn have no bfloat16; their columns stay empty there.
    return list(IMPLEMENTATIONS) if dtype == "float32" else ["pymdbn", "bound", "torch"]


def _goals(rows):
    out = []
    for row in rows:
        shape = (row["V"], row["H"], row["B"])
        if row["dtype"] != "float32" or row["threads"] != 2 or shape not in GOALS:
            continue
        for key, limit in GOALS[shape].items():
            value = row["ratios"].get(key)
            upper = key == "pymdbn_over_bound"
            met = None if value is None else (value <= limit if upper else
                                              value > limit if key == "torch_over_pymdbn"
                                              else value >= limit)
            out.append({"shape": list(shape), "N": row["N"], "threads": 2, "ratio": key,
                        "value": value, "goal": ("<= " if upper else
                                                 "> " if key == "torch_over_pymdbn"
                                                 else ">= ") + f"{limit}", "met": met})
    return out


def _suite_cd(shapes, n, threads, dtypes, rounds, impls, env_for, quiet):
    rows = []
    for V, H, B in shapes:
        for dtype in dtypes:
            for t in threads:
                chosen = [i for i in _cd_impls(dtype) if i in impls]
                rows.append(_measure(_spec(V, H, B, n, t, dtype), chosen, rounds,
                                     env_for(t), quiet))
    return {"rows": rows, "goals": _goals(rows)}


def _suite_scaling(n, threads, rounds, quick, env_for, quiet):
    grid = _GRIDS[quick]
    V, H, B = grid["large"]
    top = max(threads)
    out = {"large_shape": [V, H, B], "threads_for_grids": top}
    _log(f"scaling: epoch time against N at {V},{H},{B}, {top} threads", quiet)
    out["n"] = [_measure(_spec(V, H, B, max(B, int(n * f)), top), ["pymdbn"], rounds,
                         env_for(top), quiet) for f in grid["n_factors"]]
    _log(f"scaling: against V H at B={grid['vh_batch']}, N={n}", quiet)
    out["vh"] = [_measure(_spec(v, h, grid["vh_batch"], n, top), ["pymdbn", "bound"], rounds,
                          env_for(top), quiet) for v, h in grid["vh"]]
    _log(f"scaling: against the batch size at {V},{H}, N={n}", quiet)
    out["batch"] = [_measure(_spec(V, H, b, n, top), ["pymdbn", "bound"], rounds,
                             env_for(top), quiet) for b in grid["batches"]]
    _log(f"scaling: threads {threads} at {V},{H},{B}, N={n}", quiet)
    out["threads"] = [_measure(_spec(V, H, B, n, t), ["pymdbn", "bound"], rounds,
                               env_for(t), quiet) for t in threads]
    one = next((r for r in out["threads"] if r["threads"] == 1), None)
    for r in out["threads"]:
        r["speedup"] = {k: _ratio(one["median"].get(k), r["median"].get(k)) if one else None
                        for k in ("pymdbn", "bound")}
    two = next((r for r in out["threads"] if r["threads"] == 2), None)
    if two is not None and (V, H, B) == SHAPE_L:
        s = two["speedup"]["pymdbn"]
        out["goal"] = {"ratio": "pymdbn 1-thread / 2-thread epoch time", "value": s,
                       "goal": f">= {THREAD_SPEEDUP_GOAL}",
                       "met": None if s is None else s >= THREAD_SPEEDUP_GOAL}
    _log(f"scaling: peak memory of an MDBN fit against N, {top} threads", quiet)
    env = env_for(top)
    base = _one_shot("--memory", {"fit": False}, env)
    out["memory_baseline_bytes"] = base["maxrss_bytes"]
    out["memory"] = []
    for m in grid["memory_n"]:
        try:
            rec = _one_shot("--memory", {"fit": True, "n": m}, env)
        except OSError as exc:  # recorded; the other sizes still run
            out["memory"].append({"N": m, "error": str(exc)})
            _log(f"  N={m}: {exc}", quiet)
            continue
        rec["N"] = m
        rec["peak_minus_baseline_bytes"] = rec["maxrss_bytes"] - base["maxrss_bytes"]
        out["memory"].append(rec)
        _log(f"  N={m}: peak - baseline {rec['peak_minus_baseline_bytes'] / 2**20:.0f} MiB, "
             f"fit {rec['fit_s']:.1f} s", quiet)
    return out


def _cpu_info():
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == platform.processor():
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, {k: k in flags for k in CPU_FLAGS}


def _versions():
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-learn", "torch", "pymdbn", "scipy-openblas32",
                 "threadpoolctl"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def run_benchmark(suite="all", *, shapes=None, n_samples=None, threads=(1, 2),
                  dtypes=("float32",), rounds=None, implementations=None,
                  unset_openblas_env=False, quick=False, argv=None, quiet=False):
    """Run the ``cd`` and/or ``scaling`` suites; return the record (a JSON-able dict).

    Parameters
    ----------
    suite : {'cd', 'scaling', 'all'}, default='all'
    shapes : list of (V, H, B) or None
        Shapes of the cd suite (default SHAPE_S and SHAPE_L; SHAPE_S with ``quick``).
    n_samples : int or None
        Rows per epoch (default 10000; 1000 with ``quick``). The scaling suite's N grid
        is a multiple of it.
    threads : sequence of int, default=(1, 2)
    dtypes : sequence of {'float32', 'bfloat16'}, default=('float32',)
    rounds : int or None
        Timed epochs per implementation and configuration (default 5; 2 with ``quick``).
    implementations : sequence of str or None
        Columns of the cd suite to measure, of :data:`IMPLEMENTATIONS` (default all;
        ``bound`` also times ``bound_split``).
    unset_openblas_env : bool, default=False
        Drop OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the workers' environment only.
    quick : bool, default=False
        Small shapes and grids, for a smoke run.
    argv : list of str or None
        The command line, for the record.
    quiet : bool, default=False
        No progress on stderr.
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    shapes = [tuple(s) for s in (shapes or ([SHAPE_S] if quick else [SHAPE_S, SHAPE_L]))]
    n = int(n_samples or (1000 if quick else 10000))
    threads = sorted({int(t) for t in threads})
    rounds = int(rounds or (2 if quick else 5))
    impls = list(implementations or IMPLEMENTATIONS)
    unknown = sorted(set(impls) - set(IMPLEMENTATIONS))
    if unknown:
        raise ValueError(f"unknown implementations {unknown}; choose from {IMPLEMENTATIONS}")
    dtypes = list(dict.fromkeys(dtypes))
    started = time.time()
    model, flags = _cpu_info()
    load0 = list(os.getloadavg())

    def env_for(t):
        return _worker_env(t, unset_openblas_env)

    worker_env = env_for(max(threads))
    record = {
        "benchmark": "pymdbn bench",
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "suite": suite, "quick": bool(quick),
        "settings": {"n_samples": n, "shapes": [list(s) for s in shapes], "threads": threads,
                     "dtypes": dtypes, "rounds": rounds, "implementations": impls,
                     "visible": "bernoulli",
                     "learning_rate": LEARNING_RATE, "persistent": False, "k": 1},
        "machine": {
            "cpu": model, "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "flags": flags, "platform": platform.platform(),
            "loadavg_before": load0,
            "openblas_env_of_caller": {k: os.environ.get(k) for k in OPENBLAS_ENV},
            "openblas_env_unset_in_workers": bool(unset_openblas_env),
            "openblas_env_in_workers": {k: worker_env.get(k) for k in OPENBLAS_ENV},
        },
        "versions": _versions(),
    }
    _log("probing the workers' configuration", quiet)
    probe = _one_shot("--probe", {}, worker_env)
    record["pymdbn_config"] = probe.pop("pymdbn_config")
    record["openblas"] = probe
    if suite in ("cd", "all"):
        _log(f"cd: one CD-1 epoch, N={n}, {rounds} rounds", quiet)
        record["cd"] = _suite_cd(shapes, n, threads, dtypes, rounds, impls, env_for, quiet)
    if suite in ("scaling", "all"):
        record["scaling"] = _suite_scaling(n, threads, rounds, quick, env_for, quiet)
    record["machine"]["loadavg_after"] = list(os.getloadavg())
    record["wall_s"] = time.time() - started
    return record


# ---------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------
def _cell(row, name):
    if name not in row["median"]:
        return "skipped" if name in row["skipped"] else "-"
    med, lo, hi = row["median"][name], row["min"][name], row["max"][name]
    return f"{med:.4g}" if lo == hi else f"{med:.4g} [{lo:.4g}-{hi:.4g}]"


def _num(x, fmt=".2f"):
    return "-" if x is None else format(x, fmt)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def _header_md(rec):
    m, v, ob = rec["machine"], rec["versions"], rec["openblas"]
    s = ob.get("scipy_openblas32", {})
    nb = ob.get("numpy_openblas") or {}
    cfg = rec["pymdbn_config"]
    env = m["openblas_env_in_workers"]
    core_env = env.get("OPENBLAS_CORETYPE")
    env_text = (f"OPENBLAS_CORETYPE={core_env}" if core_env else "OPENBLAS_CORETYPE unset") + (
        " (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE dropped from the workers by "
        "--unset-openblas-env)" if m["openblas_env_unset_in_workers"] else
        " (as the environment of the command set it)")
    flags = ", ".join(f"{k} {'yes' if on else 'no'}" for k, on in m["flags"].items())
    cpus = m["affinity_cpus"] or m["cpu_count"] or 1
    load = max(m["loadavg_before"][0], m["loadavg_after"][0])
    # Other processes on the cores stretch the timings, the thread scaling most of all.
    busy = [f"- **warning**: the machine was busy (load average up to {load:.2f} on {cpus} "
            "CPUs): these timings are contended"] if load > 0.5 * cpus else []
    return [
        "# pymdbn bench", "",
        f"- command: `pymdbn bench {' '.join(rec['argv'])}` ({rec['date']}, "
        f"{rec['wall_s']:.0f} s)",
        f"- machine: {m['cpu']}, {m['cpu_count']} CPUs ({m['affinity_cpus']} usable); "
        f"{flags}; load average (1 min) {m['loadavg_before'][0]:.2f} before, "
        f"{m['loadavg_after'][0]:.2f} after",
        f"- OpenBLAS in the workers: {env_text}; scipy-openblas32 (pymdbn's, the bound's) "
        f"core {s.get('core', s.get('error'))}; NumPy's OpenBLAS {nb.get('version')} core "
        f"{nb.get('architecture')}",
        *busy,
        "- versions: " + ", ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
        f"- pymdbn: backend {cfg.get('backend')}, {cfg.get('compiler')}, {cfg.get('blas')}",
        f"- settings: N={rec['settings']['n_samples']}, {rec['settings']['rounds']} rounds, "
        "Bernoulli units, CD-1, learning rate 0.01; every implementation in its own fresh "
        "process per configuration, one warm-up epoch, then one epoch per round in an order "
        "rotated every round",
        "",
    ]


def _cd_md(cd, rounds):
    out = [f"## cd: one CD-1 epoch (seconds, median [min-max] of {rounds} rounds)", "",
           "Columns: **pymdbn** `RBM._run_epoch`; **bound** the epoch's products alone "
           "(scipy-openblas32 sgemm with OpenBLAS's threads; torch.matmul for bfloat16); "
           "**bound (NumPy)** the same with `np.matmul(out=)`; **NumPy** `NumpyCD1`; "
           "**sklearn** `BernoulliRBM(n_iter=1).fit` (PCD-1); **torch** `TorchCD1`.",
           "Ratios of medians, each `a/b` = time of a / time of b: **pym/bound** >= 1, "
           "lower is better (goal <= 1.10 at L, <= 1.25 at S); **np/pym**, **sk/pym**, "
           "**torch/pym** are pymdbn's speed-ups, higher is better (goals at L: >= 1.25, "
           ">= 2.5, > 1).", ""]
    header = ["V", "H", "B", "N", "thr", "dtype", "pymdbn", "bound", "bound (NumPy)", "NumPy",
              "sklearn", "torch", "pym/bound", "np/pym", "sk/pym", "torch/pym"]
    rows = []
    for r in cd["rows"]:
        bound = r.get("bound_used", "bound")
        rr = r["ratios"]
        rows.append([r["V"], r["H"], r["B"], r["N"], r["threads"],
                     r["dtype"] + (" (ran float32)" if _fell_back(r) else ""),
                     _cell(r, "pymdbn"), _cell(r, bound), _cell(r, "bound_numpy"),
                     _cell(r, "numpy"), _cell(r, "sklearn"), _cell(r, "torch"),
                     _num(rr["pymdbn_over_bound"]), _num(rr["numpy_over_pymdbn"]),
                     _num(rr["sklearn_over_pymdbn"]), _num(rr["torch_over_pymdbn"])])
    out += _table(header, rows)
    fell = [r for r in cd["rows"] if _fell_back(r)]
    if fell:
        why = fell[0]["workers"]["pymdbn"].get("products", "")
        out += ["", f"bfloat16 rows marked (ran float32): {why}. pymdbn fell back to float32 "
                "products, as it does (with a warning) on such CPUs, and torch's bfloat16 "
                "matmul was emulated: these rows measure no bfloat16 path, and their "
                "pym/bound is left out."]
    skipped = [(r, k, why) for r in cd["rows"] for k, why in r["skipped"].items()]
    if skipped:
        out += ["", "Skipped:"]
        out += [f"- {k} at ({r['V']}, {r['H']}, {r['B']}) {r['dtype']} threads={r['threads']}: "
                f"{why}" for r, k, why in skipped]
    if cd["goals"]:
        out += ["", "Goals (2 threads, float32):"]
        for g in cd["goals"]:
            mark = "n/a" if g["met"] is None else "MET" if g["met"] else "MISSED"
            out.append(f"- [{mark}] {tuple(g['shape'])} N={g['N']}: {g['ratio']} = "
                       f"{_num(g['value'])} (goal {g['goal']})")
    return out + [""]


def _scaling_md(sc, rounds):
    V, H, B = sc["large_shape"]
    out = [f"## scaling (seconds, median [min-max] of {rounds} rounds; "
           f"{sc['threads_for_grids']} threads unless stated)", ""]
    rows_n = sc["n"]
    ref = rows_n[-1]
    per_ref = ref["median"]["pymdbn"] / ref["N"] if "pymdbn" in ref["median"] else None
    out += [f"### epoch time against N at (V, H, B) = ({V}, {H}, {B})", "",
            "`/linear` = (time / N) / (time / N at the largest N): 1 is linear.", ""]
    rows = []
    for r in rows_n:
        t = r["median"].get("pymdbn")
        per_row = None if t is None else t / r["N"]
        rows.append([r["N"], _cell(r, "pymdbn"), _num(None if t is None else 1e3 * per_row, ".4f"),
                     _num(_ratio(per_row, per_ref))])
    out += _table(["N", "pymdbn", "s per 1000 rows", "/linear"], rows) + [""]

    def flops(r):
        t = r["median"].get("pymdbn")
        # per row: 3 products of 2 V H flops and the gradient, 2 rows of 2 V H
        return None if t is None else 10.0 * r["N"] * r["V"] * r["H"] / t / 1e9

    for key, title in (("vh", f"against V H (B = {sc['vh'][0]['B']}, N = {sc['vh'][0]['N']})"),
                       ("batch", f"against the batch size at (V, H) = ({V}, {H}), "
                                 f"N = {sc['batch'][0]['N']}")):
        out += [f"### epoch time {title}", "",
                "GFLOP/s = 10 N V H / pymdbn time (the epoch's products); pym/bound = pymdbn "
                "time / bound time.", ""]
        rows = [[r["V"], r["H"], r["B"], r["V"] * r["H"], _cell(r, "pymdbn"),
                 _cell(r, r.get("bound_used", "bound")), _num(flops(r), ".1f"),
                 _num(r["ratios"]["pymdbn_over_bound"])] for r in sc[key]]
        out += _table(["V", "H", "B", "V H", "pymdbn", "bound", "GFLOP/s", "pym/bound"],
                      rows) + [""]
    out += [f"### threads at ({V}, {H}, {B}), N = {sc['threads'][0]['N']}", "",
            "speed-up = time on 1 thread / time on this many (goal >= "
            f"{THREAD_SPEEDUP_GOAL} on 2 threads at {SHAPE_L}).", ""]
    rows = [[r["threads"], _cell(r, "pymdbn"), _cell(r, r.get("bound_used", "bound")),
             _num(r["speedup"]["pymdbn"]), _num(r["speedup"]["bound"])] for r in sc["threads"]]
    out += _table(["threads", "pymdbn", "bound", "pymdbn speed-up", "bound speed-up"], rows)
    if "goal" in sc:
        g = sc["goal"]
        mark = "n/a" if g["met"] is None else "MET" if g["met"] else "MISSED"
        out += ["", f"- [{mark}] {g['ratio']} = {_num(g['value'])} (goal {g['goal']})"]
    out += ["", "### peak memory of an MDBN fit against N", "",
            "`presets.proposed(pretrain_epochs=1, max_epochs=1)` on 3 modalities of 32x32 "
            "float32 images; ru_maxrss of a fresh process minus that of a process that only "
            f"imports the same modules ({sc['memory_baseline_bytes'] / 2**20:.0f} MiB).", ""]
    rows = [[r["N"], "failed: " + r["error"], "-", "-", "-"] if "error" in r else
            [r["N"], f"{r['data_bytes'] / 2**20:.1f}",
             f"{r['peak_minus_baseline_bytes'] / 2**20:.1f}",
             _num(r["peak_minus_baseline_bytes"] / r["data_bytes"]), _num(r["fit_s"], ".1f")]
            for r in sc["memory"]]
    out += _table(["N", "data (MiB)", "peak - baseline (MiB)", "/ data", "fit (s)"], rows)
    return out + [""]


def to_markdown(record):
    """The record of :func:`run_benchmark` as markdown: a header (machine, versions,
    OpenBLAS cores) and a table per suite."""
    rounds = record["settings"]["rounds"]
    lines = _header_md(record)
    if "cd" in record:
        lines += _cd_md(record["cd"], rounds)
    if "scaling" in record:
        lines += _scaling_md(record["scaling"], rounds)
    return "\n".join(lines)


def _main(argv):
    mode, spec = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    {"--worker": _worker, "--probe": lambda _: _probe(), "--memory": _memory}[mode](spec)


if __name__ == "__main__":
    _main(sys.argv[1:])
