"""The named defense compositions of the sweep: none, a2d, magnet, a2d+magnet, at, a2d+at.

* ``a2d``: the A2D Z-score detector on BIM_d costs (the paper's adaptive-attack setting),
  calibrated on benign images disjoint from the attacked ones, run on the given classifier.
* ``magnet``: MagNet's detectors and its reformer in front of the classifier.
* ``at``: the given classifier, which should be adversarially trained (pass it as --model);
  structurally the same as ``none``, as the paper notes ("no defense is equivalent to AT").
* ``a2d+...``: the union of the detectors; the classifier of the other part.
"""

from __future__ import annotations

from torch import nn

from adaptive.defense import Defense
from adaptive.core.errors import ToolkitError
from defenses.a2d.detector import A2DDetector
from defenses.a2d.presets import make_engine

COMPOSITIONS = ("none", "a2d", "magnet", "a2d+magnet", "at", "a2d+at")


def parse_defenses(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in COMPOSITIONS]
    if bad:
        raise ToolkitError(f"unknown defense {', '.join(bad)}; choose from "
                           f"{', '.join(COMPOSITIONS)} (or --defense-module for your own)")
    return ["none"] + [n for n in dict.fromkeys(names) if n != "none"]


def build_a2d(model: nn.Module, dataset: str, engines: list[str], h: float,
              cal_costs: dict) -> A2DDetector:
    """The A2D detector with the data set's engine presets, calibrated on the benign costs."""
    det = A2DDetector(model, {e: make_engine(e, dataset) for e in engines},
                      k=1 if len(engines) == 1 else 2, h=h)
    return det.fit(costs=cal_costs)


def build_defenses(names: list[str], model: nn.Module, a2d: A2DDetector | None = None,
                   magnet=None) -> dict[str, Defense]:
    out = {}
    # one reformed classifier for every composition with MagNet (judged and checked once)
    reformed = magnet.defended_classifier() if magnet is not None else None
    for name in names:
        parts = name.split("+")
        classifier, detectors = model, {}
        if "a2d" in parts:
            if a2d is None:
                raise ToolkitError(f"defense {name!r} needs the A2D detector")
            detectors["a2d"] = a2d
        if "magnet" in parts:
            if magnet is None:
                raise ToolkitError(f"defense {name!r} needs a MagNet defense (--magnet)")
            classifier = reformed
            detectors.update({f"magnet:{d.name}": d for d in magnet.detectors})
        out[name] = Defense(name, classifier, detectors)
    return out
