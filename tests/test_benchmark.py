"""`pymdbn bench` and pymdbn.benchmark: the baselines compute pymdbn's update, the command
writes its record and tables, and bad arguments are refused in one line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pymdbn import benchmark, cli
from pymdbn.backend import reference as ref

# float32 GEMMs summed in another order than the reference's (blocked, FMA) over 3
# updates of a 20 x 7 problem: a few ulps of values up to ~40.
TOL = dict(rtol=1e-5, atol=1e-5)
V, H, B, N = 20, 7, 4, 10
LR, MOMENTUM = 0.05, 0.5


def _determined_problem():
    """Data and weights of +-40 whose every probability is (numerically) 0 or 1, so that
    any sampler draws the reference's samples (every row of X has a 1)."""
    rng = np.random.default_rng(1)
    X = (rng.random((N, V)) > 0.5).astype(np.float32)
    X[:, 0] = 1
    w = (40.0 * np.array([1, -1, 1, 1, -1, 1, -1])[:, None] * np.ones((H, V))).astype(np.float32)
    return X, w, np.ones(H, np.float32)


def _reference_epoch(X, w, b_hidden):
    st = {"w": w.copy(), "b_visible": np.zeros(V, np.float32), "b_hidden": b_hidden.copy(),
          "v_w": np.zeros((H, V), np.float32), "v_b_visible": np.zeros(V, np.float32),
          "v_b_hidden": np.zeros(H, np.float32), "chain": np.zeros((B, H), np.float32)}
    sq, _ = ref.cd_epoch(X, np.arange(N), B, st, k=1, persistent=False, visible="bernoulli",
                         clip=None, learning_rate=LR, momentum=MOMENTUM, weight_decay=0.0,
                         sparsity_target=0.1, sparsity_cost=0.0, seed=0, first_step=0)
    return st, sq / (N * V)


def _assert_same_update(got, err, st, want_err):
    for key, name in (("w", "W"), ("b_visible", "bv"), ("b_hidden", "bh"), ("v_w", "VW"),
                      ("v_b_visible", "Vbv"), ("v_b_hidden", "Vbh")):
        np.testing.assert_allclose(got[name], st[key], err_msg=key, **TOL)
    assert err == pytest.approx(want_err, rel=1e-5)


def test_numpy_cd1_computes_the_reference_update():
    X, w, bh = _determined_problem()
    m = benchmark.NumpyCD1(V, H, B, learning_rate=LR, momentum=MOMENTUM, seed=3)
    m.W[...] = w
    m.bh[...] = bh
    err = m.epoch(X, np.arange(N))
    st, want_err = _reference_epoch(X, w, bh)
    _assert_same_update({k: getattr(m, k) for k in ("W", "bv", "bh", "VW", "Vbv", "Vbh")},
                        err, st, want_err)


def test_torch_cd1_computes_the_reference_update():
    torch = pytest.importorskip("torch")
    X, w, bh = _determined_problem()
    m = benchmark.TorchCD1(V, H, B, learning_rate=LR, momentum=MOMENTUM, seed=3)
    m.W.copy_(torch.from_numpy(w))
    m.bh.copy_(torch.from_numpy(bh))
    err = m.epoch(X, np.arange(N))
    st, want_err = _reference_epoch(X, w, bh)
    _assert_same_update({k: getattr(m, k).numpy() for k in ("W", "bv", "bh", "VW", "Vbv", "Vbh")},
                        err, st, want_err)


def test_binary_data_has_the_asked_share_of_ones():
    X = benchmark.binary_data(500, 64)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert set(np.unique(X)) == {0.0, 1.0} and abs(X.mean() - 0.3) < 0.02


def _quick_cd(tmp_path, *options):
    """Run a tiny `pymdbn bench --suite cd` with ``options``; (json path, markdown path)."""
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["bench", "--quick", "--suite", "cd", "--shapes", "16,8,4", "--n", "24",
            "--rounds", "1", "--threads", "1", *options, "--json", str(out_json),
            "--markdown", str(out_md), "--quiet"]
    assert cli.main(argv) == 0
    return out_json, out_md


def test_bench_quick_cd_writes_the_record_and_the_tables(tmp_path, capsys):
    out_json, out_md = _quick_cd(tmp_path, "--implementations", "pymdbn", "bound", "numpy")
    stdout = capsys.readouterr().out
    rec = json.loads(out_json.read_text())
    for key in ("argv", "date", "settings", "machine", "versions", "pymdbn_config", "openblas",
                "cd", "wall_s"):
        assert key in rec, key
    assert "scaling" not in rec and rec["suite"] == "cd" and rec["settings"]["rounds"] == 1
    m = rec["machine"]
    for key in ("cpu", "cpu_count", "flags", "loadavg_before", "loadavg_after",
                "openblas_env_in_workers", "openblas_env_unset_in_workers"):
        assert key in m, key
    assert set(m["flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert m["openblas_env_unset_in_workers"] is False
    for key in ("python", "numpy", "scipy", "scikit-learn", "torch", "pymdbn",
                "scipy-openblas32"):
        assert key in rec["versions"], key
    assert rec["openblas"]["scipy_openblas32"]["core"]  # the kernel OpenBLAS picked
    assert "architecture" in (rec["openblas"]["numpy_openblas"] or {"architecture": None})
    (row,) = rec["cd"]["rows"]
    assert (row["V"], row["H"], row["B"], row["N"], row["threads"], row["dtype"]) == \
        (16, 8, 4, 24, 1, "float32")
    for impl in ("pymdbn", "bound", "bound_split", "numpy"):
        assert len(row["times"][impl]) == 1
        assert row["min"][impl] <= row["median"][impl] <= row["max"][impl]
    assert row["ratios"]["numpy_over_pymdbn"] == pytest.approx(
        row["median"]["numpy"] / row["median"]["pymdbn"])
    assert row["ratios"]["sklearn_over_pymdbn"] is None and not row["skipped"]
    assert rec["cd"]["goals"] == []  # the goals are stated at S and L only
    md = out_md.read_text()
    assert md.startswith("# pymdbn bench") and md.strip() in stdout
    assert "| V | H | B | N | thr | dtype | pymdbn | bound |" in md
    assert "pym/bound" in md and "scipy-openblas32" in md
    # The record names the command that produced it.
    assert rec["argv"][:4] == ["--suite", "cd", "--shapes", "16,8,4"]


def test_bench_refuses_to_replace_an_output(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("precious")
    assert cli.main(["bench", "--suite", "cd", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "precious"


@pytest.mark.parametrize("argv, message", [
    (["bench", "--shapes", "784,512"], "--shapes must be V,H,B"),
    (["bench", "--shapes", "784,0,128"], "--shapes must be V,H,B"),
    (["bench", "--threads", "0"], "--threads must be a positive integer, got 0"),
    (["bench", "--rounds", "two"], "--rounds must be a positive integer, got two"),
    (["bench", "--n", "-5"], "--n must be a positive integer"),
    (["bench", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["bench", "--suite", "fast"], "invalid choice: 'fast'"),
])
def test_bench_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bench_scripts_do_not_take_the_benchmark_options(capsys):
    assert cli.main(["bench", "bench_rbm", "--suite", "cd"]) == 2
    err = capsys.readouterr().err
    assert "--suite is an option of pymdbn's own benchmark" in err
    assert len(err.strip().splitlines()) == 1


def test_the_parser_and_the_module_stay_light(tmp_path):
    code = ("import sys, pymdbn.benchmark, pymdbn.cli; pymdbn.cli.build_parser(); "
            "heavy = sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_bench_marks_bfloat16_rows_that_ran_float32(tmp_path, capsys):
    from pymdbn import backend

    out_json, out_md = _quick_cd(tmp_path, "--dtype", "bfloat16", "--implementations",
                                 "pymdbn")
    capsys.readouterr()
    (row,) = json.loads(out_json.read_text())["cd"]["rows"]
    native = backend.bfloat16_status()[0]
    assert row["dtype"] == "bfloat16" and not row["skipped"]
    assert row["workers"]["pymdbn"]["bfloat16_products"] is native
    md = out_md.read_text()
    assert ("| bfloat16 (ran float32) |" in md) is (not native)
    assert ("these rows measure no bfloat16 path" in md) is (not native)
