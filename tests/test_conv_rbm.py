"""ConvRBM: the CD step against an unrolled dense RBM, the backends against each other,
learning, reproducibility and scikit-learn conventions."""


import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from conftest import TOL, results_per_thread_count, tol
from pymdbn import ConvRBM, backend
from pymdbn.backend import reference as ref
from pymdbn.models.conv_rbm import conv_layer


# -- an independent reference: the convolution as an explicit (Toeplitz) weight matrix ---
def unrolled(filters, shape):
    """The dense weights (Ho*Wo*F, H*W*C) of the convolution with ``filters`` (F, kh, kw,
    C), built entry by entry: hidden unit (oy, ox, f) is row (oy*Wo + ox)*F + f, the
    channels-last order of ConvRBM.transform, and sees pixel (oy+dy, ox+dx), channel c."""
    n_f, kh, kw, c = filters.shape
    h, w, _ = shape
    ho, wo = h - kh + 1, w - kw + 1
    t = np.zeros((ho * wo * n_f, h * w * c))
    for oy in range(ho):
        for ox in range(wo):
            for f in range(n_f):
                for dy in range(kh):
                    for dx in range(kw):
                        for ch in range(c):
                            t[(oy * wo + ox) * n_f + f,
                              ((oy + dy) * w + ox + dx) * c + ch] = filters[f, dy, dx, ch]
    return t


def tied(grad, filters_shape, shape):
    """A dense weight gradient (Ho*Wo*F, H*W*C) summed over the entries that share each
    filter weight: the gradient with respect to the filters."""
    n_f, kh, kw, c = filters_shape
    h, w, _ = shape
    ho, wo = h - kh + 1, w - kw + 1
    out = np.zeros(filters_shape)
    for oy in range(ho):
        for ox in range(wo):
            for f in range(n_f):
                for dy in range(kh):
                    for dx in range(kw):
                        for ch in range(c):
                            out[f, dy, dx, ch] += grad[(oy * wo + ox) * n_f + f,
                                                       ((oy + dy) * w + ox + dx) * c + ch]
    return out


def dense_cd_step(model, v0, lr):
    """One CD-k step of ``model`` (fitted, before the step) on the batch v0 (b, H*W*C),
    computed in float64 as a dense RBM with the unrolled weights, on the Philox draws the
    ConvRBM documents: hidden draws of im2col row i*Ho*Wo + p, column f, visible draws of
    row i. Returns the new (filters, hidden bias, visible bias, velocities) and the
    squared reconstruction error."""
    shape = model.image_shape_
    n_f = model.components_.shape[0]
    ho, wo, _ = model.output_shape_
    b, n_pos = len(v0), ho * wo
    w = model.components_.astype(np.float64)
    t = unrolled(w, shape)
    bh = np.tile(model.intercept_hidden_.astype(np.float64), n_pos)
    bv = np.tile(model.intercept_visible_.astype(np.float64), shape[0] * shape[1])
    seed, base = model.seed_, model.n_steps_ * 256
    v0 = v0.astype(np.float64)

    def hidden(v):
        return ref.clipped_sigmoid(v @ t.T + bh, model.clip)

    def draw_hidden(p, stream):  # one im2col row per (image, position)
        u = ref.uniform(b * n_pos, n_f, seed, stream).reshape(b, -1)
        return (u < p).astype(np.float64)

    ph0 = hidden(v0)
    h = draw_hidden(ph0, base)
    for step in range(model.k):
        mean = h @ t + bv
        if model.visible == "bernoulli":
            mean = ref.clipped_sigmoid(mean, model.clip)
            vs = (ref.uniform(b, v0.shape[1], seed, base + 1 + 2 * step) < mean).astype(float)
        else:
            vs = mean + ref.standard_normal(b, v0.shape[1], seed, base + 1 + 2 * step)
        if step == 0:
            sq = float(((v0 - mean) ** 2).sum())
        phn = hidden(vs)
        if step + 1 < model.k:
            h = draw_hidden(phn, base + 2 + 2 * step)
    rows = b * n_pos
    grad_w = tied(ph0.T @ v0 - phn.T @ vs, w.shape, shape) / rows
    q = ph0.reshape(rows, n_f).mean(axis=0)
    grad_h = q - phn.reshape(rows, n_f).mean(axis=0)
    grad_h += model.sparsity_cost * (model.sparsity_target - q)
    c = shape[2]
    grad_v = v0.reshape(-1, c).mean(axis=0) - vs.reshape(-1, c).mean(axis=0)
    mom, wd = model.momentum, model.weight_decay
    vel_w = mom * model.velocity_components_ + lr * (grad_w - wd * w)
    vel_h = mom * model.velocity_hidden_ + lr * grad_h
    vel_v = mom * model.velocity_visible_ + lr * grad_v
    return (w + vel_w, model.intercept_hidden_ + vel_h, model.intercept_visible_ + vel_v,
            vel_w, vel_h, vel_v, sq)


def prepared(params, shape, n, dtype, seed=0):
    """A ConvRBM initialised (n_iter=0) on n random images of ``shape``, its parameters
    and velocities replaced by random ones of useful size, and the images."""
    rng = np.random.default_rng(seed)
    if params.get("visible") == "bernoulli":
        X = (rng.random((n, *shape)) < 0.4).astype(dtype)
    else:
        X = rng.standard_normal((n, *shape)).astype(dtype)
    model = ConvRBM(n_iter=0, random_state=seed, dtype=dtype, **params).fit(X)
    for name in ("components_", "intercept_hidden_", "intercept_visible_",
                 "velocity_components_", "velocity_hidden_", "velocity_visible_"):
        old = getattr(model, name)
        scale = 0.3 if name.startswith("velocity") else 0.5
        setattr(model, name, (scale * rng.standard_normal(old.shape)).astype(dtype))
    return model, X


CASES = {
    "gaussian-cd1": (dict(filters=3, kernel_size=3, visible="gaussian"), (6, 7)),
    "bernoulli-cd2-rgb": (dict(filters=4, kernel_size=(2, 3), visible="bernoulli", k=2,
                               clip=3.0, sparsity_cost=0.3, sparsity_target=0.2,
                               weight_decay=0.01, momentum=0.7), (5, 6, 2)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_cd_step_equals_the_unrolled_dense_rbm(case, dtype):
    """float64: exact but for the summation order. float32: the kernels' float32 maths
    against the float64 reference (no sampled state flips at these sizes)."""
    params, shape = CASES[case]
    lr = 0.1
    model, X = prepared(dict(params, learning_rate=lr), shape, 4, dtype)
    t = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else tol(dtype, "cd_epoch")
    v0 = X.reshape(len(X), -1)
    want = dense_cd_step(model, v0, lr)
    model.partial_fit(X)  # one mini-batch (4 <= batch_size): one step at step 0
    got = (model.components_, model.intercept_hidden_, model.intercept_visible_,
           model.velocity_components_, model.velocity_hidden_, model.velocity_visible_)
    for name, g, w in zip(("filters", "b_hidden", "b_visible", "v_w", "v_h", "v_v"), got,
                          want):
        np.testing.assert_allclose(g, w, err_msg=name, **t)
    sq = model.history_[-1]["reconstruction_error"] * v0.size
    assert sq == pytest.approx(want[-1], rel=t["rtol"])
    assert model.n_steps_ == 1


def test_transform_and_conv_layer_equal_the_unrolled_dense_layer():
    model, X = prepared(dict(filters=3, kernel_size=(3, 2)), (5, 6, 2), 3, np.float64)
    t = unrolled(model.components_, model.image_shape_)
    v = X.reshape(len(X), -1)
    want = ref.sigmoid(v @ t.T + np.tile(model.intercept_hidden_, 3 * 5))
    h = model.transform(X)
    assert h.shape == (3, 3, 5, 3)
    np.testing.assert_allclose(h.reshape(3, -1), want, rtol=1e-12, atol=1e-14)
    layer = conv_layer(model)
    assert layer["type"] == "conv" and layer["shape"] == (5, 6, 2)
    assert layer["kernel"] == (3, 2) and layer["W"].shape == (3 * 2 * 2, 3)
    assert layer["W"].flags.c_contiguous
    cols = ref.im2col(v, layer["shape"], layer["kernel"])
    np.testing.assert_allclose(ref.sigmoid(cols @ layer["W"] + layer["b"]).reshape(3, -1),
                               want, rtol=1e-12, atol=1e-14)
    layer["b"][0] += 1  # a copy
    assert model.intercept_hidden_[0] != layer["b"][0]
    # flattened input of the fitted shape is accepted
    np.testing.assert_array_equal(model.transform(v), h)


# -- backends --------------------------------------------------------------------------
@pytest.fixture
def host_backend(monkeypatch):
    """Switch the host arrays' backend ('cpu' or 'numpy') for the estimators' ops."""

    def use(name):
        monkeypatch.setattr(backend, "_host", name)
        backend.ops.__dict__.clear()  # dispatchers cache the host backend's op

    yield use
    backend.ops.__dict__.clear()


@pytest.mark.skipif(backend.unavailable_reason("cpu") is not None, reason="no compiled core")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("visible", ["gaussian", "bernoulli"])
def test_numpy_backend_equals_cpu_backend(host_backend, dtype, visible):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((24, 10, 9, 2)).astype(dtype)
    if visible == "bernoulli":
        X = (X > 0).astype(dtype)
    kw = dict(filters=5, kernel_size=3, visible=visible, n_iter=2, batch_size=8, k=2,
              learning_rate=0.05, sparsity_cost=0.1, random_state=3, dtype=dtype)
    fits = {}
    for name in ("numpy", "cpu"):
        host_backend(name)
        fits[name] = ConvRBM(**kw).fit(X)
        fits[name + "_h"] = fits[name].transform(X)
    t = tol(dtype, "cd_epoch")
    for attr in ("components_", "intercept_hidden_", "intercept_visible_"):
        np.testing.assert_allclose(getattr(fits["cpu"], attr), getattr(fits["numpy"], attr),
                                   err_msg=attr, **t)
    np.testing.assert_allclose(fits["cpu_h"], fits["numpy_h"], **t)
    errs = [[h["reconstruction_error"] for h in fits[n].history_] for n in ("cpu", "numpy")]
    np.testing.assert_allclose(errs[0], errs[1], rtol=TOL[dtype]["rtol"] * 10)


def test_cuda_device_plumbing_equals_cpu(fake_cuda):
    """device='cuda' (the CPU kernels behind device arrays): every array the epoch
    touches is on the device, and the fit equals the CPU fit bit for bit."""
    X = np.random.default_rng(2).standard_normal((20, 8, 8)).astype(np.float32)
    kw = dict(filters=4, kernel_size=3, n_iter=2, batch_size=6, sparsity_cost=0.1,
              random_state=0)
    cpu = ConvRBM(**kw).fit(X)
    gpu = ConvRBM(device="cuda", **kw).fit(X)
    assert type(gpu.components_) is np.ndarray
    np.testing.assert_array_equal(gpu.components_, cpu.components_)
    np.testing.assert_array_equal(gpu.transform(X), cpu.transform(X))
    h = gpu.transform(fake_cuda.to_device(X, "cuda"))
    assert backend.device_of(h) == "cuda"


# -- learning --------------------------------------------------------------------------
PATTERN = np.array([[1, -1, -1, -1, 1],
                    [-1, 1, -1, 1, -1],
                    [-1, -1, 1, -1, -1],
                    [1, 1, -1, 1, -1],
                    [1, -1, -1, -1, 1]], dtype=np.float64)


def pattern_images(n, seed, size=12, copies=2, noise=0.3):
    """Images of noise with ``copies`` of PATTERN at random positions, standardised."""
    rng = np.random.default_rng(seed)
    X = noise * rng.standard_normal((n, size, size))
    for i in range(n):
        for _ in range(copies):
            y, x = rng.integers(0, size - 4, 2)
            X[i, y:y + 5, x:x + 5] += PATTERN
    return ((X - X.mean()) / X.std()).astype(np.float32)


def test_learns_the_pattern(seed):
    # Small enough to stay below the kernels' parallel thresholds: fast on a busy machine.
    # Over seeds 0-19 the best filter's correlation ranged over 0.83-0.93 and the last
    # epoch's error over 0.66-0.70 of the first's.
    X = pattern_images(200, seed)
    model = ConvRBM(8, 5, learning_rate=0.05, n_iter=10, batch_size=20,
                    random_state=seed).fit(X)
    errors = [h["reconstruction_error"] for h in model.history_]
    assert np.all(np.diff(errors) < 0), errors
    assert errors[-1] < 0.8 * errors[0], errors
    flat = model.components_[..., 0].reshape(8, -1)
    corr = [np.corrcoef(f, PATTERN.ravel())[0, 1] for f in flat]
    assert max(corr) > 0.8, np.round(corr, 2)


def test_sparsity_cost_moves_the_mean_activation_to_the_target(seed):
    X = pattern_images(200, seed)
    kw = dict(filters=6, kernel_size=5, learning_rate=0.05, n_iter=4, batch_size=20,
              sparsity_target=0.05, random_state=seed)
    free = ConvRBM(**kw).fit(X).transform(X).mean()
    means = [ConvRBM(sparsity_cost=cost, **kw).fit(X).transform(X).mean() for cost in (2, 5)]
    # seeds 0-4: 0.50 free, 0.16 and 0.08 pulled
    assert abs(free - 0.5) < 0.05
    assert 0.05 < means[1] < means[0] < 0.5 * free, (free, means)
    assert abs(means[1] - 0.05) < 0.15 * abs(free - 0.05), (free, means)


# -- reproducibility -------------------------------------------------------------------
def test_same_seed_same_bits_and_partial_fit_continues():
    X = np.random.default_rng(4).standard_normal((30, 9, 9)).astype(np.float32)
    kw = dict(filters=4, kernel_size=3, n_iter=2, batch_size=7, random_state=5)
    a, b = ConvRBM(**kw).fit(X), ConvRBM(**kw).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.intercept_visible_, b.intercept_visible_)
    c = ConvRBM(**kw).fit(X, callback=lambda m: None)
    np.testing.assert_array_equal(a.components_, c.components_)
    assert not np.array_equal(a.components_, ConvRBM(**dict(kw, random_state=6)).fit(X)
                              .components_)
    # partial_fit: one pass in order, the step counter carried on
    p = ConvRBM(**kw)
    p.partial_fit(X[:14]).partial_fit(X[14:])
    assert p.n_steps_ == 2 + 3 and len(p.history_) == 2
    assert np.isfinite(p.components_).all()


_THREADS_SCRIPT = r"""
import sys, numpy as np, pymdbn
from pymdbn import ConvRBM
assert pymdbn.get_num_threads()["openmp"] == int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 24, 24, 2)).astype(np.float32)
out = {}
dtypes = ("float32", "float64") + (("bfloat16",) if pymdbn.backend.bfloat16_status()[0] else ())
for dtype in dtypes:
    m = ConvRBM(16, 5, n_iter=1, batch_size=32, k=2, sparsity_cost=0.1, random_state=1,
                dtype=dtype).fit(X)
    out["w_" + dtype], out["b_" + dtype] = m.components_, m.intercept_hidden_
    out["h_" + dtype] = m.transform(X[:8])
np.savez(sys.argv[2], **out)
"""


def test_bit_identical_with_1_and_3_threads(tmp_path):
    pytest.importorskip("pymdbn._core")
    results = results_per_thread_count(_THREADS_SCRIPT, (1, 3), tmp_path)
    assert set(results[1]) == set(results[3])
    for key in results[1]:
        np.testing.assert_array_equal(results[3][key], results[1][key], err_msg=key)


# -- scikit-learn conventions and input checks -----------------------------------------
def test_params_clone_and_fitted_attributes():
    model = ConvRBM(filters=6, kernel_size=(3, 4), visible="bernoulli", sparsity_cost=0.2)
    params = model.get_params()
    assert params["filters"] == 6 and params["kernel_size"] == (3, 4)
    assert set(params) == {"filters", "kernel_size", "visible", "learning_rate", "n_iter",
                           "batch_size", "k", "momentum", "weight_decay", "sparsity_target",
                           "sparsity_cost", "clip", "random_state", "verbose", "dtype",
                           "device"}
    copy = clone(model)
    assert copy.get_params() == params
    X = (np.random.default_rng(0).random((10, 9, 8, 3)) < 0.5)
    model.set_params(n_iter=2).fit(X)
    assert model.components_.shape == (6, 3, 4, 3)
    assert model.components_.dtype == np.float32  # bool input, float32 by default
    assert model.intercept_hidden_.shape == (6,) and model.intercept_visible_.shape == (3,)
    assert model.image_shape_ == (9, 8, 3) and model.output_shape_ == (7, 5, 6)
    assert model.n_features_in_ == 9 * 8 * 3
    assert [h["epoch"] for h in model.history_] == [1, 2]
    assert {"reconstruction_error", "time"} <= set(model.history_[0])
    h = model.transform(X)
    assert h.shape == (10, 7, 5, 6) and h.dtype == np.float32
    assert ((h >= 0) & (h <= 1)).all()
    assert model.fit_transform(X).shape == (10, 7, 5, 6)
    assert not hasattr(clone(model), "components_")
    # grey images: (n, H, W) is C = 1
    grey = ConvRBM(2, 3, n_iter=1).fit(np.zeros((3, 5, 5)))
    assert grey.image_shape_ == (5, 5, 1) and grey.transform(np.zeros((1, 5, 5, 1))).shape \
        == (1, 3, 3, 2)
    f64 = ConvRBM(2, 3, n_iter=1, dtype=None).fit(np.zeros((3, 5, 5)))
    assert f64.components_.dtype == np.float64


def test_default_learning_rate_per_visible_type():
    from pymdbn.models.conv_rbm import _DEFAULT_LR

    assert ConvRBM(visible="gaussian")._learning_rate() == _DEFAULT_LR["gaussian"] == 0.005
    assert ConvRBM(visible="bernoulli")._learning_rate() == _DEFAULT_LR["bernoulli"] == 0.05
    assert ConvRBM(learning_rate=0.3)._learning_rate() == 0.3


def test_not_fitted():
    with pytest.raises(NotFittedError):
        ConvRBM().transform(np.zeros((1, 8, 8)))
    with pytest.raises(NotFittedError):
        conv_layer(ConvRBM())


@pytest.mark.parametrize("X, match", [
    (np.zeros((4, 16)), r"expects images of shape \(n_samples, H, W\)"),
    (np.zeros(16), r"expects images"),
    (np.zeros((2, 4, 4, 1, 1)), r"expects images"),
    (np.zeros((3, 4, 8)), r"a 5x5 kernel does not fit 4x8 images"),
    (np.zeros((0, 8, 8)), r"0 images|0 sample"),
    (np.full((3, 8, 8), np.nan), r"NaN"),
    (np.full((3, 8, 8), np.inf), r"infinity"),
])
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        ConvRBM(kernel_size=5, n_iter=1).fit(X)


def test_bad_input_after_fit():
    model = ConvRBM(2, 3, n_iter=1).fit(np.zeros((3, 6, 6)))
    with pytest.raises(ValueError, match=r"fitted on images of shape \(6, 6, 1\), got "
                                         r"\(6, 7, 1\)"):
        model.transform(np.zeros((1, 6, 7)))
    with pytest.raises(ValueError, match=r"or \(n_samples, 36\) flattened"):
        model.transform(np.zeros((1, 35)))
    with pytest.raises(ValueError, match="NaN"):
        model.transform(np.full((1, 6, 6), np.nan))
    with pytest.raises(ValueError, match=r"fitted on images"):
        model.partial_fit(np.zeros((2, 6, 6, 3)))


@pytest.mark.parametrize("params, match", [
    (dict(filters=0), "filters"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(kernel_size=(3, 0)), "kernel_size"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(visible="poisson"), "visible"),
    (dict(k=0), "'k'"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(sparsity_target=1.0), "sparsity_target"),
    (dict(momentum=1.0), "momentum"),
    (dict(dtype="float16"), "dtype"),
])
def test_bad_params(params, match):
    with pytest.raises((InvalidParameterError, ValueError), match=match):
        ConvRBM(**params).fit(np.zeros((2, 8, 8)))


def test_divergence_is_reported():
    X = 50 * np.random.default_rng(0).standard_normal((20, 10, 10)).astype(np.float32)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        ConvRBM(8, 3, learning_rate=5.0, n_iter=20, random_state=0).fit(X)


def test_bfloat16_keeps_float32_parameters_and_learns():
    ok, detail = backend.bfloat16_status()
    if not ok:
        pytest.skip(f"bfloat16 products unavailable: {detail}")
    X = pattern_images(200, 0)
    kw = dict(filters=6, kernel_size=5, learning_rate=0.05, n_iter=4, batch_size=20,
              random_state=0)
    bf = ConvRBM(dtype="bfloat16", **kw).fit(X)
    fp = ConvRBM(dtype="float32", **kw).fit(X)
    assert bf.components_.dtype == np.float32 and bf.transform(X).dtype == np.float32
    assert not np.array_equal(bf.components_, fp.components_)  # products rounded
    err_bf = bf.history_[-1]["reconstruction_error"]
    err_fp = fp.history_[-1]["reconstruction_error"]
    assert err_bf < 1.02 * err_fp + 1e-3, (err_bf, err_fp)


def test_save_load_round_trip(tmp_path):
    from pymdbn import load

    X = np.random.default_rng(7).standard_normal((12, 7, 6, 2)).astype(np.float32)
    model = ConvRBM(3, (2, 3), n_iter=2, batch_size=5, random_state=0).fit(X)
    loaded = load(model.save(tmp_path / "crbm.pmdbn"))
    assert type(loaded) is ConvRBM and loaded.get_params() == model.get_params()
    for name in ("components_", "intercept_hidden_", "intercept_visible_",
                 "velocity_components_", "velocity_hidden_", "velocity_visible_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert (loaded.image_shape_, loaded.output_shape_) == (model.image_shape_,
                                                           model.output_shape_)
    assert loaded.history_ == model.history_
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.partial_fit(X).components_,
                                  model.partial_fit(X).components_)
