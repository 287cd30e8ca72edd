"""What every attack-cost engine returns, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images


@dataclass
class AttackCost:
    """Per-sample result of an attack-cost engine.

    ``costs``: iterations (or steps) the attack needed; ``max_iter`` for a sample that never
    flipped. ``queries``: model evaluations spent on the sample (forward passes, or label
    queries for decision-based engines). ``flipped``: whether the attack succeeded within the cap.
    ``adversarial``: where the attack ended (the first flipped point, or the last iterate).
    """

    costs: torch.Tensor
    queries: torch.Tensor
    flipped: torch.Tensor
    adversarial: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.costs)

    @classmethod
    def empty(cls, x: torch.Tensor, cap: int) -> "AttackCost":
        """Result buffers before a run: every sample at the cap, unflipped, at its input."""
        n = len(x)
        return cls(torch.full((n,), cap, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                   torch.zeros(n, dtype=torch.bool), x.clone())


def check_cap(max_iter: int) -> int:
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ToolkitError(f"max_iter must be a positive integer, got {max_iter!r}")
    return max_iter


def validate_inputs(model, x: torch.Tensor) -> torch.Tensor:
    shape = getattr(model, "input_shape", None)
    return check_images(x, shape, what="inputs to the attack-cost engine")


def model_device(model: nn.Module | Callable) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
