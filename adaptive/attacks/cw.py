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

from dataclasses import dataclass

import torch

from adaptive.attacks.base import AttackResult, MinimumDistanceAttack, Trace, kappa_margins
from adaptive.attacks.registry import (
    Access,
    AttackSetup,
    AttackSpec,
    register_attack,
    settings_dict,
)
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import model_device
from adaptive.core.threat import Norm

# The result type had C&W's name before every attack shared it.
CWResult = AttackResult


@dataclass
class CWSettings:
    """C&W-L2: Adam ``steps`` per constant, ``binary_search_steps`` over the constant, Adam
    step size ``lr``, first constant ``initial_const``. The defaults are a CPU budget (what
    they reach: reports/sweep-mnist)."""

    steps: int = 200
    binary_search_steps: int = 5
    lr: float = 0.05
    initial_const: float = 0.1
    # each constant after the first from the best example so far (not C&W's algorithm;
    # docs/speed.md: 2.49x Foolbox at these settings, 1.1 % larger L2)
    warm_start: bool = False


class CarliniWagnerL2(MinimumDistanceAttack):
    """C&W-L2 at confidence ``kappa`` (see the module docstring): ``steps`` Adam steps of size
    ``lr`` per constant, ``binary_search_steps`` constants from ``initial_const``, per-sample
    early abort (``abort_early``), ``batch_size`` images at a time (None: at most what suits
    the model's device, ``adaptive.core.runtime.attack_batch_size``, in equal pieces).
    ``warm_start``: each constant after the first starts from the sample's best example so far
    instead of from the image (not C&W's algorithm, nor Foolbox's: off by default). ``run``
    returns an :class:`AttackResult` with the smallest-L2 successful example per image."""

    name = "C&W"

    def __init__(self, kappa: float = 0.0, steps: int = 1000, binary_search_steps: int = 9,
                 lr: float = 0.01, initial_const: float = 1e-3, abort_early: bool = True,
                 batch_size: int | None = None, warm_start: bool = False):
        if kappa < 0 or steps < 1 or binary_search_steps < 1 or lr <= 0 or initial_const <= 0:
            raise ToolkitError("C&W needs kappa >= 0, steps >= 1, binary_search_steps >= 1, "
                               "lr > 0 and initial_const > 0")
        self.kappa, self.steps, self.bs_steps = float(kappa), int(steps), int(binary_search_steps)
        self.lr, self.initial_const, self.abort_early = float(lr), float(initial_const), abort_early
        if batch_size is not None and batch_size < 1:
            raise ToolkitError(f"C&W batch_size must be at least 1, got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.warm_start = bool(warm_start)

    def config(self) -> dict:
        return {"attack": "cw", "kappa": self.kappa, "steps": self.steps,
                "binary_search_steps": self.bs_steps, "lr": self.lr,
                "initial_const": self.initial_const, "abort_early": self.abort_early,
                **({"warm_start": True} if self.warm_start else {})}

    # run(model, x, labels, targeted, penalty): Attack.run. A ``penalty`` is added to the
    # classification loss (times the same constant) and must be exactly 0 for success.

    def _run_batch(self, model, x, labels, targeted, penalty, state) -> AttackResult:
        device = model_device(model)
        x, labels = x.to(device), labels.to(device)
        n = len(x)
        # tanh space; inputs exactly at 0 or 1 are pulled in slightly so atanh stays finite.
        w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        lower = torch.zeros(n, device=device)
        upper = torch.full((n,), 1e10, device=device)
        const = torch.full((n,), self.initial_const, device=device)
        best = _Best.start(x)
        check_every = max(1, self.steps // 10)
        trace = Trace.start(self.steps, n)

        for bs_step in range(self.bs_steps):
            # The state of the samples still running this constant, compacted: every step
            # works on these rows alone (no gather or scatter of the whole batch); a sample
            # that stalls leaves at the next check and its results go back to ``best``.
            start = w0
            if self.warm_start and bs_step > 0:  # from the best example so far, where found
                found = torch.isfinite(best.l2).view(-1, *[1] * (x.ndim - 1))
                start = torch.where(found, torch.atanh((best.adv * 2 - 1).clamp(-1 + 1e-6,
                                                                                 1 - 1e-6)), w0)
            run = _Running.start(best, x, start, labels, const)
            losses = torch.full((self.steps, n), float("nan"), device=device)
            for step in range(1, self.steps + 1):
                wa = run.w.detach().requires_grad_(True)
                adv = (torch.tanh(wa) + 1) / 2
                logits = model(adv)
                margin = kappa_margins(logits, run.labels, targeted)
                l2sq = (adv - run.x).flatten(1).pow(2).sum(1)
                objective = torch.clamp(margin + self.kappa, min=0)
                extra = (penalty(adv, run.labels, targeted) if penalty is not None else None)
                if extra is not None:
                    objective = objective + extra
                loss = l2sq + run.const * objective
                (grad,) = torch.autograd.grad(loss.sum(), wa)
                if bs_step == 0 and step == 1:  # the first gradient's norm, for the trace
                    trace.step(0, run.ids, loss, grad)
                with torch.no_grad():
                    loss = loss.detach()
                    losses[step - 1, run.ids] = loss
                    ok = margin <= -self.kappa
                    if extra is not None:
                        ok &= extra <= 0
                    run.record(adv.detach(), l2sq.sqrt(), margin.detach(), ok)
                    run.adam(wa.detach(), grad, step, self.lr)
                    if self.abort_early and step % check_every == 0:
                        stalled = loss > 0.9999 * run.prev
                        run.prev = loss
                        if bool(stalled.any()):
                            run.keep(~stalled, best)
                            if len(run.ids) == 0:
                                break
            run.keep(None, best)
            trace.restart(torch.arange(n))  # the trace keeps each sample's last constant
            trace.loss[:self.steps] = losses.cpu()
            # Binary search on the constant, per sample.
            succeeded = best.succeeded
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
            best.succeeded = torch.zeros_like(succeeded)

        success = torch.isfinite(best.l2)
        trace.ever_met = success.cpu()  # the best iterate is kept: met once, returned
        nan = torch.full_like(best.margin, float("nan"))
        return AttackResult(best.adv.detach().cpu(),
                            torch.where(success, best.l2, torch.zeros_like(best.l2)).cpu(),
                            success.cpu(), torch.where(success, best.margin, nan).cpu(),
                            best.steps.cpu(), best.reached.cpu(), trace)


@dataclass
class _Best:
    """Per sample of the batch, over every constant: the smallest-L2 successful example
    (``l2`` inf where none), its margin, the highest confidence reached, the Adam steps
    spent, and whether the current constant succeeded (for the binary search)."""

    adv: torch.Tensor
    l2: torch.Tensor
    margin: torch.Tensor
    reached: torch.Tensor
    steps: torch.Tensor
    succeeded: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor) -> _Best:
        n, dev = len(x), x.device
        inf = torch.full((n,), float("inf"), device=dev)
        return cls(x.clone(), inf, inf.clone(), torch.full((n,), float("-inf"), device=dev),
                   torch.zeros(n, dtype=torch.long, device=dev),
                   torch.zeros(n, dtype=torch.bool, device=dev))


@dataclass
class _Running:
    """The samples ``ids`` still optimising the current constant, with their own copies of
    the inputs, labels, constants, Adam state and results so far."""

    ids: torch.Tensor
    x: torch.Tensor
    labels: torch.Tensor
    const: torch.Tensor
    w: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    prev: torch.Tensor
    best: _Best

    @classmethod
    def start(cls, best: _Best, x, w0, labels, const) -> _Running:
        n = len(x)
        mine = _Best(best.adv.clone(), best.l2.clone(), best.margin.clone(),
                     best.reached.clone(), torch.zeros_like(best.steps),
                     torch.zeros_like(best.succeeded))
        return cls(torch.arange(n, device=x.device), x, labels, const, w0.clone(),
                   torch.zeros_like(w0), torch.zeros_like(w0),
                   torch.full((n,), float("inf"), device=x.device), mine)

    def record(self, adv, l2, margin, ok) -> None:
        """One step's iterates: keep the smaller-L2 successes (the same choice, sample by
        sample, as indexing the batch would make)."""
        b = self.best
        b.reached = torch.maximum(b.reached, -margin)
        better = ok & (l2 < b.l2)
        b.l2 = torch.where(better, l2, b.l2)
        b.adv = torch.where(better.view(-1, *[1] * (adv.ndim - 1)), adv, b.adv)
        b.margin = torch.where(better, margin, b.margin)
        b.succeeded = b.succeeded | ok
        b.steps += 1

    def adam(self, w, grad, step: int, lr: float) -> None:
        """Adam, element-wise per sample (bias correction by the shared step count); in place
        on the running rows, with C&W's constants."""
        self.m.mul_(0.9).add_(0.1 * grad)
        self.v.mul_(0.999).add_(0.001 * grad * grad)
        m_hat = self.m / (1 - 0.9 ** step)
        v_hat = self.v / (1 - 0.999 ** step)
        self.w = w - lr * m_hat / (v_hat.sqrt() + 1e-8)

    def keep(self, mask: torch.Tensor | None, best: _Best) -> None:
        """Write the running rows' results back to ``best``; then keep only the rows of
        ``mask`` running (None: the constant is over)."""
        ids, mine = self.ids, self.best
        best.adv[ids], best.l2[ids], best.margin[ids] = mine.adv, mine.l2, mine.margin
        best.reached[ids] = mine.reached
        best.steps[ids] += mine.steps
        best.succeeded[ids] |= mine.succeeded
        mine.steps = torch.zeros_like(mine.steps)
        if mask is None:
            self.ids = ids[:0]
            return
        for name in ("ids", "x", "labels", "const", "w", "m", "v", "prev"):
            setattr(self, name, getattr(self, name)[mask])
        for name in ("adv", "l2", "margin", "reached", "steps", "succeeded"):
            setattr(mine, name, getattr(mine, name)[mask])


def _build(setup: AttackSetup) -> CarliniWagnerL2:
    return CarliniWagnerL2(kappa=setup.kappa, **settings_dict(setup.settings, setup.overrides))


register_attack(AttackSpec(
    name="cw", cls=CarliniWagnerL2, settings=CWSettings, settings_key="cw",
    threat_models=(Norm.L2, Norm.LINF), access=Access.GRADIENTS, fixed_budget=False,
    aims="chosen", build=_build,
    summary="C&W-L2 at confidence kappa (minimum distance; judged in either norm)"))
