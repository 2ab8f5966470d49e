"""Composites: which LRP rule explains which layer of an MDBN.

An MDBN has four kinds of dense layers, its *roles*:

``'input'``
    the first layer of each modality's pathway (it sees z-scored pixels);
``'hidden'``
    the other pathway layers;
``'joint'``
    the layers above the fused code;
``'output'``
    the linear classifier producing the logits.

A :class:`Composite` maps each role to a :class:`~pymdbn.lrp.rules.Rule`,
optionally per modality for the pathway roles. The named presets follow
zennit's composites (Anders et al. [1]_), which give the convolutional
feature extractor ZPlus / Gamma rules and the fully connected head the
epsilon rule; here the modality pathways play the part of the feature
extractor and the joint and output layers that of the head (Montavon et al.
[2]_ recommend the same split by depth for dense stacks).

References
----------
.. [1] C. J. Anders, D. Neumann, W. Samek, K.-R. Müller, S. Lapuschkin,
   "Software for dataset-wide XAI: from local explanations to global insights
   with Zennit, CoRelAy, and ViRelAy", arXiv:2106.13200, 2021.
.. [2] G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller,
   "Layer-wise relevance propagation: an overview", in Explainable AI:
   Interpreting, Explaining and Visualizing Deep Learning, LNCS 11700,
   193-209, Springer, 2019.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pymdbn.lrp.rules import Epsilon, Flat, Gamma, Rule, ZBox, ZPlus

__all__ = ["Composite", "get_composite", "COMPOSITES", "ROLES"]

ROLES = ("input", "hidden", "joint", "output")
_PATHWAY_ROLES = ("input", "hidden")


def _check_rule(rule: Any, where: str) -> Rule:
    if not isinstance(rule, Rule):
        raise ValueError(f"{where} must be an LRP rule (e.g. Epsilon()), got {rule!r}")
    return rule


class Composite:
    """Rules per layer role, with optional per-modality overrides.

    Parameters
    ----------
    input, hidden, joint, output : Rule, optional
        Rule for each role (see the module docstring). Unset roles use
        ``Epsilon()``, the method as written, so ``Composite()`` is the
        ``'epsilon'`` preset.
    per_modality : dict of str -> dict of str -> Rule, optional
        Overrides of the pathway roles ``'input'`` and ``'hidden'`` for
        named modalities, e.g. ``{'brain': {'input': Flat()}}``. Joint and
        output layers are shared by all modalities, so they have no
        per-modality rule.
    name : str, optional
        A name for figures and reports; the presets of :func:`get_composite`
        carry theirs. It does not take part in equality.

    Examples
    --------
    >>> from pymdbn.lrp import Composite, Epsilon, Flat, ZBox
    >>> c = Composite(input=ZBox(-2.0, 3.0), output=Epsilon(),
    ...               per_modality={'brain': {'input': Flat()}})
    >>> c.rule('input', 'brain'), c.rule('input', 'bone')
    (Flat(), ZBox(low=-2.0, high=3.0, stabilizer=1e-06, use_bias=False))
    """

    def __init__(
        self,
        input: Rule | None = None,
        hidden: Rule | None = None,
        joint: Rule | None = None,
        output: Rule | None = None,
        per_modality: Mapping[str, Mapping[str, Rule]] | None = None,
        name: str | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string or None, got {name!r}")
        self.name = name
        given = dict(input=input, hidden=hidden, joint=joint, output=output)
        self.rules = {
            role: Epsilon() if rule is None else _check_rule(rule, role)
            for role, rule in given.items()
        }
        self.per_modality: dict[str, dict[str, Rule]] = {}
        for name, overrides in (per_modality or {}).items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"per_modality[{name!r}] must be a dict role -> rule")
            for role, rule in overrides.items():
                if role not in _PATHWAY_ROLES:
                    raise ValueError(
                        f"per_modality[{name!r}] has role {role!r}; only "
                        f"{_PATHWAY_ROLES} can differ per modality"
                    )
                _check_rule(rule, f"per_modality[{name!r}][{role!r}]")
            self.per_modality[str(name)] = dict(overrides)

    def rule(self, role: str, modality: str | None = None) -> Rule:
        """The rule for a layer of ``role``, in ``modality``'s pathway if given."""
        if role not in ROLES:
            raise ValueError(f"unknown layer role {role!r}; roles are {ROLES}")
        return self.per_modality.get(modality, {}).get(role, self.rules[role])

    def describe(self) -> str:
        """A short label: the name and the rule class per role.

        E.g. ``'epsilon_plus (input ZPlus, hidden ZPlus, joint Epsilon,
        output Epsilon)'``; per-modality overrides are counted, not listed.
        """
        roles = ", ".join(f"{role} {type(self.rules[role]).__name__}" for role in ROLES)
        extra = f"; {len(self.per_modality)} per-modality override(s)" if self.per_modality else ""
        return f"{self.name} ({roles}{extra})" if self.name else f"{roles}{extra}"

    def __repr__(self) -> str:
        args = [f"{role}={self.rules[role]!r}" for role in ROLES]
        if self.per_modality:
            args.append(f"per_modality={self.per_modality!r}")
        if self.name is not None:
            args.append(f"name={self.name!r}")
        return f"Composite({', '.join(args)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Composite):
            return NotImplemented
        return self.rules == other.rules and self.per_modality == other.per_modality

    __hash__ = None  # type: ignore[assignment]


def _epsilon(epsilon=1e-6, use_bias=True, per_modality=None):
    e = Epsilon(epsilon, use_bias=use_bias)
    return Composite(input=e, hidden=e, joint=e, output=e, per_modality=per_modality,
                     name="epsilon")


def _epsilon_plus(epsilon=1e-6, stabilizer=1e-6, use_bias=True, per_modality=None):
    e, p = Epsilon(epsilon, use_bias=use_bias), ZPlus(stabilizer, use_bias=use_bias)
    return Composite(input=p, hidden=p, joint=e, output=e, per_modality=per_modality,
                     name="epsilon_plus")


def _epsilon_gamma_box(epsilon=1e-6, gamma=0.25, low=None, high=None, stabilizer=1e-6,
                       use_bias=True, per_modality=None):
    e = Epsilon(epsilon, use_bias=use_bias)
    # ZBox takes no use_bias: by its definition (and in zennit) the bias cancels.
    return Composite(input=ZBox(low, high, stabilizer),
                     hidden=Gamma(gamma, stabilizer, use_bias=use_bias),
                     joint=e, output=e, per_modality=per_modality, name="epsilon_gamma_box")


def _epsilon_plus_flat(epsilon=1e-6, stabilizer=1e-6, use_bias=True, per_modality=None):
    e = Epsilon(epsilon, use_bias=use_bias)
    return Composite(input=Flat(), hidden=ZPlus(stabilizer, use_bias=use_bias),
                     joint=e, output=e, per_modality=per_modality, name="epsilon_plus_flat")


_PRESETS = {
    "epsilon": _epsilon,
    "epsilon_plus": _epsilon_plus,
    "epsilon_gamma_box": _epsilon_gamma_box,
    "epsilon_plus_flat": _epsilon_plus_flat,
}
COMPOSITES = tuple(_PRESETS)


def get_composite(composite: str | Composite = "epsilon", **kwargs: Any) -> Composite:
    """A composite by preset name, or the given one unchanged.

    ======================  ========  ========  =======  =======
    preset                  input     hidden    joint    output
    ======================  ========  ========  =======  =======
    ``epsilon``             Epsilon   Epsilon   Epsilon  Epsilon
    ``epsilon_plus``        ZPlus     ZPlus     Epsilon  Epsilon
    ``epsilon_gamma_box``   ZBox      Gamma     Epsilon  Epsilon
    ``epsilon_plus_flat``   Flat      ZPlus     Epsilon  Epsilon
    ======================  ========  ========  =======  =======

    ``epsilon`` is the method as written (eq. 3 at every layer); the others
    are zennit's ``EpsilonPlus``, ``EpsilonGammaBox`` and ``EpsilonPlusFlat``
    with pathways in the place of convolutions.

    Parameters
    ----------
    composite : str or Composite, default 'epsilon'
        Preset name (one of ``COMPOSITES``) or a Composite.
    **kwargs
        Preset parameters: ``epsilon`` (of the Epsilon rules, default 1e-6),
        ``stabilizer`` (of ZPlus, Gamma, ZBox, default 1e-6), ``gamma``
        (0.25), ``low``/``high`` (ZBox bounds; default: derived per modality
        by :func:`pymdbn.lrp.explain`), ``use_bias`` (True) for all rules that
        have it except ZBox, whose bias cancels by definition (pass a
        :class:`Composite` with ``ZBox(use_bias=True)`` for the old form),
        and ``per_modality`` overrides as for :class:`Composite`.

    Returns
    -------
    Composite

    Raises
    ------
    ValueError
        For an unknown preset name, or keyword arguments given with a
        Composite or not taken by the preset.
    """
    if isinstance(composite, Composite):
        if kwargs:
            raise ValueError(f"keyword arguments {sorted(kwargs)} apply to presets only, "
                             f"not to a Composite")
        return composite
    if not isinstance(composite, str) or composite not in _PRESETS:
        raise ValueError(f"composite must be a Composite or a preset name of {COMPOSITES}, "
                         f"got {composite!r}")
    build = _PRESETS[composite]
    if not kwargs:  # inspect.signature costs as much as explaining one sample
        return build()
    unknown = set(kwargs) - set(inspect.signature(build).parameters)
    if unknown:
        raise ValueError(f"composite {composite!r} takes no {sorted(unknown)}; its parameters "
                         f"are {list(inspect.signature(build).parameters)}")
    return build(**kwargs)
