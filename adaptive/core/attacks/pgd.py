"""Batched projected gradient descent (Madry et al.) on the cross-entropy loss.

Used by adversarial training and robust-accuracy evaluation. Scales are in the [0, 1] pixel
range: an L-inf budget of 8/255 is ``eps=8/255``, not 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptive.core.attacks.lp import check_norm, normalize_step, project, random_in_ball
from adaptive.core.errors import ToolkitError


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, random_start: bool = True,
        restarts: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted PGD: adversarial examples within ``eps`` of ``x`` (and inside [0, 1]).

    With ``restarts > 1`` each sample keeps the first restart that fools the model (else the
    last one). ``step_size`` defaults to 2.5 * eps / steps (Madry et al.). The model's mode is
    left as it is: callers training with batch norm decide train/eval themselves.
    """
    check_norm(norm)
    if eps < 0 or steps < 0 or restarts < 1:
        raise ToolkitError("PGD needs eps >= 0, steps >= 0 and restarts >= 1")
    if step_size is None:
        step_size = 2.5 * eps / max(steps, 1)
    x = x.detach()
    best = x.clone()
    undone = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        idx = undone.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        xs, ys = x[idx], y[idx]
        delta = (random_in_ball(xs.shape, eps, norm, generator, xs.device, xs.dtype)
                 if random_start else torch.zeros_like(xs))
        delta = (xs + delta).clamp(0, 1) - xs
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(xs + delta), ys)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + step_size * normalize_step(grad, norm)
            delta = (xs + project(delta, eps, norm)).clamp(0, 1) - xs
        adv = (xs + delta).detach()
        best[idx] = adv
        with torch.no_grad():
            fooled = model(adv).argmax(1) != ys
        undone[idx[fooled]] = False
    return best
