"""The attacks by name: each attack module registers its attack once, with what it needs and
how a run builds it, and everything that chooses an attack by name (the sweep, ``auto``, the
checklist, ``adaptive check``) builds it here.

To add an attack: write its module (an :class:`~adaptive.attacks.base.Attack` with its settings
dataclass), end it with one :func:`register_attack` call, and import the module in
``adaptive/attacks/__init__.py``; ``tests/test_attack_contract.py`` then runs the attack
contract over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from adaptive.attacks.base import Attack
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import Norm, ThreatModel


class Access(str, Enum):
    """What of the attacked model an attack uses."""

    GRADIENTS = "gradients"  # white box: logits and their gradients
    SCORES = "scores"  # logits only, no gradients
    LABELS = "labels"  # the defense's verdict only (a decision oracle)


@dataclass
class AttackSetup:
    """What a run gives an attack to build it from: the ``threat`` model, the confidence
    ``kappa``, the run's ``seed``, the attack's ``settings`` (an instance of its spec's
    settings class), natural images to start from (``start_pool``, or None) and ``overrides``
    of single settings (the checklist's variants: twice the steps, ...)."""

    threat: ThreatModel
    kappa: float = 0.0
    seed: int = 0
    settings: Any = None
    start_pool: torch.Tensor | None = None
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack.

    ``name``: how runs call it; ``cls``: its class; ``settings``: its settings dataclass and
    ``settings_key`` the field of a sweep's settings that holds them; ``threat_models``: the
    norms a run of it can be judged under; ``access``: what of the model it uses;
    ``fixed_budget``: it spends the whole bound (else it looks for a minimum distance);
    ``aims``: ``"chosen"`` (a run names the detectors it penalises, ``pgd-a2d``) or ``"all"``
    (it aims at every detector it can reach: the detector-aware PGDs, or a hard-label attack
    whose oracle is the whole defense); ``build(setup)``: the attack, ready to run."""

    name: str
    cls: type
    settings: type
    settings_key: str
    threat_models: tuple[Norm, ...]
    access: Access
    fixed_budget: bool
    aims: str
    build: Callable[[AttackSetup], Attack]
    summary: str = ""

    def __post_init__(self):
        if self.aims not in ("chosen", "all"):
            raise ValueError(f"aims must be 'chosen' or 'all', got {self.aims!r}")
        if not dataclasses.is_dataclass(self.settings):
            raise ValueError(f"{self.name}: settings must be a dataclass")

    def make(self, setup: AttackSetup) -> Attack:
        """The attack for ``setup`` (its settings defaulted when the setup has none)."""
        if setup.threat.norm not in self.threat_models:
            raise ToolkitError(f"the {self.name} attack does not attack in "
                               f"{setup.threat.norm.label}; it supports "
                               + ", ".join(n.label for n in self.threat_models))
        if setup.settings is None:
            setup = dataclasses.replace(setup, settings=self.settings())
        elif not isinstance(setup.settings, self.settings):
            raise ToolkitError(f"the {self.name} attack takes {self.settings.__name__}, got "
                               f"{type(setup.settings).__name__}")
        return self.build(setup)


ATTACK_SPECS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add ``spec`` under its name (once: a second attack of one name is a mistake)."""
    if spec.name in ATTACK_SPECS:
        raise ValueError(f"an attack named {spec.name!r} is already registered")
    ATTACK_SPECS[spec.name] = spec
    return spec


def attack_spec(name: str) -> AttackSpec:
    """The registered attack ``name``; an unknown name is a one-line error."""
    try:
        return ATTACK_SPECS[name]
    except KeyError:
        raise ToolkitError(f"unknown attack {name!r}; registered: "
                           f"{', '.join(ATTACK_SPECS)}") from None


def settings_dict(settings: Any, overrides: dict | None = None) -> dict:
    """A settings dataclass as keyword arguments, with ``overrides`` on top."""
    return {**dataclasses.asdict(settings), **(overrides or {})}


__all__ = ["ATTACK_SPECS", "Access", "AttackSetup", "AttackSpec", "attack_spec",
           "register_attack", "settings_dict"]
