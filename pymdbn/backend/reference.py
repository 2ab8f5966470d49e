"""Readable NumPy twins of the C++ kernels.

Each function here computes what the kernel of the same name in ``pymdbn._core``
computes, in plain NumPy, consuming the same counter-based random numbers. They are
the specification the tests hold the kernels to, and a fallback to read when a result
looks wrong. They favour clarity over speed.
"""

import numpy as np

from pymdbn._matmul import matmul

__all__ = [
    "philox4x32_10",
    "random_bits",
    "uniform",
    "standard_normal",
    "sigmoid",
    "clipped_sigmoid",
    "affine",
    "affine_sigmoid",
    "sample_bernoulli",
    "sample_gaussian",
    "gibbs_hidden",
    "gibbs_visible",
    "cd_gradient",
    "cd_apply",
    "cd_epoch",
    "free_energy",
    "ais_log_weights",
    "dense_forward",
    "dense_backward",
    "softmax_cross_entropy",
    "sgd_momentum_update",
    "adam_update",
    "lrp_dense",
    "relevance_totals",
    "standardize",
    "im2col",
    "col2im",
    "pool_forward",
    "pool_backward",
]

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Philox4x32 with 10 rounds (Salmon et al., SC'11).

    Parameters
    ----------
    counter : ndarray of uint32, shape (..., 4)
    key : ndarray of uint32, shape (..., 2)

    Returns
    -------
    ndarray of uint32, shape (..., 4)
    """
    c = [np.asarray(counter[..., i], dtype=np.uint64) for i in range(4)]
    k0 = np.asarray(key[..., 0], dtype=np.uint32).copy()
    k1 = np.asarray(key[..., 1], dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * c[0]
            p1 = _M1 * c[2]
            hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
            hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
            c = [
                hi1 ^ c[1] ^ k0.astype(np.uint64),
                lo1,
                hi0 ^ c[3] ^ k1.astype(np.uint64),
                lo0,
            ]
            k0 = k0 + _W0
            k1 = k1 + _W1
    return np.stack(c, axis=-1).astype(np.uint32)


def _blocks(n_blocks, rows, seed, stream, row_offset=0):
    """Philox output for blocks (b, row_offset + row, stream) -> shape (rows, n_blocks, 4);
    the row counter is taken mod 2**32."""
    b, r = np.meshgrid(np.arange(n_blocks), np.arange(rows, dtype=np.uint64))
    counter = np.stack(
        [
            b.astype(np.uint32),
            ((r + np.uint64(row_offset)) & _MASK32).astype(np.uint32),
            np.full(b.shape, stream & 0xFFFFFFFF, dtype=np.uint32),
            np.full(b.shape, stream >> 32, dtype=np.uint32),
        ],
        axis=-1,
    )
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
    return philox4x32_10(counter, np.broadcast_to(key, counter.shape[:-1] + (2,)))


def random_bits(rows, cols, seed, stream, row_offset=0):
    """The 32-bit words of a Bernoulli draw: word ``col % 4`` of block ``col // 4``.

    Row ``i`` uses the row counter ``row_offset + i``: rows [r0, r1) of a batch drawn
    with ``row_offset=r0`` (on another process, say) equal the whole batch's rows."""
    words = _blocks((cols + 3) // 4, rows, seed, stream, row_offset).reshape(rows, -1)
    return words[:, :cols]


def uniform(rows, cols, seed, stream, row_offset=0):
    """Uniforms in [0, 1) (float64, 32 random bits) used by ``sample_bernoulli``."""
    return random_bits(rows, cols, seed, stream, row_offset).astype(np.float64) * 2.0**-32


def standard_normal(rows, cols, seed, stream, row_offset=0):
    """Normals used by ``sample_gaussian``: Box-Muller on words (0, 1) and (2, 3) of
    each block, cosine then sine, so one block gives four consecutive columns."""
    words = _blocks((cols + 3) // 4, rows, seed, stream, row_offset).astype(np.float64)
    u1 = (words[..., 0::2] + 1.0) * 2.0**-32  # words 0 and 2
    u2 = words[..., 1::2] * 2.0**-32  # words 1 and 3
    r, t = np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2
    z = np.stack([r * np.cos(t), r * np.sin(t)], axis=-1)  # (rows, blocks, 2, 2)
    return z.reshape(rows, -1)[:, :cols]


def sigmoid(x):
    """Logistic function."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def clipped_sigmoid(x, clip=None):
    """sigma(clip(x, -c, c)); ``clip=None`` is the plain sigmoid."""
    if clip is not None:
        x = np.clip(x, -clip, clip)
    return sigmoid(x)


def affine(x, w, b, trans_w=False):
    """x op(w) + b with op(w) = w.T when ``trans_w``."""
    return matmul(x, w.T if trans_w else w) + b


def affine_sigmoid(x, w, b, clip=None, trans_w=False):
    """sigma(clip(x op(w) + b))."""
    return clipped_sigmoid(affine(x, w, b, trans_w), clip).astype(x.dtype, copy=False)


def sample_bernoulli(p, seed, stream, row_offset=0):
    """1 where the uniform draw is below p, else 0."""
    u = uniform(p.shape[0], p.shape[1], seed, stream, row_offset)
    return (u < p.astype(np.float64)).astype(p.dtype)


def sample_gaussian(mean, seed, stream, row_offset=0):
    """mean + N(0, 1)."""
    z = standard_normal(mean.shape[0], mean.shape[1], seed, stream, row_offset)
    return mean + z.astype(mean.dtype)


def gibbs_hidden(v, w, b_hidden, clip, seed, stream, row_offset=0):
    """v -> h for an RBM with weights w of shape (n_hidden, n_visible)."""
    prob = affine_sigmoid(v, w, b_hidden, clip, trans_w=True)
    return prob, sample_bernoulli(prob, seed, stream, row_offset)


def gibbs_visible(h, w, b_visible, visible, clip, seed, stream, row_offset=0):
    """h -> v: Bernoulli units use the clipped sigmoid, Gaussian units are linear."""
    if visible == "gaussian":
        mean = affine(h, w, b_visible)
        return mean, sample_gaussian(mean, seed, stream, row_offset)
    mean = affine_sigmoid(h, w, b_visible, clip)
    return mean, sample_bernoulli(mean, seed, stream, row_offset)


def cd_gradient(v0, w, b_visible, b_hidden, chain, k, persistent, visible, clip, seed, step,
                row_offset=0):
    """The gradient step of CD-k / PCD-k on one mini-batch ``v0`` of b rows.

    Runs the positive phase and k Gibbs steps, drawing from streams ``step * 256 + j``
    with row counters ``row_offset + i``, and returns ``(h, v, sq_err)``: the gradient
    in factored form, ``h = [ph0; -phn]`` (2b, n_hidden) and ``v = [v0; vs]``
    (2b, n_visible), so that ``h.T @ v`` is b times the weight gradient, and the summed
    squared reconstruction error. For PCD, ``chain[:b]`` (hidden states) is read and
    updated in place.

    Factored, not dense, for two reasons: :func:`cd_apply` then performs exactly the
    fused epoch's update (the kernel's one GEMM with beta = momentum; a dense gradient
    added afterwards rounds differently), and data-parallel processes all-gather their
    rows of h and v, b (n_visible + n_hidden) numbers instead of n_visible n_hidden,
    after which every process applies the same update bit for bit. Rows [r0, r1) of a
    batch computed with ``row_offset=r0`` draw the numbers the whole batch draws there.

    The gradient is the usual CD estimate (Hinton 2002): positive statistics from
    P(h|v0), negative statistics from the sampled visible states and the hidden
    probabilities at the end of the chain.
    """
    b = len(v0)
    base = step * 256
    sq_err = 0.0
    ph0, h0 = gibbs_hidden(v0, w, b_hidden, clip, seed, base, row_offset)
    if persistent:
        if visible == "gaussian":
            recon = affine(h0, w, b_visible)
        else:
            recon = affine_sigmoid(h0, w, b_visible, clip)
        sq_err += float(np.sum((v0.astype(np.float64) - recon) ** 2))
        hc = chain[:b]
    else:
        hc = h0
    for t in range(k):
        vm, vs = gibbs_visible(hc, w, b_visible, visible, clip, seed, base + 1 + 2 * t,
                               row_offset)
        if t == 0 and not persistent:
            sq_err += float(np.sum((v0.astype(np.float64) - vm) ** 2))
        phn = affine_sigmoid(vs, w, b_hidden, clip, trans_w=True)
        if t + 1 < k or persistent:
            hc = sample_bernoulli(phn, seed, base + 2 + 2 * t, row_offset)
    if persistent:
        chain[:b] = hc
    return np.concatenate([ph0, -phn]), np.concatenate([v0, vs]), sq_err


def cd_apply(h, v, state, *, learning_rate, momentum, weight_decay, sparsity_target,
             sparsity_cost):
    """The apply step for :func:`cd_gradient`'s factored gradient; updates ``state``.

    ``state`` holds ``w`` (n_hidden, n_visible), ``b_visible``, ``b_hidden`` and their
    velocities ``v_w``, ``v_b_visible``, ``v_b_hidden``. Momentum SGD with weight decay;
    the sparsity term (Lee et al. 2008; Hinton 2010, sec. 11) pulls the mean hidden
    probability of the batch towards the target.
    """
    s = state
    dt = h.dtype.type
    b = len(h) // 2
    ph0, phn, v0, vs = h[:b], -h[b:], v[:b], v[b:]
    lr, mom = dt(learning_rate), dt(momentum)
    qhat = ph0.mean(axis=0)
    vbar = v0.mean(axis=0)
    pull = dt(sparsity_cost) * (dt(sparsity_target) - qhat) if sparsity_cost > 0 else 0 * qhat
    grad_w = (matmul(ph0.T, v0) - matmul(phn.T, vs)) / dt(b)
    s["v_w"][...] = (mom * s["v_w"] + lr * grad_w + lr * pull[:, None] * vbar[None, :]
                     - lr * dt(weight_decay) * s["w"])
    s["v_b_visible"][...] = mom * s["v_b_visible"] + lr * (vbar - vs.mean(axis=0))
    s["v_b_hidden"][...] = mom * s["v_b_hidden"] + lr * (qhat - phn.mean(axis=0) + pull)
    s["w"] += s["v_w"]
    s["b_visible"] += s["v_b_visible"]
    s["b_hidden"] += s["v_b_hidden"]


def cd_epoch(x, order, batch_size, state, *, k, persistent, visible, clip, learning_rate,
             momentum, weight_decay, sparsity_target, sparsity_cost, seed, first_step):
    """One epoch of CD-k / PCD-k; updates ``state`` in place.

    ``state`` holds what :func:`cd_apply` updates and, for PCD, ``chain``
    (batch_size, n_hidden) of hidden states. Each mini-batch ``s`` (0-based) is
    :func:`cd_gradient` at step ``first_step + s`` followed by :func:`cd_apply`.
    Returns (sum of squared reconstruction errors, number of mini-batches).
    """
    s = state
    sq_err, n_batches = 0.0, 0
    for step, start in enumerate(range(0, len(order), batch_size)):
        v0 = x[order[start:start + batch_size]]
        h, v, sq = cd_gradient(v0, s["w"], s["b_visible"], s["b_hidden"], s.get("chain"), k,
                               persistent, visible, clip, seed, first_step + step)
        sq_err += sq
        cd_apply(h, v, s, learning_rate=learning_rate, momentum=momentum,
                 weight_decay=weight_decay, sparsity_target=sparsity_target,
                 sparsity_cost=sparsity_cost)
        n_batches += 1
    return sq_err, n_batches


def softplus(x):
    """log(1 + exp(x))."""
    return np.logaddexp(0, x)


def free_energy(v, w, b_visible, b_hidden, visible="bernoulli"):
    """F(v) with P(v) = exp(-F(v)) / Z; unit-variance Gaussian units for 'gaussian'."""
    hidden = softplus(affine(v, w, b_hidden, trans_w=True)).sum(axis=1)
    if visible == "gaussian":
        return 0.5 * ((v - b_visible) ** 2).sum(axis=1) - hidden
    return -matmul(v, b_visible) - hidden


def ais_log_weights(w, b_visible, b_hidden, base_b_visible, betas, n_runs, seed):
    """Log importance weights of AIS runs (Salakhutdinov & Murray, ICML 2008).

    The chain anneals from the base-rate model (independent visible units with biases
    ``base_b_visible``, hidden units uniform) at beta = 0 to the RBM at beta = 1. Then
    log Z ~= log Z_base + log mean exp(weights), log Z_base = sum softplus(a) + n_h log 2.
    """
    m = n_runs
    p = np.broadcast_to(sigmoid(base_b_visible), (m, len(base_b_visible))).astype(w.dtype)
    v = sample_bernoulli(p, seed, 0)
    logw = np.zeros(m)

    def log_p(pre, dot_base, dot_model, beta):
        return ((1 - beta) * dot_base + beta * dot_model
                + softplus((beta * pre.astype(np.float64)).astype(w.dtype)).sum(axis=1))

    for k in range(1, len(betas)):
        beta, prev = betas[k], betas[k - 1]
        pre = affine(v, w, b_hidden, trans_w=True)
        v64 = v.astype(np.float64)
        dot_base, dot_model = matmul(v64, base_b_visible), matmul(v64, b_visible)
        logw += log_p(pre, dot_base, dot_model, beta) - log_p(pre, dot_base, dot_model, prev)
        if k + 1 == len(betas):
            break
        h = sample_bernoulli(sigmoid(w.dtype.type(beta) * pre), seed, 2 * k - 1)
        pv = sigmoid(w.dtype.type(1 - beta) * base_b_visible
                     + w.dtype.type(beta) * affine(h, w, b_visible))
        v = sample_bernoulli(pv, seed, 2 * k)
    return logw


# --- dense networks (fine-tuning) ------------------------------------------------------
# Layers store weights as (n_in, n_out). A 'sigmoid' layer computes
# a = sigma(clip(z, -c, c)), z = x w + b; a 'linear' layer a = z.


def dense_forward(x, w, b, clip=None, activation="sigmoid"):
    """Returns (z, a) of one dense layer."""
    z = matmul(x, w) + b
    if activation == "linear":
        return z, z
    return z, clipped_sigmoid(z, clip).astype(x.dtype, copy=False)


def dense_backward(grad_a, z, a, x, w, clip=None, activation="sigmoid", need_grad_x=True):
    """Backpropagation through one dense layer.

    The clipped sigmoid has derivative a (1 - a) where |z| < c and 0 where clipped.
    Returns (grad_x or None, grad_w, grad_b).
    """
    if activation == "linear":
        dz = grad_a
    else:
        dz = grad_a * a * (1 - a)
        if clip is not None:
            dz = dz * (np.abs(z) < clip)
    grad_w = matmul(x.T, dz)
    grad_b = dz.sum(axis=0)
    grad_x = matmul(dz, w.T) if need_grad_x else None
    return grad_x, grad_w, grad_b


def softmax_cross_entropy(logits, y, sample_weight=None):
    """Weighted mean cross-entropy of softmax(logits) against integer labels y.

    Returns (loss, grad_logits, proba); the gradient is of the weighted mean loss.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    proba = np.exp(log_p)
    weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = weight.sum()
    rows = np.arange(len(y))
    loss = float(-(weight * log_p[rows, y]).sum() / total)
    grad = proba.copy()
    grad[rows, y] -= 1
    grad *= (weight / total)[:, None].astype(logits.dtype)
    return loss, grad.astype(logits.dtype, copy=False), proba.astype(logits.dtype, copy=False)


def sgd_momentum_update(param, grad, velocity, learning_rate, momentum, weight_decay=0.0):
    """In place: v = momentum v - lr (grad + wd param); param += v."""
    velocity *= momentum
    velocity -= learning_rate * (grad + weight_decay * param)
    param += velocity


def adam_update(param, grad, m, v, learning_rate, beta1, beta2, epsilon, t, weight_decay=0.0):
    """In place Adam step t >= 1 (Kingma & Ba 2015), with L2 weight decay in the gradient."""
    g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    param -= learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)


# --- layer-wise relevance propagation --------------------------------------------------
# Rules as defined by zennit (Anders et al. 2021). x: (B, n_in) layer input,
# w: (n_in, n_out), relevance: (B, n_out) at the layer's output.


def stabilize(z, epsilon):
    """z + epsilon * sign(z) with sign(0) = +1, so nothing divides 0 by 0."""
    return z + np.where(z >= 0, epsilon, -epsilon).astype(z.dtype)


def lrp_dense(x, w, b, relevance, rule="epsilon", *, epsilon=1e-6, gamma=0.25, alpha=1.0,
              beta=0.0, low=None, high=None, use_bias=True, z=None):
    """Relevance at the input of one dense layer, z = x w + b.

    Rules: 'epsilon' (the method's eq. 3), 'zplus', 'alpha_beta', 'gamma', 'zbox'
    (bounded input, per-feature ``low``/``high``), 'flat' and 'wsquare'. Biases enter
    the denominators when ``use_bias``; 'flat' and 'wsquare' ignore them. ``z``, the
    layer's pre-activation x w + b from the forward pass, saves the epsilon rule a GEMM.
    """
    bias = b if use_bias else np.zeros_like(b)
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    bp, bn = np.maximum(bias, 0), np.minimum(bias, 0)
    if rule == "epsilon":
        zz = matmul(x, w) + bias if z is None else (z if use_bias else z - b)
        s = relevance / stabilize(zz, epsilon)
        return x * matmul(s, w.T)
    if rule == "gamma":
        wg, bg = w + gamma * wp, bias + gamma * bp
        s = relevance / stabilize(matmul(x, wg) + bg, epsilon)
        return x * matmul(s, wg.T)
    if rule in ("zplus", "alpha_beta"):
        if rule == "zplus":
            alpha, beta = 1.0, 0.0
        xp, xn = np.maximum(x, 0), np.minimum(x, 0)
        # Positive contributions: x+ w+ and x- w-; negative ones: x+ w- and x- w+.
        s_pos = relevance / stabilize(matmul(xp, wp) + matmul(xn, wn) + bp, epsilon)
        r_pos = xp * matmul(s_pos, wp.T) + xn * matmul(s_pos, wn.T)
        if beta == 0:
            return alpha * r_pos
        s_neg = relevance / stabilize(matmul(xp, wn) + matmul(xn, wp) + bn, epsilon)
        r_neg = xp * matmul(s_neg, wn.T) + xn * matmul(s_neg, wp.T)
        return alpha * r_pos - beta * r_neg
    if rule == "zbox":
        low = np.broadcast_to(np.asarray(low, x.dtype), (x.shape[1],))
        high = np.broadcast_to(np.asarray(high, x.dtype), (x.shape[1],))
        s = relevance / stabilize(matmul(x, w) - matmul(low, wp) - matmul(high, wn) + bias,
                                  epsilon)
        return x * matmul(s, w.T) - low * matmul(s, wp.T) - high * matmul(s, wn.T)
    if rule == "flat":
        return np.repeat(relevance.sum(axis=1, keepdims=True) / x.shape[1], x.shape[1], axis=1)
    if rule == "wsquare":
        w2 = w * w
        return matmul(relevance, (w2 / stabilize(w2.sum(axis=0), epsilon)).T)
    raise ValueError(f"unknown LRP rule {rule!r}")


def relevance_totals(r):
    """Each row's relevance sum and absolute sum in float64, shape (N, 2): what
    ``lrp_dense(..., totals=True)`` returns beside the relevance."""
    r = np.asarray(r, dtype=np.float64)
    return np.stack([r.sum(axis=1), np.abs(r).sum(axis=1)], axis=1)


def standardize(x, mean, scale, dtype, per_row=False):
    """``(x - mean) / scale`` flattened to (N, D), every operation in ``dtype``, and
    whether every result is finite: the twin of ``_core.standardize``. With
    ``per_row`` each row is first standardised by its own mean and population standard
    deviation, computed in float64 (1 where not finite or not above 1e-7 times the mean's
    magnitude: a constant row) and rounded to ``dtype``."""
    x = np.asarray(x).reshape(len(x), -1)
    xt = x.astype(dtype)
    if per_row:
        x64 = x.astype(np.float64)
        m = x64.mean(axis=1, keepdims=True)
        sd = np.sqrt(((x64 - m) ** 2).mean(axis=1, keepdims=True))
        sd = np.where((sd > 1e-7 * np.abs(m)) & (sd > 0) & np.isfinite(sd), sd, 1.0)
        xt = (xt - m.astype(dtype)) / sd.astype(dtype)
    out = (xt - np.asarray(mean, dtype)) / np.asarray(scale, dtype)
    return out, bool(np.isfinite(out).all())


# Convolutional pathways (pymdbn.layers): images are channels-last and flattened, an
# (n, H * W * C) array whose column (y * W + x) * C + c holds pixel (y, x), channel c.


def _conv_dims(shape, kernel):
    """Checked (H, W, C) and (kh, kw) of an im2col/col2im call, and (Ho, Wo)."""
    shape, kernel = tuple(shape), tuple(kernel)
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be three positive ints (H, W, C), got {shape}")
    if len(kernel) != 2 or any(int(k) < 1 for k in kernel):
        raise ValueError(f"kernel must be two positive ints (kh, kw), got {kernel}")
    (h, w, c), (kh, kw) = map(int, shape), map(int, kernel)
    if kh > h or kw > w:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} image")
    return h, w, c, kh, kw, h - kh + 1, w - kw + 1


def _pool_dims(shape, size, mode):
    """Checked (H, W, C), size and (Ho, Wo) of a pool_forward/pool_backward call."""
    shape = tuple(shape)
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be three positive ints (H, W, C), got {shape}")
    h, w, c = map(int, shape)
    if int(size) < 1:
        raise ValueError(f"pool size must be >= 1, got {size}")
    p = int(size)
    if p > h or p > w:
        raise ValueError(f"a {p}x{p} pool does not fit a {h}x{w} image")
    if mode not in ("max", "avg"):
        raise ValueError(f"pool mode must be 'max' or 'avg', got {mode!r}")
    return h, w, c, p, h // p, w // p


def _images(x, h, w, c):
    """``x`` (n, H * W * C) as an (n, H, W, C) view, its width checked."""
    if np.ndim(x) != 2:
        raise ValueError(f"x: expected a 2-d array (n, H*W*C), got shape {np.shape(x)}")
    if x.shape[1] != h * w * c:
        raise ValueError(f"x has {x.shape[1]} columns, expected H*W*C = {h * w * c} for "
                         f"shape ({h}, {w}, {c})")
    return x.reshape(len(x), h, w, c)


def im2col(x, shape, kernel):
    """The patch matrix of a valid, stride-1 convolution.

    Parameters
    ----------
    x : ndarray of shape (n, H * W * C)
        Channels-last flattened images.
    shape : tuple (H, W, C)
    kernel : tuple (kh, kw)

    Returns
    -------
    cols : ndarray of shape (n * Ho * Wo, kh * kw * C), ``x.dtype``
        Row ``(i * Ho + oy) * Wo + ox`` is the patch at output pixel (oy, ox) of image i;
        column ``(dy * kw + dx) * C + c`` holds input pixel (oy + dy, ox + dx), channel c
        (Ho = H - kh + 1, Wo = W - kw + 1). ``cols @ W`` is then the convolution with
        filters ``W`` of shape (kh * kw * C, F).
    """
    h, w, c, kh, kw, ho, wo = _conv_dims(shape, kernel)
    img = _images(x, h, w, c)
    cols = np.empty((len(img), ho, wo, kh, kw, c), dtype=x.dtype)
    for dy in range(kh):
        for dx in range(kw):
            cols[:, :, :, dy, dx, :] = img[:, dy:dy + ho, dx:dx + wo, :]
    return cols.reshape(len(img) * ho * wo, kh * kw * c)


def col2im(cols, shape, kernel):
    """The adjoint of :func:`im2col`: each patch entry added back to the pixel it copied.

    Parameters
    ----------
    cols : ndarray of shape (n * Ho * Wo, kh * kw * C)
    shape : tuple (H, W, C)
    kernel : tuple (kh, kw)

    Returns
    -------
    x : ndarray of shape (n, H * W * C), ``cols.dtype``
        Pixel (y, x), channel c, is the sum over (dy, dx), ascending dy then dx, of the
        entries of ``cols`` that copied it (the kernels sum in the same order, so they
        match bit for bit). With ``cols`` the gradient of a convolution's patch matrix,
        this is the gradient of its input.
    """
    h, w, c, kh, kw, ho, wo = _conv_dims(shape, kernel)
    if np.ndim(cols) != 2:
        raise ValueError(f"cols: expected a 2-d array, got shape {np.shape(cols)}")
    if cols.shape[0] % (ho * wo):
        raise ValueError(f"cols has {cols.shape[0]} rows, not a multiple of Ho*Wo = "
                         f"{ho * wo}")
    if cols.shape[1] != kh * kw * c:
        raise ValueError(f"cols has {cols.shape[1]} columns, expected kh*kw*C = "
                         f"{kh * kw * c}")
    n = cols.shape[0] // (ho * wo)
    patches = cols.reshape(n, ho, wo, kh, kw, c)
    img = np.zeros((n, h, w, c), dtype=cols.dtype)
    for dy in range(kh):
        for dx in range(kw):
            img[:, dy:dy + ho, dx:dx + wo, :] += patches[:, :, :, dy, dx, :]
    return img.reshape(n, h * w * c)


def _windows(img, p, ho, wo):
    """The (dy, dx) views of non-overlapping p x p windows, row-major: each
    (n, Ho, Wo, C), holding element (dy, dx) of every window."""
    return [img[:, dy:ho * p:p, dx:wo * p:p, :] for dy in range(p) for dx in range(p)]


def pool_forward(x, shape, size, mode):
    """Non-overlapping ``size`` x ``size`` pooling; the border that fills no window is
    dropped.

    Parameters
    ----------
    x : ndarray of shape (n, H * W * C)
    shape : tuple (H, W, C)
    size : int
    mode : {'max', 'avg'}

    Returns
    -------
    y : ndarray of shape (n, Ho * Wo * C), ``x.dtype``
        Ho = H // size, Wo = W // size. 'max': the window's first element, replaced by
        each later one (row-major) that compares ``>`` (a NaN is kept only in first
        place). 'avg': the window's sum, row-major, divided by size**2.
    """
    h, w, c, p, ho, wo = _pool_dims(shape, size, mode)
    img = _images(x, h, w, c)
    views = _windows(img, p, ho, wo)
    out = views[0].copy()
    for v in views[1:]:
        if mode == "max":
            np.copyto(out, v, where=v > out)
        else:
            out += v
    if mode == "avg":
        out /= x.dtype.type(p * p)
    return out.reshape(len(img), ho * wo * c)


def pool_backward(grad_y, x, shape, size, mode):
    """The gradient of :func:`pool_forward` with respect to ``x``.

    Parameters
    ----------
    grad_y : ndarray of shape (n, Ho * Wo * C)
    x : ndarray of shape (n, H * W * C)
        The forward input ('max' recomputes each window's argmax from it).
    shape : tuple (H, W, C)
    size : int
    mode : {'max', 'avg'}

    Returns
    -------
    grad_x : ndarray of shape (n, H * W * C), ``grad_y.dtype``
        'max': each window's gradient at its first maximal element in row-major order
        (the element :func:`pool_forward` returned), 0 elsewhere; 'avg': the gradient
        divided by size**2 at every element of the window. The dropped border gets 0.
    """
    h, w, c, p, ho, wo = _pool_dims(shape, size, mode)
    img = _images(x, h, w, c)
    n = len(img)
    if np.shape(grad_y) != (n, ho * wo * c):
        raise ValueError(f"grad_y has shape {np.shape(grad_y)}, expected (n, Ho*Wo*C) = "
                         f"({n}, {ho * wo * c})")
    g = grad_y.reshape(n, ho, wo, c)
    grad = np.zeros((n, h, w, c), dtype=grad_y.dtype)
    gviews = _windows(grad, p, ho, wo)  # views: writing them writes grad
    if mode == "avg":
        share = g / grad_y.dtype.type(p * p)
        for gv in gviews:
            gv[...] = share
    else:
        views = _windows(img, p, ho, wo)
        best, arg = views[0].copy(), np.zeros(g.shape, dtype=np.intp)
        for k, v in enumerate(views[1:], start=1):
            better = v > best
            np.copyto(best, v, where=better)
            arg[better] = k
        for k, gv in enumerate(gviews):
            gv[...] = np.where(arg == k, g, 0)
    return grad.reshape(n, h * w * c)
