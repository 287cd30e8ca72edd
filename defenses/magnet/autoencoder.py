"""MagNet's denoising autoencoders.

A structure such as ``[3, "average", 3]`` reads as MagNet's: 3x3 convolutions with that many
channels (sigmoid activations, same padding) and pooling layers; the decoder mirrors it with
nearest-neighbour upsampling in place of pooling, and a final sigmoid 3x3 convolution returns
to the image's channels. Inputs and outputs are images in [0, 1], NCHW.

MNIST Detector I is ``[3, "average", 3]``, Detector II ``[3]``; CIFAR-10 uses ``[3]``.
(MagNet's Keras models also carry an L2 activity regulariser of 1e-9, too weak to matter; it
is left out.)
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.pooling import MaxPool2x2

AE_FORMAT = "adaptive-toolkit/autoencoder-v1"

AUTOENCODERS = {
    "magnet-mnist-I": dict(structure=[3, "average", 3], channels=1, image_size=28),
    "magnet-mnist-II": dict(structure=[3], channels=1, image_size=28),
    "magnet-cifar": dict(structure=[3], channels=3, image_size=32),
}


class MagNetAutoencoder(nn.Module):
    """MagNet's convolutional autoencoder: ``structure`` lists the encoder's layers (an int: a
    3x3 convolution with that many channels and sigmoid; "average"/"max": 2x2 pooling), the
    decoder mirrors it; images of ``channels`` x ``image_size`` x ``image_size`` in [0, 1] in,
    reconstructions of the same shape out."""

    def __init__(self, structure: list, channels: int = 1, image_size: int = 28):
        super().__init__()
        self.structure, self.input_shape = list(structure), (channels, image_size, image_size)
        layers, c = [], channels
        for item in structure:
            layers += self._layer(item, c, encode=True)
            c = item if isinstance(item, int) else c
        for item in reversed(structure):
            layers += self._layer(item, c, encode=False)
            c = item if isinstance(item, int) else c
        layers += [nn.Conv2d(c, channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    @staticmethod
    def _layer(item, c_in: int, encode: bool) -> list[nn.Module]:
        if isinstance(item, int):
            return [nn.Conv2d(c_in, item, 3, padding=1), nn.Sigmoid()]
        if item in ("average", "max"):
            if not encode:
                return [nn.Upsample(scale_factor=2, mode="nearest")]
            return [nn.AvgPool2d(2) if item == "average" else MaxPool2x2()]
        raise ToolkitError(f"unknown autoencoder layer {item!r}: use an int, 'average' or 'max'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ToolkitError(f"autoencoder expects images of shape (N, "
                               f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        return self.net(x)


def build_autoencoder(arch: str, **kwargs) -> MagNetAutoencoder:
    if arch not in AUTOENCODERS:
        raise ToolkitError(f"unknown autoencoder {arch!r}; choose from {', '.join(AUTOENCODERS)}")
    return MagNetAutoencoder(**{**AUTOENCODERS[arch], **kwargs})
