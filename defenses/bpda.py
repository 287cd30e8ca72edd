"""BPDA (Athalye, Carlini & Wagner, ICML 2018, "Obfuscated Gradients Give a False Sense of
Security"): run a non-differentiable part forward as it is, and backward as a differentiable
stand-in for it (the identity by default, right for any preprocessing that keeps an image close
to itself: rounding, JPEG, a denoiser's projection).

A defense declares where its gradients should come from by giving a ``surrogate`` classifier
(:class:`defenses.Defense`): its real ``classifier`` with every non-differentiable part wrapped
in :class:`BPDA`, or any differentiable model that labels benign images as the real one does.
Attacks then differentiate the surrogate while every example is still judged by the real
classifier; the toolkit checks first that the two agree on benign images
(:func:`adaptive.defense.probes.check_surrogate`)::

    rounded = nn.Sequential(Rounding(bits=5), model)           # what the defense deploys
    surrogate = nn.Sequential(BPDA(Rounding(bits=5)), model)   # same forward, identity backward
    Defense("rounded", rounded, surrogate=surrogate)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BPDA(nn.Module):
    """``forward(x)``: the value of ``forward_fn(x)``, the gradient of ``backward_fn(x)``
    (the identity when None). The two must have outputs of the same shape."""

    def __init__(self, forward_fn: Callable[[torch.Tensor], torch.Tensor],
                 backward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.forward_fn = forward_fn
        self.backward_fn = backward_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.forward_fn(x)  # no gradient asked for: the stand-in is not needed
        stand_in = x if self.backward_fn is None else self.backward_fn(x)
        with torch.no_grad():
            real = self.forward_fn(x)
        if real.shape != stand_in.shape:
            raise ValueError(f"BPDA: the forward gives shape {tuple(real.shape)}, its stand-in "
                             f"{tuple(stand_in.shape)}")
        # the real value, with the stand-in's gradient (straight through the difference)
        return stand_in + (real - stand_in).detach()


def bpda(forward_fn: Callable[[torch.Tensor], torch.Tensor],
         backward_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> BPDA:
    """:class:`BPDA` of ``forward_fn`` with ``backward_fn``'s gradient (identity by default)."""
    return BPDA(forward_fn, backward_fn)
