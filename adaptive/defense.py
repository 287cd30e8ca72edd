"""Defenses as one object, and whether an attack succeeded against one.

A ``Defense`` is a classifier (``[0, 1]`` NCHW in, logits out: a standard or adversarially trained
model, possibly behind MagNet's reformer) plus named detectors, each any object with
``detect(x) -> bool tensor`` (True = flagged) and optionally ``score(x)``. Users plug their own
defense in by building one (Python) or by a factory ``pkg.mod:factory`` (``--defense-module``).

An attack succeeds against a defense when (1) the attack produced an example at all, (2) its L2
distance to the original is within the bound, (3) the defended classifier outputs the target
(targeted) or anything but the true label (untargeted), and (4) no detector flags it. Every
reason a sample failed is recorded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from core.errors import ToolkitError
from core.evaluation import predict_logits


class Detector(Protocol):
    def detect(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Defense:
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
        out = {}
        for dname, det in self.detectors.items():
            f = det.detect(x)
            f = torch.as_tensor(f).bool().cpu().view(-1)
            if len(f) != len(x):
                raise ToolkitError(f"detector {dname!r} returned {len(f)} flags for "
                                   f"{len(x)} inputs")
            out[dname] = f
        return out


@dataclass
class Verdict:
    success: torch.Tensor  # bool per sample
    predicted: torch.Tensor  # the defended classifier's labels
    flags: dict[str, torch.Tensor]  # detector -> bool per sample
    reasons: list[list[str]]  # why each sample failed (empty when it succeeded)


def judge(defense: Defense, x_adv: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
          attack_ok: torch.Tensor, max_l2: float, targets: torch.Tensor | None = None,
          flags: dict[str, torch.Tensor] | None = None) -> Verdict:
    """Success of adversarial examples against ``defense`` with the reasons for failures.

    ``flags`` may hold detector verdicts already computed for ``x_adv`` (shared detectors of
    several compositions are then run once).
    """
    l2 = (x_adv - x).flatten(1).norm(dim=1).cpu()
    pred = defense.predict(x_adv)
    flags = flags if flags is not None else defense.flags(x_adv)
    hit = pred == targets.cpu() if targets is not None else pred != labels.cpu()
    reasons = []
    for i in range(len(x)):
        r = []
        if not bool(attack_ok[i]):
            r.append("attack_failed")
        if float(l2[i]) > max_l2:
            r.append("bound_exceeded")
        if not bool(hit[i]):
            r.append("not_target" if targets is not None else "not_misclassified")
        r += [f"detected:{d}" for d, f in flags.items() if bool(f[i])]
        reasons.append(r)
    success = torch.tensor([not r for r in reasons], dtype=torch.bool)
    return Verdict(success, pred, flags, reasons)


def load_factory(spec: str) -> Callable:
    """``pkg.module:function`` -> the function (a user's defense factory)."""
    if ":" not in spec:
        raise ToolkitError(f"--defense-module needs the form pkg.module:factory, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ToolkitError(f"cannot import {mod_name!r} for --defense-module: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ToolkitError(f"{mod_name!r} has no callable {fn_name!r}")
    return fn
