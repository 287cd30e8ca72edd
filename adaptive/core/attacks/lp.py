"""Lp-ball geometry for batched perturbations (per sample, on NCHW tensors).

``norm`` is ``"linf"`` or ``"l2"``; radii may be a float or a per-sample tensor.
"""

from __future__ import annotations

import torch

from adaptive.core.errors import ToolkitError

NORMS = ("linf", "l2")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ToolkitError(f"unknown norm {norm!r}; choose linf or l2")
    return norm


def _per_sample(v, x: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.view(-1, *([1] * (x.ndim - 1))) if v.ndim else v


def check_budget(eps: float, norm: str) -> float:
    """A perturbation budget in the [0, 1] pixel range (IBM ART's 0-255 habit is refused)."""
    check_norm(norm)
    if not eps > 0:
        raise ToolkitError(f"--eps must be positive, got {eps}")
    if norm == "linf" and eps > 1:
        raise ToolkitError(f"--eps {eps} exceeds the [0, 1] pixel range; scales are in [0, 1] "
                           "(write 8/255, not 8)")
    return eps


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if check_norm(norm) == "linf" else flat.norm(dim=1)


def normalize_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: sign(g) for L-inf, g/||g||_2 for L2."""
    if check_norm(norm) == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / _per_sample(n, grad)


def project(delta: torch.Tensor, eps, norm: str) -> torch.Tensor:
    """Project perturbations onto the Lp ball of radius ``eps`` (per sample)."""
    eps_t = _per_sample(eps, delta)
    if check_norm(norm) == "linf":
        return torch.maximum(torch.minimum(delta, eps_t), -eps_t)
    n = _per_sample(delta.flatten(1).norm(dim=1), delta)
    return delta * torch.clamp(eps_t / n.clamp_min(1e-12), max=1.0)


def random_in_ball(shape, eps, norm: str, generator: torch.Generator | None = None,
                   device=None, dtype=torch.float32) -> torch.Tensor:
    """Points uniform in the Lp ball (uniform in volume for L2, via the radius^(1/d) trick)."""
    if check_norm(norm) == "linf":
        u = torch.rand(shape, generator=generator, dtype=dtype).mul_(2).sub_(1)
        return (u.to(device) * _per_sample(eps, u.to(device)))
    g = torch.randn(shape, generator=generator, dtype=dtype)
    d = g[0].numel()
    r = torch.rand(shape[0], generator=generator, dtype=dtype).pow(1.0 / d)
    direction = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.ndim - 1)))
    out = (direction * r.view(-1, *([1] * (g.ndim - 1)))).to(device)
    return out * _per_sample(eps, out)


def along_rays(x: torch.Tensor, directions: torch.Tensor, radius: float, steps: int = 40
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """From each row of ``x`` along the matching row of ``directions`` (unit L2 length),
    clipped to [0, 1] at every point, the point at L2 distance ``radius`` (bisection on the
    step length); where the clipped ray never gets that far, its farthest point. Returns the
    points and whether each reached ``radius``."""
    shape, n = (-1, *[1] * (x.ndim - 1)), len(directions)
    lo, hi = torch.zeros(n).to(x), torch.full((n,), 4.0 * float(radius) + 2.0).to(x)

    def dist(t):
        return ((x + t.view(shape) * directions).clamp(0, 1) - x).flatten(1).norm(dim=1)
    far = dist(hi) >= radius
    for _ in range(steps):
        mid = (lo + hi) / 2
        over = dist(mid) > radius
        hi, lo = torch.where(over, mid, hi), torch.where(over, lo, mid)
    return (x + hi.view(shape) * directions).clamp(0, 1), far


def towards_images(x: torch.Tensor, images: torch.Tensor, eps, norm: str) -> torch.Tensor:
    """From each row of ``x`` towards the matching row of ``images`` (both in [0, 1]), a point
    at the edge of the ball: L2, on the ray from ``x`` through the image (past it where the
    image is nearer than ``eps``), clipped to [0, 1], at distance ``eps`` (or as far as the
    clipped ray gets); L-inf, ``x`` plus the difference clipped to the box. Such points look
    like images, where noise of the same size does not (detectors that model the data, such
    as MagNet, reject noise); the binarization test draws its points the same way."""
    diff = images - x
    if check_norm(norm) == "linf":
        e = _per_sample(eps, x)
        return x + torch.maximum(torch.minimum(diff, e), -e)
    unit = diff / diff.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
    return along_rays(x, unit, eps)[0]
