"""Shared foundation of the toolkit: data, models, the model zoo, training and perturbation
primitives.

Dependencies run one way: ``adaptive.core`` -> ``defenses`` -> the rest of ``adaptive``
(harness, CLI, reports). Nothing in ``adaptive.core`` imports from ``defenses`` or from any
other part of ``adaptive``.
"""

from adaptive.core.errors import ToolkitError

__all__ = ["ToolkitError"]
