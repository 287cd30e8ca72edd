"""What a sweep loads besides its configuration: the data, MagNet and the plug-in defenses.
The command line loads them once; every Ray worker loads the same from the configuration."""

from __future__ import annotations

from torch import nn

from adaptive.core.data import ImageSet, load_dataset
from adaptive.defense import Defense, make_plugin_defenses
from adaptive.defense.compositions import uses_randomized_magnet
from adaptive.sweep.config import SweepConfig


def load_defense_inputs(cfg: SweepConfig, model: nn.Module, device, data_root=None
                        ) -> tuple[ImageSet, object | None, dict[str, Defense]]:
    """(the test set, MagNet or None, the plug-in defenses by name) of the sweep ``cfg``."""
    data = load_dataset(cfg.dataset, "test", data_root)
    magnet = None
    if cfg.magnet:
        from defenses.magnet.defense import MagNet

        magnet = MagNet.load(cfg.magnet, model, device, classifier_sha256=cfg.model_sha256)
        if cfg.magnet_pool and uses_randomized_magnet(cfg.defenses):
            magnet.attach_pool(cfg.magnet_pool, device)
    extra = {}
    if cfg.defense_module:
        extra = make_plugin_defenses(cfg.defense_module, model=model, dataset=cfg.dataset,
                                     device=device)
    return data, magnet, extra
