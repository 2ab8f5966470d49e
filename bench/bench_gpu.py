"""GPU benchmark and checks of pymdbn's CUDA backend, written as one JSON report.

Sections, each guarded (an error is recorded in its section and the next one runs) and
run in this order; the report is rewritten after every section, so a run that is killed
leaves what it had measured:

* ``checks``: the CUDA backend against the CPU backend on the same inputs:
  ``affine_sigmoid``, ``dense_forward``, ``standardize`` (max abs difference),
  ``sample_bernoulli`` and ``random_bits`` (must be bit-identical), small ``cd_epoch``
  problems (within 1e-4), ``lrp_dense`` epsilon and z+ (within 1e-4 relative), and the
  PyTorch CD-1 baseline of ``cd_epoch`` against ``pymdbn.backend.reference.cd_epoch``.
* ``cd_epoch``: one CD-1 epoch (N=100000, float32, Bernoulli visible, not persistent,
  learning rate 0.01, no momentum, weight decay or sparsity) at (V, H, B) = (4096, 1024,
  256) and (784, 4096, 512): pymdbn's ``cd_epoch``, a plain and efficient PyTorch CD-1
  (:class:`TorchCD1`) and the cuBLAS bound (the measured times of the epoch's GEMMs at
  their shapes, TF32 off, times the number of batches). Median of 3 after a warm-up,
  pymdbn and PyTorch interleaved, every timed epoch from the same initial state.
  Goals: pymdbn / bound <= 1.3 and torch / pymdbn >= 1.5.
* ``data``: 25600 phantom patients (``make_phantoms(25600, size=64, random_state=0)``,
  area-resized to 32x32 as ``pymdbn demo`` does); generating them is timed apart from
  the fit.
* ``mdbn_fit``: the demo's proposed model (``presets.proposed``, the demo's pretraining
  epochs, the demo's stratified 75/25 split) fitted with ``device='cuda'``: wall time
  (goal < 15 s) and held-out accuracy; ``--cpu-baseline`` also fits it on the CPU.
* ``lrp``: ``pymdbn.lrp.explain`` of 10000 patients with the demo's heatmap composite
  against the healthy-mean reference on the GPU model, against ``decision_function``
  of the same patients (median of 3 after a warm-up).

Without a usable CUDA backend every GPU section is skipped and the report says why
(``pymdbn.cuda.unavailable_reason()``). The exit status is 1 when a section raised,
0 otherwise (goals not met do not change it).

    python bench/bench_gpu.py --json gpu_report.json
    python bench/bench_gpu.py --quick --json /tmp/g.json      # smoke run, small sizes
    python bench/bench_gpu.py --cpu-baseline --budget 900     # also fit on the CPU
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# CuPy's float32 matmul uses TF32 only when CUPY_TF32 is set: keep it off for the bound
# (read when CuPy is imported, so before pymdbn loads it).
_CUPY_TF32_BEFORE = os.environ.get("CUPY_TF32")
os.environ["CUPY_TF32"] = "0"

SHAPES = ((4096, 1024, 256), (784, 4096, 512))
N_ROWS = 100_000
LR = 0.01
PATIENTS = 25600
LRP_PATIENTS = 10000
GOALS = {"pymdbn_over_bound": 1.3, "torch_over_pymdbn": 1.5, "fit_seconds": 15.0}
# Upper limits of the sections in seconds (each also capped by what is left of --budget).
LIMITS = {"checks": 90, "cd_epoch": 150, "data": 150, "mdbn_fit": 180, "lrp": 90}


# ---------------------------------------------------------------------------------------
# Report, guards, timing
# ---------------------------------------------------------------------------------------
class Skip(Exception):
    """A section that cannot run here (reason in the message)."""


class SectionTimeout(BaseException):
    """Raised by SIGALRM when a section passes its limit (BaseException, so the guards
    of a section's sub-steps do not swallow it)."""


class Terminated(SectionTimeout):
    """Raised by SIGTERM (e.g. from timeout(1)): the section records it, the rest is
    skipped and the report is written."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def time_limit(seconds):
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise SectionTimeout(f"passed its time limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(max(1, int(math.ceil(seconds))))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _error(exc):
    return f"{type(exc).__name__}: {exc}"


class Report:
    def __init__(self, path, args):
        self.path = path
        self.t0 = time.perf_counter()
        self.budget = args.budget
        self.terminated = False
        self.data = {
            "script": "bench/bench_gpu.py",
            "argv": sys.argv[1:],
            "quick": args.quick,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "cuda": {},
            "machine": {},
            "sections": {},
            "goals": [],
        }

    @property
    def sections(self):
        return self.data["sections"]

    def elapsed(self):
        return time.perf_counter() - self.t0

    def left(self):
        return self.budget - self.elapsed()

    def save(self):
        self.data["elapsed_seconds"] = round(self.elapsed(), 2)
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=2, default=_jsonable)
        os.replace(tmp, self.path)

    def section(self, name, fn, *args):
        """Run fn(entry, *args) under the section's time limit; record its outcome."""
        entry = self.sections[name] = {"status": "running"}
        limit = min(LIMITS.get(name, 120), self.left())
        t0 = time.perf_counter()
        print(f"== {name} (limit {max(limit, 0):.0f} s)", flush=True)
        try:
            if limit < 5:
                raise Skip(f"out of time budget (--budget {self.budget:.0f} s)")
            self.save()
            with time_limit(limit):
                fn(entry, *args)
            entry["status"] = "ok"
        except Skip as exc:
            entry["status"] = "skipped"
            entry["reason"] = str(exc)
        except (Exception, SectionTimeout) as exc:
            self.terminated = isinstance(exc, Terminated)
            entry["status"] = "error"
            entry["error"] = _error(exc)
            entry["traceback"] = traceback.format_exc(limit=12)
            print(entry["traceback"], file=sys.stderr, flush=True)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"   {name}: {entry['status']} in {entry['seconds']} s"
              + (f" ({entry.get('reason') or entry.get('error')})"
                 if entry["status"] != "ok" else ""), flush=True)
        self.save()
        return entry

    def goal(self, name, value, op, target, where):
        met = (None if value is None else value <= target if op == "<=" else
               value < target if op == "<" else value >= target)
        self.data["goals"].append({"name": name, "where": where, "value": value,
                                   "goal": f"{op} {target}", "met": met})


def attempt(entry, key, fn):
    """entry[key] = fn(), or {'error': ...}; returns the value or None."""
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - recorded, the section goes on
        entry[key] = {"error": _error(exc), "traceback": traceback.format_exc(limit=8)}
        print(f"   {key}: {_error(exc)}", file=sys.stderr, flush=True)
        return None
    entry[key] = value
    return value


def median(xs):
    return float(np.median(xs)) if len(xs) else None


class GPU:
    """Handles on the GPU side, filled in by probe()."""

    cp = None  # cupy
    cuda = None  # pymdbn.backend.get('cuda')
    cpu = None  # pymdbn.backend.get('cpu')
    torch = None
    torch_error = None

    def sync(self):
        self.cp.cuda.runtime.deviceSynchronize()

    def load_torch(self):
        if self.torch is None and self.torch_error is None:
            try:
                import torch

                if not torch.cuda.is_available():
                    raise RuntimeError("torch.cuda.is_available() is False")
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch.set_float32_matmul_precision("highest")
                self.torch = torch
            except Exception as exc:  # noqa: BLE001
                self.torch_error = _error(exc)
        if self.torch is None:
            raise RuntimeError(f"PyTorch CUDA unavailable: {self.torch_error}")
        return self.torch

    def as_torch(self, a):
        torch = self.load_torch()
        try:
            return torch.from_dlpack(a)
        except Exception:  # noqa: BLE001 - older protocol
            return torch.as_tensor(a, device="cuda")


def to_host(a):
    """A NumPy copy of a CuPy array or a PyTorch tensor; NumPy arrays as they are."""
    if hasattr(a, "get") and hasattr(type(a), "__cuda_array_interface__"):
        return a.get()
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


# ---------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------
def _run(cmd, timeout=30):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except Exception as exc:  # noqa: BLE001
        return f"unavailable: {_error(exc)}"


def machine_section(report, g):
    m = report.data["machine"]
    m.update(date=datetime.datetime.now().isoformat(timespec="seconds"),
             python=platform.python_version(), platform=platform.platform(),
             host_cpus=os.cpu_count(), numpy=np.__version__)
    try:
        from _common import machine_info

        m.update(machine_info())
    except Exception as exc:  # noqa: BLE001 - e.g. scikit-learn or SciPy missing
        m["machine_info_error"] = _error(exc)
    m["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv"])
    m["nvcc"] = _run(["nvcc", "--version"]).splitlines()[-2:]
    m["env"] = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "CUDACXX",
                                               "OMP_NUM_THREADS", "PYMDBN_BACKEND")}
    m["env"]["CUPY_TF32_before"] = _CUPY_TF32_BEFORE
    try:
        import pymdbn

        m["pymdbn"] = pymdbn.__version__
        m["show_config"] = pymdbn.show_config("dicts")
    except Exception as exc:  # noqa: BLE001
        m["pymdbn_error"] = _error(exc)
    if g.cp is not None:
        cp = g.cp
        try:
            props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
            name = props["name"]
            m["cupy"] = {"version": cp.__version__,
                         "runtime": cp.cuda.runtime.runtimeGetVersion(),
                         "driver": cp.cuda.runtime.driverGetVersion(),
                         "device": name.decode() if isinstance(name, bytes) else name,
                         "cc": f"{props['major']}.{props['minor']}",
                         "memory_gib": round(props["totalGlobalMem"] / 2**30, 1)}
        except Exception as exc:  # noqa: BLE001
            m["cupy"] = {"error": _error(exc)}
    try:
        import torch

        m["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                      "cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            m["torch"]["device"] = torch.cuda.get_device_name()
    except Exception as exc:  # noqa: BLE001
        m["torch"] = {"error": _error(exc)}


def probe(report, g):
    """Import pymdbn and its CUDA backend; returns the reason it is unusable, or None."""
    info = report.data["cuda"]
    try:
        import pymdbn
        from pymdbn import backend
    except Exception as exc:  # noqa: BLE001
        info.update(available=False, reason=f"import pymdbn failed: {_error(exc)}")
        return info["reason"]
    try:
        g.cpu = backend.get("cpu")
    except Exception as exc:  # noqa: BLE001
        info["cpu_backend_error"] = _error(exc)
    reason = pymdbn.cuda.unavailable_reason()
    info.update(available=reason is None, reason=reason)
    if reason is not None:
        return reason
    try:
        g.cuda = backend.get("cuda")
        import cupy

        g.cp = cupy
        info["device_name"] = pymdbn.cuda.device_name()
        info["build_info"] = g.cuda.build_info()
    except Exception as exc:  # noqa: BLE001
        info.update(available=False, reason=f"CUDA backend reported available but: {_error(exc)}")
        return info["reason"]
    return None


# ---------------------------------------------------------------------------------------
# d. Correctness spot checks: CUDA backend against the CPU backend
# ---------------------------------------------------------------------------------------
def _diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _verdict(rec, value, tol):
    rec["tolerance"] = tol
    rec["pass"] = bool(value <= tol)
    return rec


def _rbm_state(rng, V, H, B, dtype, scale=0.1):
    return {"w": (scale * rng.standard_normal((H, V))).astype(dtype),
            "b_visible": (0.1 * rng.standard_normal(V)).astype(dtype),
            "b_hidden": (0.1 * rng.standard_normal(H)).astype(dtype),
            "v_w": (0.01 * rng.standard_normal((H, V))).astype(dtype),
            "v_b_visible": np.zeros(V, dtype), "v_b_hidden": np.zeros(H, dtype),
            "chain": (rng.random((B, H)) < 0.5).astype(dtype)}


STATE_KEYS = ("w", "b_visible", "b_hidden", "v_w", "v_b_visible", "v_b_hidden")


def check_cd_epoch(g, dtype, persistent, visible, clip, tol):
    rng = np.random.default_rng(11)
    V, H, B, N = 96, 48, 32, 300
    x = (rng.random((N, V)) < 0.3).astype(dtype) if visible == "bernoulli" else \
        rng.standard_normal((N, V)).astype(dtype)
    order = rng.permutation(N).astype(np.int64)
    s_cpu = _rbm_state(rng, V, H, B, dtype)
    s_gpu = {k: g.cp.asarray(v) for k, v in s_cpu.items()}
    opts = (1, persistent, visible, clip, 0.05, 0.5, 1e-4, 0.1, 0.1, 3, 5)

    def call(kern, xx, s):
        return kern.cd_epoch(xx, order, B, s["w"], s["b_visible"], s["b_hidden"], s["v_w"],
                             s["v_b_visible"], s["v_b_hidden"], s["chain"], *opts)

    sq_c, nb_c = call(g.cpu, x, s_cpu)
    sq_g, nb_g = call(g.cuda, g.cp.asarray(x), s_gpu)
    keys = STATE_KEYS + (("chain",) if persistent else ())
    diffs = {k: _diff(to_host(s_gpu[k]), s_cpu[k]) for k in keys}
    rec = {"shape": [V, H, B, N], "dtype": np.dtype(dtype).name, "persistent": persistent,
           "visible": visible, "clip": clip, "max_abs_diff": max(diffs.values()),
           "per_array": diffs, "sq_err_cpu": sq_c, "sq_err_cuda": sq_g,
           "sq_err_rel_diff": abs(sq_c - sq_g) / max(abs(sq_c), 1e-300),
           "n_batches": [nb_c, nb_g]}
    _verdict(rec, rec["max_abs_diff"], tol)
    rec["pass"] = rec["pass"] and nb_c == nb_g and rec["sq_err_rel_diff"] <= tol
    return rec


def check_torch_baseline(torch, device="cuda"):
    """TorchCD1 against pymdbn.backend.reference.cd_epoch on a problem whose probabilities
    are all exactly 0 or 1 (weights of +-40), so that the samples agree whatever the RNG:
    checks the update (momentum, biases, fused gradient), as bench_rbm.py --check does."""
    from pymdbn.backend import reference as ref

    rng = np.random.default_rng(1)
    V, H, B, N = 20, 7, 4, 10
    X = (rng.random((N, V)) > 0.5).astype(np.float32)
    X[:, 0] = 1
    w = (40.0 * np.array([1, -1, 1, 1, -1, 1, -1])[:, None] * np.ones((H, V))).astype(np.float32)
    st = {"w": w.copy(), "b_visible": np.zeros(V, np.float32),
          "b_hidden": np.ones(H, np.float32), "v_w": np.zeros((H, V), np.float32),
          "v_b_visible": np.zeros(V, np.float32), "v_b_hidden": np.zeros(H, np.float32),
          "chain": np.zeros((B, H), np.float32)}
    order = np.arange(N, dtype=np.int64)
    m = TorchCD1(torch, torch.as_tensor(X, device=device), order, B, w, learning_rate=0.05,
                 momentum=0.5, b_hidden=st["b_hidden"], device=device)
    err_t = m.epoch()
    sq, _ = ref.cd_epoch(X, order, B, st, k=1, persistent=False, visible="bernoulli", clip=None,
                         learning_rate=0.05, momentum=0.5, weight_decay=0.0, sparsity_target=0.1,
                         sparsity_cost=0.0, seed=0, first_step=0)
    got = {"w": m.W, "b_visible": m.bv, "b_hidden": m.bh, "v_w": m.VW,
           "v_b_visible": m.Vbv, "v_b_hidden": m.Vbh}
    diffs = {k: _diff(v.detach().cpu().numpy(), st[k]) for k, v in got.items()}
    rec = {"max_abs_diff": max(diffs.values()), "per_array": diffs,
           "recon_error_torch": err_t, "recon_error_reference": sq / (N * V)}
    return _verdict(rec, rec["max_abs_diff"], 1e-5)


def section_checks(entry, g):
    cp, cpu, cu = g.cp, g.cpu, g.cuda
    if cpu is None:
        raise RuntimeError("the CPU backend did not load: nothing to compare against")
    rng = np.random.default_rng(0)
    f32 = np.float32
    up = cp.asarray
    results = entry["results"] = {}

    def run(name, fn):
        attempt(results, name, fn)

    x = rng.standard_normal((300, 257)).astype(f32)
    w_t = (0.1 * rng.standard_normal((129, 257))).astype(f32)
    w_n = (0.1 * rng.standard_normal((257, 129))).astype(f32)
    b = (0.1 * rng.standard_normal(129)).astype(f32)

    def affine_sigmoid():
        out = {}
        for trans, w, clip in ((True, w_t, 4.0), (False, w_n, None)):
            d = _diff(to_host(cu.affine_sigmoid(up(x), up(w), up(b), clip, trans)),
                      cpu.affine_sigmoid(x, w, b, clip, trans))
            out[f"trans_w={trans},clip={clip}"] = d
        return _verdict({"max_abs_diff": max(out.values()), "cases": out}, max(out.values()), 1e-5)
    run("affine_sigmoid", affine_sigmoid)

    def dense_forward():
        out = {}
        for act in ("sigmoid", "linear"):
            z_g, a_g = cu.dense_forward(up(x), up(w_n), up(b), 4.0, act)
            z_c, a_c = cpu.dense_forward(x, w_n, b, 4.0, act)
            out[act] = max(_diff(to_host(z_g), z_c), _diff(to_host(a_g), a_c))
        return _verdict({"max_abs_diff": max(out.values()), "cases": out}, max(out.values()), 1e-5)
    run("dense_forward", dense_forward)

    p = rng.random((301, 257)).astype(f32)
    p[0, :8] = [0, 1, 0.5, 1e-8, 1 - 1e-7, 0, 1, 0.25]

    def sample_bernoulli():
        out = {}
        for dtype in (np.float32, np.float64):
            pp = p.astype(dtype)
            a = to_host(cu.sample_bernoulli(up(pp), 0x123456789AB, 7, 3))
            c = cpu.sample_bernoulli(pp, 0x123456789AB, 7, 3)
            out[np.dtype(dtype).name] = int(np.count_nonzero(a != c))
        n = sum(out.values())
        return {"mismatches": out, "ones_fraction": float(c.mean()), "pass": n == 0,
                "tolerance": "bit-identical"}
    run("sample_bernoulli", sample_bernoulli)

    def random_bits():
        out = {}
        for rows, cols, seed, stream, off in ((301, 257, 0x123456789AB, 7, 3), (5, 1, 0, 0, 0),
                                              (64, 1024, 2**64 - 1, 2**40, 2**33)):
            a = to_host(cu.random_bits(rows, cols, seed, stream, off))
            c = cpu.random_bits(rows, cols, seed, stream, off)
            out[f"{rows}x{cols}"] = int(np.count_nonzero(a != c)) if a.shape == c.shape else -1
        return {"mismatches": out, "pass": all(v == 0 for v in out.values()),
                "tolerance": "bit-identical"}
    run("random_bits", random_bits)

    def sample_gaussian():
        mean = rng.standard_normal((301, 257)).astype(f32)
        d = _diff(to_host(cu.sample_gaussian(up(mean), 5, 9, 1)),
                  cpu.sample_gaussian(mean, 5, 9, 1))
        return _verdict({"max_abs_diff": d}, d, 1e-4)
    run("sample_gaussian", sample_gaussian)

    def standardize():
        raw = rng.integers(0, 256, (200, 1024)).astype(np.uint8)
        mean = rng.uniform(50, 150, 1024).astype(f32)
        scale = rng.uniform(20, 60, 1024).astype(f32)
        out = {}
        for src in (raw, raw.astype(f32)):
            for per_row in (False, True):
                o_g, fin_g = cu.standardize(up(src), up(mean), up(scale), per_row)
                o_c, fin_c = cpu.standardize(src, mean, scale, per_row)
                d = _diff(to_host(o_g), o_c) if fin_g == fin_c else float("inf")
                out[f"{src.dtype.name},per_row={per_row}"] = d
        return _verdict({"max_abs_diff": max(out.values()), "cases": out}, max(out.values()), 1e-5)
    run("standardize", standardize)

    run("cd_epoch_cd1_bernoulli_float32",
        lambda: check_cd_epoch(g, np.float32, False, "bernoulli", None, 1e-4))
    run("cd_epoch_pcd1_gaussian_clip4_float32",
        lambda: check_cd_epoch(g, np.float32, True, "gaussian", 4.0, 1e-4))
    run("cd_epoch_cd1_bernoulli_float64",
        lambda: check_cd_epoch(g, np.float64, False, "bernoulli", None, 1e-9))

    # LRP: activations in (0, 1), a bias that keeps the pre-activations away from 0 (with
    # epsilon = 1e-6 a nearly cancelling denominator amplifies rounding without bound, see
    # bench_lrp.py), relevance of either sign.
    xa = rng.random((64, 300)).astype(f32)
    wl = (0.1 * rng.standard_normal((300, 128))).astype(f32)
    bl = (3.0 + 0.1 * rng.standard_normal(128)).astype(f32)
    rl = rng.standard_normal((64, 128)).astype(f32)

    def lrp(rule, with_z=False, dtype=f32):
        xa_, wl_, bl_, rl_ = (a.astype(dtype) for a in (xa, wl, bl, rl))
        kw = {"rule": rule, "epsilon": 1e-6}
        kw_g = dict(kw)
        if with_z:
            z = (xa_.astype(np.float64) @ wl_ + bl_).astype(dtype)
            kw["z"], kw_g["z"] = z, up(z)
        ref_ = cpu.lrp_dense(xa_, wl_, bl_, rl_, **kw)
        got = to_host(cu.lrp_dense(up(xa_), up(wl_), up(bl_), up(rl_), **kw_g))
        d = _diff(got, ref_)
        scale = float(np.max(np.abs(ref_)))
        rel = d / scale if scale > 0 else d
        return _verdict({"max_abs_diff": d, "max_abs_relevance": scale, "relative": rel},
                        rel, 1e-4)
    run("lrp_dense_epsilon", lambda: lrp("epsilon"))
    run("lrp_dense_epsilon_given_z", lambda: lrp("epsilon", with_z=True))
    run("lrp_dense_zplus", lambda: lrp("zplus"))
    run("lrp_dense_epsilon_float64", lambda: lrp("epsilon", dtype=np.float64))

    def torch_baseline():
        return check_torch_baseline(g.load_torch(), "cuda")
    run("torch_cd1_baseline_vs_reference", torch_baseline)

    failed = [k for k, v in results.items() if not (isinstance(v, dict) and v.get("pass"))]
    entry["all_pass"] = not failed
    entry["failed"] = failed
    for k, v in results.items():
        brief = v.get("error") if "error" in v else (
            v.get("max_abs_diff", v.get("relative", v.get("mismatches"))))
        print(f"   {k:40s} {'ok' if v.get('pass') else 'FAIL'}  {brief}", flush=True)


# ---------------------------------------------------------------------------------------
# a. CD-1 epoch: pymdbn vs PyTorch vs the cuBLAS bound
# ---------------------------------------------------------------------------------------
def gpu_binary_data(cp, n, v, seed=0, ones=0.3, width=9):
    """_common.binary_data's recipe (box-filtered Gaussian noise thresholded so that a
    fraction ``ones`` is 1), drawn on the GPU: float32 (n, v), C-contiguous."""
    rs = cp.random.RandomState(seed)
    x = rs.standard_normal((n, v + width), dtype=cp.float32)
    c = cp.cumsum(x, axis=1, dtype=cp.float32)
    del x
    smooth = c[:, width:] - c[:, :-width]
    del c
    thr = float(np.quantile(cp.asnumpy(smooth[: min(n, 1000)]), 1.0 - ones))
    out = cp.ascontiguousarray(smooth > thr, dtype=cp.float32)
    del smooth
    return out


class PymdbnCD1:
    """pymdbn's CUDA cd_epoch on device parameters (CD-1, Bernoulli, not persistent)."""

    def __init__(self, g, X, order, B, w0, learning_rate=LR):
        cp = g.cp
        self.g, self.X, self.order, self.B, self.lr = g, X, order, B, learning_rate
        H, V = w0.shape
        self.w0 = cp.asarray(w0)
        self.w = self.w0.copy()
        self.bv, self.bh = cp.zeros(V, cp.float32), cp.zeros(H, cp.float32)
        self.vw = cp.zeros((H, V), cp.float32)
        self.vbv, self.vbh = cp.zeros(V, cp.float32), cp.zeros(H, cp.float32)
        self.chain = cp.zeros((B, H), cp.float32)

    def restore(self):
        self.w[...] = self.w0
        for a in (self.bv, self.bh, self.vw, self.vbv, self.vbh):
            a.fill(0)

    def epoch(self):
        sq, nb = self.g.cuda.cd_epoch(self.X, self.order, self.B, self.w, self.bv, self.bh,
                                      self.vw, self.vbv, self.vbh, self.chain, 1, False,
                                      "bernoulli", None, self.lr, 0.0, 0.0, 0.1, 0.0, 0, 0)
        return sq / (len(self.order) * self.X.shape[1])


class TorchCD1:
    """CD-1 in PyTorch, written plainly and efficiently: the update of pymdbn's cd_epoch
    (csrc/cpu/cd_epoch.cpp; pymdbn.backend.reference.cd_gradient / cd_apply) with k=1,
    not persistent, Bernoulli units, no clip, weight decay or sparsity pull.

    Per batch: ``index_select`` into a preallocated [v0; vs] buffer, ``addmm`` with the
    bias (v0 W^T, h0 W, vs W^T), in-place ``sigmoid_``, Bernoulli samples as
    ``torch.rand(out=)`` then in-place ``lt_`` against the probabilities, the
    reconstruction error as one dot product per batch kept on the device, and the update
    as one GEMM ``v_w <- mom v_w + lr/b [ph0; -phn]^T [v0; vs]`` (``addmm_``), two GEMVs
    for the bias velocities and one multi-tensor add for the parameters."""

    def __init__(self, torch, X, order, B, w0, learning_rate=LR, momentum=0.0, b_hidden=None,
                 device="cuda"):
        t, f = torch, torch.float32
        self.t, self.X, self.B = t, X, B
        self.lr, self.mom = float(learning_rate), float(momentum)
        self.order = t.as_tensor(np.asarray(order, np.int64), device=device)
        H, V = w0.shape
        self.w0 = t.as_tensor(np.ascontiguousarray(w0, np.float32), device=device)
        self.bh0 = (t.zeros(H, dtype=f, device=device) if b_hidden is None else
                    t.as_tensor(np.asarray(b_hidden, np.float32), device=device))
        self.W = self.w0.clone()
        self.bv, self.bh = t.zeros(V, dtype=f, device=device), self.bh0.clone()
        self.VW = t.zeros((H, V), dtype=f, device=device)
        self.Vbv, self.Vbh = t.zeros(V, dtype=f, device=device), t.zeros(H, dtype=f, device=device)
        self.v = t.empty((2 * B, V), dtype=f, device=device)  # [v0; vs]
        self.h = t.empty((2 * B, H), dtype=f, device=device)  # [ph0; -phn]
        self.h0 = t.empty((B, H), dtype=f, device=device)
        self.vm = t.empty((B, V), dtype=f, device=device)
        n_batches = -(-len(order) // B)
        self.errs = t.zeros(n_batches, dtype=f, device=device)
        self.device = device
        self._signs = {}
        self._ones = t.ones(2 * B, dtype=f, device=device)
        self._foreach = hasattr(t, "_foreach_add_")

    def restore(self):
        self.W.copy_(self.w0)
        self.bh.copy_(self.bh0)
        for a in (self.bv, self.VW, self.Vbv, self.Vbh):
            a.zero_()

    def _sign(self, b):
        s = self._signs.get(b)
        if s is None:
            s = self.t.ones(2 * b, dtype=self.t.float32, device=self.device)
            s[b:] = -1
            self._signs[b] = s
        return s

    def epoch(self):
        t = self.t
        W, bv, bh = self.W, self.bv, self.bh
        n, B = len(self.order), self.B
        for step, start in enumerate(range(0, n, B)):
            idx = self.order[start:start + B]
            b = len(idx)
            v, h = self.v[:2 * b], self.h[:2 * b]
            v0, vs, ph0, phn = v[:b], v[b:], h[:b], h[b:]
            h0, vm = self.h0[:b], self.vm[:b]
            t.index_select(self.X, 0, idx, out=v0)
            # positive phase: P(h|v0) and a Bernoulli sample h0 (u < p)
            t.addmm(bh, v0, W.t(), out=ph0)
            ph0.sigmoid_()
            t.rand((b, h0.shape[1]), out=h0)
            h0.lt_(ph0)
            # negative phase: visible means, the reconstruction error, the sample vs
            t.addmm(bv, h0, W, out=vm)
            vm.sigmoid_()
            t.sub(v0, vm, out=vs)
            flat = vs.view(-1)
            self.errs[step] = t.dot(flat, flat)
            t.rand((b, vs.shape[1]), out=vs)
            vs.lt_(vm)
            t.addmm(bh, vs, W.t(), out=phn)
            phn.sigmoid_()
            phn.neg_()
            # update: one GEMM over 2b rows, bias velocities as GEMVs, parameters += velocities
            a = self.lr / b
            self.VW.addmm_(h.t(), v, beta=self.mom, alpha=a)
            self.Vbv.addmv_(v.t(), self._sign(b), beta=self.mom, alpha=a)
            self.Vbh.addmv_(h.t(), self._ones[:2 * b], beta=self.mom, alpha=a)
            if self._foreach:
                t._foreach_add_([W, bv, bh], [self.VW, self.Vbv, self.Vbh])
            else:
                W.add_(self.VW)
                bv.add_(self.Vbv)
                bh.add_(self.Vbh)
        sq = float(self.errs.double().sum())  # waits for the epoch, as pymdbn's does
        return sq / (n * self.X.shape[1])


def time_gemms_torch(torch, shapes, reps, groups):
    """Median seconds per call of torch.mm(out=) at each (m, k, n, trans) with CUDA events."""
    out = {}
    for key, (a, b_, o) in shapes.items():
        fn = (lambda a=a, b_=b_, o=o: torch.mm(a, b_, out=o))
        for _ in range(3):
            fn()
        per = []
        for _ in range(groups):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(reps):
                fn()
            e1.record()
            e1.synchronize()
            per.append(e0.elapsed_time(e1) / 1e3 / reps)
        out[key] = median(per)
    return out


def time_gemms_cupy(cp, shapes, reps, groups):
    out = {}
    for key, (a, b_, o) in shapes.items():
        fn = (lambda a=a, b_=b_, o=o: cp.matmul(a, b_, out=o))
        for _ in range(3):
            fn()
        per = []
        for _ in range(groups):
            e0, e1 = cp.cuda.Event(), cp.cuda.Event()
            e0.record()
            for _ in range(reps):
                fn()
            e1.record()
            e1.synchronize()
            per.append(cp.cuda.get_elapsed_time(e0, e1) / 1e3 / reps)
        out[key] = median(per)
    return out


def cublas_bound(g, V, H, B, N, quick):
    """The sum of the epoch's GEMM times at their shapes, per batch size, times the number
    of batches of that size; float32, TF32 off; torch.mm and cupy.matmul both measured,
    the faster of the two per product used."""
    cp = g.cp
    sizes = {B: N // B}
    if N % B:
        sizes[N % B] = 1
    reps, groups = (10, 3) if quick else (30, 5)
    rec = {"per_batch_size": {}, "reps": reps, "groups": groups}
    totals = {"torch": 0.0, "cupy": 0.0, "min": 0.0}
    W = cp.asarray(np.random.default_rng(3).standard_normal((H, V), np.float32) * 0.01)
    per_product = {"vWt": 2, "hW": 1, "grad": 1}  # v0 W^T and vs W^T; h0 W; [ph0;-phn]^T [v0;vs]
    for b, count in sizes.items():
        rs = cp.random.RandomState(b)
        v = rs.random_sample((2 * b, V), dtype=cp.float32)
        h = rs.random_sample((2 * b, H), dtype=cp.float32)
        o_bh, o_bv, o_hv = (cp.empty((b, H), cp.float32), cp.empty((b, V), cp.float32),
                            cp.empty((H, V), cp.float32))
        shapes_cp = {"vWt": (v[:b], W.T, o_bh), "hW": (h[:b], W, o_bv), "grad": (h.T, v, o_hv)}
        row = {"count": count}
        try:
            ts = {k: g.as_torch(x) for k, x in (("v", v), ("h", h), ("W", W), ("o_bh", o_bh),
                                                ("o_bv", o_bv), ("o_hv", o_hv))}
            shapes_t = {"vWt": (ts["v"][:b], ts["W"].t(), ts["o_bh"]),
                        "hW": (ts["h"][:b], ts["W"], ts["o_bv"]),
                        "grad": (ts["h"].t(), ts["v"], ts["o_hv"])}
            row["torch"] = time_gemms_torch(g.torch, shapes_t, reps, groups)
        except Exception as exc:  # noqa: BLE001
            row["torch_error"] = _error(exc)
        try:
            row["cupy"] = time_gemms_cupy(cp, shapes_cp, reps, groups)
        except Exception as exc:  # noqa: BLE001
            row["cupy_error"] = _error(exc)
        libs = [lib for lib in ("torch", "cupy") if lib in row]
        if not libs:
            raise RuntimeError(f"no GEMM timing at b={b}: {row}")
        row["min"] = {k: min(row[lib][k] for lib in libs) for k in per_product}
        for lib in ("torch", "cupy", "min"):
            if lib in row and totals[lib] is not None:
                totals[lib] += count * sum(per_product[k] * row[lib][k] for k in per_product)
            else:
                totals[lib] = None
        row["flops_per_batch"] = 2.0 * b * V * H * 3 + 2.0 * 2 * b * V * H
        rec["per_batch_size"][str(b)] = row
        del v, h, o_bh, o_bv, o_hv
    rec["bound_torch_s"], rec["bound_cupy_s"] = totals["torch"], totals["cupy"]
    rec["bound_s"] = totals["min"]
    flops = sum(c * rec["per_batch_size"][str(b)]["flops_per_batch"] for b, c in sizes.items())
    rec["gemm_tflops_at_bound"] = flops / rec["bound_s"] / 1e12 if rec["bound_s"] else None
    return rec


def gemm_loop(g, tm, reps=1):
    """All the epoch's GEMMs back to back in PyTorch (the torch runner's buffers), the
    launch overhead included: a second, looser bound."""
    torch = g.torch
    n, B = len(tm.order), tm.B
    W = tm.W

    def run():
        for start in range(0, n, B):
            b = min(B, n - start)
            v, h = tm.v[:2 * b], tm.h[:2 * b]
            torch.mm(v[:b], W.t(), out=h[:b])
            torch.mm(tm.h0[:b], W, out=tm.vm[:b])
            torch.mm(v[b:], W.t(), out=h[b:])
            torch.mm(h.t(), v, out=tm.VW)
        torch.cuda.synchronize()

    run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    tm.restore()
    return median(times)


def cd_shape(g, V, H, B, N, repeat, quick):
    cp = g.cp
    rec = {"V": V, "H": H, "B": B, "N": N, "n_batches": -(-N // B), "dtype": "float32",
           "visible": "bernoulli", "k": 1, "persistent": False, "learning_rate": LR}
    t0 = time.perf_counter()
    X = gpu_binary_data(cp, N, V)
    g.sync()
    rec["data_seconds"] = round(time.perf_counter() - t0, 2)
    rec["data_mean"] = float(X.mean())
    order = np.random.default_rng(1).permutation(N).astype(np.int64)
    w0 = (0.01 * np.random.default_rng(2).standard_normal((H, V))).astype(np.float32)

    runners = {}
    try:
        runners["pymdbn"] = PymdbnCD1(g, X, order, B, w0)
    except Exception as exc:  # noqa: BLE001
        rec["pymdbn"] = {"error": _error(exc)}
    try:
        runners["torch"] = TorchCD1(g.load_torch(), g.as_torch(X), order, B, w0)
    except Exception as exc:  # noqa: BLE001
        rec["torch"] = {"error": _error(exc)}

    def timed(r):
        r.restore()
        g.sync()
        t0 = time.perf_counter()
        err = r.epoch()
        g.sync()
        return time.perf_counter() - t0, err

    results = {name: {"times": [], "recon_error": []} for name in runners}
    for name, r in list(runners.items()):  # warm-up
        try:
            dt, err = timed(r)
            results[name]["warmup_s"] = dt
            results[name]["warmup_recon_error"] = err
            if dt > (20 if not quick else 5):  # a slow path: one timed epoch is enough
                results[name]["repeat_cut"] = f"warm-up took {dt:.1f} s: 1 timed epoch"
        except Exception as exc:  # noqa: BLE001
            rec[name] = {"error": _error(exc), "traceback": traceback.format_exc(limit=8)}
            del runners[name], results[name]
    for i in range(repeat):  # interleaved: both see the same conditions
        for name, r in list(runners.items()):
            if i >= 1 and "repeat_cut" in results[name]:
                continue
            try:
                dt, err = timed(r)
                results[name]["times"].append(dt)
                results[name]["recon_error"].append(err)
            except Exception as exc:  # noqa: BLE001
                results[name]["error"] = _error(exc)
                del runners[name]
    for name, res in results.items():
        res["median_s"] = median(res["times"])
        rec[name] = res
    if "torch" in runners:
        attempt(rec, "gemm_loop_torch_s", lambda: gemm_loop(g, runners["torch"]))
    attempt(rec, "bound", lambda: cublas_bound(g, V, H, B, N, quick))
    pym = rec.get("pymdbn", {}).get("median_s")
    tor = rec.get("torch", {}).get("median_s")
    bound = rec["bound"].get("bound_s") if isinstance(rec.get("bound"), dict) else None
    rec["pymdbn_over_bound"] = pym / bound if pym and bound else None
    rec["torch_over_pymdbn"] = tor / pym if pym and tor else None
    rec["goal_pymdbn_over_bound_met"] = (None if rec["pymdbn_over_bound"] is None else
                                         rec["pymdbn_over_bound"] <= GOALS["pymdbn_over_bound"])
    rec["goal_torch_over_pymdbn_met"] = (None if rec["torch_over_pymdbn"] is None else
                                         rec["torch_over_pymdbn"] >= GOALS["torch_over_pymdbn"])
    runners.clear()
    del X
    cp.get_default_memory_pool().free_all_blocks()
    return rec


def section_cd_epoch(entry, g, args):
    n = 8192 if args.quick else args.n
    entry["goals"] = {"pymdbn_over_bound": f"<= {GOALS['pymdbn_over_bound']}",
                      "torch_over_pymdbn": f">= {GOALS['torch_over_pymdbn']}"}
    entry["tf32"] = {"torch_allow_tf32": None, "CUPY_TF32": os.environ.get("CUPY_TF32")}
    try:
        torch = g.load_torch()
        entry["tf32"]["torch_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        entry["tf32"]["torch_matmul_precision"] = torch.get_float32_matmul_precision()
    except Exception as exc:  # noqa: BLE001
        entry["torch_error"] = _error(exc)
    entry["shapes"] = []
    for V, H, B in SHAPES:
        key = f"{V}x{H}x{B}"
        holder = {}
        rec = attempt(holder, key, lambda: cd_shape(g, V, H, B, n, args.repeat, args.quick))
        if rec is None:
            rec = {"V": V, "H": H, "B": B, **holder[key]}
        entry["shapes"].append(rec)
        p, t, bd = (rec.get("pymdbn", {}).get("median_s"), rec.get("torch", {}).get("median_s"),
                    (rec.get("bound") or {}).get("bound_s") if isinstance(rec.get("bound"), dict)
                    else None)
        print(f"   {key:16s} pymdbn {p if p is None else f'{p:.4f}'} s  torch "
              f"{t if t is None else f'{t:.4f}'} s  bound {bd if bd is None else f'{bd:.4f}'} s"
              f"  pym/bound {_fmt(rec.get('pymdbn_over_bound'))}  torch/pym "
              f"{_fmt(rec.get('torch_over_pymdbn'))}", flush=True)


def _fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def section_data(entry, g, args, store):
    from pymdbn.data import make_phantoms

    try:
        from pymdbn.experiments import MODEL_SIZE
    except Exception:  # noqa: BLE001
        MODEL_SIZE = 32
    n = 1200 if args.quick else args.patients
    entry.update(n_patients=n, size=64, model_size=MODEL_SIZE, random_state=0, difficulty=0.5)
    t0 = time.perf_counter()
    data = make_phantoms(n, size=64, random_state=0)
    entry["generate_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    data = data.resized(MODEL_SIZE) if MODEL_SIZE != 64 else data
    entry["resize_s"] = round(time.perf_counter() - t0, 2)
    store["data"] = data


# ---------------------------------------------------------------------------------------
# b. MDBN fit (the demo's proposed model) on the GPU
# ---------------------------------------------------------------------------------------
def _split(data, store):
    from pymdbn.experiments import split_indices

    labels = np.asarray(data.classes)[data.y]
    train, test = split_indices(data.y, random_state=0)
    take = (lambda X, idx: {m: a[idx] for m, a in X.items()})
    store.update(labels=labels, train=train, test=test, Xtr=take(data.X, train),
                 Xte=take(data.X, test))


def _make_model(args, **extra):
    from pymdbn import presets

    try:
        from pymdbn.experiments import DEMO_PRETRAIN_EPOCHS
    except Exception:  # noqa: BLE001
        DEMO_PRETRAIN_EPOCHS = 10
    params = {"random_state": 0, "verbose": 0,
              "pretrain_epochs": 1 if args.quick else DEMO_PRETRAIN_EPOCHS}
    if args.quick:
        params["max_epochs"] = 2
    return presets.proposed(**params, **extra), params


def section_fit(entry, g, args, store):
    if "data" not in store:
        raise Skip("no phantoms (section data did not finish)")
    data = store["data"]
    _split(data, store)
    labels, train, test = store["labels"], store["train"], store["test"]
    entry.update(n_train=len(train), n_test=len(test), goal_fit_seconds=f"< {GOALS['fit_seconds']}",
                 reproduces="pymdbn demo: presets.proposed(random_state=0, pretrain_epochs="
                            "DEMO_PRETRAIN_EPOCHS), split_indices(y, random_state=0), "
                            "fit on class names")
    entry["cpu_documented"] = {
        "accuracy": 0.969, "fit_seconds": 168,
        "source": "pymdbn/experiments.py notes on DEMO_PATIENTS / DEMO_PRETRAIN_EPOCHS "
                  "(25600 patients, 10 pretraining epochs, seed 0; the 2-core dev machine)"}

    def gpu_fit():
        model, params = _make_model(args, device="cuda")
        t0 = time.perf_counter()
        model.fit(store["Xtr"], labels[train])
        if g.cp is not None:
            g.sync()
        fit_s = time.perf_counter() - t0
        store["model"] = model
        t0 = time.perf_counter()
        acc = float(model.score(store["Xte"], labels[test]))
        return {"params": params, "device": "cuda", "fit_seconds": fit_s,
                "held_out_accuracy": acc, "score_seconds": time.perf_counter() - t0,
                "goal_met": fit_s < GOALS["fit_seconds"]}

    if g.cuda is not None:
        r = attempt(entry, "gpu", gpu_fit)
        if r:
            print(f"   GPU fit {r['fit_seconds']:.2f} s, held-out accuracy "
                  f"{r['held_out_accuracy']:.4f}", flush=True)
    else:
        entry["gpu"] = {"skipped": "CUDA unavailable"}

    if args.cpu_baseline:
        def cpu_fit():
            from pymdbn._config import get_num_threads

            model, params = _make_model(args)
            t0 = time.perf_counter()
            model.fit(store["Xtr"], labels[train])
            fit_s = time.perf_counter() - t0
            return {"params": params, "device": "cpu", "threads": get_num_threads(),
                    "fit_seconds": fit_s,
                    "held_out_accuracy": float(model.score(store["Xte"], labels[test]))}
        r = attempt(entry, "cpu", cpu_fit)
        if r:
            print(f"   CPU fit {r['fit_seconds']:.2f} s, held-out accuracy "
                  f"{r['held_out_accuracy']:.4f}", flush=True)
    if isinstance(entry.get("gpu"), dict) and "error" in entry["gpu"]:
        raise RuntimeError(f"GPU fit failed: {entry['gpu']['error']}")


# ---------------------------------------------------------------------------------------
# c. LRP of 10000 patients on the GPU model
# ---------------------------------------------------------------------------------------
def section_lrp(entry, g, args, store):
    if "model" not in store:
        raise Skip("no GPU model (section mdbn_fit did not produce one)")
    from pymdbn.lrp import explain
    from pymdbn.metrics import positive_class

    try:
        from pymdbn.experiments import HEATMAP_COMPOSITE, healthy_reference
    except Exception:  # noqa: BLE001
        HEATMAP_COMPOSITE, healthy_reference = "epsilon_plus", None
    model, data = store["model"], store["data"]
    n = min(500 if args.quick else args.lrp_n, len(data.y))
    X = {m: np.ascontiguousarray(a[:n]) for m, a in data.X.items()}
    positive = positive_class(list(model.classes_))
    target = list(model.classes_).index(positive)
    reference = None
    if healthy_reference is not None:
        reference = healthy_reference(store["Xtr"], store["labels"][store["train"]])
    entry.update(n=n, composite=HEATMAP_COMPOSITE, reference="healthy_mean" if reference
                 is not None else None, target=str(positive),
                 inputs="NumPy arrays on the host (uploads and downloads included)")

    def fwd():
        out = model.decision_function(X)
        g.sync()
        return out

    def lrp(composite=HEATMAP_COMPOSITE, ref=reference, XX=X):
        e = explain(model, XX, target=target, composite=composite, reference=ref)
        g.sync()
        return e

    def timeit(fn, repeat):
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return ts

    t_f, t_e = [], []
    fwd(), lrp()  # warm-up
    for _ in range(args.repeat):
        for fn, ts in ((fwd, t_f), (lrp, t_e)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    entry["forward_times"], entry["explain_times"] = t_f, t_e
    entry["forward_s"], entry["explain_s"] = median(t_f), median(t_e)
    entry["explain_over_forward"] = entry["explain_s"] / entry["forward_s"]
    entry["explain_us_per_patient"] = 1e6 * entry["explain_s"] / n
    print(f"   n={n}: forward {entry['forward_s'] * 1e3:.1f} ms, explain ({HEATMAP_COMPOSITE}"
          f", healthy reference) {entry['explain_s'] * 1e3:.1f} ms = "
          f"{entry['explain_over_forward']:.2f} x forward", flush=True)

    def sanity():
        e = lrp()
        logits = to_host(e.logits)
        dec = to_host(fwd())
        if dec.ndim == 1:  # binary decision_function: one column
            dec_cmp = logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]
        else:
            dec_cmp = logits
        rel = {m: to_host(r) for m, r in e.relevance.items()}
        return {"logits_vs_decision_function_max_abs_diff": _diff(dec_cmp, dec),
                "relevance_finite": all(bool(np.isfinite(r).all()) for r in rel.values()),
                "relevance_type": type(next(iter(e.relevance.values()))).__module__}
    attempt(entry, "sanity", sanity)
    attempt(entry, "explain_no_reference_s",
            lambda: median(timeit(lambda: lrp(ref=None), max(1, args.repeat))))
    attempt(entry, "explain_epsilon_no_reference_s",
            lambda: median(timeit(lambda: lrp("epsilon", None), max(1, args.repeat))))

    def device_inputs():
        Xd = {m: g.cp.asarray(a) for m, a in X.items()}
        g.sync()
        tf = median(timeit(lambda: (model.decision_function(Xd), g.sync()), args.repeat))
        te = median(timeit(lambda: lrp(XX=Xd), args.repeat))
        return {"forward_s": tf, "explain_s": te, "explain_over_forward": te / tf}
    attempt(entry, "cupy_inputs", device_inputs)


# ---------------------------------------------------------------------------------------
def summarize(report):
    s = report.sections
    measured = {(r.get("V"), r.get("H"), r.get("B")): r
                for r in (s.get("cd_epoch") or {}).get("shapes", [])}
    for V, H, B in SHAPES:  # every goal is listed, n/a where it was not measured
        rec = measured.get((V, H, B), {})
        where = f"cd_epoch {V}x{H}x{B}"
        report.goal("pymdbn_over_bound", rec.get("pymdbn_over_bound"), "<=",
                    GOALS["pymdbn_over_bound"], where)
        report.goal("torch_over_pymdbn", rec.get("torch_over_pymdbn"), ">=",
                    GOALS["torch_over_pymdbn"], where)
    gpu = (s.get("mdbn_fit") or {}).get("gpu")
    fit = gpu.get("fit_seconds") if isinstance(gpu, dict) else None
    report.goal("fit_seconds", fit, "<", GOALS["fit_seconds"], "mdbn_fit gpu")
    checks = s.get("checks") or {}
    if "all_pass" in checks:
        report.data["checks_all_pass"] = checks["all_pass"]
    print("\nGoals:")
    for gl in report.data["goals"]:
        v, met = gl["value"], {True: "met", False: "NOT MET", None: "n/a"}[gl["met"]]
        print(f"  {gl['where']:28s} {gl['name']:20s} {'-' if v is None else f'{v:.3f}':>8s} "
              f"(goal {gl['goal']}): {met}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the report here (rewritten after every section)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: N=8192 for the epochs, 1200 patients, 1 pretraining epoch")
    p.add_argument("--cpu-baseline", action="store_true",
                   help="also fit the demo's model on the CPU (minutes; raise --budget)")
    p.add_argument("--n", type=int, default=N_ROWS, help="rows of the CD epochs")
    p.add_argument("--patients", type=int, default=PATIENTS)
    p.add_argument("--lrp-n", type=int, default=LRP_PATIENTS)
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (median)")
    p.add_argument("--budget", type=float, default=290.0,
                   help="seconds for the whole run: sections are cut to what is left")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["checks", "cd_epoch", "data", "mdbn_fit", "lrp"])
    args = p.parse_args(argv)
    if args.cpu_baseline and args.budget == 290.0:
        args.budget = 900.0
        LIMITS["mdbn_fit"] = 700

    report = Report(args.json, args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    g = GPU()
    reason = probe(report, g)
    machine_section(report, g)
    state = (f"available, {report.data['cuda'].get('device_name')}" if reason is None
             else f"unavailable: {reason}")
    print(f"pymdbn CUDA backend: {state}", flush=True)
    report.save()
    store = {}

    def gpu_only(fn):
        def run(entry, *a):
            if reason is not None:
                raise Skip(f"CUDA unavailable: {reason}")
            fn(entry, *a)
        return run

    plan = [("checks", gpu_only(section_checks), (g,)),
            ("cd_epoch", gpu_only(section_cd_epoch), (g, args)),
            ("data", section_data if args.cpu_baseline else gpu_only(section_data),
             (g, args, store)),
            ("mdbn_fit", section_fit if args.cpu_baseline else gpu_only(section_fit),
             (g, args, store)),
            ("lrp", gpu_only(section_lrp), (g, args, store))]
    for name, fn, a in plan:
        if name in args.skip or report.terminated:
            report.sections[name] = {"status": "skipped", "reason": "--skip" if name in
                                     args.skip else "terminated"}
            continue
        report.section(name, fn, *a)
    summarize(report)
    errors = [k for k, v in report.sections.items() if v.get("status") == "error"]
    report.data["errors"] = errors
    report.data["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    report.save()
    print("JSON " + json.dumps({"path": args.json, "errors": errors,
                                "cuda": report.data["cuda"].get("available"),
                                "goals": report.data["goals"]}, default=_jsonable))
    print(f"total {report.elapsed():.1f} s; report: {args.json or '(not written: no --json)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
