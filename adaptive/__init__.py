"""An adaptive-attack evaluation toolkit: attack a defended model through its whole forward and
report whether the defense holds.

The public names are importable from here (``from adaptive import SweepConfig, run_sweep,
BoundedPGD, ThreatModel``); each is imported on first use, so ``import adaptive`` stays cheap
and the package layers (``adaptive.core`` -> ``defenses`` -> the rest of ``adaptive``, checked
by ``tests/test_layout.py``) are not tied together at import time. Where each name lives:
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # the threat model and what defends
    "Norm": "adaptive.core.threat", "ThreatModel": "adaptive.core.threat",
    "Defense": "defenses.defense", "Detector": "defenses.detector",
    "judge": "adaptive.defense", "Verdict": "adaptive.defense",
    # attacks, their settings and the registry
    "Attack": "adaptive.attacks", "AttackResult": "adaptive.attacks",
    "AttackSpec": "adaptive.attacks", "AttackSetup": "adaptive.attacks",
    "ATTACK_SPECS": "adaptive.attacks", "attack_spec": "adaptive.attacks",
    "register_attack": "adaptive.attacks",
    "APGD": "adaptive.attacks", "APGDSettings": "adaptive.attacks",
    "CarliniWagnerL2": "adaptive.attacks", "CWSettings": "adaptive.attacks",
    "BoundedPGD": "adaptive.attacks", "SelectivePGD": "adaptive.attacks",
    "OrthogonalPGD": "adaptive.attacks", "PGDSettings": "adaptive.attacks",
    "HopSkipJump": "adaptive.attacks", "HardLabelSettings": "adaptive.attacks",
    "DecisionOracle": "adaptive.attacks", "Objective": "adaptive.attacks",
    "Square": "adaptive.attacks", "SquareSettings": "adaptive.attacks",
    "RayS": "adaptive.attacks", "RaySSettings": "adaptive.attacks",
    # the harness
    "SweepConfig": "adaptive.sweep.config", "CleverSettings": "adaptive.sweep.config",
    "parse_attack": "adaptive.sweep.config", "run_sweep": "adaptive.sweep.run",
    "SweepResult": "adaptive.sweep.run", "SweepRecord": "adaptive.sweep.records",
    "read_records": "adaptive.sweep.records",
    # one call that stress-tests a defense and writes its report
    "audit": "adaptive.auditing", "AuditResult": "adaptive.auditing",
    # data and models
    "load_dataset": "adaptive.core.data", "load_model": "adaptive.core.zoo",
}
__all__ = sorted(_EXPORTS) + ["__version__"]
__doc__ = (__doc__ or "") + "\n" + "\n".join(
    f"- ``{name}``: ``{module}``" for name, module in sorted(_EXPORTS.items())) + "\n"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adaptive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from adaptive.attacks import (
        ATTACK_SPECS,
        Attack,
        AttackResult,
        AttackSetup,
        AttackSpec,
        BoundedPGD,
        CarliniWagnerL2,
        CWSettings,
        DecisionOracle,
        HardLabelSettings,
        HopSkipJump,
        Objective,
        OrthogonalPGD,
        PGDSettings,
        RayS,
        RaySSettings,
        SelectivePGD,
        Square,
        SquareSettings,
        attack_spec,
        register_attack,
    )
    from adaptive.auditing import AuditResult, audit
    from adaptive.core.data import load_dataset
    from adaptive.core.threat import Norm, ThreatModel
    from adaptive.core.zoo import load_model
    from adaptive.defense import Verdict, judge
    from adaptive.sweep.config import CleverSettings, SweepConfig, parse_attack
    from adaptive.sweep.records import SweepRecord, read_records
    from adaptive.sweep.run import SweepResult, run_sweep
    from defenses.defense import Defense
    from defenses.detector import Detector
