"""The evaluation checking itself, per sweep: the cheap indicators of attack failure of every
batch (stored per example in the records under ``indicators``) and their counts in
``summary.json`` under ``diagnostics``, with what each means."""

from __future__ import annotations

import torch
from torch import nn

from adaptive.diagnostics import indicators
from adaptive.sweep.checks import white_box_against
from adaptive.sweep.config import SweepConfig


def attack_indicators(cfg: SweepConfig, r, attack_model, labels, verdicts) -> dict:
    """The cheap indicators of attack failure of one batch (adaptive.diagnostics.indicators):
    from the attack's trace, the stability of the model it attacked at its examples, and per
    defense it aimed at, transfer failure."""
    found = dict(indicators.from_trace(r))
    if isinstance(attack_model, nn.Module):  # (not a hard-label oracle)
        found["unstable_predictions"] = indicators.unstable_predictions(
            attack_model, r.adversarial, labels, cfg.targeted, seed=cfg.seed)
    for name, v in verdicts.items():
        if name == "none" or (name in cfg.defenses and white_box_against(cfg.attack, name)):
            found[f"transfer_failure:{name}"] = torch.tensor(
                [indicators.transfer_failure(ok, why)
                 for ok, why in zip(indicators.objective_met(r).tolist(), v.reasons)])
    return found


def diagnostics(records: list[dict], cfg: SweepConfig) -> dict:
    """``{"indicators": {name: {"fired", "of", "meaning"}}, "by_kappa": {kappa: ...}}``."""
    return {"indicators": indicators.count(records),
            "by_kappa": {f"{k:g}": indicators.count([r for r in records if r["kappa"] == k])
                         for k in cfg.kappas}}
