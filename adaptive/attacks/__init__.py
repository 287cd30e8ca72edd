"""Attacks of the harness, each an ``Attack`` with one ``run`` returning an ``AttackResult``
(``base``), one module each, registered by name (``registry``): C&W-kappa (``cw``, minimum
distance), PGD at the bound and its Selective / Orthogonal variants (``bounded_pgd``),
HopSkipJump on a defense's verdict (``hard_label``), the score-based Square attack
(``square``), RayS on a defense's verdict at L-inf (``rays``); the objective they take
(``objective``: the classifier's margin and each detector's term, separately) and the adaptive
penalties (``a2d_aware``, ``magnet_aware``).

Importing this package registers every attack."""

from adaptive.attacks.apgd import APGD, APGDSettings
from adaptive.attacks.base import (
                                   Attack,
                                   AttackResult,
                                   FixedBudgetAttack,
                                   MinimumDistanceAttack,
                                   Trace,
                                   kappa_margins,
)
from adaptive.attacks.bounded_pgd import BoundedPGD, OrthogonalPGD, PGDSettings, SelectivePGD
from adaptive.attacks.cw import CarliniWagnerL2, CWResult, CWSettings
from adaptive.attacks.hard_label import DecisionOracle, HardLabelSettings, HopSkipJump
from adaptive.attacks.objective import Objective
from adaptive.attacks.rays import RayS, RaySSettings
from adaptive.attacks.registry import (
                                   ATTACK_SPECS,
                                   Access,
                                   AttackSetup,
                                   AttackSpec,
                                   attack_spec,
                                   register_attack,
)
from adaptive.attacks.square import Square, SquareSettings

__all__ = ["APGD", "APGDSettings", "ATTACK_SPECS", "Access", "Attack", "AttackResult",
           "AttackSetup", "AttackSpec", "BoundedPGD", "CWResult", "CWSettings",
           "CarliniWagnerL2", "DecisionOracle", "FixedBudgetAttack", "HardLabelSettings",
           "HopSkipJump", "MinimumDistanceAttack", "Objective", "OrthogonalPGD", "PGDSettings",
           "RayS", "RaySSettings", "SelectivePGD", "Square", "SquareSettings", "Trace",
           "attack_spec", "kappa_margins", "register_attack"]
