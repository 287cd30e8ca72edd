"""The ``adaptive`` command line: one module per command group, each with ``register``."""

from adaptive.cli.main import main

__all__ = ["main"]
