"""CLEVER robustness scores (Weng et al., ICLR 2018), batched.

For an image ``x0`` predicted as class ``c`` and a target class ``j``, the margin is
``g(x) = Z_c(x) - Z_j(x)`` on logits. Points are sampled uniformly in the Lp ball of radius R
around ``x0`` (clipped to [0, 1]); the dual norm (L2 for p=2, L1 for p=inf) of ``grad g`` is
taken at each, and the maximum of every batch of ``n_samples`` points is kept. A reverse Weibull
distribution fitted to the ``n_batches`` maxima estimates the local Lipschitz constant ``L`` by
its location; the score is ``min(g(x0) / L, R)``. Untargeted: the minimum over all ``j != c``;
``top2`` / ``top5`` / ``llc``: the 2nd, 5th most likely and least likely class.

Batching: the sampled points of several images (or, for large sample batches, pieces of one)
go through one forward pass, shared by every target class (one backward pass per target), in
passes of ``chunk_points`` points (64 on a CPU, where larger passes are slower per point; 16,384
on a GPU); the reverse-Weibull fits of all (image, target) rows run together, vectorised
(``fit_lipschitz_batch``).

Fits (maximum likelihood in float64, maxima rescaled by their largest value): by default the
vectorised profile-likelihood fit of ``fit_lipschitz_batch`` (all rows at once, much faster
than scipy: docs/clever.md; at least scipy's likelihood in the tests); ``fit="scipy"`` uses
``scipy.stats.weibull_max.fit`` per row from several starting shapes, best by the
Kolmogorov-Smirnov p-value. Either way a fit that is poor (p < ``min_pvalue``), whose location lies
below the largest observed maximum (impossible for a reverse Weibull) or implausibly far above it
(more than 5 spreads of the maxima; a degenerate fit with shape > 1000, whose location and scale
cancel, matches the data yet bounds nothing) falls back to the sample maximum, and maxima that
are all equal (a locally linear model) use that value directly.

Guards: the model is evaluated in eval mode; NaN, infinite or all-zero gradients, inputs already
on or past the boundary (``g(x0) <= 0``) and misclassified inputs (when labels are given) are
flagged; the smallest distance to a sampled point whose class changed is a free upper bound on
the minimal adversarial distance, and a score above it is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from adaptive.core.attacks.lp import random_in_ball
from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images

TARGETS = ("untargeted", "top2", "top5", "llc")
PRESETS = {"original": dict(n_batches=500, n_samples=1024),
           "cpu-fast": dict(n_batches=50, n_samples=64)}
_START_SHAPES = (0.1, 1.0, 5.0, 20.0)
# Points per forward pass. A CPU is fastest on small passes (caches; the work-per-point table
# of benchmarks/clever_speed.py), a GPU needs large ones to be kept busy.
DEFAULT_CHUNK_POINTS = {"cpu": 64, "cuda": 16384}


@dataclass
class CleverScore:
    """One image's CLEVER estimate for one target: ``score`` (margin / Lipschitz estimate, a
    lower bound on the distance to that class's boundary within the radius), the ``target``
    class, the ``margin`` and ``lipschitz`` estimate it divides, how the Lipschitz estimate was
    fitted (``fit``: weibull, sample-max or constant) with the Weibull parameters, the
    distance bound of the flip it predicts and diagnostic ``flags``."""

    score: float
    target: int
    margin: float
    lipschitz: float
    fit: str  # weibull | sample-max | constant
    weibull: dict = field(default_factory=dict)  # shape c, loc, scale, ks_pvalue
    flip_distance_bound: float = math.inf
    flags: list = field(default_factory=list)


def fit_lipschitz(maxima: np.ndarray, min_pvalue: float = 0.05) -> tuple[float, str, dict]:
    """Lipschitz estimate from batch maxima: (L, how, Weibull parameters)."""
    m = np.asarray(maxima, dtype=np.float64)
    top = float(m.max())
    if top <= 0 or not np.isfinite(m).all():
        return top, "sample-max", {}
    if float(m.max() - m.min()) <= 1e-9 * top:
        return top, "constant", {}
    r = m / top  # rescaled: the fit works on numbers near 1
    best = None
    for c0 in _START_SHAPES:
        try:
            c, loc, scale = stats.weibull_max.fit(r, c0, loc=1.0 + r.std(), scale=r.std() * 2)
            p = float(stats.kstest(r, "weibull_max", args=(c, loc, scale)).pvalue)
        except Exception:  # a start that fails to converge is simply skipped
            continue
        if np.isfinite(p) and (best is None or p > best[3]):
            best = (c, loc, scale, p)
    if best is None:
        return top, "sample-max", {}
    c, loc, scale, p = best
    params = {"c": float(c), "loc": float(loc * top), "scale": float(scale * top),
              "ks_pvalue": p}
    # A huge shape with location and scale cancelling fits the data's shape well (good p-value)
    # but its location is no bound at all (seen: c 1e8, loc 1e8 on MNIST); so is a location
    # far above the observed maxima.
    spread = 1.0 - float(r.min())
    if p < min_pvalue or loc < 1.0 or c > 1e3 or loc > 1.0 + 5 * spread:
        return top, "sample-max", params
    return float(loc * top), "weibull", params


# Reverse-Weibull fits of many rows at once, by profile likelihood: for a location ``loc`` the
# distances y = loc - maxima are Weibull, whose maximum-likelihood shape solves a monotone
# equation (bisection, all rows and candidate locations together) and whose scale is then in
# closed form; the location maximising the profile likelihood is picked on a geometric grid of
# (loc - max) / spread, then refined between the best point's neighbours.
_LOC_GRID = np.geomspace(1e-3, 10.0, 48)
_SHAPE_RANGE = (0.02, 5000.0)
_BISECTIONS = 48


def _profile(r: np.ndarray, loc: np.ndarray):
    """Shape, scale and profile log-likelihood of Weibull fits to ``loc - r``.

    ``r``: (rows, n) rescaled maxima; ``loc``: (rows, grid) candidate locations (> max r)."""
    y = loc[..., None] - r[:, None, :]  # rows, grid, n; all positive
    y_max = y.max(-1)
    log_y = np.log(y / y_max[..., None])  # <= 0: powers below stay in (0, 1]
    mean_log = log_y.mean(-1)
    lo = np.full(loc.shape, math.log(_SHAPE_RANGE[0]))
    hi = np.full(loc.shape, math.log(_SHAPE_RANGE[1]))
    for _ in range(_BISECTIONS):  # d/dc of the equation > 0: a single root
        mid = 0.5 * (lo + hi)
        c = np.exp(mid)[..., None]
        w = np.exp(c * log_y)
        f = (w * log_y).sum(-1) / w.sum(-1) - 1.0 / c[..., 0] - mean_log
        lo, hi = np.where(f < 0, mid, lo), np.where(f < 0, hi, mid)
    c = np.exp(0.5 * (lo + hi))
    n = r.shape[1]
    mean_pow = np.exp(c[..., None] * log_y).mean(-1)
    scale = y_max * mean_pow ** (1.0 / c)
    loglik = (n * np.log(c) - n * np.log(mean_pow) + (c - 1) * log_y.sum(-1)
              - n * np.log(y_max) - n)
    return c, scale, loglik


def fit_lipschitz_batch(maxima: np.ndarray, min_pvalue: float = 0.05,
                        max_elements: int = 4_000_000) -> tuple[np.ndarray, list, list]:
    """Lipschitz estimates of many rows of batch maxima at once: (L per row, how per row,
    Weibull parameters per row), with the acceptance rules of :func:`fit_lipschitz`."""
    m = np.asarray(maxima, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ToolkitError("fit_lipschitz_batch needs a (rows, n >= 2) array of maxima")
    rows, n = m.shape
    top = m.max(1)
    lip = top.copy()
    how = ["sample-max"] * rows
    params: list = [{} for _ in range(rows)]
    finite = np.isfinite(m).all(1) & (top > 0)
    spread_all = np.where(finite, 1.0 - m.min(1) / np.where(top > 0, top, 1.0), 0.0)
    for i in np.nonzero(finite & (spread_all <= 1e-9))[0]:
        how[i] = "constant"
    todo = np.nonzero(finite & (spread_all > 1e-9))[0]
    step = max(1, max_elements // (len(_LOC_GRID) * n))
    for start in range(0, len(todo), step):
        idx = todo[start:start + step]
        r = m[idx] / top[idx, None]
        spread = spread_all[idx]
        loc = 1.0 + spread[:, None] * _LOC_GRID[None, :]
        _, _, ll = _profile(r, loc)
        k = ll.argmax(1)
        # Refine between the neighbours of the best grid point.
        g_lo = _LOC_GRID[np.maximum(k - 1, 0)]
        g_hi = _LOC_GRID[np.minimum(k + 1, len(_LOC_GRID) - 1)]
        fine = np.geomspace(g_lo, g_hi, 17, axis=1)  # rows, 17
        loc_f = 1.0 + spread[:, None] * fine
        c_f, s_f, ll_f = _profile(r, loc_f)
        b = ll_f.argmax(1)
        sel = np.arange(len(idx))
        c, scale, loc_b = c_f[sel, b], s_f[sel, b], loc_f[sel, b]
        # Kolmogorov-Smirnov goodness of fit, every row at once.
        rs = np.sort(r, axis=1)
        cdf = np.exp(-(((loc_b[:, None] - rs) / scale[:, None]) ** c[:, None]))
        ranks = np.arange(1, n + 1) / n
        d = np.maximum((ranks - cdf).max(1), (cdf - (ranks - 1.0 / n)).max(1))
        pvalue = stats.kstwo.sf(d, n)
        at_edge = (k == len(_LOC_GRID) - 1)  # the likelihood still rising: no finite location
        for t, i in enumerate(idx):
            params[i] = {"c": float(c[t]), "loc": float(loc_b[t] * top[i]),
                         "scale": float(scale[t] * top[i]), "ks_pvalue": float(pvalue[t])}
            bad = (pvalue[t] < min_pvalue or c[t] > 1e3 or at_edge[t]
                   or loc_b[t] > 1.0 + 5 * spread[t])
            if not bad:
                lip[i], how[i] = loc_b[t] * top[i], "weibull"
    return lip, how, params


def image_generator(seed: int, index: int) -> torch.Generator:
    """The random stream of image ``index``: its points do not depend on how images are
    batched, so one image's score is the same alone or among others."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def sample_points(x0: torch.Tensor, n: int, radius: float, norm: str,
                  generator: torch.Generator) -> torch.Tensor:
    """``n`` points uniform in the Lp ball of ``radius`` around one image, clipped to [0, 1]."""
    delta = random_in_ball((n,) + tuple(x0.shape), radius, norm, generator, x0.device, x0.dtype)
    return (x0.unsqueeze(0) + delta).clamp(0, 1)


def _dual(grad: torch.Tensor, norm: str) -> torch.Tensor:
    flat = grad.flatten(-3)
    return flat.norm(dim=-1) if norm == "l2" else flat.abs().sum(-1)


def _margin_gradient_norms(model, pts, c, per_point, norm):
    """Dual norms of the margin gradients at ``pts``, (slots, points), and which points the model
    no longer classifies as ``c``: one forward pass shared by every target slot, then one
    backward pass per slot (on a CPU a loop of backward passes beats a vmapped one,
    ``is_grads_batched``, by ~1.5x)."""
    pts = pts.detach().requires_grad_(True)
    logits = model(pts)
    z_c = logits.gather(1, c[:, None])[:, 0]
    slots = per_point.shape[1]
    out = torch.empty(slots, len(pts), device=pts.device)
    for q in range(slots):
        margin = z_c - logits.gather(1, per_point[:, q:q + 1])[:, 0]
        (grad,) = torch.autograd.grad(margin.sum(), pts, retain_graph=q < slots - 1)
        out[q] = _dual(grad, norm)
    return out, logits.detach().argmax(1) != c


def clever(model: nn.Module, x: torch.Tensor, *, norm: str = "l2", target: str = "untargeted",
           radius: float = 5.0, n_batches: int = 500, n_samples: int = 1024,
           labels: torch.Tensor | None = None, seed: int = 0, chunk_points: int | None = None,
           min_pvalue: float = 0.05, fit: str = "batched",
           progress: bool = False) -> list[CleverScore]:
    """CLEVER scores of the images ``x`` (float NCHW in [0, 1])."""
    return clever_targets(model, x, targets=(target,), norm=norm, radius=radius,
                          n_batches=n_batches, n_samples=n_samples, labels=labels, seed=seed,
                          chunk_points=chunk_points, min_pvalue=min_pvalue, fit=fit,
                          progress=progress)[target]


def clever_targets(model: nn.Module, x: torch.Tensor, *, targets=TARGETS, norm: str = "l2",
                   radius: float = 5.0, n_batches: int = 500, n_samples: int = 1024,
                   labels: torch.Tensor | None = None, seed: int = 0,
                   chunk_points: int | None = None, min_pvalue: float = 0.05,
                   fit: str = "batched", progress: bool = False) -> dict[str, list[CleverScore]]:
    """CLEVER scores of ``x`` for several target kinds at once: ``{target: [score per image]}``.

    The kinds share their sampled points and gradients (top-2, top-5 and the least likely class
    are among the classes the untargeted score minimises over), so all four cost what the
    untargeted one does alone, and each equals what ``clever(..., target=t)`` returns."""
    if norm in ("2", "l2"):
        norm = "l2"
    elif norm in ("inf", "linf"):
        norm = "linf"
    else:
        raise ToolkitError(f"CLEVER norm must be 2 or inf, got {norm!r}")
    targets = tuple(dict.fromkeys(targets))
    for target in targets:
        if target not in TARGETS:
            raise ToolkitError(f"unknown CLEVER target {target!r}; choose from "
                               f"{', '.join(TARGETS)}")
    if not targets:
        raise ToolkitError("CLEVER needs at least one target kind")
    if fit not in ("batched", "scipy"):
        raise ToolkitError(f"unknown CLEVER fit {fit!r}; choose batched or scipy")
    if chunk_points is not None and chunk_points < 1:
        raise ToolkitError("CLEVER needs chunk_points >= 1")
    if radius <= 0 or n_batches < 2 or n_samples < 1:
        raise ToolkitError("CLEVER needs radius > 0, n_batches >= 2 and n_samples >= 1")
    check_images(x, getattr(model, "input_shape", None), what="inputs to CLEVER")
    was_training = model.training
    model.eval()
    try:
        return _clever(model, x, norm, targets, radius, n_batches, n_samples, labels, seed,
                       chunk_points, min_pvalue, fit, progress)
    finally:
        model.train(was_training)


def _scores(maxima: torch.Tensor, fit: str, min_pvalue: float, targets, kinds: dict,
            candidates: list[list[int]], logits0: torch.Tensor, radius: float,
            bad_grad: torch.Tensor, flip_bound: torch.Tensor, labels
            ) -> dict[str, list[CleverScore]]:
    """Per target kind and image, the CLEVER score (the smallest over the kind's classes) from
    the sampled gradient-norm ``maxima`` (image, class slot, batch), with its flags."""
    n, slots = maxima.shape[:2]
    pred = logits0.argmax(1)
    if fit == "batched":  # every (image, target) row in one vectorised fit
        fits = list(zip(*fit_lipschitz_batch(maxima.reshape(n * slots, -1).numpy(),
                                             min_pvalue)))
    else:  # one scipy fit per (image, target): the slower reference
        fits = [fit_lipschitz(row.numpy(), min_pvalue)
                for row in maxima.reshape(n * slots, -1)]
    out: dict[str, list[CleverScore]] = {t: [] for t in targets}
    for i in range(n):
        c = int(pred[i])
        slot = {j: q for q, j in enumerate(candidates[i])}
        for target in targets:
            best = None
            for j in kinds[target][i]:
                margin = float(logits0[i, c] - logits0[i, j])
                lip, how, params = fits[i * slots + slot[j]]
                lip = float(lip)
                score = min(margin / lip, radius) if lip > 0 else radius
                if best is None or score < best.score:
                    best = CleverScore(score=max(score, 0.0), target=j, margin=margin,
                                       lipschitz=lip, fit=how, weibull=dict(params))
            flags = []
            if bool(bad_grad[i]):
                flags.append("nan_or_inf_gradient")
            if best.lipschitz == 0:
                flags.append("zero_gradient")
            if best.margin <= 0:
                flags.append("already_flipped")
            if labels is not None and int(labels[i]) != c:
                flags.append("misclassified")
            best.flip_distance_bound = float(flip_bound[i])
            if best.score > best.flip_distance_bound:
                flags.append("score_above_flip_distance")
            best.flags = flags
            out[target].append(best)
    return out


def _clever(model, x, norm, targets, radius, n_batches, n_samples, labels, seed, chunk_points,
            min_pvalue, fit, progress) -> dict[str, list[CleverScore]]:
    device = next(model.parameters()).device
    if chunk_points is None:
        chunk_points = DEFAULT_CHUNK_POINTS.get(device.type, DEFAULT_CHUNK_POINTS["cpu"])
    x = x.to(device)
    with torch.no_grad():
        logits0 = model(x)
    n, k = logits0.shape
    pred = logits0.argmax(1)
    order = logits0.argsort(1, descending=True)
    # The classes each target kind scores against, per image; ``candidates`` is their union
    # (as many per image), the rows whose gradients are sampled.
    kinds: dict[str, list[list[int]]] = {}
    for target in targets:
        if target == "untargeted":
            kinds[target] = [[j for j in range(k) if j != int(pred[i])] for i in range(n)]
        else:
            rank = {"top2": 1, "top5": min(4, k - 1), "llc": k - 1}[target]
            kinds[target] = [[int(order[i, rank])] for i in range(n)]
    candidates = [list(dict.fromkeys(j for t in targets for j in kinds[t][i]))
                  for i in range(n)]
    cand = torch.tensor(candidates, device=device)  # n, slots
    slots = cand.shape[1]
    gens = [image_generator(seed, i) for i in range(n)]
    maxima = torch.zeros(n, slots, n_batches, dtype=torch.float64)
    bad_grad = torch.zeros(n, dtype=torch.bool)
    flip_bound = torch.full((n,), math.inf, dtype=torch.float64)
    per_chunk = max(1, chunk_points // n_samples)  # images per group of passes
    for b in tqdm(range(n_batches), desc=f"CLEVER ({n} images)", unit="batch", leave=False,
                  disable=not progress):
        for s in range(0, n, per_chunk):
            xs = x[s:s + per_chunk]
            m = len(xs)
            pts = torch.cat([sample_points(xs[t], n_samples, radius, norm, gens[s + t])
                             for t in range(m)])
            c = pred[s:s + m].repeat_interleave(n_samples)
            per_point = cand[s:s + m].repeat_interleave(n_samples, 0)  # points, slots
            dual = torch.empty(slots, len(pts), device=device)
            flipped = torch.empty(len(pts), dtype=torch.bool, device=device)
            # A sample batch larger than the chunk (the original preset's 1,024 points on a
            # CPU) goes through in pieces; its maximum is taken over all of them.
            for a in range(0, len(pts), chunk_points):
                piece = slice(a, a + chunk_points)
                dual[:, piece], flipped[piece] = _margin_gradient_norms(
                    model, pts[piece], c[piece], per_point[piece], norm)
            dual = dual.view(slots, m, n_samples)
            bad_grad[s:s + m] |= (~torch.isfinite(dual)).any(2).any(0).cpu()
            maxima[s:s + m, :, b] = dual.amax(2).T.double().cpu()
            with torch.no_grad():
                dist = (pts - xs.repeat_interleave(n_samples, 0)).flatten(1)
                dist = (dist.norm(dim=1) if norm == "l2" else dist.abs().amax(1)).view(m, n_samples)
                dist = torch.where(flipped.view(m, n_samples), dist,
                                   torch.full_like(dist, math.inf))
                flip_bound[s:s + m] = torch.minimum(flip_bound[s:s + m],
                                                    dist.amin(1).double().cpu())

    return _scores(maxima, fit, min_pvalue, targets, kinds, candidates, logits0, radius,
                   bad_grad, flip_bound, labels)
