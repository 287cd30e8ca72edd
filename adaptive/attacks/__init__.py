"""Attacks of the harness: C&W-kappa (minimum distance), PGD-L2 at the bound on the same
objective, and the adaptive penalties both take (``a2d_aware``, ``magnet_aware``)."""

from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.attacks.cw import CarliniWagnerL2, CWResult

__all__ = ["BoundedPGD", "CarliniWagnerL2", "CWResult"]
