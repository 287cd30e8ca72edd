"""BIM_d and BIM2_d: the cost of an untargeted basic iterative attack (L-inf or L2).

The attack runs against the model's own prediction. Iteration ``i`` (0-based) takes one signed
(L-inf) or L2-normalised gradient step of the cross-entropy loss from ``x_i`` to ``x_{i+1}``,
projects onto the eps-ball around the input and the [0, 1] box, and the cost is the first ``i``
whose ``x_{i+1}`` is classified differently. A sample that never flips costs ``max_iter``.

One forward pass at each iterate serves both the flip check and the next gradient, so a sample
that flips at iteration ``i`` costs ``i + 2`` queries (``x_0`` .. ``x_{i+1}``); one that never
flips costs ``max_iter + 1``.

Batched: a batch of at most ``batch_size`` samples runs together; a sample leaves as soon as it
flips (or reaches the cap) and a waiting sample takes its place, so the batch stays full.

Settings (the authors' code, true norms): MNIST L-inf eps 0.3, step 0.0006, 500 iterations;
CIFAR-10 eps 0.03, step 0.00006. The authors' "L2" BIM used Foolbox 1's RMS norm, so for BIM2_d
we scale their RMS eps and step by sqrt(d) (d = pixels x channels) to get true L2 values:
MNIST eps 8.4, step 0.0168 (sqrt(784) = 28); CIFAR-10 eps 1.66, step 0.00333 (sqrt(3072) = 55.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adaptive.core.attacks.lp import check_norm, normalize_step, project
from adaptive.core.runtime import model_device
from defenses.a2d.batching import RunningBatch
from defenses.a2d.cost import AttackCost, CostEngine, check_cap


class BIMCost(CostEngine):
    """Attack-cost engine: iterations of BIM (L-inf, ``bim_d``) or BIM-L2 (``bim2_d``)."""

    def __init__(self, eps: float = 0.3, step: float = 0.0006, max_iter: int = 500,
                 norm: str = "linf", batch_size: int = 256):
        self.eps, self.step, self.norm = float(eps), float(step), check_norm(norm)
        self.max_iter, self.batch_size = check_cap(max_iter), int(batch_size)
        self.name = "bim_d" if norm == "linf" else "bim2_d"

    def config(self) -> dict:
        return {"engine": self.name, "eps": self.eps, "step": self.step, "norm": self.norm,
                "max_iter": self.max_iter}

    def _run(self, model: nn.Module, x: torch.Tensor, cap: int) -> AttackCost:
        device = model_device(model)
        n = len(x)
        result = AttackCost.empty(x, cap)

        def new_rows(a, b):
            xs = x[a:b].to(device)
            return {"x0": xs, "xi": xs.clone(), "it": torch.zeros(b - a, dtype=torch.long),
                    "label": torch.full((b - a,), -1, dtype=torch.long, device=device)}

        batch = RunningBatch(n, self.batch_size, new_rows)
        while batch.pending():
            batch.refill()
            xi = batch.xi.detach().requires_grad_(True)
            logits = model(xi)
            pred = logits.argmax(1)
            it = batch.it.to(device)
            fresh = it == 0
            label = torch.where(fresh, pred, batch.label)
            flip = (~fresh) & (pred != label)
            done = (flip | (it >= cap)).cpu()
            if done.any():
                d_idx, d_it, d_flip = batch.idx[done], batch.it[done], flip.cpu()[done]
                result.record(d_idx, torch.where(d_flip, d_it - 1, torch.full_like(d_it, cap)),
                              d_it + 1, d_flip, xi.detach()[done.to(device)])
            keep = ~done
            if keep.any():
                # Summed loss: per-sample gradients that do not shrink with the batch size.
                loss = F.cross_entropy(logits[keep.to(device)], label[keep.to(device)],
                                       reduction="sum")
                (grad,) = torch.autograd.grad(loss, xi)
            batch.set(label=label)
            batch.keep(keep)
            if not keep.any():
                continue
            k = keep.to(device)
            stepped = xi.detach()[k] + self.step * normalize_step(grad[k], self.norm)
            batch.set(xi=(batch.x0 + project(stepped - batch.x0, self.eps, self.norm)).clamp_(0, 1),
                      it=batch.it + 1)
        return result
