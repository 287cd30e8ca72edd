"""JSMA_d: the cost of a Jacobian-based saliency-map attack (L0), one feature per step.

Targeted at the input's second most likely class. Each step computes the gradient ``g`` of the
cross-entropy loss towards the target and changes the single feature (pixel channel) with the
largest ``|g|`` among those that may still move in the loss-decreasing direction: by
``theta`` (clipped to [0, 1]) against the sign of ``g``, at most ``max_per_pixel`` times per
feature. This is the "fast" saliency map of Foolbox 1's ``SaliencyMapAttack`` (theta 0.1, 7
changes per pixel), which the A2D authors used; Foolbox 3 has no JSMA.

The cost is the number of steps until the target class has the highest logit; a sample that
does not get there within ``max_iter`` steps (default 2000) never flips and costs ``max_iter``,
as does
one that runs out of features to change. Queries: one forward pass per step plus the first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptive.core.runtime import model_device
from defenses.a2d.batching import RunningBatch
from defenses.a2d.cost import AttackCost, CostEngine, check_cap


class JSMACost(CostEngine):
    """Attack-cost engine: steps of a one-feature-per-step JSMA (``jsma_d``)."""

    name = "jsma_d"

    def __init__(self, theta: float = 0.1, max_per_pixel: int = 7, max_iter: int = 2000,
                 batch_size: int = 256):
        self.theta, self.max_per_pixel = float(theta), int(max_per_pixel)
        self.max_iter, self.batch_size = check_cap(max_iter), int(batch_size)

    def config(self) -> dict:
        return {"engine": self.name, "theta": self.theta, "max_per_pixel": self.max_per_pixel,
                "max_iter": self.max_iter}

    def _run(self, model: nn.Module, x: torch.Tensor, cap: int) -> AttackCost:
        device = model_device(model)
        n = len(x)
        result = AttackCost.empty(x, cap)

        def new_rows(a, b):
            xs = x[a:b].to(device)
            return {"xi": xs.clone(), "changes": torch.zeros_like(xs, dtype=torch.uint8),
                    "it": torch.zeros(b - a, dtype=torch.long),
                    "target": torch.full((b - a,), -1, dtype=torch.long, device=device)}

        batch = RunningBatch(n, self.batch_size, new_rows)
        while batch.pending():
            batch.refill()
            xi = batch.xi.detach().requires_grad_(True)
            logits = model(xi)
            it = batch.it.to(device)
            fresh = it == 0
            target = torch.where(fresh, logits.topk(2, dim=1).indices[:, 1], batch.target)
            won = (~fresh) & (logits.argmax(1) == target)
            keep = ~(won | (it >= cap))
            if keep.any():
                loss = F.cross_entropy(logits[keep], target[keep], reduction="sum")
                (grad,) = torch.autograd.grad(loss, xi)
                g = grad.flatten(1)
                flat = xi.detach().flatten(1)
                # A feature may move against the gradient's sign while it has room to do so.
                room = torch.where(g < 0, flat < 1, flat > 0)
                allowed = room & (g != 0) & (batch.changes.flatten(1) < self.max_per_pixel)
                stuck = keep & ~allowed.any(1)
                keep = keep & ~stuck
            done = ~keep
            if done.any():
                d = done.cpu()
                d_idx, d_it, d_won = batch.idx[d], batch.it[d], won.cpu()[d]
                result.record(d_idx, torch.where(d_won, d_it, torch.full_like(d_it, cap)),
                              d_it + 1, d_won, xi.detach()[done])
            if not keep.any():
                batch.keep(keep.cpu())
                continue
            score = torch.where(allowed, g.abs(), torch.full_like(g, -1.0))[keep]
            pick = score.argmax(1)
            rows = torch.arange(len(pick), device=device)
            new_x = flat[keep].clone()
            direction = -g[keep][rows, pick].sign()
            new_x[rows, pick] = (new_x[rows, pick] + self.theta * direction).clamp(0, 1)
            changes = batch.changes[keep].flatten(1).clone()
            changes[rows, pick] += 1
            batch.set(target=target)
            batch.keep(keep.cpu())
            batch.set(xi=new_x.view_as(batch.xi), changes=changes.view_as(batch.changes),
                      it=batch.it + 1)
        return result
