"""RayS (Chen & Gu, KDD 2020): a hard-label attack for L-inf, on a defense's verdict only.

It searches over ray directions, not points: every direction ``d`` is a sign vector, so the
point ``clamp(x + r d)`` lies at L-inf distance at most ``r`` from the image, and the attack
keeps the direction whose decision boundary is nearest (the smallest ``r`` the oracle accepts,
found by bisection). Directions change by flipping the signs of one block of pixels at a time:
first the whole image's halves, then quarters, ... (a hierarchy of blocks over the flattened
image), and back to halves once the blocks are single pixels. A flip is tested with one query
at the best radius so far and is only then bisected, so directions that do not help cost one
query. With a bound ``eps`` an image stops as soon as its boundary is within it (a bisection
first asks at ``eps``). The oracle is :class:`~adaptive.attacks.hard_label.DecisionOracle`: the
defense's final verdict, so it attacks any detector and classifier exactly as deployed,
gradients or not. ``gradient_steps`` holds each image's oracle queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from adaptive.attacks.base import AttackResult, Draws
from adaptive.attacks.hard_label import HardLabelAttack
from adaptive.attacks.registry import (
    Access,
    AttackSetup,
    AttackSpec,
    register_attack,
    settings_dict,
)
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import Norm


@dataclass
class RaySSettings:
    """RayS (``--attack rays``): at most ``queries`` oracle queries per image, bisections to
    ``tolerance`` (in L-inf units); each image stops once its boundary is within the bound."""

    queries: int = 1000
    tolerance: float = 1e-3


class RayS(HardLabelAttack):
    """RayS against a :class:`DecisionOracle` (pass it as ``model`` to ``run``): ``queries``
    per image, bisection to ``tolerance``, ``eps``: stop an image once its boundary is that
    close (None: spend every query), seeded by ``seed`` (or per image by ``run``'s
    ``seeds``). The result's ``l2`` is the L2 distance, as for every attack; the L-inf one is
    at most the radius found."""

    name = "RayS"

    def __init__(self, queries: int = 1000, tolerance: float = 1e-3, eps: float | None = None,
                 batch_size: int = 64, seed: int = 0):
        if not (queries >= 2 and 0 < tolerance < 1 and (eps is None or eps > 0)):
            raise ToolkitError("RayS needs queries >= 2, 0 < tolerance < 1 and eps > 0 "
                               "(or None)")
        self.queries, self.tolerance, self.eps = int(queries), float(tolerance), eps
        self.batch_size, self.seed = int(batch_size), int(seed)
        # the radius asked at the bound, a hair inside it: float32 rounding of x + eps * sign
        # can land just over eps
        self._radius = None if eps is None else float(eps) * (1 - 1e-5)

    def config(self) -> dict:
        return {"attack": "rays", "queries": self.queries, "tolerance": self.tolerance,
                "eps": self.eps, "seed": self.seed}

    def run(self, model, x, labels, targeted=False, penalty=None, seeds=None, starts=None
            ) -> AttackResult:
        """As :meth:`Attack.run` on a :class:`DecisionOracle`; ``starts`` is accepted for the
        hard-label attacks' common call and unused (a ray starts at the image)."""
        self._check_oracle(model, penalty)
        # (the oracle stands in for the model the base class types)
        return super().run(cast(nn.Module, model), x, labels, targeted, seeds=seeds)

    def _run_batch(self, oracle, x, labels, targeted, penalty,
                   draws: Draws) -> AttackResult:
        x, labels = x.cpu(), labels.cpu()
        n, dim = len(x), x[0].numel()
        flat = x.flatten(1)
        queries = torch.zeros(n, dtype=torch.long)
        signs = draws.sample(torch.arange(n), (dim,),
                             lambda s, g: torch.randint(0, 2, s, generator=g)).float() * 2 - 1
        radius = torch.full((n,), math.inf)
        everyone = torch.arange(n)
        # the first direction: accepted at the far end (radius 1 reaches the box's corners)?
        radius = self._improve(oracle, flat, labels, targeted, signs, radius, everyone, queries,
                               x.shape[1:])
        level, block = 0, 0
        while True:
            todo = queries < self.queries
            if self.eps is not None:
                todo &= radius > self._radius
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            size = math.ceil(dim / 2 ** level)
            trial = signs[idx].clone()
            trial[:, block * size:(block + 1) * size] *= -1
            before = radius[idx].clone()
            radius[idx] = self._improve(oracle, flat[idx], labels[idx], targeted, trial,
                                        radius[idx], idx, queries, x.shape[1:])
            better = radius[idx] < before
            signs[idx[better]] = trial[better]
            block += 1
            if block * size >= dim:  # the level's blocks are done: halve them
                level, block = (0 if size == 1 else level + 1), 0
        found = torch.isfinite(radius)
        adv = self._point(flat, signs, radius.where(found, torch.zeros(n))).view_as(x)
        return AttackResult(adv, (adv - x).flatten(1).norm(dim=1), found,
                            torch.full((n,), float("nan")), queries, None)

    @staticmethod
    def _point(flat, signs, radius) -> torch.Tensor:
        return (flat + radius[:, None] * signs).clamp(0, 1)

    def _ask(self, oracle, flat, signs, radius, labels, targeted, idx, queries, shape):
        queries.index_add_(0, idx, torch.ones(len(idx), dtype=torch.long))
        points = self._point(flat, signs, radius).view(len(flat), *shape)
        return oracle(points, labels, targeted)

    def _improve(self, oracle, flat, labels, targeted, signs, radius, idx, queries, shape):
        """Each sample's radius along ``signs`` where that is smaller than its ``radius``
        (one query to know, a bisection to find), else its ``radius``."""
        hi = radius.clamp(max=1.0)
        ok = self._ask(oracle, flat, signs, hi, labels, targeted, idx, queries, shape)
        out = radius.clone()
        rows = ok.nonzero().squeeze(1)
        if len(rows) == 0:
            return out
        lo = torch.zeros(len(rows))
        hi = hi[rows]
        if self._radius is not None:  # at the bound: nothing to win below it
            at_eps = hi > self._radius
            e = at_eps.nonzero().squeeze(1)
            if len(e):
                inside = self._ask(oracle, flat[rows[e]], signs[rows[e]],
                                   torch.full((len(e),), self._radius), labels[rows[e]],
                                   targeted, idx[rows[e]], queries, shape)
                hi[e[inside]] = self._radius
                lo[e[~inside]] = self._radius
        while True:
            open_ = ((hi - lo) > self.tolerance) & (queries[idx[rows]] < self.queries)
            if self._radius is not None:
                open_ &= hi > self._radius
            b = open_.nonzero().squeeze(1)
            if len(b) == 0:
                break
            mid = (lo[b] + hi[b]) / 2
            inside = self._ask(oracle, flat[rows[b]], signs[rows[b]], mid, labels[rows[b]],
                               targeted, idx[rows[b]], queries, shape)
            hi[b[inside]] = mid[inside]
            lo[b[~inside]] = mid[~inside]
        out[rows] = torch.minimum(out[rows], hi)
        return out


def _build(setup: AttackSetup) -> RayS:
    return RayS(eps=setup.threat.eps, seed=setup.seed,
                **settings_dict(setup.settings, setup.overrides))


register_attack(AttackSpec(
    name="rays", cls=RayS, settings=RaySSettings, settings_key="rays",
    threat_models=(Norm.LINF,), access=Access.LABELS, fixed_budget=False, aims="all",
    build=_build, summary="RayS-L-inf on one defense's verdict (no gradients, no scores)"))
