"""Foolbox's PGD as an independent reference for our robust-accuracy evaluation."""

from __future__ import annotations

import torch
from torch import nn


def foolbox_pgd_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                       norm: str, steps: int, step_size: float, batch_size: int = 250,
                       device=None) -> torch.Tensor:
    """Per-image robustness to Foolbox 3's ``LinfPGD``/``L2PGD`` (one random start):
    True where the image is classified correctly and Foolbox finds no adversarial example."""
    import foolbox as fb

    device = device or next(model.parameters()).device
    fmodel = fb.PyTorchModel(model.eval(), bounds=(0, 1), device=device)
    cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    attack = cls(abs_stepsize=step_size, steps=steps, random_start=True)
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        _, _, success = attack(fmodel, xb, yb, epsilons=eps)
        out.append((~success).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
