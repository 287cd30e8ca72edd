"""The binarization test (Zimmermann et al. 2022, ``adaptive.diagnostics.binarization``) of a
finished sweep's bounded attack, on that sweep's defenses: what it runs on (the reopened run,
the defense, the attack and its settings, the images) and one call that runs it and names its
result. Used by ``adaptive check binarization`` and by ``adaptive audit``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adaptive.core.errors import ToolkitError
from adaptive.sweep.config import ATTACKS, bound_of, images_except, parse_attack

if TYPE_CHECKING:
    from adaptive.sweep.reopen import ReopenedRun

# the test needs an attack at exactly the bound (the registered fixed-budget attacks)
BINARIZATION_ATTACKS = tuple(a for a in ATTACKS if not parse_attack(a).ensemble
                             and parse_attack(a).spec.fixed_budget)
DEFAULT_INNER = 999  # inner points per image (the image included), as in the paper's tests
DEFAULT_RANDOM = 1000  # points of the random-sampling control per image


@dataclass
class BinarizationSetup:
    """What the binarization test of a sweep's folder runs on: the reopened run, the defense
    tested, the bounded attack (name, settings, a factory of fresh ones), its objective, the
    images and the pool of other test images the points (and image starts) go towards."""

    run: ReopenedRun
    defense: str
    attack: str
    settings: dict
    make_attack: Callable
    objective: Any
    bound: float
    index: list
    x: torch.Tensor
    y: torch.Tensor
    pool: torch.Tensor


def binarization_setup(run_dir: str | Path, device, data_root=None, *,
                       defense: str | None = None, attack: str | None = None,
                       steps: int | None = None, restarts: int | None = None,
                       schedule: str | None = None, start_images: int | None = None,
                       step_size: float | None = None, n: int | None = None,
                       seed: int = 0, plugins: dict | None = None) -> BinarizationSetup:
    """The test's setup on the sweep in ``run_dir``: against ``defense`` (default: the run's
    last), with ``attack`` (default: the run's when it is a bounded one, else ``pgd-full``) and
    the run's settings but those given, on the first ``n`` attacked images (default all);
    ``plugins``: the run's plug-in defenses where they were given as objects."""
    from adaptive.attacks.registry import AttackSetup
    from adaptive.core.runtime import seed_everything
    from adaptive.sweep.reopen import reopen

    seed_everything(seed)
    run = reopen(run_dir, device, data_root, plugins=plugins)
    cfg = run.cfg
    name = defense or list(cfg.defenses or ["none"])[-1]
    if name not in run.defenses:
        raise ToolkitError(f"the run has no defense {name!r}; it has "
                           f"{', '.join(run.defenses)}")
    attack = attack or (cfg.attack if cfg.attack in BINARIZATION_ATTACKS else "pgd-full")
    spec = parse_attack(attack).spec
    base = getattr(cfg, spec.settings_key)  # the run's settings of that attack
    settings = asdict(base)
    for key, value in (("steps", steps), ("restarts", restarts), ("schedule", schedule)):
        if value:
            settings[key] = value
    if start_images is not None:
        settings["start_images"] = start_images
    if step_size:
        settings["step_size"] = step_size
    # other test images to draw directions towards: not attacked, not the run's calibration
    pool = images_except(run.data.x(), run.attacked + run.calibration)

    def make_attack():  # (image starts draw from the same pool as the test's points)
        return spec.make(AttackSetup(cfg.threat, 0.0, seed, base, pool, settings))

    index = run.attacked[:n] if n else run.attacked
    return BinarizationSetup(run, name, attack, settings, make_attack, run.objective(attack),
                             bound_of(cfg), index, run.data.x()[index].to(device),
                             run.data.labels[index], pool)


def result_name(setup: BinarizationSetup, *, n_inner: int = DEFAULT_INNER,
                check_inner: bool = True, task_only: bool = False) -> str:
    """The result's file name: the attack and its steps, then whatever differs from the run's
    and the test's defaults, and the defense when it is not the run's last (so that one test
    never overwrites another)."""
    settings = setup.settings
    parts = [f"binarization_{setup.attack}_s{settings['steps']}"]
    run_settings = getattr(setup.run.cfg, parse_attack(setup.attack).spec.settings_key)
    if settings.get("restarts") != getattr(run_settings, "restarts", None):
        parts.append(f"r{settings['restarts']}")
    if settings.get("schedule") == "cosine":
        parts.append("cosine")
    if settings.get("start_images"):
        parts.append(f"img{settings['start_images']}")
    if settings.get("step_size"):
        parts.append(f"ss{settings['step_size']:g}")
    if n_inner != DEFAULT_INNER:
        parts.append(f"in{n_inner}")
    if not check_inner:
        parts.append("unchecked")
    if task_only:
        parts.append("task")
    if setup.defense != list(setup.run.cfg.defenses or ["none"])[-1]:
        parts.append(setup.defense.replace("+", "-"))
    return "_".join(parts) + ".json"


def run_binarization(setup: BinarizationSetup, *, n_inner: int = DEFAULT_INNER,
                     n_random: int = DEFAULT_RANDOM, seed: int = 0, directions: str = "auto",
                     task_only: bool = False, check_inner: bool = True, command: str = "",
                     log=print) -> dict:
    """Run the test of ``setup``; returns its result (``images``, ``summary``) with the
    ``config`` that made it."""
    from adaptive.diagnostics.binarization import binarization_test

    cfg = setup.run.cfg
    result = binarization_test(setup.run.defenses[setup.defense], setup.objective.model,
                               setup.make_attack, setup.x, setup.y, setup.bound, cfg.norm,
                               penalty=setup.objective.penalty(), index=setup.index,
                               n_inner=n_inner, n_random=n_random, seed=seed, pool=setup.pool,
                               directions=directions, task_only=task_only,
                               check_inner=check_inner, log=log)
    result["config"] = {"run": str(setup.run.folder), "defense": setup.defense,
                        "attack": setup.attack, "settings": setup.settings, "norm": cfg.norm,
                        "bound": setup.bound, "n_inner": n_inner, "n_random": n_random,
                        "seed": seed, "directions": directions, "task_only": task_only,
                        "check_inner": check_inner, "command": command}
    return result
