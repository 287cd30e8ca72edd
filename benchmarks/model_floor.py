"""The least time an attack on a model can take: its model passes, at the model's own speed.

A gradient attack's step is one forward + input-gradient pass (F+G) of every running image;
everything else (the optimiser, projections, bookkeeping) is overhead. ``CountingModel``
counts the images each attack passes through the model with gradients on and off;
``floor_seconds`` prices those counts at F+G and F costs per image measured here, just
before, at the batch size the attack used. Two implementations of the same attack can differ
by their overhead and by how many passes they make, not by the passes' cost: a ratio of
times above ``their time / our floor`` needs fewer passes or a cheaper model.
"""

from __future__ import annotations

import time

import torch
from torch import nn


class CountingModel(nn.Module):
    """``model`` unchanged, counting the images it is asked about: ``with_grad`` (inputs that
    require a gradient) and ``without``; ``batches`` the largest batch seen."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.input_shape = getattr(model, "input_shape", None)
        self.num_classes = getattr(model, "num_classes", None)
        self.train(model.training)  # Foolbox checks the mode
        self.reset()

    def reset(self) -> None:
        self.with_grad, self.without, self.largest_batch = 0, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            self.with_grad += len(x)
        else:
            self.without += len(x)
        self.largest_batch = max(self.largest_batch, len(x))
        return self.model(x)


def pass_costs(model: nn.Module, x: torch.Tensor, rounds: int = 9) -> tuple[float, float]:
    """Seconds per image of F+G and of F on the batch ``x``: the fastest of ``rounds`` (this
    shared machine drifts by tens of per cent between minutes; the fastest round is the
    cheapest the passes can be, so a floor from it errs low and a ceiling on a speed-up
    computed from it errs high)."""
    def fg():
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi).sum(), xi)

    def f():
        with torch.no_grad():
            model(x)

    times = {fg: [], f: []}
    for _ in range(rounds):
        for fn in times:
            fn()
            reps = max(2, 256 // len(x))
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times[fn].append((time.perf_counter() - t0) / reps / len(x))
    return min(times[fg]), min(times[f])


def floor_seconds(counter: CountingModel, x: torch.Tensor) -> float:
    """What ``counter``'s counted passes cost at the model's F+G and F speed, measured on
    the first ``counter.largest_batch`` images of ``x``."""
    fg, f = pass_costs(counter.model, x[:max(1, counter.largest_batch)])
    return counter.with_grad * fg + counter.without * f
