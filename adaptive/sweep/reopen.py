"""A finished (or running) sweep's defenses and attack objective, rebuilt from its folder for
checks of the evaluation itself (``adaptive check``): the same model (its sha256 checked), the
same MagNet, plug-ins and A2D calibration (read from the run's cache), the same objective. The
folder is only read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from adaptive.core.data import ImageSet, load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.defense import Defense, make_plugin_defenses
from adaptive.defense.compositions import (
    build_a2d,
    build_defenses,
    is_composition,
    load_zoo_detectors,
    uses_magnet,
)
from adaptive.sweep.config import SweepConfig, attacked_parts
from adaptive.sweep.images import plan_images
from adaptive.sweep.objectives import attack_objective
from defenses.a2d.presets import make_engine


@dataclass
class ReopenedRun:
    """What a sweep attacked and with what: its config, model, data, defenses by name, the
    objective of its attack, and the images it attacked (data-set indices, in order)."""

    folder: Path
    cfg: SweepConfig
    model: nn.Module
    data: ImageSet
    defenses: dict[str, Defense]
    magnet: object
    a2d: object
    plugins: dict[str, Defense]
    attacked: list[int]
    calibration: list[int]
    zoo: dict = None  # the bundled detectors (fs, maha) by name, aimed at as plug-ins are

    def objective(self, attack: str | None = None, log=print):
        """The objective ``attack`` (default: the run's) optimises in this run."""
        from dataclasses import replace

        cfg = self.cfg if attack is None else replace(self.cfg, attack=attack)
        plugin_detectors = {k: v for d in self.plugins.values() for k, v in d.detectors.items()}
        plugin_detectors.update(self.zoo or {})
        return attack_objective(cfg, self.model, self.a2d, self.magnet, plugin_detectors, log)


def reopen(folder: str | Path, device="cpu", data_root: str | None = None,
           log=print, plugins: dict[str, Defense] | None = None) -> ReopenedRun:
    """The sweep in ``folder`` rebuilt; ``plugins``: the plug-in defenses it ran with when they
    were given as objects (``adaptive.audit`` from Python) rather than by ``defense_module``."""
    from adaptive.sweep.folder import check_sweep_folder

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ToolkitError(f"{folder} holds no sweep run to check (no config.json)")
    saved = check_sweep_folder(folder)["config"]  # a damaged folder: one line, nothing done
    known = {f.name for f in fields(SweepConfig)}
    cfg = SweepConfig(**{k: v for k, v in saved.items() if k in known})
    model, meta = load_model(cfg.model, device)
    if cfg.model_sha256 and meta.get("sha256") and meta["sha256"] != cfg.model_sha256:
        raise ToolkitError(f"the model {cfg.model} is not the one the run in {folder} "
                           "attacked (sha256 differs)")
    data = load_dataset(cfg.dataset, "test", data_root)
    attacked, cal_idx, _ = plan_images(cfg, model, data, device)  # seeded: the run's images
    magnet = None
    if cfg.magnet and ("magnet" in attacked_parts(cfg.attack, cfg.defenses)
                       or uses_magnet(cfg.defenses)):
        from defenses.magnet.defense import MagNet

        magnet = MagNet.load(cfg.magnet, model, device)
    a2d = None
    if (any("a2d" in d.split("+") for d in cfg.defenses)
            or "a2d" in attacked_parts(cfg.attack, cfg.defenses)):
        cal = folder / "cache" / "a2d_calibration.pt"
        if cal.is_file():
            cal_costs = torch.load(cal, map_location="cpu", weights_only=True)
        else:
            log(f"{folder} has no cached A2D calibration; measuring it again")
            cal_costs = {e: make_engine(e, cfg.dataset).run(model, data.x()[cal_idx].to(device))
                         .costs for e in cfg.a2d_engines}
        a2d = build_a2d(model, cfg.dataset, cfg.a2d_engines, cfg.h, cal_costs)
    zoo = load_zoo_detectors(cfg.defenses, model, cfg.model, cfg.model_sha256)
    defenses = build_defenses([d for d in cfg.defenses if is_composition(d)], model, a2d,
                              magnet, zoo)
    plugins = dict(plugins or {})
    if cfg.defense_module and not plugins:
        plugins = make_plugin_defenses(cfg.defense_module, model=model, dataset=cfg.dataset,
                                       device=device)
    defenses.update(plugins)
    return ReopenedRun(folder, cfg, model, data, defenses, magnet, a2d, plugins,
                       attacked.tolist(), cal_idx.tolist(), zoo)
