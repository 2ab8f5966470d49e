"""The installed extension finds its BLAS, and reports its configuration."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import pymdbn


def test_core_loads_through_its_rpath_without_the_preloader(tmp_path):
    # A regular or wheel install finds libscipy_openblas through the extension's rpath
    # ($ORIGIN/../scipy_openblas32/lib); pymdbn.backend._cpu's preload covers other layouts.
    code = "import pymdbn._core as c; print(c.build_info()['blas'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scipy-openblas32" in proc.stdout


def test_show_config_prints_like_numpy_and_returns_dicts_on_request(capsys):
    assert pymdbn.show_config() is None
    printed = json.loads(capsys.readouterr().out)
    info = pymdbn.show_config(mode="dicts")
    assert capsys.readouterr().out == ""
    for key in ("version", "compiler", "openmp", "openmp_threads", "blas", "blas_threads",
                "cuda"):
        assert key in info
    assert printed == info
    assert info["version"] == pymdbn.__version__
    assert info["blas_threads"] == 1  # GEMMs are split across the OpenMP threads instead
    assert info["cuda"] is False
    with pytest.raises(ValueError, match="mode must be"):
        pymdbn.show_config(mode="json")


def test_subpackages_are_attributes_loaded_lazily(tmp_path):
    code = ("import sys, pymdbn; assert 'pymdbn.lrp' not in sys.modules; "
            "print(pymdbn.lrp.Epsilon.__name__, pymdbn.data.load_image_folder.__name__, "
            "pymdbn.plot.heatmaps.__name__, pymdbn.presets.proposed.__name__, "
            "pymdbn.datasets.make_phantoms.__name__, 'lrp' in dir(pymdbn))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Epsilon", "load_image_folder", "heatmaps", "proposed",
                                   "make_phantoms", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        pymdbn.nonexistent  # noqa: B018


def test_importing_the_source_folder_explains_the_shadowing(tmp_path):
    # A checkout's pymdbn/ (no compiled _core beside it) first on sys.path, as in
    # `python -c "import pymdbn"` run from the repository root after `pip install .`.
    checkout = tmp_path / "checkout"
    shutil.copytree(os.path.dirname(pymdbn.__file__), checkout / "pymdbn",
                    ignore=shutil.ignore_patterns("_core*", "__pycache__"))
    (checkout / "csrc").mkdir()
    (checkout / "pyproject.toml").write_text("[project]\nname = 'pymdbn'\n")
    # An editable install's import hook would redirect to the real tree: drop it.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if not type(f).__module__.startswith('_editable')]; "
            f"sys.path.insert(0, {str(checkout)!r}); import numpy as np, pymdbn; "
            "pymdbn.RBM(n_components=2).fit(np.zeros((4, 3)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "shadows the installed package" in proc.stderr
    assert "pip install -e" in proc.stderr


def test_import_is_light(tmp_path):
    code = ("import sys, pymdbn; assert 'pymdbn._core' not in sys.modules; "
            "assert 'sklearn' not in sys.modules; assert 'matplotlib' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
