"""Convolutional and pooling layers in the network: forward against direct
convolution, gradients against finite differences, on every host backend."""

import numpy as np
import pytest
from scipy.signal import correlate2d

from pymdbn import backend
from pymdbn.backend import ops
from pymdbn.models import finetune, network
from pymdbn.models.network import Network, propagate
from conftest import numeric_grad


@pytest.fixture(params=["cpu", "numpy"])
def host(request, monkeypatch):
    """Route ``ops`` on host arrays to one backend."""
    module = backend.get(request.param)
    if not hasattr(module, "im2col"):
        pytest.skip(f"{request.param} backend has no im2col")
    monkeypatch.setattr(backend, "_host", request.param)
    return request.param


def conv_layer(rng, shape, kernel, filters, dtype=np.float64, scale=0.5):
    kh, kw = kernel
    return {"type": "conv", "W": scale * rng.standard_normal((kh * kw * shape[2], filters)),
            "b": 0.3 * rng.standard_normal(filters), "shape": shape, "kernel": kernel}


def direct_conv(x, layer):
    """sigmoid of the valid cross-correlation, one filter and channel at a time (scipy)."""
    h, w, c = layer["shape"]
    kh, kw = layer["kernel"]
    filt = layer["W"].reshape(kh, kw, c, -1)
    imgs = x.reshape(len(x), h, w, c)
    out = np.stack([np.stack([sum(correlate2d(img[:, :, ch], filt[:, :, ch, f], "valid")
                                  for ch in range(c)) + layer["b"][f]
                              for f in range(filt.shape[3])], axis=-1) for img in imgs])
    return 1 / (1 + np.exp(-out.reshape(len(x), -1)))


def test_conv_layer_matches_direct_convolution(host, rng):
    layer = conv_layer(rng, (7, 6, 2), (3, 2), 4)
    x = rng.standard_normal((5, 7 * 6 * 2))
    steps = []
    a = propagate(x, [layer], None, steps)
    np.testing.assert_allclose(a, direct_conv(x, layer), rtol=1e-12, atol=1e-14)
    assert a.shape == (5, 5 * 5 * 4)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inference_chunks_match_training_pass(host, rng, monkeypatch, mode, dtype):
    """Inference runs each chunk of images through the convolution and the pool after
    it (the unpooled maps of all images are never held); training runs the batch
    through each layer in turn. The same bits."""
    layers = [conv_layer(rng, (8, 8, 1), (3, 3), 3),
              {"type": "pool", "size": 2, "mode": mode, "shape": (6, 6, 3)},
              {"W": rng.standard_normal((27, 4)), "b": rng.standard_normal(4)}]
    layers = [{k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in layer.items()}
              for layer in layers]
    x = rng.standard_normal((11, 64)).astype(dtype)
    whole = propagate(x, layers, 2.0, [])
    size = np.dtype(dtype).itemsize
    monkeypatch.setattr(network, "_IM2COL_BYTES", 36 * 9 * size * 3)  # 3 images per chunk
    assert network.conv_chunk(36, 9, size) == 3
    np.testing.assert_array_equal(propagate(x, layers, 2.0), whole)
    np.testing.assert_array_equal(propagate(x, layers[:2], 2.0),
                                  propagate(propagate(x, layers[:1], 2.0), layers[1:2], 2.0))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_network_backward_through_conv_and_pool(host, rng, mode, dropout):
    conv1 = conv_layer(rng, (9, 8, 1), (3, 3), 3)
    conv2 = conv_layer(rng, (3, 3, 3), (2, 2), 2)
    path = [conv1, {"type": "pool", "size": 2, "mode": mode, "shape": (7, 6, 3)}, conv2,
            {"W": rng.standard_normal((8, 3)), "b": rng.standard_normal(3)}]
    dense = [{"W": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}]
    out = finetune.new_layer(7, 3, rng, np.float64, 1.0)
    net = Network({"img": path, "v": dense}, ["img", "v"], [], out, clip=1.5)
    X = {"img": rng.standard_normal((6, 72)), "v": rng.standard_normal((6, 5))}
    y = rng.integers(0, 3, 6).astype(np.int64)

    def masks():
        return finetune.Dropout(dropout, 0.0, [3, 1, 4]) if dropout else None

    def loss():
        return ops.softmax_cross_entropy(net.forward(X, masks())["logits"], y, None)[0]

    cache = net.forward(X, masks())
    _, grad_logits, _ = ops.softmax_cross_entropy(cache["logits"], y, None)
    grads = net.backward(cache, grad_logits)
    params = net.parameters()
    assert len(grads) == len(params) == 2 * 5  # the pool has no parameters
    for g, p in zip(grads, params):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-8)


def test_pool_first_layer_needs_no_input_gradient(host, rng):
    path = [{"type": "pool", "size": 2, "mode": "avg", "shape": (4, 4, 1)},
            conv_layer(rng, (2, 2, 1), (2, 2), 2)]
    out = finetune.new_layer(2, 2, rng, np.float64, 1.0)
    net = Network({"img": path}, ["img"], [], out, clip=None)
    X = {"img": rng.standard_normal((3, 16))}
    cache = net.forward(X)
    _, g, _ = ops.softmax_cross_entropy(cache["logits"], np.array([0, 1, 1]), None)
    grads = net.backward(cache, g)
    assert [a.shape for a in grads] == [(4, 2), (2,), (2, 2), (2,)]
