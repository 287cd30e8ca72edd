"""The Square attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020): a score-based attack
at the bound that needs no gradient, so it walks straight through a defense whose gradients are
broken (rounding, a step activation, a non-differentiable detector score).

Random search on the model's logits: each query changes the current example inside one square
window, at a random place, and keeps the change when it lowers the loss. The window's side
shrinks along a fixed schedule of the query budget (``p_init`` of the image's area at first,
halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries, scaled to the
budget). L-inf: the window is set to ``x +- eps`` with one random sign per channel, from a start
of vertical stripes at ``+- eps``. L2: a pseudo-Gaussian bump (concentric squares weighted by
``1 / (k + 1)^2``, one half negated) is added in one window while the perturbation of another
window is moved into it, then the whole is rescaled to the L2 ball, from a start of such bumps
on a grid.

The loss (lower is better) is the kappa margin until it is reached and then the ``penalty``
(the detectors' terms, only their values are read: any score works, differentiable or not), so a
step that loses the margin is never taken for a smaller penalty. As the bounded PGDs, success is
the margin reached; the returned example is the margin-reaching point with the smallest penalty;
a sample stops once margin and penalty are both met. ``gradient_steps`` holds model queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

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
from adaptive.core.attacks.lp import check_norm, project
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import Norm

# a reached margin ranks below any margin shortfall, so the search never trades it away
_MET = 1e6
# the schedule's breakpoints, in queries of a 10,000-query run: p halves after each
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass
class SquareSettings:
    """Square (``--attack square``): ``queries`` model queries per image and restart,
    ``p_init`` the first window's share of the image's area, ``restarts`` runs (each from a new
    random start, only for the images not yet done)."""

    queries: int = 1000
    p_init: float = 0.8
    restarts: int = 1


def window_share(p_init: float, query: int, queries: int) -> float:
    """The window's share of the image at ``query`` of ``queries`` (the paper's schedule)."""
    at = int(query / queries * 10_000)
    return p_init / 2 ** sum(at > mark for mark in _HALVINGS)


def bump(side: int) -> torch.Tensor:
    """The L2 attack's pseudo-Gaussian pattern (side x side, unit L2 norm): concentric squares
    around the centre, ring k weighted 1/(k+1)^2 and summed inwards, the lower half negated."""
    def rings(rows: int, cols: int) -> torch.Tensor:
        i = torch.arange(rows, dtype=torch.float32)[:, None]
        j = torch.arange(cols, dtype=torch.float32)[None, :]
        ring = torch.maximum((i - (rows - 1) / 2).abs(), (j - (cols - 1) / 2).abs()).floor()
        top = int(ring.max())
        weights = torch.tensor([sum(1 / (k + 1) ** 2 for k in range(r, top + 1))
                                for r in range(top + 1)])
        return weights[ring.long()]

    half = side // 2
    out = torch.cat([rings(half, side), -rings(side - half, side)]) if half else rings(side, side)
    return out / out.norm()


class _Window(NamedTuple):
    """A square window per sample: each pixel's row and column relative to the window's corner
    (n, h, 1) and (n, 1, w), and the mask of the pixels inside it (n, 1, h, w)."""

    rows: torch.Tensor
    cols: torch.Tensor
    mask: torch.Tensor


class Square(RandomAttack, FixedBudgetAttack):
    """The Square attack in the ``norm`` ball of radius ``eps`` at confidence ``kappa`` (see
    the module docstring): ``queries`` per image and restart, ``p_init``, ``restarts``,
    ``batch_size`` images at a time, seeded by ``seed`` (or per image by ``run``'s
    ``seeds``)."""

    name = "Square"

    def __init__(self, eps: float, kappa: float = 0.0, queries: int = 1000, p_init: float = 0.8,
                 restarts: int = 1, norm: str = "linf", batch_size: int = 256, seed: int = 0):
        if not (eps > 0 and kappa >= 0 and queries >= 2 and 0 < p_init <= 1 and restarts >= 1):
            raise ToolkitError("Square needs eps > 0, kappa >= 0, queries >= 2, "
                               "0 < p_init <= 1 and restarts >= 1")
        self.eps, self.kappa, self.queries = float(eps), float(kappa), int(queries)
        self.p_init, self.restarts, self.norm = float(p_init), int(restarts), check_norm(norm)
        self.batch_size, self.seed = int(batch_size), int(seed)
        # a hair inside the bound, as BoundedPGD: float32 rescaling can land just over it
        self._radius = self.eps * (1 - 1e-5)

    def config(self) -> dict:
        return {"attack": "square", "norm": self.norm, "eps": self.eps, "kappa": self.kappa,
                "queries": self.queries, "p_init": self.p_init, "restarts": self.restarts,
                "seed": self.seed}


    # -- one batch ------------------------------------------------------------------------------

    def _loss(self, model, adv, labels, targeted, penalty):
        """(loss per sample, lower is better; margin; penalty) at ``adv``."""
        with torch.no_grad():
            margin = kappa_margins(model(adv), labels, targeted)
            extra = (penalty(adv, labels, targeted).detach() if penalty is not None
                     else torch.zeros_like(margin))
        met = margin + self.kappa <= 0
        return torch.where(met, extra - _MET, margin + self.kappa), margin, extra

    def _run_batch(self, model, x, labels, targeted, penalty, draws: Draws) -> AttackResult:
        n = len(x)
        dev = x.device
        labels = labels.to(dev)
        best_adv, best_extra = x.clone(), torch.full((n,), math.inf, device=dev)
        best_margin = torch.full((n,), math.nan, device=dev)
        reached = torch.full((n,), -math.inf, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        queries = torch.zeros(n, dtype=torch.long)
        trace = Trace.start(self.queries, n)
        for _ in range(self.restarts):
            idx = (~done).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            trace.restart(idx)
            self._search(model, x, labels, targeted, penalty, draws, idx, trace, queries,
                         (best_adv, best_extra, best_margin, reached, done))
        success = best_extra < math.inf
        trace.ever_met = (success & (best_extra <= 0)).cpu()
        return AttackResult(best_adv.detach().cpu(), (best_adv - x).flatten(1).norm(dim=1).cpu(),
                            success.cpu(), best_margin.cpu(), queries,
                            reached.cpu(), trace)

    def _search(self, model, x, labels, targeted, penalty, draws, idx, trace, queries, best):
        """One run of the random search for the samples ``idx``, into ``best``."""
        best_adv, best_extra, best_margin, reached, done = best
        xs, ys = x[idx], labels[idx]
        cur = self._initial(xs, idx, draws)
        loss, margin, extra = self._loss(model, cur, ys, targeted, penalty)
        for q in range(self.queries):
            if q:  # a proposal in one window, kept where it lowers the loss
                share = window_share(self.p_init, q, self.queries)
                cand = self._propose(xs, cur, share, idx, draws)
                c_loss, c_margin, c_extra = self._loss(model, cand, ys, targeted, penalty)
                better = c_loss < loss
                cur[better], loss[better] = cand[better], c_loss[better]
                margin[better], extra[better] = c_margin[better], c_extra[better]
            queries[idx.cpu()] += 1
            trace.step(q, idx, torch.relu(margin + self.kappa) + extra, None)
            reached[idx] = torch.maximum(reached[idx], -margin)
            met = margin + self.kappa <= 0
            keep = met & (extra < best_extra[idx])
            hit = idx[keep]
            best_adv[hit], best_extra[hit], best_margin[hit] = cur[keep], extra[keep], margin[keep]
            finished = met & (extra <= 0)
            done[idx[finished]] = True
            if bool(finished.any()):  # the finished leave the search
                stay = ~finished
                idx, xs, ys, cur = idx[stay], xs[stay], ys[stay], cur[stay]
                loss, margin, extra = loss[stay], margin[stay], extra[stay]
                if len(idx) == 0:
                    break

    def _initial(self, xs, idx, draws: Draws) -> torch.Tensor:
        """The start: vertical stripes of +-eps (L-inf) or a grid of bumps on the L2 sphere."""
        n, c, h, w = xs.shape
        if self.norm == "linf":
            signs = self._signs(draws, idx, (c, 1, w), xs)
            return (xs + self._radius * signs).clamp(0, 1)
        side = max(h // 5, 1)
        pattern = bump(side).to(xs)
        delta = torch.zeros_like(xs)
        top, left = (h - side * (h // side)) // 2, (w - side * (w // side)) // 2
        for r in range(top, top + side * (h // side), side):
            for s in range(left, left + side * (w // side), side):
                signs = self._signs(draws, idx, (c, 1, 1), xs)
                delta[:, :, r:r + side, s:s + side] += pattern * signs
        delta = delta / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (xs + self._radius * delta).clamp(0, 1)

    def _propose(self, xs, cur, share, idx, draws: Draws) -> torch.Tensor:
        n, c, h, w = xs.shape
        if self.norm == "linf":
            side = min(max(int(round(math.sqrt(share * h * w))), 1), h - 1)
            window = self._window(draws, idx, side, xs).mask
            signs = self._signs(draws, idx, (c, 1, 1), xs)
            cand = torch.where(window, (xs + self._radius * signs).clamp(0, 1), cur)
            # a proposal that changes nothing wastes a query: the window flips its signs
            same = (cand == cur).flatten(1).all(1).view(-1, 1, 1, 1)
            flipped = torch.where(window, (xs - self._radius * signs).clamp(0, 1), cur)
            return torch.where(same, flipped, cand)
        side = max(int(round(math.sqrt(share * h * w))), 3)
        side = min(side + (side % 2 == 0), h)
        return self._propose_l2(xs, cur, side, idx, draws)

    def _propose_l2(self, xs, cur, side, idx, draws: Draws) -> torch.Tensor:
        """The L2 proposal: a new bump in one window, the perturbation of a second window
        moved into the first, the rest of the budget spent on the two."""
        n, c, h, w = xs.shape
        delta = cur - xs
        placed = self._window(draws, idx, side, xs)
        first, second = placed.mask, self._window(draws, idx, side, xs).mask
        both = first | second
        chan = (2, 3)
        norm_first = (delta * first).pow(2).sum(chan, keepdim=True).sqrt()
        norm_both = (delta * both).pow(2).sum(chan, keepdim=True).sqrt()
        norm_all = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        pattern = self._placed_bump(side, placed, xs, draws, idx)
        signs = self._signs(draws, idx, (c, 1, 1), xs)
        new = (pattern * signs + delta * first / (norm_first + 1e-12)) * first
        room = ((self._radius ** 2 - norm_all ** 2).clamp_min(0) / c + norm_both ** 2).sqrt()
        new = new / new.pow(2).sum(chan, keepdim=True).sqrt().clamp_min(1e-12) * room
        moved = torch.where(first, new, torch.where(second, torch.zeros_like(delta), delta))
        adv = (xs + moved).clamp(0, 1)
        return (xs + project(adv - xs, self._radius, "l2")).clamp(0, 1)

    def _placed_bump(self, side, window: _Window, xs, draws, idx) -> torch.Tensor:
        """The bump in each sample's ``window``, transposed for half of the samples at random,
        zero outside it (n, 1, h, w)."""
        n = len(xs)
        pattern = bump(side).to(xs).flatten()
        flip = self._signs(draws, idx, (1,), xs).view(n, 1, 1) > 0
        r, s = window.rows.clamp(0, side - 1), window.cols.clamp(0, side - 1)
        r, s = torch.where(flip, s, r), torch.where(flip, r, s)
        return pattern[r * side + s].unsqueeze(1) * window.mask

    def _window(self, draws: Draws, idx, side, xs) -> _Window:
        """A side x side window at a random place per sample."""
        n, _, h, w = xs.shape
        origin = draws.sample(idx, (2,), lambda shape, g: torch.rand(shape, generator=g))
        origin = origin.to(xs.device)
        top = (origin[:, 0] * (h - side + 1)).long().clamp_max(h - side)
        left = (origin[:, 1] * (w - side + 1)).long().clamp_max(w - side)
        rows = torch.arange(h, device=xs.device).view(1, h, 1) - top.view(n, 1, 1)
        cols = torch.arange(w, device=xs.device).view(1, 1, w) - left.view(n, 1, 1)
        mask = ((rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)).unsqueeze(1)
        return _Window(rows, cols, mask)

    @staticmethod
    def _signs(draws: Draws, idx, shape, xs) -> torch.Tensor:
        """Random +-1 per sample, of shape (n, *shape)."""
        bits = draws.sample(idx, shape, lambda s, g: torch.randint(0, 2, s, generator=g))
        return (2 * bits - 1).to(xs)


def _build(setup: AttackSetup) -> Square:
    return Square(setup.threat.eps, setup.kappa, seed=setup.seed, norm=setup.threat.norm.value,
                  **settings_dict(setup.settings, setup.overrides))


register_attack(AttackSpec(
    name="square", cls=Square, settings=SquareSettings, settings_key="square",
    threat_models=(Norm.L2, Norm.LINF), access=Access.SCORES, fixed_budget=True,
    aims="chosen", build=_build,
    summary="Square attack (random search on the logits and detector scores, no gradients)"))
