"""A researcher's defense as a plug-in (``--defense-module blur_defense:make_defense``, run from
benchmarks/): the classifier behind a 3x3 mean blur, a preprocessing the bare model does not
have. Used by ``plugin_vs_autoattack.py``."""

import torch
from torch import nn

from defenses import Defense


class Blurred(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("kernel", torch.ones(1, 1, 3, 3) / 9)

    def forward(self, x):
        channels = x.shape[1]
        kernel = self.kernel.expand(channels, 1, 3, 3)
        return self.model(nn.functional.conv2d(x, kernel, padding=1, groups=channels))


def make_defense(model, dataset, device):
    return Defense("blur", Blurred(model).to(device).eval())
