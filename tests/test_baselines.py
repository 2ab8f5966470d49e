"""The CNN baseline (PyTorch, optional extra): skipped where PyTorch is absent."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pymdbn.baselines import SmallCNN  # noqa: E402


def test_small_cnn_learns_a_bright_square():
    rng = np.random.default_rng(0)
    n = 160
    y = np.repeat([0, 1], n // 2)
    X = {m: rng.random((n, 12, 12)).astype(np.float32) for m in ("brain", "bone")}
    X["bone"][y == 1, 4:8, 4:8] += 1.5
    cnn = SmallCNN(epochs=15, random_state=0).fit(X, y)
    assert cnn.predict_proba(X).shape == (n, 2)
    assert np.mean(cnn.predict(X) == y) > 0.9
    again = SmallCNN(epochs=15, random_state=0).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), cnn.predict_proba(X), rtol=1e-5)
    with pytest.raises(ValueError, match="modalities"):
        cnn.predict({"brain": X["brain"]})
