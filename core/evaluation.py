"""Batched prediction and clean accuracy."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits for float images ``x`` in [0, 1], computed in batches on ``device``; on CPU."""
    device = device or next(model.parameters()).device
    out = [model(x[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             device: torch.device | str | None = None) -> float:
    """Fraction of ``x`` the model labels ``y`` (model put in eval mode by the caller)."""
    pred = predict_logits(model, x, batch_size, device).argmax(1)
    return float((pred == y.cpu()).float().mean())


def correct_subsets(model: nn.Module, data, sizes: list[int], seed: int,
                    device=None) -> list[torch.Tensor]:
    """Disjoint random subsets (sorted indices) of the images ``model`` classifies correctly,
    of the given sizes, in that order; a seeded permutation makes them repeatable."""
    from core.errors import ToolkitError

    pred = predict_logits(model, data.x(), device=device).argmax(1)
    correct = (pred == data.labels).nonzero().squeeze(1)
    if len(correct) < sum(sizes):
        raise ToolkitError(f"{data.name} has {len(correct)} correctly classified images; "
                           f"{' + '.join(map(str, sizes))} = {sum(sizes)} are needed")
    order = correct[torch.randperm(len(correct), generator=torch.Generator().manual_seed(seed))]
    out, start = [], 0
    for size in sizes:
        out.append(order[start:start + size].sort().values)
        start += size
    return out
