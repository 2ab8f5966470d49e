"""Hyperparameter constraints of the estimators, in scikit-learn's style.

Every estimator declares ``_parameter_constraints`` (see
:mod:`sklearn.utils._param_validation`) and validates it at ``fit``; scikit-learn's
:class:`Interval` already rejects NaN, and infinity wherever a bound is open or
absent. This module adds what scikit-learn leaves out: bools are not numbers here,
and layer sizes or per-layer values given as a sequence are checked entry by entry
with the same constraints and the same kind of message.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (InvalidParameterError, StrOptions,
                                             validate_parameter_constraints)
from sklearn.utils._param_validation import Interval as _SklearnInterval

__all__ = ["Interval", "InvalidParameterError", "StrOptions", "POSITIVE_INT",
           "NONNEGATIVE_INT", "POSITIVE", "NONNEGATIVE", "UNIT_LEFT", "UNIT_OPEN",
           "GIBBS_STEPS", "DTYPES", "check_value", "layer_sizes", "per_layer",
           "fine_tune_constraints"]


class Interval(_SklearnInterval):
    """scikit-learn's Interval, without bools: ``True`` is an int to Python, but never
    a layer size, an epoch count or a rate to a user."""

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


POSITIVE_INT = Interval(Integral, 1, None, closed="left")
NONNEGATIVE_INT = Interval(Integral, 0, None, closed="left")
POSITIVE = Interval(Real, 0, None, closed="neither")       # (0, inf)
NONNEGATIVE = Interval(Real, 0, None, closed="left")       # [0, inf)
UNIT_LEFT = Interval(Real, 0, 1, closed="left")            # [0, 1): momentum, dropout
UNIT_OPEN = Interval(Real, 0, 1, closed="neither")         # (0, 1): fractions, targets
# The sampler gives every Gibbs step of a batch its own Philox stream, 256 per batch.
GIBBS_STEPS = Interval(Integral, 1, 127, closed="both")
# 'bfloat16': float32 parameters and data, bfloat16 operands of the matrix products
# (pymdbn.backend.matmul_precision).
DTYPES = StrOptions({"float32", "float64", "bfloat16"})


def check_value(name, value, constraints, caller):
    """Validate one value against scikit-learn constraints; raise naming ``name``.

    Raises
    ------
    InvalidParameterError
        ``"The '<name>' parameter of <caller> must be ... Got ... instead."``
    """
    validate_parameter_constraints({name: constraints}, {name: value}, caller_name=caller)
    return value


def layer_sizes(name, value, caller):
    """Hidden layer sizes as a tuple of int: an int is one layer, as in scikit-learn's
    ``hidden_layer_sizes``; a sequence must be non-empty, of positive ints."""
    if not isinstance(value, (tuple, list, np.ndarray)) or np.ndim(value) == 0:
        return (int(check_value(name, value, [POSITIVE_INT], caller)),)
    sizes = list(value)
    if not sizes:
        raise InvalidParameterError(f"The {name!r} parameter of {caller} must be an int "
                                    f"or a non-empty sequence of int. Got {value!r} instead.")
    for i, size in enumerate(sizes):
        check_value(f"{name}[{i}]", size, [POSITIVE_INT], caller)
    return tuple(int(s) for s in sizes)


def per_layer(name, value, n, constraints, caller):
    """``value`` once per layer: a scalar for every layer, or a sequence of ``n``
    values; each checked against ``constraints``."""
    if isinstance(value, (tuple, list, np.ndarray)) and np.ndim(value) > 0:
        values = list(value)
        if len(values) != n:
            raise InvalidParameterError(f"{name} has {len(values)} entries for {n} layers")
        for i, v in enumerate(values):
            check_value(f"{name}[{i}]", v, constraints, caller)
        return tuple(values)
    check_value(name, value, constraints, caller)
    return (value,) * n


def fine_tune_constraints(prefix="", **names):
    """Constraints of the fine-tuning hyperparameters shared by DBN and MDBN.

    ``prefix`` is prepended to every name (DBN's ``fine_tune_``); ``names`` renames
    single ones (DBN's ``fine_tune_epochs`` for MDBN's ``max_epochs``).
    """
    base = {
        "learning_rate": [POSITIVE],
        "momentum": [UNIT_LEFT],
        "weight_decay": [NONNEGATIVE],
        "batch_size": [POSITIVE_INT],
        "max_epochs": [NONNEGATIVE_INT],
        "dropout": [UNIT_LEFT],
        "input_dropout": [UNIT_LEFT],
    }
    out = {names.get(k, prefix + k): v for k, v in base.items()}
    out.update({
        "fine_tune": ["boolean"],
        "optimizer": [StrOptions({"sgd", "adam"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [UNIT_OPEN],
        "n_iter_no_change": [POSITIVE_INT],
        "tol": [NONNEGATIVE],
        "class_weight": [None, StrOptions({"balanced"}), dict],
    })
    return out
