"""Attacks of the harness (C&W-kappa and the adaptive attacks built on it)."""

from adaptive.attacks.cw import CarliniWagnerL2, CWResult

__all__ = ["CarliniWagnerL2", "CWResult"]
