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
``success=False``, as C&W does.

Rounds, each only for the samples not yet done: ``restarts`` untargeted ones (the first from
the input, the others from random points of the ball, seeded), then, for an untargeted attack,
one targeted round towards each of the ``target_classes`` most likely other classes of the
clean input (AutoAttack's APGD-T idea): the untargeted margin follows whichever class is
closest now and can stall where another class lies within the ball (measured on CIFAR-10's
adversarially trained model: docs/attacks.md). A targeted success at
kappa is an untargeted one at kappa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adaptive.attacks.base import (
    AttackResult,
    Draws,
    FixedBudgetAttack,
    RandomAttack,
    Trace,
    kappa_margins,
)
from adaptive.attacks.registry import (
    Access,
    AttackSetup,
    AttackSpec,
    register_attack,
    settings_dict,
)
from adaptive.core.attacks.lp import (
    check_norm,
    normalize_step,
    project,
    random_in_ball,
    towards_images,
)
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import model_device
from adaptive.core.threat import Norm

SCHEDULES = ("constant", "cosine")  # step lengths within a round (see _step_length)


@dataclass
class PGDSettings:
    """Bounded PGD (the pgd attacks): ``steps`` per round of 2.5 x bound / steps, ``restarts``
    rounds (the first from the image, the others from random points of the ball), then one
    round towards each of the ``target_classes`` most likely other classes (untargeted); each
    step's gradient averaged over ``eot`` evaluations (Expectation over Transformation); step
    lengths ``constant`` or decaying along a ``cosine`` (same total length)."""

    steps: int = 100
    restarts: int = 3
    target_classes: int = 3
    eot: int = 1  # gradient samples per step (EOT) for defenses that are random per call
    schedule: str = "constant"  # step lengths within a round: constant or cosine (decaying)
    # > 0: each random restart starts at the best of this many points towards other test
    # images (see BoundedPGD), for detectors that reject noise
    start_images: int = 0


@dataclass
class _Best:
    """Per sample, over all rounds: the returned example and what is known of it."""

    adversarial: torch.Tensor  # the margin-reaching iterate with the smallest penalty
    penalty: torch.Tensor  # its penalty (inf: the margin was never reached)
    margin: torch.Tensor  # its margin for the attack's own goal
    done: torch.Tensor  # margin and penalty both met: no more rounds
    steps: torch.Tensor  # gradient steps spent
    reached: torch.Tensor  # the highest confidence (-margin) of any iterate

    @classmethod
    def start(cls, x: torch.Tensor) -> _Best:
        n, dev = len(x), x.device
        return cls(x.clone(), torch.full((n,), float("inf"), device=dev),
                   torch.full((n,), float("nan"), device=dev),
                   torch.zeros(n, dtype=torch.bool, device=dev), torch.zeros(n, dtype=torch.long),
                   torch.full((n,), float("-inf"), device=dev))


class BoundedPGD(RandomAttack, FixedBudgetAttack):
    """PGD in the ``norm`` ball (``l2``, or ``linf``: the box) of radius ``eps`` on C&W's
    objective at confidence ``kappa`` (see the module docstring): ``steps`` steps of
    ``step_size`` (default 2.5 eps / steps) per round, ``restarts`` rounds, then
    ``target_classes`` target rounds, ``batch_size`` images at a time, seeded by ``seed``;
    ``schedule``: ``constant`` step lengths or ``cosine`` (decaying, see ``_step_length``). With
    ``start_images`` M > 0 and a ``start_pool`` of natural images (N, C, H, W), each random
    restart starts instead at the best of M points towards random pool images (as far as the
    ball allows; best by the round's own loss, margin term plus penalty): against detectors
    that model the data (MagNet) random noise starts where they reject, blends of images
    start where they accept. Each
    step descends the sum of the classification term and the penalty; with ``eot`` > 1 its
    gradient is the mean over that many evaluations (Expectation over Transformation, for
    defenses that are random per call: each evaluation draws anew). ``run`` returns an
    :class:`AttackResult`."""

    name = "bounded PGD"
    kind = "bounded-pgd"

    def __init__(self, eps: float, kappa: float = 0.0, steps: int = 100, restarts: int = 1,
                 target_classes: int = 0, step_size: float | None = None,
                 batch_size: int = 256, seed: int = 0, norm: str = "l2", eot: int = 1,
                 schedule: str = "constant", start_images: int = 0,
                 start_pool: torch.Tensor | None = None):
        if not (eps > 0 and kappa >= 0 and steps >= 1 and restarts >= 1
                and target_classes >= 0):
            raise ToolkitError("bounded PGD needs eps > 0 (a finite L2 bound), kappa >= 0, "
                               "steps >= 1, restarts >= 1 and target_classes >= 0")
        if step_size is not None and not step_size > 0:
            raise ToolkitError("bounded PGD needs step_size > 0")
        if not (isinstance(eot, int) and eot >= 1):
            raise ToolkitError(f"EOT needs a whole number of samples >= 1, got {eot!r}")
        if schedule not in SCHEDULES:
            raise ToolkitError(f"unknown step schedule {schedule!r}; choose from "
                               f"{', '.join(SCHEDULES)}")
        if not (isinstance(start_images, int) and start_images >= 0):
            raise ToolkitError(f"start_images must be a whole number >= 0, got {start_images!r}")
        if start_images and (start_pool is None or len(start_pool) == 0):
            raise ToolkitError("start_images > 0 needs a start_pool of images to start towards")
        self.eot, self.schedule = eot, schedule
        self.start_images, self.start_pool = start_images, start_pool
        self.eps, self.kappa, self.steps, self.restarts = float(eps), float(kappa), steps, restarts
        self.target_classes = int(target_classes)
        # Madry et al.'s rule: the steps can cross the ball 2.5 times.
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / steps
        self.batch_size, self.seed, self.norm = int(batch_size), int(seed), check_norm(norm)
        # Projected a hair inside the bound: float32 rounding of the rescaled perturbation can
        # otherwise land at 1.6000001 and be judged over a bound of 1.6.
        self._radius = self.eps * (1 - 1e-5)

    def config(self) -> dict:
        return {"attack": self.kind, "norm": self.norm, "eot": self.eot, "eps": self.eps,
                "kappa": self.kappa,
                "steps": self.steps, "restarts": self.restarts,
                "target_classes": self.target_classes, "step_size": self.step_size,
                "schedule": self.schedule, "seed": self.seed,
                **({"start_images": self.start_images} if self.start_images else {})}

    def _rounds(self, targeted: bool) -> list[tuple[bool, int | None]]:
        """(random start, rank of the other class to target or None) of each round."""
        rounds = [(r > 0, None) for r in range(self.restarts)]
        return rounds if targeted else rounds + [(False, k) for k in range(self.target_classes)]

    def _run_batch(self, model, x, labels, targeted, penalty, draws: Draws) -> AttackResult:
        device = model_device(model)
        x, labels = x.to(device), labels.to(device)
        best = _Best.start(x)
        trace = Trace.start(self.steps + 1, len(x))
        ranked = None
        for random_start, rank in self._rounds(targeted):
            idx = (~best.done).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            goal, goal_targeted = labels, targeted
            if rank is not None:  # towards the rank-th most likely other class of the input
                if ranked is None:
                    with torch.no_grad():
                        z = model(x).scatter(1, labels[:, None], float("-inf"))
                    ranked = z.argsort(1, descending=True)
                if rank >= ranked.shape[1] - 1:
                    break
                goal, goal_targeted = ranked[:, rank], True
            if random_start and self.start_images:
                delta = self._image_start(model, x, labels, targeted, penalty, idx, draws)
            elif random_start:
                delta = draws.sample(idx, x.shape[1:], lambda shape, g: random_in_ball(
                    shape, self._radius, self.norm, g, device, x.dtype))
                delta = (x[idx] + delta).clamp(0, 1) - x[idx]
            else:
                delta = torch.zeros_like(x[idx])
            trace.restart(idx)
            self._round(model, x, idx, delta, (labels, targeted), (goal, goal_targeted),
                        penalty, best, trace)
        success = torch.isfinite(best.penalty)
        l2 = (best.adversarial - x).flatten(1).norm(dim=1)
        l2 = torch.where(success, l2, torch.zeros_like(l2))
        # the iterate that met the whole objective (margin, penalty 0) is kept: met, returned
        trace.ever_met = trace.returned_met = best.done.cpu()
        return AttackResult(best.adversarial.detach().cpu(), l2.cpu(), success.cpu(),
                            best.margin.cpu(), best.steps, best.reached.cpu(), trace)

    def _image_start(self, model, x, labels, targeted, penalty, idx, draws: Draws
                     ) -> torch.Tensor:
        """The start (as a perturbation) of the samples ``idx``: of ``start_images`` points
        towards random pool images, the one with the smallest relu(margin + kappa) +
        penalty."""
        m, pool = self.start_images, self.start_pool
        picks = draws.sample(idx, (m,), lambda shape, g: torch.randint(
            0, len(pool), shape, generator=g)).view(-1)
        rows = torch.arange(len(idx)).repeat_interleave(m)  # candidate -> its sample
        xs, ys = x[idx], labels[idx]
        losses = []
        # candidates a batch at a time: M per sample can be thousands of images
        for r, p in zip(rows.split(self.batch_size), picks.split(self.batch_size)):
            c = towards_images(xs[r], pool[p].to(x), self._radius, self.norm)
            with torch.enable_grad():  # a penalty may differentiate (A2D's cost surrogate)
                c = c.detach().requires_grad_(True)
                loss = torch.relu(kappa_margins(model(c), ys[r], targeted) + self.kappa)
                if penalty is not None:
                    loss = loss + penalty(c, ys[r], targeted)
            losses.append(loss.detach())
        best = torch.cat(losses).view(len(idx), m).argmin(1).cpu()
        chosen = picks.view(len(idx), m)[torch.arange(len(idx)), best]
        return (towards_images(xs, pool[chosen].to(x), self._radius, self.norm) - xs).detach()

    def _round(self, model, x, idx, delta, own_goal, goal, penalty, best: _Best,
               trace: Trace) -> None:
        """One PGD run of the samples ``idx`` from ``x[idx] + delta`` towards ``goal``
        ((labels, targeted)); updates ``best``, whose margins are for ``own_goal``."""
        (labels, targeted), (goal_labels, goal_targeted) = own_goal, goal
        own_round = goal_labels is labels and goal_targeted == targeted  # not a target round
        # The running samples' inputs and labels, gathered once per change of ``idx`` (when
        # some finish), not at every step.
        xs, goals, owns, idx_cpu = x[idx], goal_labels[idx], labels[idx], idx.cpu()
        # steps + 1 evaluations: the iterate after the last step is judged too.
        for step in range(self.steps + 1):
            if len(idx) == 0:  # every sample met the objective
                break
            d = delta.detach().requires_grad_(True)
            adv = xs + d
            logits = model(adv)
            margin = kappa_margins(logits, goals, goal_targeted)
            extra = (penalty(adv, goals, goal_targeted) if penalty is not None
                     else torch.zeros_like(margin))
            last = step == self.steps
            grad = None
            if not last:
                grad = self._direction(d, margin + self.kappa, extra)
                for _ in range(self.eot - 1):  # EOT: average over the defense's randomness
                    d2 = delta.detach().requires_grad_(True)
                    adv2 = xs + d2
                    m2 = kappa_margins(model(adv2), goals, goal_targeted)
                    e2 = (penalty(adv2, goals, goal_targeted)
                          if penalty is not None else torch.zeros_like(m2))
                    grad = grad + self._direction(d2, m2 + self.kappa, e2)
                grad = grad / self.eot
                best.steps[idx_cpu] += 1
            trace.step(step, idx, torch.relu(margin.detach() + self.kappa) + extra.detach(),
                       grad)
            with torch.no_grad():
                own = (margin.detach() if own_round
                       else kappa_margins(logits, owns, targeted))
                finished = self._keep(best, idx, adv, margin, own, extra)
                if last:
                    break
                delta = d.detach()
                if bool(finished.any()):  # the finished leave the round
                    keep = ~finished
                    idx, delta, grad = idx[keep], delta[keep], grad[keep]
                    xs, goals, owns, idx_cpu = xs[keep], goals[keep], owns[keep], idx.cpu()
                delta = delta - self._step_length(step) * normalize_step(grad, self.norm)
                delta = (xs + project(delta, self._radius, self.norm)).clamp(0, 1) - xs

    def _keep(self, best: _Best, idx: torch.Tensor, adv: torch.Tensor, margin: torch.Tensor,
              own: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """Into ``best``: each of the samples ``idx`` whose iterate ``adv`` reaches the kappa
        ``margin`` with a smaller penalty ``extra`` than its best so far (``own``: its margin
        for the attack's own goal); returns which met the whole objective (margin, penalty
        0): they are done."""
        margin, extra = margin.detach(), extra.detach()
        best.reached[idx] = torch.maximum(best.reached[idx], -own)
        ok = margin <= -self.kappa
        better = ok & (extra < best.penalty[idx])
        hit = idx[better]
        best.adversarial[hit] = adv.detach()[better]
        best.penalty[hit], best.margin[hit] = extra[better], own[better]
        finished = ok & (extra <= 0)
        best.done[idx[finished]] = True
        return finished

    def _step_length(self, step: int) -> float:
        """The length of step ``step`` (from 0) of a round: ``step_size`` throughout
        (``constant``), or from about twice ``step_size`` down to about 0 along half a cosine
        sampled at mid-steps (``cosine``: the same total length; long steps cross the ball
        early, short ones settle late where a fixed length keeps oscillating around a narrow
        region that meets every term)."""
        if self.schedule == "constant":
            return self.step_size
        return self.step_size * (1 + math.cos(math.pi * (step + 0.5) / self.steps))

    def _direction(self, delta: torch.Tensor, shortfall: torch.Tensor,
                   penalty: torch.Tensor) -> torch.Tensor:
        """The gradient a step descends (per sample, the shape of ``delta``), from
        ``shortfall`` = margin + kappa (<= 0: the margin is reached) and the penalty, both
        computed from ``delta``: here the gradient of ``relu(shortfall) + penalty``."""
        (grad,) = torch.autograd.grad((torch.relu(shortfall) + penalty).sum(), delta)
        return grad


def _term_gradients(delta: torch.Tensor, shortfall: torch.Tensor,
                    penalty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of the margin and of the penalty, apart (the margin's even where it is
    reached, so a detector step can be kept from undoing it; the penalty's is 0 where it does
    not depend on the input, e.g. no penalty at all)."""
    (g_cls,) = torch.autograd.grad(shortfall.sum(), delta,
                                   retain_graph=penalty.requires_grad)
    if not penalty.requires_grad:
        return g_cls, torch.zeros_like(g_cls)
    (g_pen,) = torch.autograd.grad(penalty.sum(), delta, allow_unused=True)
    return g_cls, (g_pen if g_pen is not None else torch.zeros_like(g_cls))


def _without(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` minus its component along ``b`` where that component opposes ``b``, per sample:
    a descent step along ``-a`` then leaves the term of gradient ``b`` unchanged to first order
    where it would have raised it, and lowers it where it lowers it anyway (``a`` where ``b``
    is 0). Removing the component always, as the paper does, also removes the help: where a
    detector's surrogate is built on the classifier's margin (A2D's cost estimate), the two
    gradients point the same way and nothing is left to step along."""
    af, bf = a.flatten(1), b.flatten(1)
    coef = (af * bf).sum(1).clamp_max(0) / (bf * bf).sum(1).clamp_min(1e-30)
    return (af - coef[:, None] * bf).view_as(a)


class SelectivePGD(BoundedPGD):
    """Selective PGD (Bryniarski et al., ICLR 2022) on the same objective and ball as
    :class:`BoundedPGD`: a sample steps on the classification term alone until it reaches the
    kappa margin, then on the penalty (the detectors) alone; a detector step that undoes the
    margin is followed by classification steps again. Never a sum, so a detector whose gradient
    opposes the classifier's cannot cancel it."""

    name = "selective PGD"
    kind = "spgd"

    def _direction(self, delta, shortfall, penalty):
        g_cls, g_pen = _term_gradients(delta, shortfall, penalty)
        on_classifier = (shortfall > 0).view(-1, *[1] * (delta.ndim - 1))
        return torch.where(on_classifier, g_cls, g_pen)


class OrthogonalPGD(BoundedPGD):
    """Orthogonal PGD (Bryniarski et al., ICLR 2022): as :class:`SelectivePGD`, but each step's
    gradient first loses its component along the other term's gradient where that component
    would undo the other term, so (to first order) a classification step never raises the
    detectors' penalty and a detector step never raises the classification term (a component
    that lowers the other term too is kept: see ``_without``). Exact projections onto the L2
    ball or the L-inf box (the
    public code's L2 option still clipped to a box); the step descends the penalty, whose sign
    is fixed by construction (0 = every detector passed)."""

    name = "orthogonal PGD"
    kind = "opgd"

    def _direction(self, delta, shortfall, penalty):
        g_cls, g_pen = _term_gradients(delta, shortfall, penalty)
        on_classifier = (shortfall > 0).view(-1, *[1] * (delta.ndim - 1))
        return torch.where(on_classifier, _without(g_cls, g_pen), _without(g_pen, g_cls))


def _builder(cls: type[BoundedPGD]):
    def build(setup: AttackSetup) -> BoundedPGD:
        settings = settings_dict(setup.settings, setup.overrides)
        if settings.get("start_images"):  # image starts need the natural images to start at
            settings["start_pool"] = setup.start_pool
        return cls(setup.threat.eps, setup.kappa, seed=setup.seed,
                   norm=setup.threat.norm.value, **settings)
    return build


for _name, _cls, _summary in (
        ("pgd", BoundedPGD, "PGD at exactly the bound on C&W's margin plus the penalties"),
        ("spgd", SelectivePGD, "Selective PGD: the classifier, then the detectors, apart"),
        ("opgd", OrthogonalPGD, "Orthogonal PGD: each term's step orthogonal to the other's")):
    register_attack(AttackSpec(
        name=_name, cls=_cls, settings=PGDSettings, settings_key="pgd",
        threat_models=(Norm.L2, Norm.LINF), access=Access.GRADIENTS, fixed_budget=True,
        aims="chosen" if _cls is BoundedPGD else "all", build=_builder(_cls),
        summary=_summary))
