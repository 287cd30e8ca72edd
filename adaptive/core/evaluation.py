"""Batched prediction and clean accuracy."""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.validation import check_labels_fit_model


@torch.no_grad()
def model_device(model, default: torch.device | str = "cpu") -> torch.device:
    """Where ``model``'s parameters live (``default`` for a model without any, or a plain
    function)."""
    params = getattr(model, "parameters", None)
    first = next(params(), None) if callable(params) else None
    return first.device if first is not None else torch.device(default)


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits for float images ``x`` in [0, 1], computed in batches on ``device``; on CPU."""
    device = device or model_device(model, x.device)
    out = [model(x[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             device: torch.device | str | None = None) -> float:
    """Fraction of ``x`` the model labels ``y`` (model put in eval mode by the caller)."""
    check_labels_fit_model(y, model, "the labels")
    pred = predict_logits(model, x, batch_size, device).argmax(1)
    return float((pred == y.cpu()).float().mean())


def correct_subsets(model: nn.Module, data, sizes: list[int], seed: int,
                    device=None) -> list[torch.Tensor]:
    """Disjoint random subsets (sorted indices) of the images ``model`` classifies correctly,
    of the given sizes, in that order; a seeded permutation makes them repeatable."""
    from adaptive.core.errors import ToolkitError

    check_labels_fit_model(data.labels, model, data.name)
    pred = predict_logits(model, data.x(), device=device).argmax(1)
    correct = (pred == data.labels).nonzero().squeeze(1)
    if len(correct) < sum(sizes):
        raise ToolkitError(f"{data.name} has {len(correct)} correctly classified images; "
                           f"{' + '.join(map(str, sizes))} = {sum(sizes)} are needed")
    order = correct[torch.randperm(len(correct), generator=torch.Generator().manual_seed(seed))]
    out, start = [], 0
    for size in sizes:
        out.append(order[start:start + size].sort().values)
        start += size
    return out


def robust_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   norm: str = "linf", steps: int = 20, step_size: float | None = None,
                   restarts: int = 1, batch_size: int = 500, seed: int = 0,
                   device: torch.device | str | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Per-image robust correctness under PGD (cross-entropy, random start, ``restarts``):
    True where the clean image and every restart's adversarial image are classified ``y``.

    The model's mode is left as it is (evaluate in eval mode). Seeded, hence repeatable.
    """
    from tqdm.auto import tqdm

    from adaptive.core.attacks.pgd import pgd

    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=f"PGD-{steps}", disable=not progress,
                  unit="batch", leave=False):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        adv = pgd(model, xb, yb, eps, norm, steps, step_size, restarts=restarts, generator=gen)
        with torch.no_grad():
            ok = (model(xb).argmax(1) == yb) & (model(adv).argmax(1) == yb)
        out.append(ok.cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
