"""MaxPool2x2 is nn.MaxPool2d(2), bit for bit, forwards and backwards (also twice)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaptive.core.models import build_model
from adaptive.core.pooling import MaxPool2x2, max_pool_2x2


def _inputs(shape, ties: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    # ReLU'd and rounded: windows full of equal values (zeros and small integers), where
    # only the first maximal element of a window may receive the gradient
    return torch.relu(x * 2).round() if ties else x


@pytest.mark.parametrize("shape", [(5, 8, 24, 24), (3, 4, 7, 9), (6, 5, 5)])
@pytest.mark.parametrize("ties", [False, True])
def test_outputs_and_gradients_equal_max_pool2d(shape, ties):
    x0 = _inputs(shape, ties)
    upstream = torch.randn(F.max_pool2d(x0, 2).shape, generator=torch.Generator().manual_seed(1))
    results = []
    for pool in (nn.MaxPool2d(2), MaxPool2x2()):
        x = x0.clone().requires_grad_(True)
        out = pool(x)
        (grad,) = torch.autograd.grad(out, x, upstream)
        results.append((out.detach(), grad))
    (out_a, grad_a), (out_b, grad_b) = results
    assert torch.equal(out_a, out_b)
    assert torch.equal(grad_a, grad_b)
    if ties:  # the case the tie rule is about really occurs: windows with several maxima
        h, w = x0.shape[-2] // 2 * 2, x0.shape[-1] // 2 * 2
        maxima = out_a.repeat_interleave(2, -2).repeat_interleave(2, -1)
        per_window = F.avg_pool2d((x0[..., :h, :w] == maxima).float(), 2) * 4
        assert (per_window > 1).any()


def test_double_backward_equals_max_pool2d():
    """GCD's attack differentiates an input gradient again (create_graph=True)."""
    x0, w = _inputs((2, 3, 7, 8), ties=True), torch.randn(2, 3, 7, 8)
    results = []
    for pool in (lambda t: F.max_pool2d(t, 2), max_pool_2x2):
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((pool(torch.tanh(x * w)) ** 2).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g ** 2).sum(), x)
        results.append((g.detach(), h))
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("arch", ["mnist-cnn", "cifar-cnn", "tiny-cnn"])
def test_zoo_models_use_it_and_match_torch_pooling(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    assert any(isinstance(m, MaxPool2x2) for m in model.modules())
    reference = build_model(arch).eval()
    reference.load_state_dict(model.state_dict())  # no parameters of its own: same keys
    for module in reference.modules():
        for name, child in module.named_children():
            if isinstance(child, MaxPool2x2):
                setattr(module, name, nn.MaxPool2d(2))
    x = torch.rand(4, *model.input_shape)
    grads = []
    for m in (model, reference):
        xi = x.clone().requires_grad_(True)
        logits = m(xi)
        grads.append((logits.detach(), torch.autograd.grad(logits[:, 0].sum(), xi)[0]))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
