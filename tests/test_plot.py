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
    fig = heatmaps(images, R, masks=masks, titles=list("abcde"), ncols=3, path=path, vmax=None)

    width, height = _check_png(path)
    assert width > height   # 2 rows x 3 columns plus colour bar
    overlays = _overlays(fig)
    assert len(overlays) == 5
    for im in overlays:
        assert im.norm.vmin == -7.5 and im.norm.vmax == 7.5
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == list("abcde")
    assert sum(not ax.get_visible() for ax in fig.axes) == 1   # 6th slot hidden
    bars = [ax for ax in fig.axes if ax.get_ylabel().startswith("relevance\n")]
    assert len(bars) == 1   # one shared colour bar
    assert "red: evidence for the explained class; blue: against" in bars[0].get_ylabel()
    assert all(ax.collections for ax in panels)   # mask contours drawn
    assert not [p for p in os.listdir(tmp_path) if p != "maps.png"]   # no temp left


def test_heatmaps_dict_rows_samples_columns_modalities(tmp_path):
    mri_img, mri_r = _data(n=2, h=16, w=16, seed=1)
    xr_img, xr_r = _data(n=2, h=20, w=8, seed=2)
    xr_r[1, 5, 5] = 40.0   # scale is shared across modalities
    fig = heatmaps({"MRI": mri_img, "X-ray": xr_img}, {"MRI": mri_r, "X-ray": xr_r},
                   titles=["case 1", "case 2"], path=tmp_path / "mm.png", vmax="p100")
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


def test_heatmaps_default_scale_is_a_percentile_and_says_so():
    # LRP maps are heavy-tailed: scaled to max |R| (the old default), one pixel at
    # 1000 leaves every other pixel below 0.5% of full colour, a blank map.
    images, R = _data(n=2)
    R[0, 0, 0] = 1000.0
    fig = heatmaps(images, R, title="LRP epsilon", colorbar_label="R for cancer")
    want = np.percentile(np.abs(R), 99.5)
    assert {(im.norm.vmin, im.norm.vmax) for im in _overlays(fig)} == {(-want, want)}
    assert want < 10
    label = [ax for ax in fig.axes if ax.get_ylabel().startswith("R for cancer")][0].get_ylabel()
    assert "99.5th percentile" in label
    assert fig.get_suptitle() == "LRP epsilon"
    # No clipping, no note: the bar label is exactly the one given.
    fig = heatmaps(images, R, vmax=None, colorbar_label="R")
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["R"]
    # Mostly zero relevance: the percentile is 0, the scale falls back to the maximum.
    sparse = np.zeros_like(R)
    sparse[1, 2, 3] = -4.0
    fig = heatmaps(images, sparse)
    assert {im.norm.vmax for im in _overlays(fig)} == {4.0}


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
    r = np.array([[0.5, -1.0], [2.0, -0.1]])   # one 2x2 image, 4 bars
    fig = relevance_bars(r, path=tmp_path / "bars.png", title="patient 3")
    _check_png(tmp_path / "bars.png")
    (ax,) = fig.axes
    # What is shown is relevance per pixel; the paper's axis names are a subtitle only.
    assert ax.get_xlabel() == "input pixel (row, column)" and ax.get_ylabel() == "LRP relevance"
    assert "'Correlation'" in ax.get_title() and "'Features'" in ax.get_title()
    assert fig.get_suptitle() == "patient 3"
    heights = [p.get_height() for p in ax.patches[:4]]
    assert heights == [0.5, -1.0, 2.0, -0.1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["(0, 0)", "(0, 1)", "(1, 0)", "(1, 1)"]
    colours = {h > 0: p.get_facecolor() for h, p in zip(heights, ax.patches)}
    assert colours[True] != colours[False]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["for the explained class",
                                                                   "against"]

    fig = relevance_bars(r, top=2, feature_names=["a", "b", "c", "d"])
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches[:2]] == [2.0, -1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "b"]
    assert fig.axes[0].get_xlabel() == "input feature, the 2 of largest |relevance|"
    fig = relevance_bars(np.array([3.0, -1.0]))
    assert fig.axes[0].get_xlabel() == "input feature (flat index)"
    with pytest.raises(ValueError, match="feature_names"):
        relevance_bars(r, feature_names=["a"])
    with pytest.raises(ValueError, match="top"):
        relevance_bars(r, top=0)


def test_relevance_bars_per_modality_names_modality_row_and_column():
    # The demo's view: bars of several modalities, once named by flat indices into the
    # joined images; each bar now names its modality and pixel.
    r = {"brain": np.array([[0.0, 0.1], [0.2, 0.0]]), "bone": np.array([[5.0, 0.0, -3.0]])}
    fig = relevance_bars(r, top=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bone (0, 0)", "bone (0, 2)",
                                                           "brain (1, 0)"]
    assert [p.get_height() for p in ax.patches[:3]] == [5.0, -3.0, 0.2]
    assert ax.get_xlabel().startswith("input pixel: modality (row, column)")
    with pytest.raises(ValueError, match="one sample"):
        relevance_bars({"brain": np.zeros((2, 3, 3))})


def _bar_heights(ax):
    return [[p.get_height() for p in c] for c in ax.containers if isinstance(c, BarContainer)]


def test_modality_shares(tmp_path):
    shares = {"MRI": np.array([0.6, 0.5, 0.7]), "Mammogram": np.array([0.4, 0.5, 0.3])}
    fig = modality_shares(shares, labels=["brain MRI", "mammogram"], path=tmp_path / "s.png",
                          title="cancer patients")
    _check_png(tmp_path / "s.png")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "share of the positive relevance"
    assert "mean share" in ax.get_title() and "25th to 75th percentile" in ax.get_title()
    assert fig.get_suptitle() == "cancer patients"
    np.testing.assert_allclose(_bar_heights(ax), [[0.6], [0.4]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["brain MRI", "mammogram"]
    assert ax.get_ylim() == (0, 1.05)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    (errbar,) = bars[0].errorbar.lines[2]
    (seg,) = errbar.get_segments()
    np.testing.assert_allclose(seg[:, 1], [0.55, 0.65])  # 25th and 75th percentiles
    with pytest.raises(ValueError, match="one length"):
        modality_shares({"a": np.ones(3), "b": np.ones(2)})
    with pytest.raises(ValueError, match="labels"):
        modality_shares(shares, labels=["x"])


def test_modality_shares_rejects_signed_shares_and_skips_nan():
    # Signed shares (sum R_m / sum R) once ran from about -4 to +4 here.
    with pytest.raises(ValueError, match=r"\[0, 1\].*net_shares"):
        modality_shares({"a": np.array([1.5, 0.2]), "b": np.array([-0.5, 0.8])})
    fig = modality_shares({"a": np.array([1.0, np.nan, 0.25]),
                           "b": np.array([0.0, np.nan, 0.75])})
    ax = fig.axes[0]
    np.testing.assert_allclose(_bar_heights(ax), [[0.625], [0.375]])
    assert "1 without any relevance to share left out" in ax.get_title()
    with pytest.raises(ValueError, match="no sample"):
        modality_shares({"a": np.array([np.nan])})


def test_modality_shares_grouped_by_lesion_modalities():
    shares = {"brain": np.array([0.9, 0.8, 0.1, 0.5, 0.5]),
              "bone": np.array([0.1, 0.2, 0.9, 0.5, 0.5])}
    lesions = {"brain": np.array([1, 1, 0, 1, 0], bool), "bone": np.array([0, 0, 1, 1, 0], bool)}
    fig = modality_shares(shares, lesions=lesions)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "no lesion\n(n=1)", "lesions: brain\n(n=2)", "lesions: bone\n(n=1)",
        "lesions: brain+bone\n(n=1)"]
    np.testing.assert_allclose(_bar_heights(ax), [[0.5, 0.85, 0.1, 0.5], [0.5, 0.15, 0.9, 0.5]])
    with pytest.raises(ValueError, match="lesions keys"):
        modality_shares(shares, lesions={"brain": lesions["brain"]})
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        modality_shares(shares, lesions={"brain": lesions["brain"][:2], "bone": lesions["bone"]})


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


def test_cli_explain_draws_labelled_heatmaps_on_the_percentile_scale(tmp_path, monkeypatch):
    # `pymdbn explain` once drew max-|R| maps without labels: blank panels, bar to +-1000.
    from pymdbn import plot
    from pymdbn.cli import main

    rng = np.random.default_rng(0)
    for name in ("cancer", "healthy"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 100, (16, 16)).astype(np.uint8)
            if name == "cancer":
                img[4:10, 5:11] = 250
            Image.fromarray(img).save(tmp_path / "data" / name / f"{i}.png")
    model = tmp_path / "model.npz"
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(model), "--size", "8",
                 "--preset", "mdbn", "--quiet"]) == 0
    drawn, real = [], plot.heatmaps
    monkeypatch.setattr(plot, "heatmaps", lambda *a, **k: drawn.append((real(*a, **k), k))
                        or drawn[-1][0])
    assert main(["explain", "--model", str(model), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "expl"), "--n", "3"]) == 0
    ((fig, kwargs),) = drawn
    assert kwargs["vmax"] == "p99.5"
    assert fig.get_suptitle().endswith("reference: none; explained class: cancer")
    rows = [ax.get_ylabel() for ax in fig.axes if ax.images and ax.get_ylabel()]
    assert len(rows) == 3 and all(r.startswith("patient ") and "\ntrue " in r and
                                  "p(cancer) = " in r for r in rows)
    bar = [ax.get_ylabel() for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert bar[0].startswith("relevance\nred: evidence for cancer; blue: against")
