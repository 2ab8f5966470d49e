"""LRP rules for dense layers, as small comparable objects.

A rule turns the relevance at the output of a dense layer ``z = x W + b`` into
relevance at its input ``x``. Names and definitions follow zennit (Anders et
al. [3]_), the formulas Montavon et al. [2]_; the epsilon rule is eq. 3 of the
method (Bach et al. [1]_):

    R_i = sum_j a_i w_ij / (z_j + eps * sign(z_j)) R_j,   sign(0) = +1.

Relevance passes through the (clipped) sigmoid unchanged, so a rule only ever
sees the affine part. On a convolutional layer the LRP engine applies the same rule
to the layer's im2col matrix (one row per output position, so one denominator per
output, as zennit's rules on ``Conv2d``) and adds the rows' relevance back to the
pixels with ``col2im``; see :mod:`pymdbn.lrp._engine`.

Biases: zennit keeps a layer's bias wherever the rule's definition has it and
removes it with ``zero_params=['bias']``; here ``use_bias=False`` does the
same. Each rule's docstring says how its bias enters and how that compares
with zennit (0.5). With the defaults, every rule but ``Gamma`` (for negative
pre-activations) and ``WSquare`` computes what zennit computes. Each rule calls the compiled kernel
``pymdbn._core.lrp_dense``; ``pymdbn.backend.reference.lrp_dense`` is its readable
NumPy twin and the specification.

References
----------
.. [1] S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller,
   W. Samek, "On pixel-wise explanations for non-linear classifier decisions
   by layer-wise relevance propagation", PLoS ONE 10(7), e0130140, 2015.
.. [2] G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller,
   "Layer-wise relevance propagation: an overview", in Explainable AI:
   Interpreting, Explaining and Visualizing Deep Learning, LNCS 11700,
   193-209, Springer, 2019.
.. [3] C. J. Anders, D. Neumann, W. Samek, K.-R. Müller, S. Lapuschkin,
   "Software for dataset-wide XAI: from local explanations to global insights
   with Zennit, CoRelAy, and ViRelAy", arXiv:2106.13200, 2021.
.. [4] S. Lapuschkin, S. Wäldchen, A. Binder, G. Montavon, W. Samek,
   K.-R. Müller, "Unmasking Clever Hans predictors and assessing what
   machines really learn", Nature Communications 10, 1096, 2019.
.. [5] G. Montavon, S. Lapuschkin, A. Binder, W. Samek, K.-R. Müller,
   "Explaining nonlinear classification decisions with deep Taylor
   decomposition", Pattern Recognition 65, 211-222, 2017.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from pymdbn import backend
from pymdbn.backend import ops

__all__ = ["Rule", "Epsilon", "ZPlus", "AlphaBeta", "Gamma", "ZBox", "Flat", "WSquare"]


def _nonnegative(value: Any, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _as(a: Any, dtype: np.dtype) -> np.ndarray:
    return backend.namespace(a).ascontiguousarray(a, dtype=dtype)


class Rule(ABC):
    """Base class: one LRP rule for a dense layer ``z = x W + b``.

    Subclasses set ``kernel_rule`` (the rule's name in ``lrp_dense``) and
    ``_params`` (the constructor arguments, in order, for ``repr`` and
    equality). Rules are immutable values: two rules with equal parameters
    are equal.
    """

    kernel_rule: str = ""
    _params: tuple[str, ...] = ()

    @abstractmethod
    def _kernel_args(self, n_in: int, dtype: np.dtype) -> dict[str, Any]:
        """Rule parameters as ``lrp_dense`` keyword arguments."""

    def backward(
        self,
        x: Any,
        w: Any,
        b: Any,
        relevance: Any,
        z: Any = None,
        return_totals: bool = False,
        overwrite_x: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Relevance at the input of the layer.

        Parameters
        ----------
        x : array_like of shape (B, n_in)
            Layer input (activations of the layer below, or the z-scored
            pixels for the first layer). Its dtype (float32 or float64) sets
            the dtype of the computation; other arguments are cast to it.
        w : array_like of shape (n_in, n_out)
            Weights.
        b : array_like of shape (n_out,)
            Biases.
        relevance : array_like of shape (B, n_out)
            Relevance at the layer's output.
        z : array_like of shape (B, n_out), optional
            The forward pre-activation ``x W + b`` (before any clipping);
            the epsilon rule then skips one matrix product. Ignored by the
            other rules.
        return_totals : bool, default False
            Also return each row's relevance sum and absolute sum, computed
            in float64 while the result is still in cache.
        overwrite_x : bool, default False
            Allow the result to be written over ``x`` (when ``x`` is a
            writeable C-contiguous array of the computation dtype; only the
            epsilon rule uses it). Saves one buffer of the input's size and
            keeps the product in cache; ``x`` is lost.

        Returns
        -------
        ndarray of shape (B, n_in)
            The input relevance.
        totals : ndarray of float64, shape (B, 2)
            Only with ``return_totals``: columns ``sum(R)`` and ``sum(|R|)``.
        """
        # Every array joins x's device (the kernels run there); a host x stays on the host.
        device = backend.device_of(x)
        xp = backend.namespace(x)
        x = xp.asarray(x)
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        x, w, b, relevance = (_as(backend.to_device(a, device), dtype)
                              for a in (x, w, b, relevance))
        if x.ndim != 2 or w.ndim != 2 or relevance.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(
                f"expected x (B, n_in), w (n_in, n_out), b (n_out,), relevance "
                f"(B, n_out); got {x.shape}, {w.shape}, {b.shape}, {relevance.shape}"
            )
        if x.shape[1] != w.shape[0] or relevance.shape != (x.shape[0], w.shape[1]):
            raise ValueError(
                f"shapes do not chain: x {x.shape}, w {w.shape}, relevance {relevance.shape}"
            )
        if z is not None:
            z = _as(backend.to_device(z, device), dtype)
            if z.shape != relevance.shape:
                raise ValueError(f"z shape {z.shape} differs from relevance {relevance.shape}")
        # CuPy's flags have no writeable: device arrays are always writeable.
        writeable = getattr(x.flags, "writeable", True)
        return self.apply(x, w, b, relevance, z, return_totals, overwrite_x and writeable)

    __call__ = backward

    def apply(
        self,
        x: Any,
        w: Any,
        b: Any,
        relevance: Any,
        z: Any = None,
        return_totals: bool = False,
        overwrite_x: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`backward` without its conversions: for callers that already hold
        C-contiguous arrays of one float dtype on one device, shaped as there (the LRP
        engine's are). Explaining one sample, the conversions cost as much as the
        kernel. ``overwrite_x`` needs a writeable ``x``; anything else the kernel
        rejects (ValueError or TypeError naming the argument)."""
        kwargs = self._kernel_args(w.shape[0], x.dtype)
        if kwargs.get("low") is not None:
            device = backend.device_of(x)
            kwargs["low"], kwargs["high"] = backend.to_device((kwargs["low"], kwargs["high"]),
                                                              device)
        return _lrp_dense(x, w, b, relevance, self.kernel_rule, z=z, totals=return_totals,
                          overwrite_x=overwrite_x, **kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{p}={_fmt(getattr(self, p))}" for p in self._params)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, p), getattr(other, p)) for p in self._params)

    # Rules may hold arrays (ZBox bounds), so they are not hashable.
    __hash__ = None  # type: ignore[assignment]


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape})" if value.size > 3 else repr(value.tolist())
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(a, b)
    return a == b


def _lrp_dense(x, w, b, relevance, rule, *, epsilon=1e-6, gamma=0.25, alpha=1.0, beta=0.0,
               low=None, high=None, use_bias=True, z=None, totals=False, overwrite_x=False):
    return ops.lrp_dense(x, w, b, relevance, rule, epsilon, gamma, alpha, beta, low, high,
                           use_bias, z, totals, overwrite_x)


class Epsilon(Rule):
    """LRP-epsilon, eq. 3 of the method (Bach et al. [1]_, Montavon et al. [2]_).

    ``R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j``, ``sign(0) = +1``.
    ``epsilon = 0`` is LRP-0; a larger epsilon absorbs the relevance of weak
    or contradictory activations and gives sparser, less noisy maps.

    Parameters
    ----------
    epsilon : float, default 1e-6
        Stabiliser added to the denominator, with the sign of ``z``.
    use_bias : bool, default True
        Include the bias in the denominator ``z``. The bias then absorbs
        relevance ``R_j b_j / (z_j + eps sign(z_j))``; with ``False`` the
        layer conserves relevance up to epsilon.

    Notes
    -----
    Bias as in zennit's ``Epsilon``: ``z = x W + b`` with ``use_bias=True``,
    ``zennit.rules.Epsilon(zero_params=['bias'])`` with ``False``. Explained
    against a reference (:func:`pymdbn.lrp.explain`), the bias cancels in
    ``z - z~`` whatever ``use_bias`` says.
    """

    kernel_rule = "epsilon"
    _params = ("epsilon", "use_bias")

    def __init__(self, epsilon: float = 1e-6, use_bias: bool = True) -> None:
        self.epsilon = _nonnegative(epsilon, "epsilon")
        self.use_bias = bool(use_bias)

    def _kernel_args(self, n_in, dtype):
        return dict(epsilon=self.epsilon, use_bias=self.use_bias)


class ZPlus(Rule):
    """LRP-z+ (Montavon et al. [2]_): only positive contributions count.

    ``R_i = sum_j (x_i w_ij)+ / sum_i' (x_i' w_i'j)+ R_j``, where a positive
    contribution is a positive input times a positive weight or a negative
    input times a negative weight (z-scored inputs are signed); with
    ``use_bias`` the positive part of the bias joins the denominator. For
    non-negative inputs and positive relevance all input relevance is
    non-negative. Equals ``AlphaBeta(alpha=1, beta=0)``.

    Parameters
    ----------
    stabilizer : float, default 1e-6
        Added to the denominator (zennit's name for epsilon here).
    use_bias : bool, default True
        Include the positive part of the bias in the denominator.

    Notes
    -----
    Bias as in zennit's ``ZPlus``: its positive-weight copy keeps the
    positive part of the bias and its negative-weight copy has none, so the
    denominator is ``sum_i (x_i w_ij)+ + b_j+``; ``use_bias=False`` is
    ``zennit.rules.ZPlus(zero_params=['bias'])``.
    """

    kernel_rule = "zplus"
    _params = ("stabilizer", "use_bias")

    def __init__(self, stabilizer: float = 1e-6, use_bias: bool = True) -> None:
        self.stabilizer = _nonnegative(stabilizer, "stabilizer")
        self.use_bias = bool(use_bias)

    def _kernel_args(self, n_in, dtype):
        return dict(epsilon=self.stabilizer, use_bias=self.use_bias)


class AlphaBeta(Rule):
    """LRP-alpha-beta (Bach et al. [1]_): positive and negative parts apart.

    ``R_i = sum_j (alpha (x_i w_ij)+ / z_j+ - beta (x_i w_ij)- / z_j-) R_j``
    with ``z_j+`` (``z_j-``) the sum of the positive (negative) contributions
    plus the positive (negative) part of the bias. ``alpha - beta = 1`` keeps
    the layer conservative.

    Parameters
    ----------
    alpha, beta : float, default 2, 1
        Weights of the positive and negative parts; both >= 0 and
        ``alpha - beta == 1``.
    stabilizer : float, default 1e-6
        Added to both denominators with their sign.
    use_bias : bool, default True
        Include the bias parts in the denominators.

    Notes
    -----
    Bias as in zennit's ``AlphaBeta``: ``b_j+`` in the positive and ``b_j-``
    in the negative denominator; ``use_bias=False`` is
    ``zennit.rules.AlphaBeta(zero_params=['bias'])``.
    """

    kernel_rule = "alpha_beta"
    _params = ("alpha", "beta", "stabilizer", "use_bias")

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6,
                 use_bias: bool = True) -> None:
        self.alpha = _nonnegative(alpha, "alpha")
        self.beta = _nonnegative(beta, "beta")
        if not math.isclose(self.alpha - self.beta, 1.0, rel_tol=0.0, abs_tol=1e-12):
            raise ValueError(f"AlphaBeta needs alpha - beta == 1, got alpha={alpha}, beta={beta}")
        self.stabilizer = _nonnegative(stabilizer, "stabilizer")
        self.use_bias = bool(use_bias)

    def _kernel_args(self, n_in, dtype):
        return dict(alpha=self.alpha, beta=self.beta, epsilon=self.stabilizer,
                    use_bias=self.use_bias)


class Gamma(Rule):
    """LRP-gamma (Montavon et al. [2]_): favour positive contributions.

    The epsilon rule on weights ``w + gamma w+`` (and bias ``b + gamma b+``):
    as gamma grows, negative evidence fades and the maps become more stable.
    ``gamma = 0`` is the epsilon rule with ``epsilon = stabilizer``.

    Parameters
    ----------
    gamma : float, default 0.25
        Extra weight of the positive parameters, >= 0.
    stabilizer : float, default 1e-6
        Added to the denominator with the sign of ``z``.
    use_bias : bool, default True
        Include the (modified) bias in the denominator.

    Notes
    -----
    zennit's ``Gamma`` (0.5) is the generalised rule of Andéol et al.: where
    ``z_j > 0`` it divides by ``x+ (w + gamma w+) + x- (w + gamma w-) + b_j
    + gamma b_j+``, where ``z_j < 0`` by ``x+ (w + gamma w-) + x- (w + gamma
    w+) + b_j + gamma b_j-``. For non-negative inputs (the sigmoid
    activations of the hidden layers) and ``z_j > 0`` that is this rule, bias
    included; where ``z_j < 0`` this rule keeps ``w + gamma w+`` and ``b +
    gamma b+`` (Montavon et al.'s original form) and differs from zennit.
    ``use_bias=False`` is ``zero_params=['bias']``.
    """

    kernel_rule = "gamma"
    _params = ("gamma", "stabilizer", "use_bias")

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6,
                 use_bias: bool = True) -> None:
        self.gamma = _nonnegative(gamma, "gamma")
        self.stabilizer = _nonnegative(stabilizer, "stabilizer")
        self.use_bias = bool(use_bias)

    def _kernel_args(self, n_in, dtype):
        return dict(gamma=self.gamma, epsilon=self.stabilizer, use_bias=self.use_bias)


class ZBox(Rule):
    """LRP-z^B for bounded inputs (Montavon et al. [2]_), the input layer rule.

    For inputs known to lie in ``[low, high]`` per feature:
    ``R_i = sum_j (x_i w_ij - l_i w_ij+ - h_i w_ij-) / z_j^B R_j`` with
    ``z_j^B = sum_i (x_i w_ij - l_i w_ij+ - h_i w_ij-)``. The bias is not in
    ``z_j^B``: it enters the three terms ``x W + b``, ``l W+ + b+`` and
    ``h W- + b-`` and cancels, ``b - b+ - b- = 0``, so the layer conserves
    relevance up to the stabilizer.

    Parameters
    ----------
    low, high : float or array_like of shape (n_in,), optional
        Bounds of the layer's input, here the z-scored pixels (for a convolutional
        input layer one per input pixel, H*W*C, as zennit's input-shaped bounds;
        each output's bounds are then its patch's). Leave both
        unset in a composite to have :func:`pymdbn.lrp.explain` derive them
        per modality from the model's scaler and data range (see there);
        calling an unbound ZBox raises ValueError.
    stabilizer : float, default 1e-6
        Added to the denominator with its sign.
    use_bias : bool, default False
        Add the bias to ``z_j^B`` (``z_j^B + b_j``), where it absorbs
        relevance: the default of pymdbn 0.1.0, not the rule's definition.

    Notes
    -----
    The default is zennit's ``ZBox`` (whose three copies keep ``b``, ``b+``
    and ``b-``, which cancel) and Montavon et al.'s definition;
    ``use_bias=True`` matches neither.
    """

    kernel_rule = "zbox"
    _params = ("low", "high", "stabilizer", "use_bias")

    def __init__(self, low: Any = None, high: Any = None, stabilizer: float = 1e-6,
                 use_bias: bool = False) -> None:
        if (low is None) != (high is None):
            raise ValueError("ZBox needs both low and high, or neither (bounds from the model)")
        if low is not None:
            low = np.array(low, dtype=np.float64)
            high = np.array(high, dtype=np.float64)
            if low.ndim > 1 or high.ndim > 1:
                raise ValueError(f"ZBox bounds must be scalars or 1-D, got shapes "
                                 f"{low.shape} and {high.shape}")
            try:
                ordered = np.all(low <= high)
            except ValueError:
                raise ValueError(f"ZBox bounds of shapes {low.shape} and {high.shape} "
                                 f"do not broadcast") from None
            if not (ordered and np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError("ZBox bounds must be finite with low <= high")
            if low.ndim == 0 and high.ndim == 0:
                low, high = float(low), float(high)
        self.low, self.high = low, high
        self.stabilizer = _nonnegative(stabilizer, "stabilizer")
        self.use_bias = bool(use_bias)

    @property
    def bound(self) -> bool:
        """Whether the bounds are set."""
        return self.low is not None

    def with_bounds(self, low: Any, high: Any) -> ZBox:
        """This rule with other bounds (same stabilizer and bias handling)."""
        return ZBox(low, high, stabilizer=self.stabilizer, use_bias=self.use_bias)

    def _kernel_args(self, n_in, dtype):
        if not self.bound:
            raise ValueError("ZBox has no bounds: pass low/high, or explain through "
                             "pymdbn.lrp.explain, which derives them from the model")
        try:
            low = _as(np.broadcast_to(self.low, (n_in,)), dtype)
            high = _as(np.broadcast_to(self.high, (n_in,)), dtype)
        except ValueError:
            raise ValueError(f"ZBox bounds do not fit a layer with {n_in} inputs") from None
        return dict(low=low, high=high, epsilon=self.stabilizer, use_bias=self.use_bias)


class Flat(Rule):
    """Flat rule (Lapuschkin et al. [4]_; zennit's ``Flat``): spread evenly.

    Every input of a dense layer receives ``sum_j R_j / n_in``, whatever its
    value or weight: a map of where the layer *could* look, used for the
    input layer when pixel values carry no meaning of their own. Biases do
    not enter, so it conserves relevance exactly.

    On a convolutional layer each output's relevance is spread evenly over its
    own patch (``kh*kw*C`` inputs), as zennit's ``Flat`` on ``Conv2d`` does.

    Notes
    -----
    As zennit's ``Flat``, which sets every weight to 1 and zeroes the bias;
    zennit adds its stabilizer to the denominator ``n_in``, this rule divides
    by ``n_in`` exactly.
    """

    kernel_rule = "flat"

    def _kernel_args(self, n_in, dtype):
        return {}


class WSquare(Rule):
    """w^2 rule (Montavon et al. [5]_; zennit's ``WSquare``): weights only.

    ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j``, independent of the input, as
    used for input layers in deep Taylor decomposition. Biases do not enter.

    Parameters
    ----------
    stabilizer : float, default 1e-6
        Added to the denominator.

    Notes
    -----
    zennit's ``WSquare`` squares every parameter, the bias too, so its
    denominator is ``sum_i' w_i'j^2 + b_j^2``; this rule is
    ``zennit.rules.WSquare(zero_params=['bias'])``, as deep Taylor
    decomposition defines it (Montavon et al. [5]_).
    """

    kernel_rule = "wsquare"
    _params = ("stabilizer",)

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _nonnegative(stabilizer, "stabilizer")

    def _kernel_args(self, n_in, dtype):
        return dict(epsilon=self.stabilizer)
