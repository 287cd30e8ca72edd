"""Whether an attack succeeded against a defense (a :class:`defenses.Defense`: a classifier
plus named detectors; users plug their own in by building one, or by a factory
``pkg.mod:factory``, ``--defense-module``, :mod:`adaptive.defense.plugins`).

An attack succeeds against a defense when (1) the attack produced an example at all, (2) its
distance to the original is within the threat model's bound, (3) the defended classifier
outputs the target (targeted) or anything but the true label (untargeted), and (4) no detector
flags it. Every reason a sample failed is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adaptive.core.errors import ToolkitError
from adaptive.core.threat import ThreatModel
from defenses.defense import Defense, detector_flags


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
    # a random defense judged over draws (judge_over_draws): per sample the share of draws
    # it fooled (success: more than half)
    fooled_draws: torch.Tensor | None = None


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


def judge_over_draws(defense: Defense, x_adv: torch.Tensor, x: torch.Tensor,
                     labels: torch.Tensor, attack_ok: torch.Tensor, threat: ThreatModel,
                     draws: int, targets: torch.Tensor | None = None,
                     flags: dict[str, torch.Tensor] | None = None, fixed: frozenset = frozenset(),
                     device=None) -> Verdict:
    """A random defense's verdict on ``x_adv`` over ``draws`` fresh draws of its forward (its
    classifier and every detector not in ``fixed``, whose ``flags`` are reused): an example
    succeeds when it fools more than half of them; ``fooled_draws`` keeps the share it fooled,
    and a failed example's reasons are those of a draw it did not fool. ``flags``, where
    given, are the first draw's."""
    first = judge(defense, x_adv, x, labels, attack_ok, threat, targets, flags)
    fooled = first.success.float()
    failing = [r if r else None for r in first.reasons]
    on_device = x_adv if device is None else x_adv.to(device)
    for _ in range(draws - 1):
        again = {name: (first.flags[name] if name in fixed
                        else detector_flags(name, det, on_device))
                 for name, det in defense.detectors.items()}
        v = judge(defense, x_adv, x, labels, attack_ok, threat, targets, again)
        fooled += v.success.float()
        failing = [f if f is not None or not r else r for f, r in zip(failing, v.reasons)]
    share = fooled / draws
    success = share > 0.5
    # (a sample fooling at most half the draws failed on one at least: its reasons are set)
    reasons = [[] if ok or r is None else r for ok, r in zip(success.tolist(), failing)]
    return Verdict(success, first.predicted, first.flags, reasons, share)
