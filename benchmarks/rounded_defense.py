"""A researcher's defense whose gradients are masked, as a plug-in (``--defense-module
rounded_defense:make_defense``, run from benchmarks/): MNIST's MagNet reformer and classifier
behind input rounding to 8 levels (``torch.round`` has no gradient). Used by
``plugin_vs_autoattack.py``."""

import torch
from torch import nn

from defenses import Defense
from defenses.magnet.defense import MagNet


class Rounded(nn.Module):
    def __init__(self, model: nn.Module, levels: int = 8):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


def make_defense(model, dataset, device):
    reformed = MagNet.load("mnist", model).defended_classifier()
    return Defense("rounded", Rounded(reformed).to(device).eval())
