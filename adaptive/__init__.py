"""The adaptive-attack harness, metrics, reports and the ``adaptive`` command line.

``adaptive.core`` is the shared foundation (data sets, models, checkpoints, the model zoo,
run folders, training and perturbation primitives); ``defenses`` builds on it, and the rest of
``adaptive`` builds on both. At module level dependencies run one way:
``adaptive.core`` -> ``defenses`` -> ``adaptive.*`` (checked by ``tests/test_layout.py``), so this
file imports nothing.
"""

__version__ = "0.1.0"
