"""PGD-L2 at a fixed budget on C&W's objective: the adaptive attack for "ASR at an L2 bound".

C&W looks for the *smallest* perturbation that meets its objective, with a fixed step budget
and a constant found by binary search. Where the bound is what counts (attack success rate
under a distortion bound), that is the wrong question: a minimum-distance attack that stops
short, or that trades distortion against a detector penalty by its constant, leaves success
inside the bound unused. This attack spends the whole L2 ball instead: projected steps of
fixed length on ``relu(margin + kappa) + penalty`` (C&W's classification term and the same
adaptive penalties, ``adaptive.attacks``), inside the ball of radius ``eps`` and the [0, 1]
box.

Per sample, the returned example is the iterate that reached the kappa margin with the
smallest penalty (the first where several reach zero: the attack stops there), and
``success`` says only that the margin was reached. A penalty that stays above zero is not a
failure of the attack here: it is a surrogate of the detectors, and the real detectors judge
every example anyway. A sample that never reaches the margin returns its input with
``success=False``, as C&W does. The first restart starts at the input, later ones at random
points of the ball (seeded).
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.attacks.cw import CWResult, Penalty, kappa_margins
from core.attacks.lp import normalize_step, project, random_in_ball
from core.errors import ToolkitError
from core.validation import check_images, check_labels


class BoundedPGD:
    def __init__(self, eps: float, kappa: float = 0.0, steps: int = 100, restarts: int = 1,
                 step_size: float | None = None, batch_size: int = 256, seed: int = 0):
        if not (eps > 0 and kappa >= 0 and steps >= 1 and restarts >= 1):
            raise ToolkitError("bounded PGD needs eps > 0 (a finite L2 bound), kappa >= 0, "
                               "steps >= 1 and restarts >= 1")
        if step_size is not None and not step_size > 0:
            raise ToolkitError("bounded PGD needs step_size > 0")
        self.eps, self.kappa, self.steps, self.restarts = float(eps), float(kappa), steps, restarts
        # Madry et al.'s rule: the steps can cross the ball 2.5 times.
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / steps
        self.batch_size, self.seed = int(batch_size), int(seed)
        # Projected a hair inside the bound: float32 rounding of the rescaled perturbation can
        # otherwise land at 1.6000001 and be judged over a bound of 1.6.
        self._radius = self.eps * (1 - 1e-5)

    def config(self) -> dict:
        return {"attack": "bounded-pgd", "eps": self.eps, "kappa": self.kappa,
                "steps": self.steps, "restarts": self.restarts, "step_size": self.step_size,
                "seed": self.seed}

    def run(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
            targeted: bool = False, penalty: Penalty | None = None) -> CWResult:
        """Attack ``x``; ``labels`` are targets (targeted) or true labels (untargeted);
        ``penalty`` as for :meth:`CarliniWagnerL2.run`."""
        check_images(x, getattr(model, "input_shape", None), what="inputs to bounded PGD")
        n_classes = getattr(model, "num_classes", None)
        check_labels(labels, len(x), n_classes or int(labels.max()) + 1, "bounded PGD labels")
        generator = torch.Generator().manual_seed(self.seed)
        parts = [self._run_batch(model, x[i:i + self.batch_size],
                                 labels[i:i + self.batch_size], targeted, penalty, generator)
                 for i in range(0, len(x), self.batch_size)]
        return CWResult(*(torch.cat([getattr(p, f) for p in parts])
                          for f in ("adversarial", "l2", "success", "margin", "gradient_steps",
                                    "confidence_reached")))

    def _run_batch(self, model, x, labels, targeted, penalty, generator) -> CWResult:
        device = next(model.parameters()).device
        x, labels = x.to(device), labels.to(device)
        n = len(x)
        best_adv = x.clone()
        best_penalty = torch.full((n,), float("inf"), device=device)
        best_margin = torch.full((n,), float("nan"), device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        spent = torch.zeros(n, dtype=torch.long)
        reached = torch.full((n,), float("-inf"), device=device)
        for restart in range(self.restarts):
            idx = (~done).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            if restart == 0:
                delta = torch.zeros_like(x[idx])
            else:
                delta = random_in_ball(x[idx].shape, self._radius, "l2", generator, device, x.dtype)
                delta = (x[idx] + delta).clamp(0, 1) - x[idx]
            # steps + 1 evaluations: the iterate after the last step is judged too.
            for step in range(self.steps + 1):
                if len(idx) == 0:  # every sample met the objective
                    break
                d = delta.detach().requires_grad_(True)
                adv = x[idx] + d
                margin = kappa_margins(model(adv), labels[idx], targeted)
                extra = (penalty(adv, labels[idx], targeted) if penalty is not None
                         else torch.zeros_like(margin))
                last = step == self.steps
                grad = None
                if not last:
                    (grad,) = torch.autograd.grad((torch.relu(margin + self.kappa)
                                                   + extra).sum(), d)
                    spent[idx.cpu()] += 1
                with torch.no_grad():
                    margin, extra = margin.detach(), extra.detach()
                    reached[idx] = torch.maximum(reached[idx], -margin)
                    ok = margin <= -self.kappa
                    better = ok & (extra < best_penalty[idx])
                    hit = idx[better]
                    best_adv[hit] = adv.detach()[better]
                    best_penalty[hit], best_margin[hit] = extra[better], margin[better]
                    finished = ok & (extra <= 0)
                    done[idx[finished]] = True
                    if last:
                        break
                    keep = ~finished
                    idx, delta, grad = idx[keep], d.detach()[keep], grad[keep]
                    delta = delta - self.step_size * normalize_step(grad, "l2")
                    delta = (x[idx] + project(delta, self._radius, "l2")).clamp(0, 1) - x[idx]
        success = torch.isfinite(best_penalty)
        l2 = (best_adv - x).flatten(1).norm(dim=1)
        l2 = torch.where(success, l2, torch.zeros_like(l2))
        return CWResult(best_adv.detach().cpu(), l2.cpu(), success.cpu(), best_margin.cpu(),
                        spent, reached.cpu())
