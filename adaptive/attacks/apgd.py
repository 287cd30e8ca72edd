"""Auto-PGD (Croce & Hein, ICML 2020): PGD at the bound whose step size needs no tuning.

Each round ascends a loss from its start with step size 2 eps, a momentum of 0.75 on the
projected steps, and checkpoints after 22 %, 22 + 19 %, ... of the steps (each interval 3 % of
the steps shorter than the last, at least 6 %): at a checkpoint a sample halves its step and
restarts from its best point when fewer than ``rho`` of the steps since the last one raised
its best loss, or when its step was not halved last time and its best loss did not move since.
Losses: cross entropy (``ce``) or the difference of logits ratio (``dlr``,
``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, invariant to the logits' scale; targeted at
``t``: ``-(z_pi1 - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, the top logit where the reference
takes the true label's: the two agree until the image is misclassified, and only the target
is known here). With ``target_classes`` K, an untargeted attack then runs one targeted-DLR
round towards each of the K most likely other classes (APGD-T).

Everything else is :class:`~adaptive.attacks.bounded_pgd.BoundedPGD`'s, not repeated here:
rounds (the first from the image, restarts from random points of the ball), success at the kappa
margin, the returned example (the margin-reaching iterate with the smallest penalty), per-sample
early stop, EOT and the trace the indicators read. A ``penalty`` (the detectors' terms) is
combined as Selective PGD does: a sample ascends the classifier's loss until it reaches the
margin, then descends the penalty alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adaptive.attacks.base import Trace, kappa_margins
from adaptive.attacks.bounded_pgd import BoundedPGD, _Best
from adaptive.attacks.registry import (
    Access,
    AttackSetup,
    AttackSpec,
    register_attack,
    settings_dict,
)
from adaptive.core.attacks.lp import normalize_step, project
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import Norm

LOSSES = ("ce", "dlr")
# a reached margin ranks above any loss value, so "best so far" never goes back across it
_MET = 1e6


@dataclass
class APGDSettings:
    """APGD (``--attack apgd``): ``steps`` per round, ``restarts`` rounds (the first from the
    image, the others from random points of the ball), ``loss`` ce or dlr, then one targeted-DLR
    round towards each of the ``target_classes`` most likely other classes (untargeted runs);
    ``rho``: the share of improving steps below which a checkpoint halves the step; ``eot``:
    gradient samples per step for defenses that are random per call."""

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    target_classes: int = 0
    rho: float = 0.75
    eot: int = 1


def checkpoints(steps: int) -> list[int]:
    """The steps after which APGD reviews its step size: the first after 22 % of the steps,
    each later interval 3 % of the steps shorter than the one before, at least 6 % (in whole
    steps, as the reference implementation counts them)."""
    first, shortest, shrink = (max(int(f * steps), 1) for f in (0.22, 0.06, 0.03))
    out, at, interval = [], first, first
    while at < steps:
        out.append(at)
        interval = max(interval - shrink, shortest)
        at += interval
    return out


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The difference of logits ratio per sample (higher = closer to the attacker's goal);
    ``labels``: the true labels, or the targets when ``targeted``."""
    z, _ = logits.sort(1, descending=True)
    own = logits.gather(1, labels[:, None]).squeeze(1)
    if targeted:
        if logits.shape[1] < 4:
            raise ToolkitError("targeted DLR needs at least 4 classes")
        # the targeted form compares the target with the runner-up class (APGD-T)
        return -(z[:, 0] - own) / (z[:, 0] - (z[:, 2] + z[:, 3]) / 2 + 1e-12)
    if logits.shape[1] < 3:
        raise ToolkitError("DLR needs at least 3 classes")
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return -(own - others) / (z[:, 0] - z[:, 2] + 1e-12)


class APGD(BoundedPGD):
    """Auto-PGD in the ``norm`` ball of radius ``eps`` at confidence ``kappa`` (see the module
    docstring); the other arguments as :class:`BoundedPGD`'s."""

    name = "APGD"
    kind = "apgd"

    def __init__(self, eps: float, kappa: float = 0.0, steps: int = 100, restarts: int = 1,
                 loss: str = "ce", target_classes: int = 0, rho: float = 0.75,
                 step_size: float | None = None, batch_size: int = 256, seed: int = 0,
                 norm: str = "linf", eot: int = 1,
                 start_images: int = 0, start_pool: torch.Tensor | None = None):
        super().__init__(eps, kappa, steps=steps, restarts=restarts,
                         target_classes=target_classes, batch_size=batch_size, seed=seed,
                         norm=norm, eot=eot, start_images=start_images, start_pool=start_pool)
        if loss not in LOSSES:
            raise ToolkitError(f"unknown APGD loss {loss!r}; choose from {', '.join(LOSSES)}")
        if not 0 < rho < 1:
            raise ToolkitError(f"APGD needs 0 < rho < 1, got {rho!r}")
        if step_size is not None and not step_size > 0:
            raise ToolkitError("APGD needs step_size > 0")
        # the first step's length (APGD's 2 eps); halved where progress stalls
        self.initial_step = float(step_size) if step_size is not None else 2 * self.eps
        self.loss, self.rho, self.momentum = loss, float(rho), 0.75
        self.checkpoints = checkpoints(steps)

    def config(self) -> dict:
        out = super().config()
        out.update(loss=self.loss, rho=self.rho, step_size=self.initial_step)
        out.pop("schedule")
        return out

    def _progress(self, model, adv, goals, goal_targeted, penalty, target_round):
        """(progress to ascend per sample, margin, penalty, logits) at ``adv``: the classifier's
        loss until the kappa margin is reached, then ``_MET`` minus the penalty."""
        logits = model(adv)
        margin = kappa_margins(logits, goals, goal_targeted)
        extra = (penalty(adv, goals, goal_targeted) if penalty is not None
                 else torch.zeros_like(margin))
        if self.loss == "dlr" or target_round:
            cls = dlr_loss(logits, goals, goal_targeted)
        else:
            ce = torch.nn.functional.cross_entropy(logits, goals, reduction="none")
            cls = -ce if goal_targeted else ce
        met = margin + self.kappa <= 0
        return torch.where(met, _MET - extra, cls), margin, extra, logits

    def _gradient(self, model, xs, delta, goals, goal_targeted, penalty, target_round,
                  backward: bool = True):
        """Progress, margin, penalty, logits (of the first evaluation) and the gradient of the
        progress averaged over ``eot`` evaluations (None without ``backward``: the iterate
        after the last step is only judged)."""
        grads: list[torch.Tensor] = []
        first: tuple[torch.Tensor, ...] = ()
        for _ in range(self.eot if backward else 1):
            d = delta.detach().requires_grad_(backward)
            values = self._progress(model, xs + d, goals, goal_targeted, penalty, target_round)
            if backward:
                grads.append(torch.autograd.grad(values[0].sum(), d)[0])
            first = first or tuple(v.detach() for v in values)
        return (*first, torch.stack(grads).mean(0) if backward else None)

    def _round(self, model, x, idx, delta, own_goal, goal, penalty, best: _Best,
               trace: Trace) -> None:
        (labels, targeted), (goal_labels, goal_targeted) = own_goal, goal
        target_round = not (goal_labels is labels and goal_targeted == targeted)
        xs, goals, owns, idx_cpu = x[idx], goal_labels[idx], labels[idx], idx.cpu()
        n = len(idx)
        eta = torch.full((n,), self.initial_step, device=x.device)
        prev = delta.detach()
        state = _Checkpoint.start(n, x.device)
        best_delta = delta.detach().clone()
        best_progress = torch.full((n,), -math.inf, device=x.device)
        best_grad = torch.zeros_like(delta)
        for step in range(self.steps + 1):
            if len(idx) == 0:
                break
            last = step == self.steps
            with torch.enable_grad():
                progress, margin, extra, logits, grad = self._gradient(
                    model, xs, delta, goals, goal_targeted, penalty, target_round, not last)
            trace.step(step, idx, torch.relu(margin + self.kappa) + extra, grad)
            with torch.no_grad():
                own = kappa_margins(logits, owns, targeted) if target_round else margin
                finished = self._keep(best, idx, xs + delta, margin, own, extra)
                if last:
                    break
                best.steps[idx_cpu] += 1
                improved = progress > best_progress
                state.improved += improved.long()
                best_progress = torch.where(improved, progress, best_progress)
                best_delta[improved], best_grad[improved] = delta[improved], grad[improved]
                if step + 1 in self.checkpoints:  # halve the step where progress stalled
                    halve = state.review(best_progress, self.rho, step + 1, self.checkpoints)
                    eta = torch.where(halve, eta / 2, eta)
                    delta[halve], grad[halve] = best_delta[halve], best_grad[halve]
                    prev[halve] = best_delta[halve]
                keep = ~finished
                if bool(finished.any()):  # the finished leave the round
                    idx, idx_cpu = idx[keep], idx[keep].cpu()
                    xs, goals, owns = xs[keep], goals[keep], owns[keep]
                    delta, prev, grad, eta = delta[keep], prev[keep], grad[keep], eta[keep]
                    best_delta, best_grad = best_delta[keep], best_grad[keep]
                    best_progress = best_progress[keep]
                    state = state.subset(keep)
                    if len(idx) == 0:
                        break
                step_eta = eta.view(-1, *[1] * (delta.ndim - 1))
                z = self._within(xs, delta + step_eta * normalize_step(grad, self.norm))
                moved = z if step == 0 else self._within(
                    xs, delta + self.momentum * (z - delta)
                    + (1 - self.momentum) * (delta - prev))
                prev, delta = delta, moved

    def _within(self, xs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """A perturbation projected into the ball and the [0, 1] box."""
        return (xs + project(delta, self._radius, self.norm)).clamp(0, 1) - xs


@dataclass
class _Checkpoint:
    """Per sample, what APGD's next checkpoint decides on: improving steps since the last one,
    the best progress then, and whether the step was halved then."""

    improved: torch.Tensor
    best_then: torch.Tensor
    halved_then: torch.Tensor

    @classmethod
    def start(cls, n: int, device) -> _Checkpoint:
        return cls(torch.zeros(n, dtype=torch.long, device=device),
                   torch.full((n,), -math.inf, device=device),
                   torch.ones(n, dtype=torch.bool, device=device))

    def review(self, best: torch.Tensor, rho: float, step: int, marks: list[int]
               ) -> torch.Tensor:
        """Which samples halve their step at checkpoint ``step``; starts the next interval."""
        at = marks.index(step)
        length = step - (marks[at - 1] if at else 0)
        stalled = self.improved < rho * length
        unmoved = ~self.halved_then & (best <= self.best_then)
        halve = stalled | unmoved
        self.improved.zero_()
        self.best_then, self.halved_then = best.clone(), halve
        return halve

    def subset(self, keep: torch.Tensor) -> _Checkpoint:
        return _Checkpoint(self.improved[keep], self.best_then[keep], self.halved_then[keep])


def _build(setup: AttackSetup) -> APGD:
    settings = settings_dict(setup.settings, setup.overrides)
    return APGD(setup.threat.eps, setup.kappa, seed=setup.seed, norm=setup.threat.norm.value,
                **settings)


register_attack(AttackSpec(
    name="apgd", cls=APGD, settings=APGDSettings, settings_key="apgd",
    threat_models=(Norm.L2, Norm.LINF), access=Access.GRADIENTS, fixed_budget=True,
    aims="chosen", build=_build,
    summary="Auto-PGD (CE or DLR, step size halved on stalled progress, momentum)"))
