"""Attacks of the harness, each an ``Attack`` with one ``run`` returning an ``AttackResult``
(``base``): C&W-kappa (a minimum-distance attack), PGD-L2 at the bound on the same objective
(a fixed-budget attack), the objective they take (``objective``: the classifier's margin and
each detector's term, separately) and the adaptive penalties (``a2d_aware``, ``magnet_aware``)."""

from adaptive.attacks.base import (Attack, AttackResult, FixedBudgetAttack,
                                   MinimumDistanceAttack, kappa_margins)
from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.attacks.cw import CarliniWagnerL2, CWResult

__all__ = ["Attack", "AttackResult", "BoundedPGD", "CarliniWagnerL2", "CWResult",
           "FixedBudgetAttack", "MinimumDistanceAttack", "kappa_margins"]
