"""An A2D-aware surrogate for C&W: make adversarial examples *expensive to attack*.

A2D flags inputs whose attack cost (BIM_d iterations to change the label) is below a benign
threshold ``T``. The cost is a non-differentiable count, so we attack a first-order surrogate of
it. For the adversarial class ``a`` (the target, or the strongest class other than the true
label) and its margin ``m = Z_a - max_{j != a} Z_j``, one BIM_d step of size ``s`` (L-inf: along
the gradient's sign) lowers the margin by about ``s * ||grad m||_dual`` (L1 for L-inf steps, L2
for L2 steps), so an example predicted ``a`` costs about ``m / (s * ||grad m||_dual)``. On
MNIST's benign images this estimate is close to the true BIM_d cost (tested).

The penalty ``relu(factor * T * s * ||grad m||_dual - m)`` is zero once that estimate exceeds
``factor * T``; ``factor > 1`` buys room for the curvature the first-order estimate ignores.
Before the example crosses the boundary ``m < 0``, so the penalty pulls the same way as C&W's
classification loss. The gradient norm is held constant within a C&W step (for ReLU networks
it is piecewise constant anyway), so each step costs one extra forward and backward pass. The
real detector still judges the result: the surrogate only steers the attack.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.errors import ToolkitError


def _margin(logits: torch.Tensor, labels: torch.Tensor | None = None,
            targeted: bool = False) -> torch.Tensor:
    """Z_a - max_{j != a} Z_j for the adversarial class a (the top class without labels)."""
    if labels is None:
        a = logits.argmax(1)
    elif targeted:
        a = labels
    else:
        a = logits.scatter(1, labels[:, None], float("-inf")).argmax(1)
    z_a = logits.gather(1, a[:, None])[:, 0]
    return z_a - logits.scatter(1, a[:, None], float("-inf")).amax(1)


def _dual_norm(g: torch.Tensor, norm: str) -> torch.Tensor:
    flat = g.flatten(1)
    return flat.abs().sum(1) if norm == "linf" else flat.norm(dim=1)


def first_order_cost(model: nn.Module, x: torch.Tensor, step: float,
                     norm: str = "linf") -> torch.Tensor:
    """Estimated BIM_d cost of ``x``: margin / (step * ||grad margin||_dual), per sample."""
    x = x.detach().requires_grad_(True)
    m = _margin(model(x))
    (g,) = torch.autograd.grad(m.sum(), x)
    return (m.detach() / (step * _dual_norm(g, norm).clamp_min(1e-12))).detach()


def cost_penalty(model: nn.Module, step: float, target_cost: float, norm: str = "linf"):
    """``penalty(adv)`` for :class:`CarliniWagnerL2` or :class:`BoundedPGD`: zero once the
    first-order BIM_d cost estimate of ``adv`` (on ``model``) reaches ``target_cost``."""
    if not (step > 0 and target_cost > 0):
        raise ToolkitError("cost_penalty needs step > 0 and target_cost > 0")

    def penalty(adv: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        if not adv.requires_grad:  # only judged (APGD's last iterate): a copy for the gradient
            with torch.enable_grad():
                copy = adv.detach().requires_grad_(True)
                m = _margin(model(copy), labels, targeted)
                (g,) = torch.autograd.grad(m.sum(), copy)
            return torch.relu(target_cost * step * _dual_norm(g, norm) - m.detach())
        m = _margin(model(adv), labels, targeted)
        (g,) = torch.autograd.grad(m.sum(), adv, retain_graph=True)
        need = target_cost * step * _dual_norm(g.detach(), norm)
        return torch.relu(need - m)

    return penalty


def a2d_penalty(a2d, factor: float = 2.0):
    """The surrogate penalty against a calibrated A2D detector with a BIM engine: its first
    BIM_d/BIM2_d engine's step and norm, target ``factor`` x the benign cost threshold."""
    for name in ("bim_d", "bim2_d"):
        if name in a2d.engines:
            engine = a2d.engines[name]
            threshold = a2d.zscore.detectors[name].cost_threshold()
            return cost_penalty(a2d.model, engine.step, factor * threshold, engine.norm)
    raise ToolkitError("the A2D-aware attack needs an A2D detector with a bim_d or bim2_d "
                       f"engine; this one has {', '.join(a2d.engines)}")
