"""Gradient-attack primitives shared by adversarial training (``defenses``) and the attack
harness (``adaptive``): Lp-ball geometry and batched PGD."""

from adaptive.core.attacks.lp import lp_norm, normalize_step, project, random_in_ball
from adaptive.core.attacks.pgd import pgd

__all__ = ["lp_norm", "normalize_step", "project", "random_in_ball", "pgd"]
