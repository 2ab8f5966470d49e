"""Feed-forward networks built from pretrained RBMs: the one forward pass of the package.

One structure serves every supervised model in the package: named *pathways* of
sigmoid layers (one per modality; a single unnamed one for a plain DBN), whose top
activations are concatenated in a fixed order into the *code*, followed by optional
*joint* sigmoid layers and a linear *output* layer whose logits feed a softmax. Each
layer is a dict ``{'W': (n_in, n_out), 'b': (n_out,)}`` and computes
``sigmoid(clip(x W + b))`` -- the same numbers as the RBM it came from
(``W = components_.T``), and the layout that :meth:`pymdbn.MDBN.to_dict` exposes.

:func:`propagate` is the sigmoid stack every model, the fine-tuning and the LRP engine
run; :class:`Network` composes it into the whole model. The arithmetic runs in the C++
kernels ``dense_forward`` and ``dense_backward``; their NumPy twins in
:mod:`pymdbn.backend.reference` define them.
"""

import contextlib

import numpy as np

from pymdbn import backend
from pymdbn.backend import ops
from pymdbn.layers import conv_output_shape, layer_type

__all__ = ["Network", "propagate", "layer_from_rbm", "conv_chunk", "layer_backward",
           "copy_layer"]

_PREDICT_ROWS = 4096  # rows per forward chunk at inference, bounding memory
_IM2COL_BYTES = 64 << 20  # im2col matrix per inference chunk: a few L3-sized GEMM panels


def propagate(x, layers, clip, steps=None, masks=None, keep_patches=True):
    """Mean-field activations through sigmoid layers: ``a = sigmoid(clip(x W + b))``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        C-contiguous, the layers' dtype.
    layers : list of dict
        ``{'W': (n_in, n_out), 'b': (n_out,)}``, bottom first; convolutional and
        pooling layers (:mod:`pymdbn.layers`) may come first.
    clip : float or None
        Pre-activations are clipped to [-clip, clip].
    steps : list or None
        When given, ``(x, z, a)`` (input, pre-activation, activation) of each layer is
        appended to it (backpropagation and LRP need them); a convolution records its
        im2col matrix as ``x`` and ``z`` of shape (n * Ho * Wo, F), a pooling layer
        ``(x, None, a)``.
    keep_patches : bool, default=True
        With ``steps``: record a convolution's im2col matrix as its ``x`` (what its
        weight gradient needs); False records its input instead (the matrix is kh * kw
        times the input, and LRP rebuilds it one layer at a time).
    masks : Dropout or None
        A dropout draw: the next layer sees the masked activation of a dense layer. Conv
        and pool outputs are not dropped: neighbouring units of a feature map carry
        nearly the same signal, so dropping single units is noise more than dropout
        (spatial dropout would drop whole maps), and a rate meant for dense layers
        (the presets' 0.5) would corrupt every map of a pathway.

    Returns
    -------
    ndarray
        The top activation (its masked form when ``masks`` drops units).

    Notes
    -----
    Batches of up to ``_PREDICT_ROWS`` rows (inference chunks) go through
    ``dense_forward`` and drop its pre-activation: it finishes each GEMM tile (bias,
    sigmoid) in the GEMM's own parallel region, where ``affine_sigmoid`` runs a second
    region over the whole output, and on a loaded 2-core machine every region can wait a
    scheduler tick for its second thread (1000 rows through the 4096-512, 512-256 and
    768-256 layers: 72 ms against 96-104 ms, load 2.5); one sample takes its GEMVs,
    which stream the weights once where a GEMM packs them first. Larger batches (the
    training set's codes) use ``affine_sigmoid``, which writes no pre-activation. The
    activations are the same bits either way, except one sample's (GEMV rounding),
    which are those of an explanation's forward pass.
    """
    pooled = False  # the last convolution also ran the pool layer after it
    for i, layer in enumerate(layers):
        if pooled:
            pooled = False
            continue
        kind = layer_type(layer)
        if kind == "pool":
            a = ops.pool_forward(x, tuple(layer["shape"]), layer["size"], layer["mode"])
            if steps is not None:
                steps.append((x, None, a))
        elif kind == "conv":
            after = layers[i + 1] if i + 1 < len(layers) else None
            pooled = steps is None and after is not None and layer_type(after) == "pool"
            a = _conv_forward(x, layer, clip, steps, keep_patches, after if pooled else None)
        elif steps is None and len(x) > _PREDICT_ROWS:
            a = ops.affine_sigmoid(x, layer["W"], layer["b"], clip, False)
        elif steps is None:
            a = ops.dense_forward(x, layer["W"], layer["b"], clip, "sigmoid")[1]
        else:
            z, a = ops.dense_forward(x, layer["W"], layer["b"], clip, "sigmoid")
            steps.append((x, z, a))
        # Dropout drops dense units only (see ``masks`` above).
        x = a if masks is None or kind != "dense" else masks.apply(a)
    return x


def conv_chunk(n_positions, n_cols, itemsize):
    """Images per im2col chunk at inference: the im2col matrix stays near
    ``_IM2COL_BYTES`` (all images at once would need n * Ho * Wo * kh * kw * C values)."""
    return max(1, _IM2COL_BYTES // max(1, n_positions * n_cols * itemsize))


def _conv_forward(x, layer, clip, steps, keep_patches=True, pool=None):
    """A convolution as im2col then the dense kernel: rows are (image, position), so
    the GEMM output (n * Ho * Wo, F) is the channels-last feature map with no copy.
    At inference, ``pool`` (the pool layer after it) pools each chunk of images as it
    is computed: the whole unpooled maps of a training set at 128x128 through 32 5x5
    filters would be 2 MB per image (4.5 GB for 2298 slices)."""
    shape, kernel, w, b = tuple(layer["shape"]), tuple(layer["kernel"]), layer["W"], layer["b"]
    n = len(x)
    if steps is not None:
        cols = ops.im2col(x, shape, kernel)
        z, a = ops.dense_forward(cols, w, b, clip, "sigmoid")
        a = a.reshape(n, -1)
        steps.append((cols if keep_patches else x, z, a))
        return a
    ho, wo, _ = conv_output_shape(shape, kernel, w.shape[1])
    step = conv_chunk(ho * wo, w.shape[0], x.dtype.itemsize)
    parts = []
    # Several chunks: each im2col matrix (~_IM2COL_BYTES) reuses the last one's buffer.
    with backend.array_pool() if n > step else contextlib.nullcontext():
        for s in range(0, n, step):
            cols = ops.im2col(x[s:s + step], shape, kernel)
            a = ops.dense_forward(cols, w, b, clip, "sigmoid")[1]
            a = a.reshape(len(cols) // (ho * wo), -1)
            if pool is not None:
                a = ops.pool_forward(a, tuple(pool["shape"]), pool["size"], pool["mode"])
            parts.append(a)
    return parts[0] if len(parts) == 1 else backend.namespace(parts[0]).concatenate(parts)


def copy_layer(layer):
    """A layer dict with its arrays copied (to host NumPy when on a device) and its
    shape metadata as plain tuples."""
    return {k: (tuple(v) if k in ("shape", "kernel") else
                backend.to_device(v, "cpu").copy() if k in ("W", "b") else v)
            for k, v in layer.items()}


def layer_from_rbm(rbm):
    """The recognition layer of a fitted RBM: ``W = components_.T``, ``b = intercept_hidden_``."""
    return {"W": np.ascontiguousarray(rbm.components_.T), "b": rbm.intercept_hidden_.copy()}


class Network:
    """Pathways -> concatenation -> joint sigmoid layers -> linear output.

    Parameters
    ----------
    pathways : dict of str to list of dict
        Modality name -> layers ``{'W', 'b'}``, bottom first. A pathway may have no
        layers; its input is then its code (used to train a softmax on frozen codes).
    order : sequence of str
        The order in which pathway tops are concatenated.
    joint : list of dict
        Sigmoid layers on the concatenated code, bottom first.
    output : dict
        The linear output layer, ``W`` of shape (n_code, n_classes).
    clip : float or None
        Pre-activations of the sigmoid layers are clipped to [-clip, clip].

    Notes
    -----
    The layer dicts are held by reference: training updates the arrays in place, so
    an estimator that owns them sees every step.
    """

    def __init__(self, pathways, order, joint, output, clip):
        self.pathways = pathways
        self.order = list(order)
        self.joint = joint
        self.output = output
        self.clip = clip

    def parameters(self, output_only=False):
        """Trainable arrays, pathways in ``order`` then joint then output, W before b."""
        layers = [] if output_only else (
            [layer for name in self.order for layer in self.pathways[name]] + self.joint)
        return [p for layer in layers + [self.output] if "W" in layer
                for p in (layer["W"], layer["b"])]

    def codes(self, X, steps=None, masks=None):
        """Top activation of each pathway; ``steps`` (a dict) collects (x, z, a) per layer;
        ``masks`` (a :class:`~pymdbn.models.finetune.Dropout` draw) drops inputs and hidden units."""
        tops = {}
        for name in self.order:
            record = None if steps is None else steps.setdefault(name, [])
            x = X[name] if masks is None else masks.apply(X[name], inputs=True)
            tops[name] = propagate(x, self.pathways[name], self.clip, record, masks)
        return tops

    def fuse(self, tops):
        """Concatenate pathway tops in ``order``."""
        parts = [tops[name] for name in self.order]
        return parts[0] if len(parts) == 1 else backend.namespace(parts[0]).concatenate(parts,
                                                                                     axis=1)

    def head(self, fused, steps=None, masks=None):
        """Joint layers then output logits from a fused code; returns (code, logits)."""
        code = propagate(fused, self.joint, self.clip, steps, masks)
        return code, ops.affine(code, self.output["W"], self.output["b"], False)

    def forward(self, X, masks=None):
        """Full forward pass keeping every layer's input, pre-activation and activation.

        ``masks``, a :class:`~pymdbn.models.finetune.Dropout` draw, drops units for training; it records the
        masks it applied, which :meth:`backward` then uses.

        Returns
        -------
        cache : dict
            ``pathways`` (name -> list of (x, z, a)), ``widths`` (width of each
            pathway top, in ``order``), ``fused`` (concatenated pathway tops),
            ``joint`` (list of (x, z, a)), ``code`` (input of the output layer) and
            ``logits``.
        """
        cache = {"pathways": {}, "joint": [], "masks": masks}
        tops = self.codes(X, cache["pathways"], masks)
        cache["widths"] = [tops[name].shape[1] for name in self.order]
        cache["fused"] = self.fuse(tops)
        cache["code"], cache["logits"] = self.head(cache["fused"], cache["joint"], masks)
        return cache

    def code_and_logits(self, X):
        """The code entering the output layer and the logits, computed in chunks of rows
        (inference only, nothing kept)."""
        n = len(X[self.order[0]])
        parts = [self.head(self.fuse(self.codes({k: X[k][s:s + _PREDICT_ROWS] for k in X})))
                 for s in range(0, n, _PREDICT_ROWS)]
        if len(parts) == 1:
            return parts[0]
        xp = backend.namespace(parts[0][0])
        return tuple(xp.concatenate([p[i] for p in parts]) for i in (0, 1))

    def logits(self, X):
        """Logits, computed in chunks of rows (inference only, nothing kept)."""
        return self.code_and_logits(X)[1]

    def encode(self, X):
        """The code entering the output layer (after the joint layers), in chunks."""
        return self.code_and_logits(X)[0]

    def backward(self, cache, grad_logits, output_only=False):
        """Gradients of the loss w.r.t. :meth:`parameters`, from d loss / d logits."""
        lower = [layer for name in self.order for layer in self.pathways[name]] + self.joint
        need = not output_only and bool(lower)
        masks = cache.get("masks")
        # Gradient w.r.t. a layer's activation: through its dropout mask, if any.
        undrop = (lambda g, a: g) if masks is None else masks.backward
        g, gw, gb = ops.dense_backward(grad_logits, cache["logits"], cache["logits"],
                                      cache["code"], self.output["W"], None, "linear", need)
        grads = [gw, gb]
        if not need:
            return grads
        has_pathway_layers = any(self.pathways[name] for name in self.order)
        for i in range(len(self.joint) - 1, -1, -1):
            x, z, a = cache["joint"][i]
            need_x = i > 0 or has_pathway_layers
            g, gw, gb = ops.dense_backward(undrop(g, a), z, a, x, self.joint[i]["W"],
                                             self.clip, "sigmoid", need_x)
            grads = [gw, gb] + grads
        pathway_grads, start = [], 0
        xp = backend.namespace(g)
        for name, width in zip(self.order, cache["widths"]):
            steps = cache["pathways"][name]
            gp = xp.ascontiguousarray(g[:, start:start + width]) if steps else None
            start += width
            local = []
            for i in range(len(steps) - 1, -1, -1):
                gp, grads_i = layer_backward(self.pathways[name][i], steps[i],
                                             undrop(gp, steps[i][2]), self.clip, i > 0)
                local = grads_i + local
            pathway_grads += local
        return pathway_grads + grads


def layer_backward(layer, step, grad_a, clip, need_x):
    """Backpropagation through one pathway layer from its recorded ``step`` (see
    :func:`propagate`): (gradient w.r.t. its input or None, [grad W, grad b] or [])."""
    x, z, a = step
    kind = layer_type(layer)
    if kind == "pool":
        gx = (ops.pool_backward(grad_a, x, tuple(layer["shape"]), layer["size"], layer["mode"])
              if need_x else None)
        return gx, []
    if kind == "conv":
        n, f = len(grad_a), layer["W"].shape[1]
        gcols, gw, gb = ops.dense_backward(grad_a.reshape(-1, f), z, a.reshape(-1, f), x,
                                           layer["W"], clip, "sigmoid", need_x)
        gx = ops.col2im(gcols, tuple(layer["shape"]), tuple(layer["kernel"])) if need_x else None
        return (None if gx is None else gx.reshape(n, -1)), [gw, gb]
    gx, gw, gb = ops.dense_backward(grad_a, z, a, x, layer["W"], clip, "sigmoid", need_x)
    return gx, [gw, gb]
