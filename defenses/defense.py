"""A defended model as one object: a classifier and its named detectors.

The classifier takes ``[0, 1]`` NCHW and returns logits (a standard or adversarially trained
model, possibly behind MagNet's reformer or any preprocessing); each detector is a
:class:`defenses.detector.Detector` (or, for older plug-ins, any object with
``detect(x) -> bool tensor``, True = flagged). How an attack's examples fare against one is
judged by :func:`adaptive.defense.judge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import predict_logits
from defenses.detector import Detector


@dataclass
class Defense:
    """A defended model: ``classifier`` ([0, 1] NCHW in, logits out), ``detectors`` (name ->
    detector) and, optionally, a differentiable ``surrogate`` of the classifier for the attacks'
    gradients (BPDA); ``predict(x)`` the classifier's labels, ``flags(x)`` each detector's
    verdicts."""

    name: str
    classifier: nn.Module
    detectors: dict[str, Detector] = field(default_factory=dict)
    # where the attacks take their gradients when the classifier hides its own (BPDA,
    # defenses.bpda): a differentiable classifier that labels benign images as ``classifier``
    # does; examples are still judged by ``classifier``
    surrogate: nn.Module | None = None

    def __post_init__(self):
        if self.surrogate is not None and not callable(self.surrogate):
            raise ToolkitError(f"the surrogate of defense {self.name!r} must be a classifier "
                               f"(an nn.Module), got {type(self.surrogate).__name__}")
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
