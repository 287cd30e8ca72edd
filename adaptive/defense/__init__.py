"""Defended systems: a :class:`Defense` (a classifier and its detectors) and how an attack's
examples are judged against one (``system``), the built-in compositions of the zoo's parts
(``compositions``: ``none``, ``a2d``, ``magnet``, ``a2d+magnet``, ``at``, ...) and a user's own
defense loaded from a factory (``plugins``)."""

from adaptive.defense.plugins import load_factory, make_plugin_defenses, module_sha256
from adaptive.defense.system import Defense, Verdict, judge, judge_over_draws
from defenses.defense import detector_flags, detector_scores

__all__ = ["Defense", "Verdict", "detector_flags", "detector_scores", "judge",
           "judge_over_draws", "load_factory", "make_plugin_defenses", "module_sha256"]
