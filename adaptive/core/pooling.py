"""2x2 max pooling, as ``nn.MaxPool2d(2)`` computes it, without its slow CPU kernel.

PyTorch's NCHW ``max_pool2d`` on the CPU runs a scalar loop with an index per output: on this
project's 2-core CPU it took 1.9 ms for one (50, 32, 24, 24) batch, 14 % of the MNIST CNN's
forward + input-gradient pass, while the same maximum from four strided views takes 0.15 ms;
the zoo's forward passes run 1.1-1.5x faster with it (``benchmarks/attack_step.py``).
``MaxPool2x2`` computes that maximum and routes the gradient to the first maximal element of
each window in row-major order, the element ``max_pool2d`` records as its index, so outputs
and gradients are bit-identical to ``nn.MaxPool2d(2)`` (``tests/test_pooling.py``). It has no
parameters, so checkpoints written with ``nn.MaxPool2d(2)`` in its place load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _quarters(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four elements of every 2x2 window, in row-major window order (odd trailing rows
    and columns dropped, as ``max_pool2d`` floors)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        a, b, c, d = _quarters(x)
        out = torch.maximum(torch.maximum(a, b), torch.maximum(c, d))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        # max_pool2d keeps the first element that beats the running maximum: the first
        # maximal one of each window in row-major order gets the whole gradient, ties none.
        if torch.is_grad_enabled():
            # Double backward (create_graph=True, e.g. GCD's attack): built differentiably.
            a, b, c, _ = _quarters(x)
            hit_a, hit_b, hit_c = a == out, b == out, c == out
            after_a = ~hit_a
            after_b = after_a & ~hit_b
            masks = (hit_a, hit_b & after_a, hit_c & after_b, after_b & ~hit_c)
            *lead, h, w = out.shape
            grad_x = torch.stack([grad * m for m in masks], -1).view(*lead, h, w, 2, 2)
            grad_x = grad_x.transpose(-3, -2).reshape(*lead, 2 * h, 2 * w)
            return F.pad(grad_x, (0, x.shape[-1] - 2 * w, 0, x.shape[-2] - 2 * h))
        # Odd trailing rows or columns are outside every window: their gradient is zero.
        even = x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0
        grad_x = torch.empty_like(x) if even else torch.zeros_like(x)
        _route(x, out, grad, grad_x)
        return grad_x


def _route(x, out, grad, grad_x) -> None:
    """Write into ``grad_x`` each window's gradient at its first maximal element (``x``: the
    pooled input, ``out``: its maxima, ``grad``: their gradient)."""
    a, b, c, _ = _quarters(x)
    to_a, to_b, to_c, to_d = _quarters(grad_x)
    # What is left of each window's gradient passes on to the next element unless an
    # earlier one took it (exact: left - taken is left - left = 0 or left - 0 = left);
    # ten whole-tensor operations, fewest at the small batches of an attack's tail.
    torch.mul(grad, a == out, out=to_a)
    left = grad - to_a
    torch.mul(left, b == out, out=to_b)
    left -= to_b
    torch.mul(left, c == out, out=to_c)
    torch.sub(left, to_c, out=to_d)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` of an (N, C, H, W) tensor, with the same gradient."""
    return _MaxPool2x2.apply(x)


class MaxPool2x2(nn.Module):
    """Drop-in for ``nn.MaxPool2d(2)`` (kernel 2, stride 2, no padding): same outputs and
    input gradients, bit for bit. The forward pass is always ours; the backward pass is ours
    with ``own_backward`` (else the input goes through PyTorch's ``max_pool2d`` whenever a
    gradient will be asked for). Ours is faster on the MNIST CNN's 24x24 and 8x8 maps, but on
    the CIFAR CNN's 32x32 and 16x16 ones its strided passes took up to 1.8x PyTorch's time
    (``benchmarks/attack_step.py``), so that model keeps PyTorch's backward."""

    def __init__(self, own_backward: bool = True):
        super().__init__()
        self.own_backward = own_backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.own_backward and x.requires_grad and torch.is_grad_enabled():
            return F.max_pool2d(x, 2)
        return max_pool_2x2(x)

    def extra_repr(self) -> str:
        return "" if self.own_backward else "own_backward=False"
