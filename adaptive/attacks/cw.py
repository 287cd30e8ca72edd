"""Carlini & Wagner's L2 attack with confidence kappa, batched, with per-sample early abort.

Minimises ``||x' - x||_2^2 + c * max(margin(x'), -kappa)`` over ``x' = (tanh(w) + 1) / 2`` with
Adam, where ``margin = max_{i != t} Z_i - Z_t`` (targeted at ``t``) or ``Z_y - max_{i != y} Z_i``
(untargeted, away from the label ``y``), and binary-searches the constant ``c`` per sample
(starting at ``initial_const``; times 10 until a first success, then bisection).

Success is kappa-aware: the target logit must beat every other by at least kappa (untargeted:
some other logit beats the label's by kappa). Foolbox's attack reports any misclassification
as success whatever kappa is. Each sample keeps the smallest-L2 successful iterate over all
constants; a sample that never succeeds returns its input unchanged with ``success=False``
(never a zero image).

Early abort, per sample: every ``steps // 10`` steps, a sample whose loss has not dropped
below 0.9999 of its value at the previous check leaves the batch for the rest of that constant
(C&W abort the whole batch; here the others continue).

Adaptive variants pass a defended ``model`` (e.g. through MagNet's reformer) and a ``penalty``
that must reach 0 (e.g. detector scores above their thresholds); see ``adaptive.attacks``.
"""

from __future__ import annotations

import torch

from adaptive.attacks.base import AttackResult, MinimumDistanceAttack, Trace, kappa_margins
from adaptive.core.errors import ToolkitError


# The result type had C&W's name before every attack shared it.
CWResult = AttackResult


class CarliniWagnerL2(MinimumDistanceAttack):
    """C&W-L2 at confidence ``kappa`` (see the module docstring): ``steps`` Adam steps of size
    ``lr`` per constant, ``binary_search_steps`` constants from ``initial_const``, per-sample
    early abort (``abort_early``), ``batch_size`` images at a time. ``run`` returns an
    :class:`AttackResult` with the smallest-L2 successful example per image."""

    name = "C&W"

    def __init__(self, kappa: float = 0.0, steps: int = 1000, binary_search_steps: int = 9,
                 lr: float = 0.01, initial_const: float = 1e-3, abort_early: bool = True,
                 batch_size: int = 256):
        if kappa < 0 or steps < 1 or binary_search_steps < 1 or lr <= 0 or initial_const <= 0:
            raise ToolkitError("C&W needs kappa >= 0, steps >= 1, binary_search_steps >= 1, "
                               "lr > 0 and initial_const > 0")
        self.kappa, self.steps, self.bs_steps = float(kappa), int(steps), int(binary_search_steps)
        self.lr, self.initial_const, self.abort_early = float(lr), float(initial_const), abort_early
        self.batch_size = int(batch_size)

    def config(self) -> dict:
        return {"attack": "cw", "kappa": self.kappa, "steps": self.steps,
                "binary_search_steps": self.bs_steps, "lr": self.lr,
                "initial_const": self.initial_const, "abort_early": self.abort_early}

    # run(model, x, labels, targeted, penalty): Attack.run. A ``penalty`` is added to the
    # classification loss (times the same constant) and must be exactly 0 for success.

    def _run_batch(self, model, x, labels, targeted, penalty, state) -> AttackResult:
        device = next(model.parameters()).device
        x, labels = x.to(device), labels.to(device)
        n = len(x)
        # tanh space; inputs exactly at 0 or 1 are pulled in slightly so atanh stays finite.
        w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        lower = torch.zeros(n, device=device)
        upper = torch.full((n,), 1e10, device=device)
        const = torch.full((n,), self.initial_const, device=device)
        best_l2 = torch.full((n,), float("inf"), device=device)
        best_adv = x.clone()
        best_margin = torch.full((n,), float("inf"), device=device)
        grad_steps = torch.zeros(n, dtype=torch.long)
        reached = torch.full((n,), float("-inf"), device=device)
        check_every = max(1, self.steps // 10)
        trace = Trace.start(self.steps, n)

        for _ in range(self.bs_steps):
            active = torch.arange(n, device=device)
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            prev = torch.full((n,), float("inf"), device=device)
            succeeded = torch.zeros(n, dtype=torch.bool, device=device)
            trace.restart(active)  # the trace keeps each sample's last constant
            for step in range(1, self.steps + 1):
                wa = w[active].detach().requires_grad_(True)
                adv = (torch.tanh(wa) + 1) / 2
                logits = model(adv)
                margin = kappa_margins(logits, labels[active], targeted)
                l2sq = (adv - x[active]).flatten(1).pow(2).sum(1)
                objective = torch.clamp(margin + self.kappa, min=0)
                extra = (penalty(adv, labels[active], targeted) if penalty is not None
                         else None)
                if extra is not None:
                    objective = objective + extra
                loss = l2sq + const[active] * objective
                (grad,) = torch.autograd.grad(loss.sum(), wa)
                grad_steps[active.cpu()] += 1
                trace.step(step - 1, active, loss, grad)
                with torch.no_grad():
                    reached[active] = torch.maximum(reached[active], -margin)
                    ok = margin <= -self.kappa
                    if extra is not None:
                        ok &= extra <= 0
                    l2 = l2sq.sqrt()
                    better = ok & (l2 < best_l2[active])
                    idx = active[better]
                    best_l2[idx], best_adv[idx] = l2[better], adv[better].detach()
                    best_margin[idx] = margin[better]
                    succeeded[active[ok]] = True
                    # Adam, element-wise per sample (bias correction by the shared step count).
                    m[active] = 0.9 * m[active] + 0.1 * grad
                    v[active] = 0.999 * v[active] + 0.001 * grad * grad
                    m_hat = m[active] / (1 - 0.9 ** step)
                    v_hat = v[active] / (1 - 0.999 ** step)
                    w[active] = wa.detach() - self.lr * m_hat / (v_hat.sqrt() + 1e-8)
                    if self.abort_early and step % check_every == 0:
                        stalled = loss.detach() > 0.9999 * prev[active]
                        prev[active] = loss.detach()
                        active = active[~stalled]
                        if len(active) == 0:
                            break
            # Binary search on the constant, per sample.
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)

        success = torch.isfinite(best_l2)
        trace.ever_met = success.cpu()  # the best iterate is kept: met once, returned
        nan = torch.full_like(best_margin, float("nan"))
        return AttackResult(best_adv.detach().cpu(),
                        torch.where(success, best_l2, torch.zeros_like(best_l2)).cpu(),
                        success.cpu(), torch.where(success, best_margin, nan).cpu(), grad_steps,
                        reached.cpu(), trace)
