"""CLEVER robustness scores (Weng et al., ICLR 2018), batched.

For an image ``x0`` predicted as class ``c`` and a target class ``j``, the margin is
``g(x) = Z_c(x) - Z_j(x)`` on logits. Points are sampled uniformly in the Lp ball of radius R
around ``x0`` (clipped to [0, 1]); the dual norm (L2 for p=2, L1 for p=inf) of ``grad g`` is
taken at each, and the maximum of every batch of ``n_samples`` points is kept. A reverse Weibull
distribution fitted to the ``n_batches`` maxima estimates the local Lipschitz constant ``L`` by
its location; the score is ``min(g(x0) / L, R)``. Untargeted: the minimum over all ``j != c``;
``top2`` / ``top5`` / ``llc``: the 2nd, 5th most likely and least likely class.

Batching: all images of a chunk and all their sampled points go through one forward pass per
sample batch, and the gradients of every logit come from one batched backward pass
(``is_grads_batched``), so every target is covered at once.

Fits (scipy, float64, maxima rescaled by their largest value): several starting shapes, the best
by the Kolmogorov-Smirnov p-value; a fit that is poor (p < ``min_pvalue``), whose location lies
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

from core.attacks.lp import random_in_ball
from core.errors import ToolkitError
from core.validation import check_images

TARGETS = ("untargeted", "top2", "top5", "llc")
PRESETS = {"original": dict(n_batches=500, n_samples=1024),
           "cpu-fast": dict(n_batches=50, n_samples=64)}
_START_SHAPES = (0.1, 1.0, 5.0, 20.0)


@dataclass
class CleverScore:
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


def clever(model: nn.Module, x: torch.Tensor, *, norm: str = "l2", target: str = "untargeted",
           radius: float = 5.0, n_batches: int = 500, n_samples: int = 1024,
           labels: torch.Tensor | None = None, seed: int = 0, chunk_points: int = 4096,
           min_pvalue: float = 0.05) -> list[CleverScore]:
    """CLEVER scores of the images ``x`` (float NCHW in [0, 1])."""
    if norm in ("2", "l2"):
        norm = "l2"
    elif norm in ("inf", "linf"):
        norm = "linf"
    else:
        raise ToolkitError(f"CLEVER norm must be 2 or inf, got {norm!r}")
    if target not in TARGETS:
        raise ToolkitError(f"unknown CLEVER target {target!r}; choose from {', '.join(TARGETS)}")
    if radius <= 0 or n_batches < 2 or n_samples < 1:
        raise ToolkitError("CLEVER needs radius > 0, n_batches >= 2 and n_samples >= 1")
    check_images(x, getattr(model, "input_shape", None), what="inputs to CLEVER")
    was_training = model.training
    model.eval()
    try:
        return _clever(model, x, norm, target, radius, n_batches, n_samples, labels, seed,
                       chunk_points, min_pvalue)
    finally:
        model.train(was_training)


def _clever(model, x, norm, target, radius, n_batches, n_samples, labels, seed, chunk_points,
            min_pvalue) -> list[CleverScore]:
    device = next(model.parameters()).device
    x = x.to(device)
    with torch.no_grad():
        logits0 = model(x)
    n, k = logits0.shape
    pred = logits0.argmax(1)
    order = logits0.argsort(1, descending=True)
    gens = [image_generator(seed, i) for i in range(n)]
    maxima = torch.zeros(n, k, n_batches, dtype=torch.float64)
    bad_grad = torch.zeros(n, dtype=torch.bool)
    flip_bound = torch.full((n,), math.inf, dtype=torch.float64)
    eye = torch.eye(k, device=device)
    per_chunk = max(1, chunk_points // n_samples)  # images per forward pass
    for b in range(n_batches):
        for s in range(0, n, per_chunk):
            xs = x[s:s + per_chunk]
            m = len(xs)
            pts = torch.cat([sample_points(xs[t], n_samples, radius, norm, gens[s + t])
                             for t in range(m)]).requires_grad_(True)
            logits = model(pts)
            # Gradients of every logit in one batched backward pass: (k, points, C, H, W).
            grads = torch.autograd.grad(logits, pts, grad_outputs=eye[:, None, :].expand(
                k, len(pts), k), is_grads_batched=True)[0]
            c = pred[s:s + m].repeat_interleave(n_samples)
            g_c = grads[c, torch.arange(len(pts), device=device)]  # grad of Z_c per point
            dual = _dual(g_c.unsqueeze(0) - grads, norm)  # (k, points): grad of Z_c - Z_j
            bad = ~torch.isfinite(dual).all(0)
            maxima[s:s + m, :, b] = dual.view(k, m, n_samples).amax(2).T.double().cpu()
            bad_grad[s:s + m] |= bad.view(m, n_samples).any(1).cpu()
            with torch.no_grad():
                flipped = (logits.argmax(1) != c).view(m, n_samples)
                dist = (pts.detach() - xs.repeat_interleave(n_samples, 0)).flatten(1)
                dist = (dist.norm(dim=1) if norm == "l2" else dist.abs().amax(1)).view(m, n_samples)
                dist = torch.where(flipped, dist, torch.full_like(dist, math.inf))
                flip_bound[s:s + m] = torch.minimum(flip_bound[s:s + m], dist.amin(1).double().cpu())

    out = []
    for i in range(n):
        c = int(pred[i])
        if target == "untargeted":
            candidates = [j for j in range(k) if j != c]
        else:
            rank = {"top2": 1, "top5": min(4, k - 1), "llc": k - 1}[target]
            candidates = [int(order[i, rank])]
        best = None
        for j in candidates:
            margin = float(logits0[i, c] - logits0[i, j])
            lip, how, params = fit_lipschitz(maxima[i, j].numpy(), min_pvalue)
            score = min(margin / lip, radius) if lip > 0 else radius
            if best is None or score < best.score:
                best = CleverScore(score=max(score, 0.0), target=j, margin=margin, lipschitz=lip,
                                   fit=how, weibull=params)
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
        out.append(best)
    return out
