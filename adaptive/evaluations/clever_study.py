"""The units of ``adaptive clever`` (the A2D paper's Table 1, Figures 2 and 10): an adversarial
set made from the benign images, then per input set (benign, each attack's examples) its CLEVER
scores for every target kind and, optionally, each image's attack cost. A unit computes exactly
what the serial command computes for that set, so the executor (local or Ray) changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from adaptive.core.runtime import seed_everything
from adaptive.core.zoo import ModelRef
from adaptive.evaluations.adversarial_sets import examples_for_study
from adaptive.evaluations.attack_costs import per_image_costs
from adaptive.evaluations.clever import CleverScore, clever_targets


@dataclass
class CleverStudy:
    """What the units share: the model, the benign images ``x`` and labels ``y``, the data
    set, the run's seed, the CLEVER settings (norm, radius, batches, samples, seed) and target
    kinds, the optional cost engine, and the input sets by name once made."""

    model: ModelRef
    x: torch.Tensor
    y: torch.Tensor
    dataset: str
    seed: int
    clever: dict
    targets: tuple
    cost_engine: str | None = None
    sets: dict = field(default_factory=dict)
    progress: bool = False


def adversarial_unit(study: CleverStudy, attack: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(successful examples of ``attack``, their position in ``x``), from the run's seed."""
    seed_everything(study.seed)
    return examples_for_study(attack, study.model.get(), study.x, study.y, study.dataset)


def score_unit(study: CleverStudy, kind: str) -> tuple[dict[str, list[CleverScore]], list]:
    """CLEVER scores of the set ``kind`` per target kind, and per image its attack cost (or
    None without a cost engine)."""
    model, xs = study.model.get(), study.sets[kind]
    scores = clever_targets(model, xs.to(study.model.device), targets=study.targets,
                            progress=study.progress, **study.clever)
    costs = (per_image_costs(study.cost_engine, model, xs, study.dataset)
             if study.cost_engine else [None] * len(xs))
    return scores, costs
