"""The adaptive-attack harness, metrics, reports and the ``adaptive`` command line.

Depends on ``defenses`` and ``core``; nothing depends on it.
"""

__version__ = "0.1.0"
