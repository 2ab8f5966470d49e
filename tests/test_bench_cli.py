"""`pymdbn bench`: the benchmark scripts are found from a checkout and from an installed copy."""

import json
import os
import pytest

import pymdbn.cli as cli

SCRIPTS = sorted(cli._BENCHES)


def _fake_package(root, bench_folder):
    package = root / "pymdbn"
    package.mkdir(parents=True)
    (package / "cli.py").write_text("")
    folder = root / bench_folder
    folder.mkdir(parents=True)
    for script in SCRIPTS:
        (folder / script).write_text("")
    return package


@pytest.mark.parametrize("layout", ["pymdbn/_bench", "bench"])
def test_bench_dir_finds_the_installed_copy_and_the_checkout(tmp_path, monkeypatch, layout):
    package = _fake_package(tmp_path, layout)
    monkeypatch.setattr(cli, "__file__", str(package / "cli.py"))
    assert cli.bench_dir() == str(tmp_path / layout)


def test_bench_dir_without_scripts_says_what_is_missing(tmp_path, monkeypatch):
    package = _fake_package(tmp_path, "bench")
    os.remove(tmp_path / "bench" / SCRIPTS[0])
    monkeypatch.setattr(cli, "__file__", str(package / "cli.py"))
    with pytest.raises(ValueError, match="benchmark scripts are missing"):
        cli.bench_dir()


def test_bench_runs_a_benchmark_from_this_installation(capfd, monkeypatch):
    folder = cli.bench_dir()
    here = os.path.dirname(os.path.abspath(cli.__file__))
    if not os.path.isdir(os.path.join(here, os.pardir, "csrc")):
        # Not a checkout (pip install .): the wheel's copy must be the one used.
        assert folder == os.path.join(here, "_bench")
    # The smoke run of one cheap benchmark, end to end, through the command.
    monkeypatch.setitem(cli._BENCHES, "bench_phantoms.py", ["--n", "50", "--size", "16"])
    assert cli.main(["bench", "bench_phantoms", "--quick"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "== bench_phantoms.py"
    assert json.loads(out[-1])["n_patients"] == 50


def test_bench_rejects_an_unknown_name(capsys):
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
