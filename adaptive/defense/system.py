"""Defenses as one object, and whether an attack succeeded against one.

A ``Defense`` is a classifier (``[0, 1]`` NCHW in, logits out: a standard or adversarially trained
model, possibly behind MagNet's reformer) plus named detectors, each a
:class:`defenses.detector.Detector` (or, for older plug-ins, any object with
``detect(x) -> bool tensor``, True = flagged). Users plug their own defense in by building one
(Python) or by a factory ``pkg.mod:factory`` (``--defense-module``, :mod:`adaptive.defense.plugins`).

An attack succeeds against a defense when (1) the attack produced an example at all, (2) its
distance to the original is within the threat model's bound, (3) the defended classifier
outputs the target (targeted) or anything but the true label (untargeted), and (4) no detector
flags it. Every reason a sample failed is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import predict_logits
from adaptive.core.threat import ThreatModel
from defenses.detector import Detector


@dataclass
class Defense:
    """A defended model: ``classifier`` ([0, 1] NCHW in, logits out) and ``detectors`` (name ->
    detector); ``predict(x)`` the classifier's labels, ``flags(x)`` each detector's verdicts."""

    name: str
    classifier: nn.Module
    detectors: dict[str, Detector] = field(default_factory=dict)

    def __post_init__(self):
        for dname, det in self.detectors.items():
            if not callable(getattr(det, "detect", None)):
                raise ToolkitError(f"detector {dname!r} of defense {self.name!r} has no "
                                   "detect(x) method")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.classifier, x).argmax(1)

    def flags(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {dname: detector_flags(dname, det, x) for dname, det in self.detectors.items()}


def detector_flags(name: str, detector: Detector, x: torch.Tensor) -> torch.Tensor:
    """``detector.detect(x)`` as a bool CPU tensor of one flag per input, checked: a plug-in
    that returns another number of flags is refused, never silently broadcast."""
    f = detector.detect(x)
    try:
        f = torch.as_tensor(f).bool().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ToolkitError(f"detector {name!r} returned {type(f).__name__}, not one flag per "
                           f"input ({e})") from e
    if len(f) != len(x):
        raise ToolkitError(f"detector {name!r} returned {len(f)} flags for {len(x)} inputs")
    return f


@dataclass
class Verdict:
    """How adversarial examples fared against one defense (``judge``): per sample, whether
    the attack succeeded, the defended classifier's label, each detector's flag and every
    reason it failed (``attack_failed``, ``bound_exceeded``, ``not_misclassified`` or
    ``not_target``, ``detected:NAME``)."""

    success: torch.Tensor  # bool per sample
    predicted: torch.Tensor  # the defended classifier's labels
    flags: dict[str, torch.Tensor]  # detector -> bool per sample
    reasons: list[list[str]]  # why each sample failed (empty when it succeeded)


def judge(defense: Defense, x_adv: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
          attack_ok: torch.Tensor, threat: ThreatModel, targets: torch.Tensor | None = None,
          flags: dict[str, torch.Tensor] | None = None) -> Verdict:
    """Success of adversarial examples against ``defense`` under ``threat`` (the bound
    examples must stay within), with the reasons for failures.

    ``flags`` may hold detector verdicts already computed for ``x_adv`` (shared detectors of
    several compositions are then run once).
    """
    if not isinstance(threat, ThreatModel):
        raise ToolkitError(f"judge needs a ThreatModel, got {type(threat).__name__}")
    within = threat.contains(x_adv, x)
    pred = defense.predict(x_adv)
    flags = flags if flags is not None else defense.flags(x_adv)
    hit = pred == targets.cpu() if targets is not None else pred != labels.cpu()
    reasons = []
    for i in range(len(x)):
        r = []
        if not bool(attack_ok[i]):
            r.append("attack_failed")
        if not bool(within[i]):
            r.append("bound_exceeded")
        if not bool(hit[i]):
            r.append("not_target" if targets is not None else "not_misclassified")
        r += [f"detected:{d}" for d, f in flags.items() if bool(f[i])]
        reasons.append(r)
    success = torch.tensor([not r for r in reasons], dtype=torch.bool)
    return Verdict(success, pred, flags, reasons)
