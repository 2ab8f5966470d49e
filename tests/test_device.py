"""The estimators' ``device`` parameter, on the stand-in CUDA backend (tests/fake_cuda.py).

The stand-in runs the CPU kernels behind device arrays and refuses host arrays, so these
tests check the plumbing on any machine: a fit, a prediction and an explanation with
``device='cuda'`` keep every array the kernels see on the device, bring the fitted
arrays back as NumPy arrays, and give the CPU's results bit for bit. The real CUDA
kernels are compared with the twins by the kernel tests where a GPU is visible.
"""

import numpy as np
import pytest

import pymdbn
from pymdbn import DBN, RBM, backend, presets
from pymdbn.data import make_phantoms


@pytest.fixture(scope="module")
def phantoms():
    return make_phantoms(160, size=16, random_state=0)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_rbm_on_the_device_equals_the_cpu(fake_cuda, rng, visible):
    X = (rng.random((300, 20)) > 0.5).astype(np.float32)
    kw = dict(n_components=7, n_iter=3, batch_size=16, random_state=0, visible=visible,
              learning_rate=0.01)
    cpu, dev = RBM(**kw).fit(X), RBM(device="cuda", **kw).fit(X)
    for name in RBM._STATE_ARRAYS:
        assert type(getattr(dev, name)) is np.ndarray
        np.testing.assert_array_equal(getattr(cpu, name), getattr(dev, name))
    assert cpu.history_[-1]["reconstruction_error"] == dev.history_[-1]["reconstruction_error"]
    # Device input is used in place; results go back to the caller's device.
    X_dev = fake_cuda.to_device(X, "cuda")
    np.testing.assert_array_equal(RBM(device="cuda", **kw).fit(X_dev).components_,
                                  cpu.components_)
    assert type(dev.transform(X)) is np.ndarray
    assert isinstance(dev.transform(X_dev), fake_cuda.DeviceArray)
    for method in ("transform", "reconstruct", "free_energy"):
        np.testing.assert_array_equal(getattr(dev, method)(X), getattr(cpu, method)(X))
    cpu.partial_fit(X)
    dev.partial_fit(X)
    np.testing.assert_array_equal(cpu.components_, dev.components_)


def test_dbn_fine_tuning_on_the_device_equals_the_cpu(fake_cuda, rng):
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    kw = dict(hidden_layers=(8, 5), n_iter=2, fine_tune_epochs=3, random_state=0,
              fine_tune_dropout=0.2, optimizer="adam", early_stopping=True,
              validation_fraction=0.2)
    cpu, dev = DBN(**kw).fit(X, y), DBN(device="cuda", **kw).fit(X, y)
    for a, b in zip(cpu.layers_ + [cpu.output_], dev.layers_ + [dev.output_]):
        assert type(b["W"]) is np.ndarray
        np.testing.assert_array_equal(a["W"], b["W"])
    np.testing.assert_array_equal(cpu.decision_function(X), dev.decision_function(X))
    X_dev = fake_cuda.to_device(X, "cuda")
    assert isinstance(dev.transform(X_dev), fake_cuda.DeviceArray)
    np.testing.assert_array_equal(cpu.predict_proba(X), dev.predict_proba(X_dev))
    np.testing.assert_array_equal(DBN(device="cuda", **kw).fit(X_dev, y).output_["W"],
                                  cpu.output_["W"])


@pytest.mark.parametrize("make, kw", [
    (presets.proposed, dict(pretrain_epochs=2, max_epochs=3, early_stopping=True)),
    (presets.mdbn, dict(pretrain_epochs=1, max_epochs=2)),
    (presets.early_fusion_dbn, dict(n_iter=1, fine_tune_epochs=2)),
], ids=["proposed", "mdbn", "early_fusion"])
def test_presets_fit_predict_and_explain_on_the_device(fake_cuda, phantoms, make, kw):
    cpu = make(random_state=0, **kw).fit(phantoms.X, phantoms.y)
    dev = make(random_state=0, device="cuda", **kw).fit(phantoms.X, phantoms.y)
    np.testing.assert_array_equal(cpu.decision_function(phantoms.X),
                                  dev.decision_function(phantoms.X))
    a = cpu.explain(phantoms.X, composite="epsilon_plus")
    b = dev.explain(phantoms.X, composite="epsilon_plus")
    for m in a.relevance:
        assert type(b.relevance[m]) is np.ndarray
        np.testing.assert_array_equal(a.relevance[m], b.relevance[m])
    # A model trained on the device predicts the same on the CPU, and loads there.
    np.testing.assert_array_equal(dev.to("cpu").decision_function(phantoms.X),
                                  cpu.decision_function(phantoms.X))


def test_checkpoints_written_on_the_device_resume_anywhere(fake_cuda, phantoms, tmp_path):
    kw = dict(random_state=0, pretrain_epochs=1, checkpoint_every=2)
    for device in ("cpu", "cuda"):
        presets.proposed(device=device, max_epochs=4, checkpoint_path=str(tmp_path / device),
                         **kw).fit(phantoms.X, phantoms.y)
    cpu, dev = (pymdbn.load(tmp_path / d) for d in ("cpu", "cuda"))
    np.testing.assert_array_equal(cpu.output_["W"], dev.output_["W"])
    resumed = [presets.proposed(device=device, max_epochs=6, checkpoint_path=str(tmp_path / "r"),
                                **kw).fit(phantoms.X, phantoms.y, resume_from=tmp_path / start)
               for device, start in (("cuda", "cpu"), ("cpu", "cuda"))]
    np.testing.assert_array_equal(resumed[0].output_["W"], resumed[1].output_["W"])


def test_a_model_saved_on_the_device_loads_on_the_cpu(fake_cuda, phantoms, tmp_path):
    model = presets.early_fusion_dbn(random_state=0, n_iter=1, fine_tune_epochs=1,
                                     device="cuda").fit(phantoms.X, phantoms.y)
    model.save(tmp_path / "m.npz")
    loaded = pymdbn.load(tmp_path / "m.npz")
    devices = {loaded.dbn.device, loaded.dbn_.device, *(r.device for r in loaded.dbn_.rbms_)}
    assert devices == {"cpu"}
    np.testing.assert_array_equal(loaded.decision_function(phantoms.X),
                                  model.decision_function(phantoms.X))
    assert pymdbn.load(tmp_path / "m.npz", device="cuda").dbn_.rbms_[0].device == "cuda"


def test_explain_runs_where_asked(fake_cuda, phantoms):
    model = presets.mdbn(random_state=0, pretrain_epochs=1, max_epochs=1).fit(phantoms.X,
                                                                             phantoms.y)
    a = pymdbn.lrp.explain(model, phantoms.X, composite="epsilon_gamma_box")
    b = pymdbn.lrp.explain(model, phantoms.X, composite="epsilon_gamma_box", device="cuda")
    for m in a.relevance:
        np.testing.assert_array_equal(a.relevance[m], b.relevance[m])


def test_the_stand_in_refuses_host_arrays(fake_cuda, rng):
    x = rng.random((3, 4)).astype(np.float32)
    w, b = rng.random((2, 4)).astype(np.float32), np.zeros(2, np.float32)
    with pytest.raises(TypeError, match="host array on the CUDA backend"):
        backend.ops.affine_sigmoid(fake_cuda.to_device(x, "cuda"), w, b, None, True)


@pytest.mark.skipif(pymdbn.cuda.is_available(), reason="a GPU is visible here")
def test_asking_for_a_missing_device_says_why():
    X = np.zeros((4, 3), np.float32)
    for model in (RBM(device="cuda"), DBN(device="cuda")):
        with pytest.raises(RuntimeError, match="device='cuda' is not available here: "):
            model.fit(X)
    with pytest.raises(backend.DeviceUnavailableError, match="not available here"):
        RBM().to("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        backend.check_device("tpu")


@pytest.mark.skipif(pymdbn.cuda.is_available(), reason="a GPU is visible here")
def test_the_command_says_when_cuda_is_missing(tmp_path, capsys):
    from pymdbn.cli import main

    assert main(["demo", "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "device='cuda' is not available here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # checked before any work


# ---------------------------------------------------------------- on a real GPU
gpu = pytest.mark.skipif(not pymdbn.cuda.is_available(),
                         reason=f"no CUDA here: {pymdbn.cuda.unavailable_reason()}")


@gpu
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_gpu_rbm_epoch_agrees_with_the_cpu(rng, visible):
    from conftest import tol

    # One epoch from the same start: cuBLAS rounds the products differently from
    # OpenBLAS, so the parameters agree within the CD-epoch tolerance (a Bernoulli draw
    # within a rounding of its probability could flip: about 1e-3 expected flips here).
    X = (rng.random((300, 20)) > 0.5).astype(np.float32)
    kw = dict(n_components=7, n_iter=1, batch_size=16, random_state=0, visible=visible,
              learning_rate=0.01)
    cpu, dev = RBM(**kw).fit(X), RBM(device="cuda", **kw).fit(X)
    for name in RBM._STATE_ARRAYS:
        np.testing.assert_allclose(getattr(dev, name), getattr(cpu, name),
                                   **tol(np.float32, "cd_epoch"))


@gpu
def test_gpu_model_predicts_and_explains_as_on_the_cpu(phantoms, tmp_path):
    import cupy

    model = presets.proposed(random_state=0, pretrain_epochs=1, max_epochs=2,
                             device="cuda").fit(phantoms.X, phantoms.y)
    model.save(tmp_path / "m.npz")
    on_cpu = pymdbn.load(tmp_path / "m.npz")
    # float32 through four layers: a few ulps per product, damped by the sigmoids.
    close = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.decision_function(phantoms.X),
                               on_cpu.decision_function(phantoms.X), **close)
    a = model.explain(phantoms.X, composite="epsilon_plus")
    b = on_cpu.explain(phantoms.X, composite="epsilon_plus")
    for m in a.relevance:
        scale = np.abs(b.relevance[m]).max()
        np.testing.assert_allclose(a.relevance[m], b.relevance[m], rtol=1e-3,
                                   atol=1e-4 * scale)
    # CuPy input is used in place and the code comes back on the device.
    dbn = DBN(hidden_layers=(8,), n_iter=1, device="cuda", random_state=0)
    X = cupy.asarray(phantoms.X["brain"].reshape(len(phantoms.y), -1), dtype=cupy.float32)
    assert isinstance(dbn.fit(X).transform(X), cupy.ndarray)


def test_mdbn_takes_device_modalities(fake_cuda, phantoms):
    kw = dict(random_state=0, pretrain_epochs=1, max_epochs=2, per_image=True)
    X_dev = {m: fake_cuda.to_device(x, "cuda") for m, x in phantoms.X.items()}
    cpu = presets.proposed(**kw).fit(phantoms.X, phantoms.y)
    dev = presets.proposed(device="cuda", **kw).fit(X_dev, phantoms.y)
    for m in cpu.modalities_:
        np.testing.assert_array_equal(cpu.scaler_.mean_[m], dev.scaler_.mean_[m])
    np.testing.assert_array_equal(cpu.decision_function(phantoms.X),
                                  dev.decision_function(X_dev))
    bad = dict(X_dev, brain=X_dev["brain"] * np.float32("nan"))
    with pytest.raises(ValueError, match="'brain' contains NaN"):
        dev.predict(bad)
