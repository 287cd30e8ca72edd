"""Defenses to evaluate: A2D attack-cost detectors, MagNet, adversarial training, and their
composition into one defended model. Depends only on ``adaptive.core``."""
