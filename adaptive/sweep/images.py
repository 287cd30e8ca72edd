"""Which images a sweep attacks: correctly classified test images, disjoint from the benign
calibration images; or another run's images; or one per class for every label pair."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import correct_subsets, predict_logits
from adaptive.sweep.records import RECORDS, read_records


def choose_images(model: nn.Module, data: ImageSet, n: int, n_cal: int, seed: int, device,
                  fixed: list[int] | None = None):
    """Correctly classified images: ``n`` to attack and ``n_cal`` disjoint ones to calibrate.
    ``fixed``: attack these images instead (those this model classifies correctly, at most n),
    so that runs on different models attack the same images."""
    if not fixed:
        attacked, cal = correct_subsets(model, data, [n, n_cal], seed, device)
        return attacked, cal
    pred = predict_logits(model, data.x(), device=device).argmax(1)
    ok = pred == data.labels
    attacked = torch.tensor(sorted({i for i in fixed if 0 <= i < len(ok) and ok[i]}))[:n]
    if len(attacked) == 0:
        raise ToolkitError("none of the images of --images-from is classified correctly by "
                           "this model")
    rest = ok.clone()
    rest[attacked] = False
    order = rest.nonzero().squeeze(1)
    order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))]
    if len(order) < n_cal:
        raise ToolkitError(f"{data.name} has too few other correctly classified images for "
                           f"{n_cal} calibration images")
    return attacked, order[:n_cal].sort().values


def attacked_indices(folder: str | Path) -> list[int]:
    """The images a sweep run attacked (from its records), for ``images_from``."""
    records = read_records(Path(folder) / RECORDS)
    if not records:
        raise ToolkitError(f"{folder} holds no sweep records to take the images from")
    return sorted({r["index"] for r in records})


def label_pairs(chosen: torch.Tensor, labels: torch.Tensor,
                n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, target class) for every ordered label pair: the first image of each class
    among ``chosen``, repeated once per other class."""
    firsts = {}
    for i in chosen.tolist():
        firsts.setdefault(int(labels[i]), i)
    missing = sorted(set(range(n_classes)) - set(firsts))
    if missing:
        raise ToolkitError(f"no image of class(es) {missing} among the {len(chosen)} chosen; "
                           "raise --n for a --pairs sweep")
    index, target = [], []
    for c in range(n_classes):
        for t in range(n_classes):
            if t != c:
                index.append(firsts[c])
                target.append(t)
    return torch.tensor(index), torch.tensor(target)


def plan_images(cfg, model: nn.Module, data: ImageSet, device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(attacked indices, calibration indices, target class per attacked image or None) for
    the sweep ``cfg``; seeded, so a resumed run attacks the same images."""
    attacked, cal = choose_images(model, data, cfg.n, cfg.n_cal, cfg.seed, device, cfg.images)
    y_all = data.labels
    n_classes = getattr(model, "num_classes", 10)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    offsets = torch.randint(1, n_classes, (len(attacked),), generator=gen)
    targets = (y_all[attacked] + offsets) % n_classes if cfg.targeted else None
    if cfg.pairs:
        attacked, targets = label_pairs(attacked, y_all, n_classes)
    return attacked, cal, targets
