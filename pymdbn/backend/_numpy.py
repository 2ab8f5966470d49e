"""The ``'numpy'`` backend: the readable twins behind the compiled core's signatures.

:mod:`pymdbn.backend.reference` writes each kernel the clearest way; this module only maps
the core's calling convention onto it (positional arguments, in-place state, optional
outputs), so any op runs on either backend by name. It is slow by design: its purpose
is to be the specification, and to run the package where the core does not load.
"""

import numpy as np

from pymdbn import _matmul
from pymdbn.backend import reference as ref

__all__ = ["build_info", "get_num_threads", "set_num_threads", "affine", "affine_sigmoid",
           "sample_bernoulli", "sample_gaussian", "random_bits", "gibbs_hidden",
           "gibbs_visible", "cd_epoch", "cd_gradient", "cd_apply", "free_energy", "ais_log_weights", "dense_forward",
           "dense_backward", "softmax_cross_entropy", "sgd_momentum_update", "adam_update",
           "lrp_dense", "standardize", "im2col", "col2im", "pool_forward", "pool_backward",
           "bfloat16_status", "get_matmul_precision",
           "set_matmul_precision"]

affine = ref.affine
affine_sigmoid = ref.affine_sigmoid
sample_bernoulli = ref.sample_bernoulli
sample_gaussian = ref.sample_gaussian
random_bits = ref.random_bits
gibbs_hidden = ref.gibbs_hidden
gibbs_visible = ref.gibbs_visible
free_energy = ref.free_energy
ais_log_weights = ref.ais_log_weights
dense_forward = ref.dense_forward
dense_backward = ref.dense_backward
softmax_cross_entropy = ref.softmax_cross_entropy
sgd_momentum_update = ref.sgd_momentum_update
adam_update = ref.adam_update
im2col = ref.im2col
col2im = ref.col2im
pool_forward = ref.pool_forward
pool_backward = ref.pool_backward


def cd_epoch(x, order, batch_size, w, b_visible, b_hidden, v_w, v_b_visible, v_b_hidden, chain,
             k, persistent, visible, clip, learning_rate, momentum, weight_decay,
             sparsity_target, sparsity_cost, seed, first_step):
    state = dict(w=w, b_visible=b_visible, b_hidden=b_hidden, v_w=v_w,
                 v_b_visible=v_b_visible, v_b_hidden=v_b_hidden, chain=chain)
    return ref.cd_epoch(x, order, batch_size, state, k=k, persistent=persistent,
                        visible=visible, clip=clip, learning_rate=learning_rate,
                        momentum=momentum, weight_decay=weight_decay,
                        sparsity_target=sparsity_target, sparsity_cost=sparsity_cost, seed=seed,
                        first_step=first_step)


cd_gradient = ref.cd_gradient


def cd_apply(h, v, w, b_visible, b_hidden, v_w, v_b_visible, v_b_hidden, learning_rate,
             momentum, weight_decay, sparsity_target, sparsity_cost):
    state = dict(w=w, b_visible=b_visible, b_hidden=b_hidden, v_w=v_w,
                 v_b_visible=v_b_visible, v_b_hidden=v_b_hidden)
    ref.cd_apply(h, v, state, learning_rate=learning_rate, momentum=momentum,
                 weight_decay=weight_decay, sparsity_target=sparsity_target,
                 sparsity_cost=sparsity_cost)


def lrp_dense(x, w, b, relevance, rule="epsilon", epsilon=1e-6, gamma=0.25, alpha=1.0,
              beta=0.0, low=None, high=None, use_bias=True, z=None, totals=False,
              overwrite_x=False):
    out = ref.lrp_dense(x, w, b, relevance, rule, epsilon=epsilon, gamma=gamma, alpha=alpha,
                        beta=beta, low=low, high=high, use_bias=use_bias, z=z)
    out = out.astype(x.dtype, copy=False)
    if overwrite_x and rule == "epsilon":
        x[...] = out
        out = x
    return (out, ref.relevance_totals(out)) if totals else out


def standardize(x, mean, scale, per_row=False):
    # The compiled binding's checks and messages; the caller reads overflow from the
    # returned flag, as from the kernel, so NumPy's warnings would only say it twice.
    if np.ndim(x) != 2:
        raise ValueError(f"x: expected a C-contiguous 2-d array, got shape {np.shape(x)}")
    cols = np.shape(x)[1]
    if np.size(mean) != np.size(scale):
        raise ValueError("mean and scale must have the same length")
    if np.size(mean) not in (1, cols):
        raise ValueError(f"mean and scale must have 1 or n_features ({cols}) entries, got "
                         f"{np.size(mean)}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return ref.standardize(x, mean, scale, mean.dtype, per_row)


def build_info():
    """What this backend is: NumPy's version and its BLAS."""
    return {"version": np.__version__, "blas": "numpy", "cuda": False}


def get_num_threads():
    """The twins run in NumPy's own threads: reported as (1, 1)."""
    return 1, 1


def set_num_threads(n):
    """Nothing to set: NumPy's BLAS threads are threadpoolctl's business."""
    if int(n) < 1:
        raise ValueError("n_threads must be >= 1")


def bfloat16_status():
    """The twins round operands to bfloat16 themselves: always available."""
    return True, "NumPy twin (operands rounded to bfloat16, float32 products)"


get_matmul_precision = _matmul.get_precision
set_matmul_precision = _matmul.set_precision
