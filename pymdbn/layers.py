"""Layer specifications of convolutional pathways: :class:`Conv` and :class:`Pool`.

A pathway of :class:`~pymdbn.DBN` or :class:`~pymdbn.MDBN` is a list of layer specs,
bottom first: an int is a dense RBM layer of that many hidden units, :class:`Conv` a
convolutional RBM layer (Lee et al. 2009) and :class:`Pool` a pooling layer, e.g.
``[Conv(32, 5), Pool(2), Conv(64, 5), Pool(2), 256]``. Convolutional layers must come
before the dense ones.

Layout. Images travel channels-last and flattened: a batch of ``n`` images of shape
``(H, W, C)`` is an ``(n, H * W * C)`` C-contiguous array whose column
``(y * W + x) * C + c`` holds pixel ``(y, x)`` of channel ``c``. A grey image (C = 1)
is therefore its usual row-major flattening, and a convolution's output is the GEMM of
the input's im2col matrix with the filters, with no transpose::

    cols = im2col(x, (H, W, C), (kh, kw))   # (n * Ho * Wo, kh * kw * C)
    z    = cols @ W + b                     # (n * Ho * Wo, F) == (n, Ho * Wo * F)

with ``Ho = H - kh + 1``, ``Wo = W - kw + 1`` (valid convolution, stride 1) and column
``(dy * kw + dx) * C + c`` of ``cols`` holding input pixel ``(oy + dy, ox + dx)``,
channel ``c``. The network's layer dicts (see :mod:`pymdbn.models.network`) are::

    {'type': 'conv', 'W': (kh * kw * C, F), 'b': (F,), 'shape': (H, W, C), 'kernel': (kh, kw)}
    {'type': 'pool', 'size': p, 'mode': 'max' or 'avg', 'shape': (H, W, C)}

where ``shape`` is the layer's input shape; a dict without ``'type'`` is a dense layer.
"""

from __future__ import annotations

import numbers

__all__ = ["Conv", "Pool", "conv_output_shape", "pool_output_shape", "layer_type", "layer_specs",
           "is_convolutional", "image_shape3", "input_shapes", "from_json"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Conv:
    """A convolutional RBM layer: ``filters`` shared ``kernel_size`` filters, valid
    convolution with stride 1, clipped-sigmoid hidden units.

    Parameters
    ----------
    filters : int
        Number of filters (hidden feature maps).
    kernel_size : int or (int, int)
        Filter height and width.
    **params
        Overrides of :class:`~pymdbn.ConvRBM` parameters for this layer's pretraining
        (e.g. ``learning_rate=0.01``, ``n_iter=5``).
    """

    def __init__(self, filters, kernel_size, **params):
        self.filters = _positive_int(filters, "Conv filters")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, numbers.Integral) \
            else tuple(kernel_size)
        if len(ks) != 2:
            raise ValueError(f"Conv kernel_size must be an int or a pair, got {kernel_size!r}")
        self.kernel_size = tuple(_positive_int(k, "Conv kernel_size") for k in ks)
        self.params = dict(params)

    def to_json(self):
        return {"type": "conv", "filters": self.filters, "kernel_size": list(self.kernel_size),
                "params": dict(self.params)}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        extra = "".join(f", {key}={value!r}" for key, value in sorted(self.params.items()))
        return f"Conv({self.filters}, {k}{extra})"

    def __eq__(self, other):
        return isinstance(other, Conv) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash((self.filters, self.kernel_size, tuple(sorted(self.params))))


class Pool:
    """Non-overlapping ``size`` x ``size`` pooling (the border that does not fill a
    window is dropped, as PyTorch's ``MaxPool2d`` does).

    Parameters
    ----------
    size : int, default=2
    mode : {'max', 'avg'}, default='max'
        LRP passes relevance through max-pooling to each window's first maximal input
        (winner takes all, as zennit's gradient does) and through average pooling in
        proportion to the inputs (zennit's ``Norm`` rule).
    """

    def __init__(self, size=2, mode="max"):
        self.size = _positive_int(size, "Pool size")
        if mode not in ("max", "avg"):
            raise ValueError(f"Pool mode must be 'max' or 'avg', got {mode!r}")
        self.mode = mode

    def to_json(self):
        return {"type": "pool", "size": self.size, "mode": self.mode}

    def __repr__(self):
        return f"Pool({self.size})" if self.mode == "max" else f"Pool({self.size}, {self.mode!r})"

    def __eq__(self, other):
        return isinstance(other, Pool) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash((self.size, self.mode))


def from_json(d):
    """The spec that :meth:`Conv.to_json` or :meth:`Pool.to_json` wrote."""
    if d.get("type") == "conv":
        return Conv(d["filters"], tuple(d["kernel_size"]), **d.get("params", {}))
    if d.get("type") == "pool":
        return Pool(d["size"], d["mode"])
    raise ValueError(f"not a layer spec: {d!r}")


def conv_output_shape(shape, kernel, filters):
    """``(Ho, Wo, F)`` of a valid stride-1 convolution of an ``(H, W, C)`` input."""
    h, w, _ = shape
    kh, kw = kernel
    if kh > h or kw > w:
        raise ValueError(f"a {kh}x{kw} filter does not fit a {h}x{w} input")
    return (h - kh + 1, w - kw + 1, filters)


def pool_output_shape(shape, size):
    """``(H // size, W // size, C)``."""
    h, w, c = shape
    if size > h or size > w:
        raise ValueError(f"a {size}x{size} pool does not fit a {h}x{w} input")
    return (h // size, w // size, c)


def layer_type(layer):
    """'dense', 'conv' or 'pool' for a network layer dict."""
    return layer.get("type", "dense")


def layer_specs(name, value, caller):
    """Pathway layer specs as a tuple of int, :class:`Conv` and :class:`Pool`.

    An int is one dense layer of that many units (scikit-learn's
    ``hidden_layer_sizes``); a sequence must be non-empty, with every convolutional
    and pooling layer before the first dense one.
    """
    from pymdbn._constraints import layer_sizes

    if isinstance(value, (Conv, Pool)):
        value = [value]
    if not isinstance(value, (tuple, list)) or not any(isinstance(v, (Conv, Pool))
                                                        for v in value):
        return layer_sizes(name, value, caller)
    specs, dense_seen = [], False
    for i, spec in enumerate(value):
        if isinstance(spec, (Conv, Pool)):
            if dense_seen:
                raise ValueError(f"{name}[{i}] is {spec!r} after a dense layer: convolutional "
                                 f"and pooling layers must come first")
            specs.append(spec)
        else:
            specs.append(layer_sizes(f"{name}[{i}]", spec, caller)[0])
            dense_seen = True
    return tuple(specs)


def is_convolutional(specs):
    """Whether a pathway's specs hold a :class:`Conv` or :class:`Pool`."""
    return any(isinstance(s, (Conv, Pool)) for s in specs)


def image_shape3(shape, what="image shape"):
    """``(H, W, C)`` from an image shape ``(H, W)`` or ``(H, W, C)``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"convolutional layers need images of shape (H, W) or (H, W, C); "
                         f"the {what} is {shape}")
    return shape


def input_shapes(specs, image_shape):
    """The input shape ``(H, W, C)`` of each conv or pool spec (None for dense ones),
    and the shape of the last one's output; a ValueError names a spec that does not fit."""
    shape, shapes = image_shape3(image_shape), []
    for i, spec in enumerate(specs):
        if isinstance(spec, Conv):
            shapes.append(shape)
            try:
                shape = conv_output_shape(shape, spec.kernel_size, spec.filters)
            except ValueError as exc:
                raise ValueError(f"layer {i} {spec!r}: {exc}") from None
        elif isinstance(spec, Pool):
            shapes.append(shape)
            try:
                shape = pool_output_shape(shape, spec.size)
            except ValueError as exc:
                raise ValueError(f"layer {i} {spec!r}: {exc}") from None
        else:
            shapes.append(None)
    return shapes, shape
