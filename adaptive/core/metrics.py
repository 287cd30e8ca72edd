"""Per-example distortion metrics: L2, L-inf and SSIM (scikit-image)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def l2(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_adv - x).flatten(1).norm(dim=1)


def linf(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_adv - x).flatten(1).abs().amax(1)


def ssim(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair (images in [0, 1], NCHW)."""
    a = x_adv.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
    b = x.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
    vals = [structural_similarity(a[i], b[i], data_range=1.0, channel_axis=-1)
            for i in range(len(a))]
    return torch.tensor(vals, dtype=torch.float32)
