"""Input diversity (Xie et al., CVPR 2019, "Improving Transferability of Adversarial Examples
with Input Diversity"): a model's log-softmax averaged over random resize-and-pad draws of its
input. Its gradient is a smoother guide than the bare model's own, and transfers better to
models it does not know; the sweep uses it as the stand-in gradient for a defense that hides
its own (``--stand-in diverse``; ``auto``'s ``apgd-di`` member).

Each sample's draws come from its own pixels (a hash of the image), not from a shared random
stream: the stand-in of an image is the same whatever batch it is in, and a new iterate gets
new draws.
"""

from __future__ import annotations

import torch
from torch import nn

DRAWS = 4  # resize-and-pad draws averaged per call
SMALLEST = 0.85  # the smallest side a draw shrinks the image to, as a share of its own


def _uniforms(x: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` numbers in [0, 1) per sample of ``x``, a fixed function of its pixels."""
    flat = x.detach().flatten(1).double()
    weights = torch.rand(flat.shape[1], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64).to(flat.device)
    key = flat @ weights  # (n,): differs for any two images that differ by a pixel step
    steps = torch.arange(1, count + 1, dtype=torch.float64, device=flat.device)
    return torch.frac(torch.sin(key[:, None] * 12.9898 + steps * 78.233).abs() * 43758.5453)


class InputDiversity(nn.Module):
    """The mean log-softmax of ``model`` over ``draws`` resize-and-pad draws of each input:
    bilinear shrinking to a side in [``smallest``, 1] of the image's, at a random place in
    the frame, zeros around it (one affine resampling per draw)."""

    def __init__(self, model: nn.Module, draws: int = DRAWS, smallest: float = SMALLEST):
        super().__init__()
        if draws < 1 or not 0 < smallest <= 1:
            raise ValueError(f"InputDiversity needs draws >= 1 and 0 < smallest <= 1, got "
                             f"{draws} and {smallest}")
        self.model, self.draws, self.smallest = model, draws, smallest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = _uniforms(x, 3 * self.draws).to(x.dtype)
        outs = []
        for k in range(self.draws):
            side = self.smallest + (1 - self.smallest) * u[:, 3 * k]
            room = 1 - side  # how far the shrunk image's centre may move (grid units)
            shift = torch.stack([(2 * u[:, 3 * k + 1] - 1) * room,
                                 (2 * u[:, 3 * k + 2] - 1) * room], 1)
            # an output point p samples the input at (p - shift) / side
            theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
            theta[:, 0, 0] = theta[:, 1, 1] = 1 / side
            theta[:, :, 2] = -shift / side[:, None]
            grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            drawn = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                              align_corners=False)
            outs.append(self.model(drawn).log_softmax(1))
        return torch.stack(outs).mean(0)
