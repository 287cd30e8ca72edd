"""The named defense compositions of the sweep: ``none``, or parts joined by ``+`` (e.g.
``a2d+magnet``, ``fs``, ``a2d+maha``).

* ``a2d``: the A2D Z-score detector on BIM_d costs (the paper's adaptive-attack setting),
  calibrated on benign images disjoint from the attacked ones, run on the given classifier.
* ``magnet``: MagNet's detectors and its reformer in front of the classifier.
* ``at``: the given classifier, which should be adversarially trained (pass it as --model);
  structurally the same as ``none``, as the paper notes ("no defense is equivalent to AT").
* ``rmagnet``: randomised MagNet (the grey-box variant): MagNet's detectors, and a reformer
  drawn per input from its pool (``MagNet.attach_pool``: the sweep config's ``magnet_pool``;
  the ``adaptive sweep`` command uses the bundled ``mnist-pool``), else from all its
  autoencoders (random per call: attack it with ``--eot``).
* ``fs``, ``maha``: bundled detectors of known fate (feature squeezing, Mahalanobis;
  ``defenses.detector_zoo``), fitted for the zoo model by ``adaptive train detector``.
* ``a2d+...``: the union of the detectors; the classifier of the other part (MagNet's
  reformer, at most one of ``magnet`` and ``at``).
"""

from __future__ import annotations

from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.defense.system import Defense
from defenses.a2d.detector import A2DDetector
from defenses.a2d.presets import make_engine
from defenses.detector_zoo import DETECTORS as ZOO_DETECTORS

# the compositions of the paper's sweeps (any other joins of PARTS work the same way)
COMPOSITIONS = ("none", "a2d", "magnet", "a2d+magnet", "at", "a2d+at")
PARTS = ("a2d", "magnet", "rmagnet", "at", *ZOO_DETECTORS)
MAGNET_PARTS = ("magnet", "rmagnet")
CLASSIFIER_PARTS = ("magnet", "rmagnet", "at")  # at most one: each replaces the classifier


def is_composition(name: str) -> bool:
    """Whether ``name`` is ``none`` or parts of PARTS joined by ``+`` (each once, at most one
    of ``magnet``, ``rmagnet`` and ``at``): a defense the toolkit builds itself."""
    if name == "none":
        return True
    parts = name.split("+")
    return (all(p in PARTS for p in parts) and len(set(parts)) == len(parts)
            and len(set(parts) & set(CLASSIFIER_PARTS)) <= 1)


def uses_magnet(names: list[str]) -> bool:
    """Whether any composition of ``names`` needs the MagNet defense (magnet or rmagnet)."""
    return any(p in MAGNET_PARTS for n in names for p in n.split("+"))


def uses_randomized_magnet(names: list[str]) -> bool:
    """Whether any composition of ``names`` is randomised MagNet (``rmagnet``)."""
    return any("rmagnet" in n.split("+") for n in names)


def parse_defenses(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if not is_composition(n)]
    if bad:
        raise ToolkitError(f"unknown defense {', '.join(bad)}; give parts of "
                           f"{', '.join(PARTS)} joined by + (e.g. {', '.join(COMPOSITIONS[1:])}"
                           ", a2d+fs), each once, at most one of magnet, rmagnet and at (or "
                           "--defense-module for your own)")
    return ["none"] + [n for n in dict.fromkeys(names) if n != "none"]


def zoo_parts(names: list[str]) -> list[str]:
    """The bundled detectors (``fs``, ``maha``) the compositions ``names`` use, in order."""
    return list(dict.fromkeys(p for n in names if is_composition(n) for p in n.split("+")
                              if p in ZOO_DETECTORS))


def load_zoo_detectors(names: list[str], model: nn.Module, model_ref: str,
                       model_sha256: str | None) -> dict:
    """Part name -> the bundled detector, for every zoo part of ``names``."""
    from defenses.detector_zoo import load_detector

    return {p: load_detector(p, model, model_ref, model_sha256) for p in zoo_parts(names)}


def build_a2d(model: nn.Module, dataset: str, engines: list[str], h: float,
              cal_costs: dict) -> A2DDetector:
    """The A2D detector with the data set's engine presets, calibrated on the benign costs."""
    det = A2DDetector(model, {e: make_engine(e, dataset) for e in engines},
                      k=1 if len(engines) == 1 else 2, h=h)
    return det.fit(costs=cal_costs)


def build_defenses(names: list[str], model: nn.Module, a2d: A2DDetector | None = None,
                   magnet=None, zoo: dict | None = None) -> dict[str, Defense]:
    """The Defense of each composition of ``names``; ``zoo``: the bundled detectors by part
    (``load_zoo_detectors``)."""
    out, zoo = {}, zoo or {}
    # one reformed classifier for every composition with MagNet (judged and checked once)
    reformed = magnet.defended_classifier() if magnet is not None else None
    randomized = (magnet.randomized_classifier() if magnet is not None
                  and uses_randomized_magnet(names) else None)
    for name in names:
        parts = name.split("+")
        classifier, detectors = model, {}
        if "a2d" in parts:
            if a2d is None:
                raise ToolkitError(f"defense {name!r} needs the A2D detector")
            detectors["a2d"] = a2d
        if set(parts) & set(MAGNET_PARTS):
            if magnet is None:
                raise ToolkitError(f"defense {name!r} needs a MagNet defense (--magnet)")
            classifier = randomized if "rmagnet" in parts else reformed
            detectors.update({f"magnet:{d.name}": d for d in magnet.detectors})
        for part in parts:
            if part in ZOO_DETECTORS:
                if part not in zoo:
                    raise ToolkitError(f"defense {name!r} needs the {part} detector")
                detectors[part] = zoo[part]
        out[name] = Defense(name, classifier, detectors)
    return out
