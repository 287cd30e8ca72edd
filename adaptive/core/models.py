"""Classifier architectures.

Every model takes float images in [0, 1], NCHW, and returns logits (the RobustBench / Foolbox
convention); any normalisation lives inside the model, so attacks and detectors never need to
know about it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.pooling import MaxPool2x2


class ImageClassifier(nn.Module):
    """Base class: fixed input shape, per-channel normalisation inside, logits out.

    The features hook: ``penultimate(x)`` is the input of the last linear layer (``head``), so
    ``head(penultimate(x)) == forward(x)``; tests of the evaluation itself (the binarization
    test) fit new readouts on it. A subclass implements ``embed(z)`` (normalised input ->
    penultimate features) and ``head``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        c = input_shape[0]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def head(self) -> nn.Linear:
        raise NotImplementedError

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(z))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ToolkitError(f"{type(self).__name__} expects images of shape "
                               f"(N, {', '.join(map(str, self.input_shape))}), got "
                               f"{tuple(x.shape)}")

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self._normalised(x))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The features the last linear layer reads, (N, d), of images ``x`` in [0, 1]."""
        return self.embed(self._normalised(x))


class MnistCNN(ImageClassifier):
    """The MNIST classifier of Carlini & Wagner and MagNet:
    Conv32-Conv32-Pool-Conv64-Conv64-Pool-FC200-FC200-FC10 (3x3 valid convolutions, ReLU,
    dropout 0.5 before the last two dense layers' outputs as in C&W's training code).
    312k parameters, 1.2 MB as float32."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5):
        # C&W fed [-0.5, 0.5]; the same shift here keeps their architecture's numerics.
        super().__init__((1, 28, 28), num_classes, mean=(0.5,), std=(1.0,))
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), MaxPool2x2())
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(200, 200), nn.ReLU(), nn.Dropout(dropout), nn.Linear(200, num_classes))

    def embed(self, z):
        return self.classifier[:-1](self.features(z))

    @property
    def head(self):
        return self.classifier[-1]


JUMP = 5.0  # the jump activation's step (the self-study course's)
JUMP_TRAIN_SMOOTH = 1.0  # the sigmoid's scale whose gradient stands for the step in training


class Jump(nn.Module):
    """The "jump" activation of the self-study course: 0 below zero, ``x + height`` above, so
    every unit is discontinuous at zero. Its gradient is ReLU's (the step has none); with
    ``smooth`` set, the gradient is that of ``relu(x) + height * sigmoid(x / smooth)`` while
    the value stays the same (the BPDA surrogate of a network built with it)."""

    def __init__(self, height: float = JUMP):
        super().__init__()
        self.height = float(height)  # (ramped from 0 during training)
        self.smooth: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.where(x > 0, x + self.height, torch.zeros_like(x))
        if self.smooth:
            step = self.height * torch.sigmoid(x / self.smooth)
            out = out + (step - step.detach())
        return out

    def extra_repr(self) -> str:
        return f"height={self.height}" + (f", smooth={self.smooth}" if self.smooth else "")


def jump_units(model: nn.Module) -> list[Jump]:
    """The :class:`Jump` activations of ``model`` (none for a ReLU network)."""
    return [m for m in model.modules() if isinstance(m, Jump)]


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {"relu": nn.ReLU, "jump": Jump}


def thermometer_encode(x: torch.Tensor, levels: int, soft: bool = False) -> torch.Tensor:
    """Thermometer code of images in [0, 1] (Buckman et al. 2018): channel ``c`` becomes
    ``levels`` channels, the k-th 1 where the pixel exceeds k / levels; (N, C, H, W) ->
    (N, C * levels, H, W). A step function, so no gradient flows through it; ``soft`` gives the
    ramp ``clamp(levels * x - k, 0, 1)`` instead (what BPDA differentiates)."""
    k = torch.arange(levels, device=x.device, dtype=x.dtype).view(1, 1, levels, 1, 1)
    if soft:
        code = (levels * x.unsqueeze(2) - k).clamp(0, 1)
    else:
        code = (x.unsqueeze(2) > k / levels).to(x.dtype)
    return code.flatten(1, 2)


class CifarCNN(ImageClassifier):
    """A small VGG-style CIFAR-10 network that trains on a 2-core CPU:
    [w, w, pool, 2w, 2w, pool, 4w, 4w, pool] 3x3 convolutions with batch norm, then FC256-FC10.
    With the default width w=32: 0.82M parameters, about 40M multiply-adds per image.

    ``activation``: ``relu`` or ``jump`` (:class:`Jump`, of step ``jump``) after every
    convolution and the hidden dense layer. ``thermometer``: when > 0, the network reads the
    thermometer code of its input at that many levels (:func:`thermometer_encode`, centred on
    0) instead of the normalised pixels."""

    def __init__(self, num_classes: int = 10, width: int = 32,
                 mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                 activation: str = "relu", jump: float = JUMP, thermometer: int = 0):
        super().__init__((3, 32, 32), num_classes, mean=mean, std=std)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")
        if thermometer < 0:
            raise ValueError(f"thermometer levels must be 0 (off) or more, got {thermometer}")

        def act():
            return Jump(jump) if activation == "jump" else nn.ReLU()

        self.thermometer = int(thermometer)
        layers, c_in = [], 3 * (self.thermometer or 1)
        for c_out in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), act()]
                c_in = c_out
            layers.append(MaxPool2x2(own_backward=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, 256), act(),
                                        nn.Dropout(0.3), nn.Linear(256, num_classes))

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        if not self.thermometer:
            return super()._normalised(x)
        self._check(x)
        return self.thermometer_code(x)

    def thermometer_code(self, x: torch.Tensor, soft: bool = False) -> torch.Tensor:
        """What the first convolution reads when ``thermometer`` is set: the code of ``x``
        (:func:`thermometer_encode`, ``soft`` its ramp) centred on 0."""
        return thermometer_encode(x, self.thermometer, soft=soft) - 0.5

    def embed(self, z):
        return self.classifier[:-1](self.features(z))

    @property
    def head(self):
        return self.classifier[-1]


class TinyCNN(ImageClassifier):
    """A very small network for tests and quick experiments on any image shape."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, width: int = 8):
        c = input_shape[0]
        super().__init__(tuple(input_shape), num_classes, mean=(0.5,) * c, std=(0.5,) * c)
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(2 * width * 16, num_classes))

    def embed(self, z):
        return self.net[:-1](z)

    @property
    def head(self):
        return self.net[-1]


ARCHITECTURES: dict[str, Callable[..., ImageClassifier]] = {
    "mnist-cnn": MnistCNN,
    "cifar-cnn": CifarCNN,
    "tiny-cnn": TinyCNN,
}

# The architecture each built-in data set trains by default.
DEFAULT_ARCH = {"mnist": "mnist-cnn", "cifar10": "cifar-cnn"}


def build_model(arch: str, **kwargs) -> ImageClassifier:
    """Instantiate an architecture by name with its keyword arguments."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ToolkitError(f"unknown architecture {arch!r}; choose one of "
                           f"{', '.join(ARCHITECTURES)}") from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ToolkitError(f"bad arguments for architecture {arch!r}: {e}") from e


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
