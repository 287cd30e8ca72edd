"""What every attack-cost engine returns, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

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
    def empty(cls, x: torch.Tensor, cap: int) -> AttackCost:
        """Result buffers before a run: every sample at the cap, unflipped, at its input."""
        n = len(x)
        return cls(torch.full((n,), cap, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                   torch.zeros(n, dtype=torch.bool), x.clone())

    def record(self, index: torch.Tensor, costs: torch.Tensor, queries: torch.Tensor,
               flipped: torch.Tensor, adversarial: torch.Tensor) -> None:
        """The results of the samples ``index`` that just finished."""
        self.costs[index] = costs
        self.queries[index] = queries
        self.flipped[index] = flipped
        self.adversarial[index] = adversarial.to(self.adversarial.device)


class CostEngine:
    """Base of the attack-cost engines (BIM_d, BIM2_d, JSMA_d, DBA_d): ``name``, a ``max_iter``
    cap and ``config()``; ``run(model, x, max_iter=None)`` checks the images and the cap and
    returns an :class:`AttackCost`. Subclasses implement ``_run(model, x, cap)``."""

    name: str = "engine"
    max_iter: int = 1

    def config(self) -> dict:
        raise NotImplementedError

    def run(self, model: nn.Module, x: torch.Tensor, max_iter: int | None = None) -> AttackCost:
        """Costs of ``x`` (float NCHW in [0, 1]); ``max_iter`` overrides the cap (detection mode:
        the cap at the detector's threshold gives the same decisions with fewer queries)."""
        validate_inputs(model, x)
        return self._run(model, x, check_cap(self.max_iter if max_iter is None else max_iter))

    def _run(self, model: nn.Module, x: torch.Tensor, cap: int) -> AttackCost:
        raise NotImplementedError


def check_cap(max_iter: int) -> int:
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ToolkitError(f"max_iter must be a positive integer, got {max_iter!r}")
    return max_iter


def validate_inputs(model, x: torch.Tensor) -> torch.Tensor:
    shape = getattr(model, "input_shape", None)
    return check_images(x, shape, what="inputs to the attack-cost engine")


