"""MagNet-aware C&W (as Carlini & Wagner attacked MagNet, 2017): one objective for the whole
defended system.

The classification loss is taken through MagNet's reformer (the classifier MagNet answers
with), and every detector adds ``relu(score / threshold - (1 - slack))``: zero only when the
score is below its threshold by the relative ``slack``, so a successful example passes every
detector with room to spare for float rounding. Success, checked by the attack itself, needs the
kappa margin on the reformed classifier *and* every penalty at zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptive.attacks.base import AttackResult
from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.errors import ToolkitError
from defenses.detector import is_differentiable


def detector_penalty(detectors: list, slack: float = 0.02):
    """``penalty(adv)`` for :class:`CarliniWagnerL2` or :class:`BoundedPGD`: how far the
    detectors' differentiable scores (``relative_score``, 1 at the threshold) lie above
    ``1 - slack``, summed."""
    if not detectors:
        raise ToolkitError("detector_penalty needs at least one detector")
    for d in detectors:
        if not is_differentiable(d):
            raise ToolkitError(f"detector {getattr(d, 'name', d)!r} has no differentiable "
                               "relative_score(x); an adaptive attack cannot see through it")

    def penalty(adv: torch.Tensor, labels=None, targeted: bool = False) -> torch.Tensor:
        return sum(torch.relu(d.relative_score(adv) - (1 - slack)) for d in detectors)

    return penalty


def score_penalty(name: str, detector, slack: float = 0.02):
    """``penalty(adv)`` for an attack that only reads the loss (Square): how far ``detector``
    lies above passing, without gradients. With a ``score`` and a finite ``threshold``:
    ``relu(score - threshold + slack * |threshold|) / |threshold|`` (0 only with room to
    spare); otherwise its flag (1 flagged, 0 passed), a plateau the random search can still
    leave. ``name`` names the detector in a plug-in's error."""
    from defenses.defense import detector_flags, detector_scores

    threshold = getattr(detector, "threshold", None)
    scaled = (callable(getattr(detector, "score", None))
              and isinstance(threshold, (int, float)) and math.isfinite(threshold))
    scale = max(abs(float(threshold)), 1e-6) if scaled else 1.0

    def penalty(adv: torch.Tensor, labels=None, targeted: bool = False) -> torch.Tensor:
        with torch.no_grad():
            if scaled:
                s = detector_scores(name, detector, adv)
                if s is not None:
                    s = s.to(adv.device)
                    return torch.relu(s - float(threshold) + slack * scale) / scale
            return detector_flags(name, detector, adv).float().to(adv.device)

    return penalty


def magnet_aware_cw(attack: CarliniWagnerL2, magnet, x: torch.Tensor, labels: torch.Tensor,
                    targeted: bool = False, slack: float = 0.02) -> AttackResult:
    """C&W-kappa against a MagNet defense as a whole (reformer and every detector)."""
    model: nn.Module = magnet.defended_classifier()
    return attack.run(model, x, labels, targeted, detector_penalty(magnet.detectors, slack))
