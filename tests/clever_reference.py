"""A slow CLEVER reference: one image, one target class, one batch of points at a time.

It draws the same random points as ``adaptive.evaluations.clever`` (same per-image generator)
but computes
each margin's gradient with its own forward and backward pass, as the original CLEVER code does,
so the batched implementation can be checked against it point for point.
"""

from __future__ import annotations

import numpy as np
import torch

from adaptive.evaluations.clever import fit_lipschitz, image_generator, sample_points


def clever_reference(model, x0: torch.Tensor, index: int, *, norm: str = "l2",
                     target: str = "untargeted", radius: float = 5.0, n_batches: int = 10,
                     n_samples: int = 16, seed: int = 0, min_pvalue: float = 0.05):
    """(score, target class) of image ``x0``, which is image ``index`` of the batched call."""
    model.eval()
    with torch.no_grad():
        z = model(x0.unsqueeze(0))[0]
    c = int(z.argmax())
    order = z.argsort(descending=True).tolist()
    if target == "untargeted":
        candidates = [j for j in range(len(z)) if j != c]
    else:
        candidates = [order[{"top2": 1, "top5": min(4, len(z) - 1), "llc": len(z) - 1}[target]]]
    best = None
    for j in candidates:
        gen = image_generator(seed, index)  # the same points for every target
        maxima = []
        for _ in range(n_batches):
            pts = sample_points(x0, n_samples, radius, norm, gen).requires_grad_(True)
            out = model(pts)
            (grad,) = torch.autograd.grad((out[:, c] - out[:, j]).sum(), pts)
            flat = grad.flatten(1)
            dual = flat.norm(dim=1) if norm == "l2" else flat.abs().sum(1)
            maxima.append(float(dual.max()))
        lip, _, _ = fit_lipschitz(np.array(maxima), min_pvalue)
        margin = float(z[c] - z[j])
        score = max(min(margin / lip, radius), 0.0) if lip > 0 else radius
        if best is None or score < best[0]:
            best = (score, j)
    return best
