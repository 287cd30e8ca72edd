"""Defenses as one object, and whether an attack succeeded against one.

A ``Defense`` is a classifier (``[0, 1]`` NCHW in, logits out: a standard or adversarially trained
model, possibly behind MagNet's reformer) plus named detectors, each a
:class:`defenses.detector.Detector` (or, for older plug-ins, any object with
``detect(x) -> bool tensor``, True = flagged). Users plug their own defense in by building one
(Python) or by a factory ``pkg.mod:factory`` (``--defense-module``).

An attack succeeds against a defense when (1) the attack produced an example at all, (2) its L2
distance to the original is within the bound, (3) the defended classifier outputs the target
(targeted) or anything but the true label (untargeted), and (4) no detector flags it. Every
reason a sample failed is recorded.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from adaptive.core.checkpoint import sha256_file
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import predict_logits
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
          attack_ok: torch.Tensor, max_l2: float, targets: torch.Tensor | None = None,
          flags: dict[str, torch.Tensor] | None = None,
          max_linf: float | None = None) -> Verdict:
    """Success of adversarial examples against ``defense`` with the reasons for failures.

    ``flags`` may hold detector verdicts already computed for ``x_adv`` (shared detectors of
    several compositions are then run once).
    """
    l2 = (x_adv - x).flatten(1).norm(dim=1).cpu()
    linf = (x_adv - x).flatten(1).abs().amax(dim=1).cpu() if max_linf is not None else None
    pred = defense.predict(x_adv)
    flags = flags if flags is not None else defense.flags(x_adv)
    hit = pred == targets.cpu() if targets is not None else pred != labels.cpu()
    reasons = []
    for i in range(len(x)):
        r = []
        if not bool(attack_ok[i]):
            r.append("attack_failed")
        if float(l2[i]) > max_l2 or (max_linf is not None and float(linf[i]) > max_linf):
            r.append("bound_exceeded")
        if not bool(hit[i]):
            r.append("not_target" if targets is not None else "not_misclassified")
        r += [f"detected:{d}" for d, f in flags.items() if bool(f[i])]
        reasons.append(r)
    success = torch.tensor([not r for r in reasons], dtype=torch.bool)
    return Verdict(success, pred, flags, reasons)


def load_factory(spec: str) -> Callable:
    """``pkg.module:function`` -> the function (a user's defense factory). The module is looked
    up on the import path and in the current folder; importing it runs its code."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ToolkitError(f"--defense-module needs the form pkg.module:factory, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # after installed packages, so it shadows none of them
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise ToolkitError(f"cannot import {mod_name!r} for --defense-module: {e} (looked on "
                           "the Python path and in the current folder)") from e
    except Exception as e:  # the user's code failed while importing: say where, in one line
        raise ToolkitError(f"importing {mod_name!r} for --defense-module raised "
                           f"{type(e).__name__}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ToolkitError(f"{mod_name!r} has no callable {fn_name!r}")
    return fn


def make_plugin_defenses(spec: str, **kwargs) -> dict[str, Defense]:
    """Call the factory of ``--defense-module`` with ``kwargs``: its Defense (or dict of them),
    checked; an exception in the user's factory becomes a one-line error."""
    factory = load_factory(spec)
    try:
        made = factory(**kwargs)
    except ToolkitError:
        raise
    except Exception as e:
        raise ToolkitError(f"the --defense-module factory {spec} raised "
                           f"{type(e).__name__}: {e}") from e
    made = {made.name: made} if isinstance(made, Defense) else made
    if (not isinstance(made, dict) or not made
            or not all(isinstance(d, Defense) for d in made.values())):
        raise ToolkitError(f"the --defense-module factory {spec} must return a Defense or a "
                           f"non-empty dict of them, got {type(made).__name__}")
    return made


def module_sha256(spec: str) -> str:
    """sha256 of the source file of the module of ``pkg.module:factory`` ('' if it has none),
    so that a resumed run notices a changed plug-in."""
    module = sys.modules.get(spec.split(":", 1)[0])
    source = getattr(module, "__file__", None)
    if not source or not os.path.isfile(source):
        return ""
    return sha256_file(Path(source))
