import pytest
import torch

from adaptive.core.errors import ToolkitError
from adaptive.core.models import ARCHITECTURES, build_model, count_parameters
from adaptive.core.validation import check_images, check_labels


@pytest.mark.parametrize("arch, shape", [("mnist-cnn", (1, 28, 28)),
                                         ("cifar-cnn", (3, 32, 32)),
                                         ("tiny-cnn", (1, 28, 28))])
def test_model_contract_unit_interval_in_logits_out(arch, shape):
    model = build_model(arch).eval()
    assert model.input_shape == shape and model.num_classes == 10
    x = torch.rand(3, *shape, requires_grad=True)
    logits = model(x)
    assert logits.shape == (3, 10) and logits.dtype == torch.float32
    # Logits, not probabilities: rows need not sum to one, and can be negative.
    assert not torch.allclose(logits.sum(1), torch.ones(3))
    logits[:, 0].sum().backward()  # gradients reach the [0, 1] input
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_normalisation_lives_inside_the_model():
    model = build_model("cifar-cnn").eval()
    assert "mean" in dict(model.named_buffers()) and "std" in dict(model.named_buffers())
    x = torch.rand(2, 3, 32, 32)
    manual = model.logits((x - model.mean) / model.std)
    assert torch.allclose(model(x), manual)


def test_mnist_cnn_is_the_carlini_wagner_architecture():
    model = build_model("mnist-cnn")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert [d.out_features for d in dense] == [200, 200, 10]
    assert count_parameters(model) == 312_202


@pytest.mark.parametrize("bad", [torch.rand(2, 3, 28, 28), torch.rand(1, 28, 28),
                                 torch.rand(2, 1, 32, 32)])
def test_wrong_shape_gets_a_clear_error(bad):
    with pytest.raises(ToolkitError, match=r"expects images of shape \(N, 1, 28, 28\)"):
        build_model("mnist-cnn")(bad)


def test_unknown_architecture():
    with pytest.raises(ToolkitError, match="unknown architecture 'resnet'"):
        build_model("resnet")
    with pytest.raises(ToolkitError, match="bad arguments"):
        build_model("mnist-cnn", width=3)
    assert set(ARCHITECTURES) >= {"mnist-cnn", "cifar-cnn"}


@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 1, 28, 28) * 255, r"must lie in \[0, 1\]"),
    (torch.full((2, 1, 28, 28), float("nan")), "NaN"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "must be float"),
    (torch.rand(1, 28, 28), "NCHW"),
    (torch.rand(2, 3, 28, 28), "expects"),
    (torch.rand(0, 1, 28, 28), "empty"),
])
def test_check_images(x, message):
    with pytest.raises(ToolkitError, match=message):
        check_images(x, (1, 28, 28))


def test_check_images_accepts_valid_and_check_labels():
    x = torch.rand(4, 1, 28, 28)
    assert check_images(x, (1, 28, 28)) is x
    check_labels(torch.tensor([0, 9, 3, 1]), 4, 10)
    with pytest.raises(ToolkitError, match="0..9"):
        check_labels(torch.tensor([0, 10]), 2, 10)
    with pytest.raises(ToolkitError, match="2 labels for 3"):
        check_labels(torch.tensor([0, 1]), 3, 10)
