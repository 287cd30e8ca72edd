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


def _answer(name: str, detector: Detector, call: str, x: torch.Tensor) -> torch.Tensor:
    """``detector.CALL(x)`` as a flat CPU tensor of one value per input; an exception in the
    detector, or an answer that is not one value per input, is one line naming the detector
    and the call."""
    try:
        # (scores are read without gradients, as always; detect may need them: A2D attacks)
        with torch.set_grad_enabled(torch.is_grad_enabled() and call == "detect"):
            found = getattr(detector, call)(x)
    except ToolkitError:
        raise
    except Exception as e:
        raise ToolkitError(f"detector {name!r} raised {type(e).__name__} in {call}(x) on "
                           f"{len(x)} inputs: {e}") from e
    try:
        t = torch.as_tensor(found).detach().cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ToolkitError(f"detector {name!r}: {call}(x) returned {type(found).__name__}, "
                           f"not one value per input ({e})") from e
    if len(t) != len(x):
        raise ToolkitError(f"detector {name!r} returned {len(t)} "
                           f"{'flags' if call == 'detect' else 'scores'} for {len(x)} inputs")
    return t


def detector_flags(name: str, detector: Detector, x: torch.Tensor) -> torch.Tensor:
    """``detector.detect(x)`` as a bool CPU tensor of one flag per input, checked: a plug-in
    that returns another number of flags, or numbers other than True/False (or 0/1), is
    refused, never silently broadcast or coerced; an exception in it is one line naming the
    detector and the call."""
    t = _answer(name, detector, "detect", x)
    if t.dtype != torch.bool:
        is_01 = not t.is_floating_point() and not t.is_complex() and bool(
            ((t == 0) | (t == 1)).all())
        if not is_01:
            raise ToolkitError(f"detector {name!r}: detect(x) must return one True/False flag "
                               f"per input (True = flagged), got {t.dtype} values; compare its "
                               "score with its threshold")
        t = t.bool()
    return t


def detector_scores(name: str, detector: Detector, x: torch.Tensor) -> torch.Tensor | None:
    """``detector.score(x)`` (higher = more adversarial) as a float CPU tensor of one score
    per input, none NaN, checked as :func:`detector_flags` checks flags; None for a detector
    without ``score``."""
    if not callable(getattr(detector, "score", None)):
        return None
    t = _answer(name, detector, "score", x)
    try:
        t = t.float()
    except (TypeError, RuntimeError) as e:
        raise ToolkitError(f"detector {name!r}: score(x) returned {t.dtype} values, not "
                           f"numbers ({e})") from e
    bad = int(torch.isnan(t).sum())
    if bad:
        raise ToolkitError(f"detector {name!r}: score(x) returned NaN for {bad} of {len(x)} "
                           "inputs; a score must be a number (higher = more adversarial)")
    return t
