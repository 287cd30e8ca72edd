"""Adversarial test sets for evaluating detectors: FGSM, BIM, JSMA, DeepFool and C&W (kappa=0).

Made from correctly classified images; only successful examples (the model's label differs
from the true one, checked by us, not taken from the attack's own flag) are kept.

* ``fgsm``: Foolbox 3 ``FGSM`` at eps (L-inf).
* ``bim``: BIM-A (Feinman et al. 2017, the A2D authors' Env1 setting): L-inf BIM that stops
  each sample at its first misclassification. Foolbox 3's BIM runs a fixed number of steps, which
  gives a different (more robust) kind of example, so we use our batched BIM engine.
* ``jsma``: our one-feature-per-step JSMA (Foolbox 3 has none), targeted at the second most
  likely class, theta = 1 and at most 10% of the features changed (Feinman et al.'s setting).
* ``deepfool``: Foolbox 3 ``L2DeepFoolAttack``.
* ``cw``: Foolbox 3 ``L2CarliniWagnerAttack``, confidence 0, 9 binary-search steps; 300 Adam
  steps on a CPU (near convergence on MNIST; the comparison with 1,000 steps is in docs/a2d.md).
  With ``impl="ours"`` in its settings: our ``CarliniWagnerL2`` at the same settings (the same
  mean L2 as Foolbox's at equal settings, faster: ``benchmarks/cw_vs_foolbox.py``); the
  examples differ in their last digits, so it is a setting of its own, recorded with the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import foolbox as fb
import torch
from torch import nn

from adaptive.core.defaults import preset_family
from adaptive.core.errors import ToolkitError
from defenses.a2d.bim import BIMCost
from defenses.a2d.jsma import JSMACost

ATTACKS = ("fgsm", "bim", "jsma", "deepfool", "cw")
CW_IMPLS = ("foolbox", "ours")  # who makes the C&W set (settings["impl"]; default foolbox)

SETTINGS = {
    "mnist": {
        "fgsm": dict(eps=0.3),
        "bim": dict(eps=0.3, step=0.01, max_iter=100),
        "jsma": dict(theta=1.0, max_fraction=0.1),
        "deepfool": dict(steps=50, overshoot=0.02),
        "cw": dict(steps=300, binary_search_steps=9, stepsize=0.01, initial_const=1e-3),
    },
    "cifar10": {
        "fgsm": dict(eps=8 / 255),
        "bim": dict(eps=8 / 255, step=1 / 255, max_iter=100),
        "jsma": dict(theta=1.0, max_fraction=0.1),
        "deepfool": dict(steps=50, overshoot=0.02),
        "cw": dict(steps=300, binary_search_steps=9, stepsize=0.01, initial_const=1e-3),
    },
}


@dataclass
class AdversarialSet:
    """The successful adversarial examples an ``attack`` made of ``attempted`` images: ``x``
    (float NCHW in [0, 1]) and ``source``, each example's index into the images given."""

    attack: str
    x: torch.Tensor  # successful adversarial examples
    source: torch.Tensor  # index (into the images given) of each example's original
    attempted: int


def attack_settings(attack: str, dataset: str) -> dict:
    if attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    return dict(SETTINGS[preset_family(dataset)][attack])


def make_adversarial(attack: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     settings: dict) -> AdversarialSet:
    """Run ``attack`` on (x, y) with ``settings``; keep the examples the model misclassifies."""
    if attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    s = dict(settings)
    impl = s.pop("impl", "foolbox")
    if attack == "cw" and impl not in CW_IMPLS:
        raise ToolkitError(f"unknown C&W implementation {impl!r}; choose from "
                           f"{', '.join(CW_IMPLS)}")
    if attack == "cw" and impl == "ours":
        from adaptive.attacks.cw import CarliniWagnerL2

        adv = CarliniWagnerL2(kappa=0, steps=s["steps"],
                              binary_search_steps=s["binary_search_steps"], lr=s["stepsize"],
                              initial_const=s["initial_const"]).run(model, x, y).adversarial
        adv = adv.to(x.device)
    elif attack in ("fgsm", "deepfool", "cw"):
        fmodel = fb.PyTorchModel(model, bounds=(0, 1))
        if attack == "fgsm":
            adv = fb.attacks.FGSM()(fmodel, x, y, epsilons=s["eps"])[1]
        elif attack == "deepfool":
            adv = fb.attacks.L2DeepFoolAttack(steps=s["steps"], overshoot=s["overshoot"])(
                fmodel, x, y, epsilons=None)[1]
        else:
            adv = fb.attacks.L2CarliniWagnerAttack(
                binary_search_steps=s["binary_search_steps"], steps=s["steps"],
                stepsize=s["stepsize"], initial_const=s["initial_const"], confidence=0)(
                fmodel, x, y, epsilons=None)[1]
    elif attack == "bim":
        adv = BIMCost(s["eps"], s["step"], s["max_iter"], "linf").run(model, x).adversarial
    else:
        budget = max(1, int(s["max_fraction"] * x[0].numel()))
        adv = JSMACost(theta=s["theta"], max_per_pixel=1, max_iter=budget).run(
            model, x).adversarial
    with torch.no_grad():
        ok = model(adv).argmax(1) != y
    keep = ok.nonzero().squeeze(1)
    return AdversarialSet(attack, adv[keep].detach(), keep, len(x))


def examples_for_study(attack: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(successful examples, their index into ``x``), on the CPU, for studies that compare
    benign and adversarial inputs (CLEVER, attack costs). ``cw`` is our C&W at kappa 0 (same L2
    as Foolbox's, faster); the others as in ``make_adversarial`` with the data set's settings."""
    device = next(model.parameters()).device
    if attack == "cw":
        from adaptive.attacks.cw import CarliniWagnerL2, CWSettings

        r = CarliniWagnerL2(kappa=0, **asdict(CWSettings())).run(model, x.to(device),
                                                                 y.to(device))
        keep = r.success.nonzero().squeeze(1).cpu()
        return r.adversarial[keep].cpu(), keep
    s = make_adversarial(attack, model, x.to(device), y.to(device),
                         attack_settings(attack, dataset))
    return s.x.cpu(), s.source.cpu()
