"""dtype='bfloat16': float32 parameters, bfloat16 operands of the products.

The kernels against the twins in bfloat16 are the ``*-bfloat16`` cases of the kernel
tests (conftest's ``kernels_dtype``); thread-count determinism is in test_threads.py.
Here: the rounding itself, the seam (fallback and errors), and the estimators' quality
against float32.
"""

import numpy as np
import pytest

import pymdbn
from pymdbn import backend
from pymdbn._matmul import get_precision, matmul, round_bfloat16
from pymdbn.backend import BFloat16FallbackWarning
from pymdbn.datasets import make_phantoms

BF16_OK, BF16_DETAIL = backend.bfloat16_status()
needs_bf16 = pytest.mark.skipif(not BF16_OK, reason=f"bfloat16 unavailable: {BF16_DETAIL}")


def bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def test_round_bfloat16_to_nearest_even():
    ulp = np.float32(2.0**-7)  # bfloat16's spacing at 1
    x = np.array([1, 1 + ulp / 2, 1 + 3 * ulp / 2, 1 + ulp / 2 + 2.0**-20, -(1 + ulp / 2),
                  3.4e38, 0.0, -0.0, np.inf, -np.inf, 1e-40, -1e-40], np.float32)
    # Ties go to the even neighbour (1 + ulp/2 -> 1, 1 + 3ulp/2 -> 1 + 2ulp); above the
    # largest bfloat16 (3.3895e38) and the midpoint to 2^128 rounds to inf, as IEEE
    # rounding does; denormals become zeros of their sign (as VCVTNEPS2BF16 makes them).
    want = np.array([1, 1, 1 + 2 * ulp, 1 + ulp, -1, np.inf, 0.0, -0.0, np.inf, -np.inf,
                     0.0, -0.0], np.float32)
    got = round_bfloat16(x)
    np.testing.assert_array_equal(bits(got), bits(want))
    assert np.isnan(round_bfloat16(np.array([np.nan], np.float32)))[0]


def test_round_bfloat16_is_the_nearest():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32)
    x = x[np.abs(x) >= np.finfo(np.float32).tiny]  # denormals flush (previous test)
    r = round_bfloat16(x).astype(np.float64)
    # The neighbours one bfloat16 ulp away are never closer.
    ulp = 2.0 ** (np.floor(np.log2(np.abs(r))) - 7)
    err = np.abs(r - x)
    assert np.all(err <= ulp / 2)


def test_matmul_precision_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        with backend.matmul_precision("float16"):
            pass


def test_twin_rounds_only_float32_matrix_products():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((7, 3))
    v = rng.standard_normal(7).astype(np.float32)
    numpy_backend = backend.get("numpy")
    numpy_backend.set_matmul_precision("bfloat16")
    try:
        b32 = b.astype(np.float32)
        np.testing.assert_array_equal(matmul(a, b32), round_bfloat16(a) @ round_bfloat16(b32))
        np.testing.assert_array_equal(matmul(a, b), a @ b)  # a float64 operand: exact
        np.testing.assert_array_equal(matmul(a, v), a @ v)  # matrix-vector: exact
    finally:
        numpy_backend.set_matmul_precision("float32")
    assert get_precision() == "float32"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fallback_warns_once_and_computes_in_float32(monkeypatch):
    cpu = backend.get(backend.host_backend())
    monkeypatch.setattr(cpu, "bfloat16_status", lambda: (False, "test: no bf16 here"))
    monkeypatch.setattr(backend, "_fallback_warned", set())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    with pytest.warns(BFloat16FallbackWarning, match="test: no bf16 here"):
        with backend.matmul_precision("bfloat16"):
            got = backend.ops.affine(x, x[:20], np.zeros(20, np.float32), True)
    np.testing.assert_array_equal(got, backend.ops.affine(x, x[:20], np.zeros(20, np.float32),
                                                          True))
    with backend.matmul_precision("bfloat16"):  # the same reason: no second warning
        pass


def test_rbm_bfloat16_keeps_float32_parameters_and_learns_like_float32(monkeypatch):
    monkeypatch.setattr(backend, "_fallback_warned", set())  # warned once per reason
    rng = np.random.default_rng(3)
    protos = rng.random((4, 64)) < 0.3
    X = (protos[rng.integers(0, 4, 800)] ^ (rng.random((800, 64)) < 0.05)).astype(np.float32)
    kw = dict(n_components=32, learning_rate=0.05, batch_size=20, n_iter=5, random_state=0)
    with pytest.warns(BFloat16FallbackWarning) if not BF16_OK else _nothing():
        bf = pymdbn.RBM(dtype="bfloat16", **kw).fit(X)
    fp = pymdbn.RBM(dtype="float32", **kw).fit(X)
    assert bf.components_.dtype == np.float32
    assert bf.transform(X).dtype == np.float32
    # Weights are float32 masters: updates smaller than a bfloat16 ulp still land.
    assert np.any(bits(bf.components_) & 0xFFFF)
    err_bf = np.mean((bf.reconstruct(X) - X) ** 2)
    err_fp = np.mean((fp.reconstruct(X) - X) ** 2)
    assert err_bf < 1.1 * err_fp + 1e-3, (err_bf, err_fp)


@needs_bf16
def test_mdbn_bfloat16_accuracy_save_load_and_explain(tmp_path):
    data = make_phantoms(400, size=16, random_state=0)
    X, y = data.X, data.y
    train = np.arange(300)
    test = np.arange(300, 400)
    kw = dict(modalities={m: (64, 32) for m in X}, joint_units=(32,), pretrain_epochs=2,
              max_epochs=8, random_state=0)
    Xtr = {m: v[train] for m, v in X.items()}
    Xte = {m: v[test] for m, v in X.items()}
    fp = pymdbn.MDBN(dtype="float32", **kw).fit(Xtr, y[train])
    bf = pymdbn.MDBN(dtype="bfloat16", **kw).fit(Xtr, y[train])
    assert bf.output_["W"].dtype == np.float32
    acc_fp, acc_bf = fp.score(Xte, y[test]), bf.score(Xte, y[test])
    assert abs(acc_bf - acc_fp) <= 0.05, (acc_bf, acc_fp)
    path = tmp_path / "bf.mdbn"
    bf.save(path)
    back = pymdbn.load(path)
    assert back.dtype == "bfloat16"
    np.testing.assert_array_equal(back.predict_proba(Xte), bf.predict_proba(Xte))
    # The explanation in bfloat16 against float32 arithmetic on the same weights: within
    # a few bfloat16 roundings (2^-8 relative) of each pixel's share of max |R|.
    e_bf = bf.explain(Xte)
    e_fp = pymdbn.lrp.explain(bf, Xte, dtype="float32")
    # MDBN.explain ran in the model's dtype (it once ran float32 for a bfloat16 model).
    assert not all(np.array_equal(e_bf.relevance[m], e_fp.relevance[m]) for m in X)
    for m in X:
        scale = np.abs(e_fp.relevance[m]).max()
        np.testing.assert_allclose(e_bf.relevance[m], e_fp.relevance[m], rtol=0,
                                   atol=0.05 * scale, err_msg=m)


def test_demo_dtype_reaches_the_model(tmp_path, monkeypatch):
    import pymdbn.experiments as ex

    def stop(*args, **kwargs):  # the model is saved before the evaluation: stop there
        raise RuntimeError("stop after training")

    monkeypatch.setattr(ex, "sensitivity_by_lesion_subset", stop)
    monkeypatch.setattr("pymdbn.metrics.classification_report", stop)
    monkeypatch.setattr(backend, "_fallback_warned", set())  # warned once per reason
    with pytest.warns(BFloat16FallbackWarning) if not BF16_OK else _nothing():
        with pytest.raises(RuntimeError, match="stop after training"):
            ex.run_demo(tmp_path / "d", n_patients=40, size=16, model_size=8,
                        pretrain_epochs=1, verbose=False, dtype="bfloat16")
    model = pymdbn.load(tmp_path / "d" / "model.npz")
    assert model.dtype == "bfloat16" and model.output_["W"].dtype == np.float32


@needs_bf16
@pytest.mark.parametrize("cols", [1, 15, 16, 17, 100])
def test_kernel_rounding_equals_the_twin_bit_for_bit(cols):
    # x times the identity: one exact product per output, so the result is the kernel's
    # rounding of x itself (the AVX512_BF16 instruction where the CPU has it).
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, cols)).astype(np.float32)
    ulp = np.float32(2.0**-7)
    # (No values that round to inf: inf times the identity's zeros is NaN.)
    specials = np.array([1 + ulp / 2, 1 + 3 * ulp / 2, -(1 + ulp / 2), 3.3e38, -3.3e38,
                         1e-40, -1e-40, np.finfo(np.float32).tiny, 0.0, -0.0], np.float32)
    flat = x.reshape(-1)
    flat[:len(specials)] = specials[:flat.size]
    eye = np.eye(cols, dtype=np.float32)
    with backend.matmul_precision("bfloat16"):
        got = backend.ops.affine(x, eye, np.zeros(cols, np.float32), False)
    # + 0: the sum turns -0 into +0 (-0 * 1 + 0 * ... = +0), as the GEMM's sums do.
    np.testing.assert_array_equal(bits(got), bits(round_bfloat16(x) + np.float32(0)))


@needs_bf16
@pytest.mark.parametrize("cols", [1, 31, 32, 33, 100])
def test_transposed_operand_rounding_equals_the_twin_bit_for_bit(cols):
    # x^T times the identity (dense_backward's grad_w = x^T dz): op(A) = x^T is rounded
    # from x's columns, in panels of 32 (gemm.cpp); every tail of a panel is here.
    rng = np.random.default_rng(6)
    n = 40
    x = rng.standard_normal((n, cols)).astype(np.float32)
    x.flat[::9] = 1 + np.float32(2.0**-8)  # a tie: rounds to even (1)
    x.flat[4::13] = -1e-40
    z = np.zeros((n, n), np.float32)
    w = np.zeros((cols, n), np.float32)
    with backend.matmul_precision("bfloat16"):
        _, grad_w, _ = backend.ops.dense_backward(np.eye(n, dtype=np.float32), z, z, x, w,
                                                  None, "linear", False)
    # One row of op(A) (cols = 1) is a product of one row: float32, not rounded.
    want = round_bfloat16(x).T if cols > 1 else x.T
    np.testing.assert_array_equal(bits(grad_w), bits(want + np.float32(0)))


@needs_bf16
def test_early_fusion_explains_in_its_networks_dtype():
    data = make_phantoms(120, size=16, random_state=1)
    dbn = pymdbn.DBN(hidden_layers=(32,), n_iter=1, fine_tune_epochs=2, random_state=0,
                     dtype="bfloat16")
    model = pymdbn.EarlyFusionDBN(dbn).fit(data.X, data.y)
    e_bf = model.explain(data.X)
    model.dbn_.set_params(dtype="float32")
    e_fp = model.explain(data.X)
    assert not all(np.array_equal(e_bf.relevance[m], e_fp.relevance[m]) for m in data.X)
    for m in data.X:
        scale = np.abs(e_fp.relevance[m]).max()
        np.testing.assert_allclose(e_bf.relevance[m], e_fp.relevance[m], rtol=0,
                                   atol=0.05 * scale, err_msg=m)


@needs_bf16
def test_one_row_products_stay_float32_in_kernels_and_twin():
    # A product of one row is bound by reading its other operand: the kernels keep it in
    # float32 (rounding B would read it once more), and the twin's matmul does the same.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 50)).astype(np.float32)
    w = rng.standard_normal((50, 20)).astype(np.float32)
    b = np.zeros(20, np.float32)
    with backend.matmul_precision("bfloat16"):
        one = backend.ops.affine(x, w, b, False)
        two = backend.ops.affine(np.vstack([x, x]), w, b, False)
    numpy_backend = backend.get("numpy")
    numpy_backend.set_matmul_precision("bfloat16")
    try:
        twin_one, twin_two = matmul(x, w), matmul(np.vstack([x, x]), w)
    finally:
        numpy_backend.set_matmul_precision("float32")
    np.testing.assert_allclose(one, x @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(twin_one, x @ w)
    np.testing.assert_array_equal(twin_two, round_bfloat16(np.vstack([x, x])) @ round_bfloat16(w))
    rounded = round_bfloat16(x) @ round_bfloat16(w)
    np.testing.assert_allclose(two[0], rounded[0], rtol=1e-5, atol=1e-5)
    assert np.abs(two[0] - (x @ w)[0]).max() > 1e-3  # the two-row product was rounded
