"""The installed extension finds its BLAS, and reports its configuration."""

import subprocess
import sys

import pymdbn


def test_core_loads_through_its_rpath_without_the_preloader(tmp_path):
    # A regular or wheel install finds libscipy_openblas through the extension's rpath
    # ($ORIGIN/../scipy_openblas32/lib); pymdbn._loader's preload covers other layouts.
    code = "import pymdbn._core as c; print(c.build_info()['blas'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scipy-openblas32" in proc.stdout


def test_show_config(capsys):
    info = pymdbn.show_config(print_=True)
    for key in ("version", "compiler", "openmp", "openmp_threads", "blas", "blas_threads",
                "cuda"):
        assert key in info
    assert info["version"] == pymdbn.__version__
    assert info["blas_threads"] == 1  # GEMMs are split across the OpenMP threads instead
    assert info["cuda"] is False
    assert '"version"' in capsys.readouterr().out


def test_import_is_light(tmp_path):
    code = ("import sys, pymdbn; assert 'pymdbn._core' not in sys.modules; "
            "assert 'sklearn' not in sys.modules; assert 'matplotlib' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
