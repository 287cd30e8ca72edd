"""A hard-label attack on a whole defended system: HopSkipJump (Chen, Jordan, Wainwright, IEEE
S&P 2020), L2, batched, with per-sample early stopping and query counts.

Its only oracle is the defense's final verdict, "accepted by every detector and classified as
the attacker wants" (:class:`DecisionOracle`): no gradient, no score, no logit. So it attacks
any plug-in detector, A2D's real (non-differentiable) attack-cost count, quantised or randomised
detectors, exactly as they are deployed.

Per image: a starting point the oracle accepts (another image of the batch that the defense
accepts and labels differently, else blended uniform noise), a binary search to the decision
boundary, then ``iterations`` rounds of (1) a Monte-Carlo estimate of the boundary's normal from
``evals`` random probes (growing as sqrt(round), at most ``max_evals``), (2) a geometric step
along it, halved until the oracle accepts, (3) a binary search back to the boundary. Each image
stops as soon as its distance is within ``eps`` (when given): at a bound, nothing more is won.
The result's ``gradient_steps`` holds each image's oracle queries.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from adaptive.attacks.base import AttackResult, Draws, MinimumDistanceAttack, RandomAttack
from adaptive.attacks.registry import (
    Access,
    AttackSetup,
    AttackSpec,
    register_attack,
    settings_dict,
)
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import Norm
from adaptive.core.validation import check_images
from defenses.defense import detector_flags


@dataclass
class HardLabelSettings:
    """HopSkipJump (``--attack hsj``): ``iterations`` rounds, ``evals`` boundary probes in the
    first (growing as sqrt(round) up to ``max_evals``); each image stops once within the bound."""

    iterations: int = 20
    evals: int = 50
    max_evals: int = 300


class DecisionOracle:
    """A defense as a hard-label oracle: ``oracle(x, labels, targeted)`` -> bool per input,
    True where every detector accepts ``x`` and the defended classifier outputs the target
    (targeted) or anything but the label (untargeted). ``defense``: an
    ``adaptive.defense.Defense``; ``input_shape``/``num_classes`` as its classifier's."""

    def __init__(self, defense, input_shape=None, num_classes=None):
        self.defense = defense
        self.input_shape = input_shape or getattr(defense.classifier, "input_shape", None)
        self.num_classes = num_classes or getattr(defense.classifier, "num_classes", None)
        self.queries = 0
        self._seconds: dict[str, float] = {}  # each detector's highest seconds per input

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        # Not under no_grad: a detector may differentiate inside (A2D counts the steps of an
        # attack on each input); what it returns is a verdict either way.
        self.queries += len(x)
        with torch.no_grad():
            pred = self.defense.predict(x)
        labels = labels.to(pred.device)
        ok = (pred == labels if targeted else pred != labels).cpu()
        # each detector only on the inputs still accepted, the cheapest per input first (as
        # measured so far): an input the classifier already answers rightly is refused
        # whatever the detectors say, and A2D runs an attack per input
        for name in sorted(self.defense.detectors, key=lambda k: self._seconds.get(k, 0.0)):
            rows = ok.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            start = time.perf_counter()
            ok[rows] &= ~detector_flags(name, self.defense.detectors[name],
                                        x[rows.to(x.device)])
            per_input = (time.perf_counter() - start) / len(rows)
            self._seconds[name] = max(self._seconds.get(name, 0.0), per_input)
        return ok


class HardLabelAttack(RandomAttack, MinimumDistanceAttack):
    """An attack whose only access is a :class:`DecisionOracle` (passed as ``model``): it takes
    no penalty, the oracle being the whole defense."""

    def _check_oracle(self, model, penalty) -> None:
        if not isinstance(model, DecisionOracle):
            raise ToolkitError(f"{self.name} attacks a DecisionOracle (a defense's verdict), not "
                               "a model")
        if penalty is not None:
            raise ToolkitError("a hard-label attack takes no penalty: the oracle is the whole "
                               "defense")


class HopSkipJump(HardLabelAttack):
    """HopSkipJump-L2 against a :class:`DecisionOracle` (pass it as ``model`` to ``run``):
    ``iterations`` rounds, ``evals`` Monte-Carlo probes in the first (growing as sqrt(round) up
    to ``max_evals``), ``search_steps`` bisection steps per boundary search, ``eps``: stop an
    image once it is that close (None: run every round), seeded by ``seed``. Returns an
    :class:`AttackResult` whose ``gradient_steps`` are oracle queries per image."""

    name = "HopSkipJump"

    def __init__(self, iterations: int = 20, evals: int = 50, max_evals: int = 500,
                 search_steps: int = 12, eps: float | None = None, init_tries: int = 50,
                 batch_size: int = 64, seed: int = 0):
        if not (iterations >= 1 and evals >= 2 and max_evals >= evals and search_steps >= 1
                and init_tries >= 1 and (eps is None or eps > 0)):
            raise ToolkitError("HopSkipJump needs iterations >= 1, 2 <= evals <= max_evals, "
                               "search_steps >= 1, init_tries >= 1 and eps > 0 (or None)")
        self.iterations, self.evals, self.max_evals = int(iterations), int(evals), int(max_evals)
        self.search_steps, self.init_tries = int(search_steps), int(init_tries)
        self.eps, self.batch_size, self.seed = eps, int(batch_size), int(seed)
        self._starts = None  # candidate starting points of the run in progress

    def config(self) -> dict:
        return {"attack": "hopskipjump", "iterations": self.iterations, "evals": self.evals,
                "max_evals": self.max_evals, "search_steps": self.search_steps,
                "eps": self.eps, "init_tries": self.init_tries, "seed": self.seed}

    def run(self, model, x, labels, targeted=False, penalty=None, seeds=None,
            starts: torch.Tensor | None = None) -> AttackResult:
        """As :meth:`Attack.run`; ``starts``: candidate starting points tried in order for
        every image (default: the other images of its batch). With ``seeds`` and ``starts``
        an image's result depends on nothing else in its batch."""
        self._check_oracle(model, penalty)
        if starts is not None:
            check_images(starts, tuple(x.shape[1:]), what="HopSkipJump starting points")
        self._starts = None if starts is None else starts.detach().cpu()
        try:
            return super().run(model, x, labels, targeted, seeds=seeds)
        finally:
            self._starts = None

    # -- one batch ------------------------------------------------------------------------------

    def _run_batch(self, oracle: DecisionOracle, x, labels, targeted, penalty,
                   gen: Draws) -> AttackResult:
        x, labels = x.cpu(), labels.cpu()
        n, dim = len(x), x[0].numel()
        queries = torch.zeros(n, dtype=torch.long)
        adv, found = self._initial(oracle, x, labels, targeted, gen, queries)
        idx = found.nonzero().squeeze(1)
        if len(idx):
            adv[idx] = self._to_boundary(oracle, x[idx], adv[idx], labels[idx], targeted,
                                         queries, idx)
        theta = 1.0 / (math.sqrt(dim) * dim)  # the probe radius relative to the distance
        for t in range(1, self.iterations + 1):
            dist = (adv - x).flatten(1).norm(dim=1)
            active = found & (dist > 0)
            if self.eps is not None:
                active &= dist > self.eps
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            evals = min(int(self.evals * math.sqrt(t)), self.max_evals)
            delta = math.sqrt(dim) * theta * dist[idx]
            grad = self._normal(oracle, adv[idx], labels[idx], targeted, delta, evals, gen,
                                queries, idx)
            step = dist[idx] / math.sqrt(t)
            moved = self._step(oracle, adv[idx], grad, step, labels[idx], targeted, queries,
                               idx)
            adv[idx] = self._to_boundary(oracle, x[idx], moved, labels[idx], targeted,
                                         queries, idx)
        l2 = (adv - x).flatten(1).norm(dim=1)
        l2 = torch.where(found, l2, torch.zeros_like(l2))
        nan = torch.full((n,), float("nan"))
        return AttackResult(torch.where(found.view(-1, *[1] * (x.ndim - 1)), adv, x), l2, found,
                            nan, queries, None)

    def _ask(self, oracle, points, labels, targeted, queries, idx) -> torch.Tensor:
        """The oracle on ``points`` (one per entry of ``idx``), counting the queries."""
        queries.index_add_(0, idx, torch.ones(len(idx), dtype=torch.long))
        return oracle(points, labels, targeted)

    def _initial(self, oracle, x, labels, targeted, gen, queries):
        """A starting point per image the oracle accepts: another image of the batch (or of
        the given ``starts``) the defense accepts and labels as wanted, else uniform noise."""
        n, pool = len(x), self._starts
        adv, found = x.clone(), torch.zeros(n, dtype=torch.bool)
        for shift in range(1, n) if pool is None else range(len(pool)):
            todo = (~found).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            other = x[(todo + shift) % n] if pool is None else pool[shift].expand_as(x[todo])
            ok = self._ask(oracle, other, labels[todo], targeted, queries, todo)
            adv[todo[ok]], found[todo[ok]] = other[ok], True
        for _ in range(self.init_tries):
            todo = (~found).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            noise = gen.sample(todo, x.shape[1:], lambda shape, g: torch.rand(shape, generator=g))
            ok = self._ask(oracle, noise, labels[todo], targeted, queries, todo)
            adv[todo[ok]], found[todo[ok]] = noise[ok], True
        return adv, found

    def _to_boundary(self, oracle, x, adv, labels, targeted, queries, idx):
        """Bisection between each image (not accepted) and its accepted point: the accepted
        end, as close to the image as ``search_steps`` halvings get."""
        lo = torch.zeros(len(x))  # blend weight of the accepted point that is known to fail
        hi = torch.ones(len(x))  # ... known to succeed
        shape = (-1, *[1] * (x.ndim - 1))
        for _ in range(self.search_steps):
            mid = (lo + hi) / 2
            point = x + mid.view(shape) * (adv - x)
            ok = self._ask(oracle, point, labels, targeted, queries, idx)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        return x + hi.view(shape) * (adv - x)

    def _normal(self, oracle, adv, labels, targeted, delta, evals, gen, queries, idx):
        """Monte-Carlo estimate of the boundary's normal at each ``adv`` (towards acceptance)
        from ``evals`` probes at radius ``delta``."""
        m = len(adv)
        u = gen.sample(idx, (evals, *adv.shape[1:]),
                       lambda shape, g: torch.randn(shape, generator=g))
        u = u / u.flatten(2).norm(dim=2).view(m, evals, *[1] * (adv.ndim - 1))
        probes = (adv[:, None] + delta.view(m, 1, *[1] * (adv.ndim - 1)) * u).clamp(0, 1)
        u = (probes - adv[:, None]) / delta.view(m, 1, *[1] * (adv.ndim - 1))
        flat_idx = idx.repeat_interleave(evals)
        ok = self._ask(oracle, probes.flatten(0, 1), labels.repeat_interleave(evals),
                       targeted, queries, flat_idx).view(m, evals).float()
        phi = 2 * ok - 1
        mean = phi.mean(1, keepdim=True)
        # subtract the mean (a baseline) unless every probe agreed
        phi = torch.where((mean.abs() == 1), phi, phi - mean)
        grad = (phi.view(m, evals, *[1] * (adv.ndim - 1)) * u).mean(1)
        return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (adv.ndim - 1))

    def _step(self, oracle, adv, grad, step, labels, targeted, queries, idx):
        """A step along the estimated normal, halved (up to 10 times) until accepted; an image
        whose step is never accepted stays where it was."""
        shape = (-1, *[1] * (adv.ndim - 1))
        out, pending = adv.clone(), torch.ones(len(adv), dtype=torch.bool)
        for _ in range(10):
            p = pending.nonzero().squeeze(1)
            if len(p) == 0:
                break
            cand = (adv[p] + step[p].view(shape) * grad[p]).clamp(0, 1)
            ok = self._ask(oracle, cand, labels[p], targeted, queries, idx[p])
            out[p[ok]] = cand[ok]
            pending[p[ok]] = False
            step = torch.where(pending, step / 2, step)
        return out


def _build(setup: AttackSetup) -> HopSkipJump:
    return HopSkipJump(eps=setup.threat.eps, seed=setup.seed,
                       **settings_dict(setup.settings, setup.overrides))


register_attack(AttackSpec(
    name="hsj", cls=HopSkipJump, settings=HardLabelSettings, settings_key="hsj",
    threat_models=(Norm.L2,), access=Access.LABELS, fixed_budget=False, aims="all",
    build=_build, summary="HopSkipJump-L2 on one defense's verdict (no gradients, no scores)"))
