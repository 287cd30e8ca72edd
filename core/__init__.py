"""Shared foundation of the toolkit: data, models, the model zoo, training and perturbation
primitives.

Dependencies run one way: ``core`` -> ``defenses`` -> ``adaptive`` (harness, CLI, reports).
Nothing in ``core`` imports from ``defenses`` or ``adaptive``.
"""

from core.errors import ToolkitError

__all__ = ["ToolkitError"]
