"""Defenses to evaluate: A2D attack-cost detectors, MagNet, adversarial training, and their
composition into one defended model. Depends only on ``adaptive.core``."""

from defenses.detector import Detector, NotFittedError, is_differentiable

__all__ = ["Detector", "NotFittedError", "is_differentiable"]
