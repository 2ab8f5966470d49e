"""Tests for pymdbn.plot: files written, colour scale, validation, lazy import."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from matplotlib.container import BarContainer  # noqa: E402

from pymdbn.plot import heatmaps, metric_bars, modality_shares, relevance_bars  # noqa: E402


def _overlays(fig):
    """Relevance images: those drawn with a diverging, symmetric norm."""
    return [im for ax in fig.axes for im in ax.images if im.get_cmap().name == "bwr"]


def _check_png(path, min_size=(200, 150)):
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        return im.size


def _data(n=3, h=12, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, h, w)), rng.normal(size=(n, h, w))


def test_heatmaps_array_grid_symmetric_scale_and_png(tmp_path):
    images, R = _data(n=5)
    R[2, 0, 0] = -7.5   # largest |R| anywhere is negative
    masks = np.zeros(R.shape, dtype=bool)
    masks[:, 3:6, 3:6] = True
    path = tmp_path / "maps.png"
    fig = heatmaps(images, R, masks=masks, titles=list("abcde"), ncols=3, path=path)

    width, height = _check_png(path)
    assert width > height   # 2 rows x 3 columns plus colour bar
    overlays = _overlays(fig)
    assert len(overlays) == 5
    for im in overlays:
        assert im.norm.vmin == -7.5 and im.norm.vmax == 7.5
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == list("abcde")
    assert sum(not ax.get_visible() for ax in fig.axes) == 1   # 6th slot hidden
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "relevance"]
    assert len(bars) == 1   # one shared colour bar
    assert all(ax.collections for ax in panels)   # mask contours drawn
    assert not [p for p in os.listdir(tmp_path) if p != "maps.png"]   # no temp left


def test_heatmaps_dict_rows_samples_columns_modalities(tmp_path):
    mri_img, mri_r = _data(n=2, h=16, w=16, seed=1)
    xr_img, xr_r = _data(n=2, h=20, w=8, seed=2)
    xr_r[1, 5, 5] = 40.0   # scale is shared across modalities
    fig = heatmaps({"MRI": mri_img, "X-ray": xr_img}, {"MRI": mri_r, "X-ray": xr_r},
                   titles=["case 1", "case 2"], path=tmp_path / "mm.png")
    _check_png(tmp_path / "mm.png")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4
    assert [ax.get_title() for ax in panels] == ["MRI", "X-ray", "", ""]
    assert [ax.get_ylabel() for ax in panels] == ["case 1", "", "case 2", ""]
    assert {(im.norm.vmin, im.norm.vmax) for im in _overlays(fig)} == {(-40.0, 40.0)}


def test_heatmaps_percentile_vmax_clips_outliers():
    images, R = _data(n=2)
    R[0, 0, 0] = 1000.0  # one extreme pixel
    fig = heatmaps(images, R, vmax="p99")
    want = np.percentile(np.abs(R), 99)
    assert {(im.norm.vmin, im.norm.vmax) for im in _overlays(fig)} == {(-want, want)}
    assert all(np.max(im.get_alpha()) <= 0.6 + 1e-12 for im in _overlays(fig))
    fig = heatmaps(images, R, vmax=2.5)
    assert {im.norm.vmax for im in _overlays(fig)} == {2.5}
    for bad in ("q50", "p0", "pxx", -1.0, float("nan")):
        with pytest.raises(ValueError, match="vmax"):
            heatmaps(images, R, vmax=bad)


def test_heatmaps_all_zero_relevance_and_custom_cmap():
    images, _ = _data(n=1)
    fig = heatmaps(images, np.zeros_like(images), cmap="seismic")
    (im,) = [im for ax in fig.axes for im in ax.images if im.get_cmap().name == "seismic"]
    assert im.norm.vmin == -im.norm.vmax and im.norm.vmax > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(relevance=np.zeros((3, 12, 9))), r"\(3, 12, 10\).*\(3, 12, 9\)"),
        (dict(masks=np.zeros((3, 5, 5), bool)), "masks shape"),
        (dict(titles=["a"]), "1 titles for 3 samples"),
        (dict(relevance=np.full((3, 12, 10), np.nan)), "NaN"),
        (dict(images=np.zeros((3, 2, 12, 10))), r"\(N, H, W\)"),
        (dict(alpha=1.5), "alpha"),
        (dict(images={"a": np.zeros((3, 12, 10))}), "all be arrays or all dicts"),
    ],
)
def test_heatmaps_validation(kwargs, message):
    images, R = _data()
    args = dict(images=images, relevance=R)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        heatmaps(**args)


def test_heatmaps_dict_validation():
    img = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="keys differ"):
        heatmaps({"a": img}, {"b": img})
    with pytest.raises(ValueError, match="sample count"):
        heatmaps({"a": img, "b": img[:1]}, {"a": img, "b": img[:1]})
    with pytest.raises(ValueError, match="ncols"):
        heatmaps({"a": img}, {"a": img}, ncols=2)


def test_save_replaces_existing_file(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"stale")
    images, R = _data(n=1)
    heatmaps(images, R, path=path)
    _check_png(path, min_size=(100, 100))
    assert os.listdir(tmp_path) == ["out.png"]


def test_relevance_bars(tmp_path):
    r = np.array([[0.5, -1.0], [2.0, -0.1]])   # flattened to 4 features
    fig = relevance_bars(r, path=tmp_path / "bars.png")
    _check_png(tmp_path / "bars.png")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Features" and ax.get_ylabel() == "Correlation"
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.5, -1.0, 2.0, -0.1]
    colours = {h > 0: p.get_facecolor() for h, p in zip(heights, ax.patches)}
    assert colours[True] != colours[False]

    fig = relevance_bars(r, top=2, feature_names=["a", "b", "c", "d"])
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [2.0, -1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "b"]
    with pytest.raises(ValueError, match="feature_names"):
        relevance_bars(r, feature_names=["a"])
    with pytest.raises(ValueError, match="top"):
        relevance_bars(r, top=0)


def test_modality_shares(tmp_path):
    shares = {"MRI": np.array([0.6, 0.5, 0.7]), "Mammogram": np.array([0.4, 0.5, 0.3])}
    fig = modality_shares(shares, labels=["brain MRI", "mammogram"], path=tmp_path / "s.png")
    _check_png(tmp_path / "s.png")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "Share of relevance"
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.6, 0.4])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["brain MRI", "mammogram"]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    (errbar,) = bars.errorbar.lines[2]
    segments = errbar.get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], [0.2, 0.2])  # 2 sd
    with pytest.raises(ValueError, match="one length"):
        modality_shares({"a": np.ones(3), "b": np.ones(2)})
    with pytest.raises(ValueError, match="labels"):
        modality_shares(shares, labels=["x"])


def test_metric_bars(tmp_path):
    table = {
        "MDBN": {"accuracy": (0.9, 0.02), "specificity": (0.88, 0.03),
                 "F1": (0.89, 0.02), "sensitivity": (0.91, 0.04)},
        "CNN": {"accuracy": {"mean": 0.8, "sd": 0.05}, "specificity": (0.7, 0.1),
                "F1": (0.75, None), "sensitivity": (0.85, 0.02)},
    }
    fig = metric_bars(table, path=tmp_path / "m.png")
    _check_png(tmp_path / "m.png")
    ax = fig.axes[0]
    assert len(ax.patches) == 8
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table["MDBN"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["MDBN", "CNN"]
    with pytest.raises(ValueError, match="same non-empty metrics"):
        metric_bars({"a": {"accuracy": (1, 0)}, "b": {"f1": (1, 0)}})
    with pytest.raises(ValueError, match="pair"):
        metric_bars({"a": {"accuracy": 0.9}})


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))


def test_import_does_not_load_matplotlib():
    res = _run("import pymdbn.plot, sys; assert 'matplotlib' not in sys.modules")
    assert res.returncode == 0, res.stderr


def test_missing_matplotlib_gives_install_hint():
    res = _run(
        "import sys; sys.modules['matplotlib'] = None\n"
        "import numpy as np, pymdbn.plot as p\n"
        "try:\n    p.relevance_bars(np.ones(3))\n"
        "except ImportError as e:\n    print(e)\n"
    )
    assert "pip install pymdbn[plot]" in res.stdout, res.stderr
