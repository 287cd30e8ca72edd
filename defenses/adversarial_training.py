"""Adversarial training (Madry et al.'s PGD, and the cheap FGSM-with-random-start variant).

Every scale is in the [0, 1] pixel range: an L-inf budget of 8/255 is ``eps=8/255`` (IBM ART's
defaults assume 0-255 images, where the same budget reads 8).

- ``pgd``: the inner maximisation is ``steps`` steps of projected gradient ascent on the
  cross-entropy from a uniformly random start in the ball (Madry et al., ICLR 2018).
- ``fgsm-rs``: one signed-gradient step of ``step_size`` (default 1.25 eps) from a random start
  (Wong, Rice & Kolter, "Fast is better than free", ICLR 2020): about a quarter of PGD-7's cost.
  It can overfit "catastrophically" (robustness to PGD collapses within an epoch); the training
  run therefore measures PGD robust accuracy on a test subset after every epoch and warns.

The attack runs with the model in training mode (as in Madry's and Wong's code) but with the
batch-norm running statistics frozen, so only the clean-to-adversarial *training* batches move
them, once per step.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

from adaptive.core.attacks.lp import check_budget
from adaptive.core.attacks.pgd import pgd
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import robust_correct

METHODS = ("pgd", "fgsm-rs")


@dataclass(frozen=True)
class AdversarialConfig:
    """The inner maximisation of adversarial training, scales in [0, 1] pixels."""

    method: str = "pgd"
    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = 7
    step_size: float | None = None  # default: eps/4 for PGD, 1.25 eps for FGSM-RS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ToolkitError(f"unknown adversarial training method {self.method!r}; "
                               f"choose one of {', '.join(METHODS)}")
        check_budget(self.eps, self.norm)
        if self.steps < 1:
            raise ToolkitError("--steps must be at least 1")
        if self.method == "fgsm-rs" and self.steps != 1:
            raise ToolkitError("fgsm-rs takes exactly one step; use --adversarial pgd for more")
        if self.step_size is not None and not self.step_size > 0:
            raise ToolkitError("--step-size must be positive")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return 1.25 * self.eps if self.method == "fgsm-rs" else self.eps / 4

    def describe(self) -> str:
        eps = f"{self.eps * 255:g}/255" if self.norm == "linf" else f"{self.eps:g}"
        return (f"{self.method} {self.norm} eps={eps}, {self.steps} step(s) of "
                f"{self.alpha * (255 if self.norm == 'linf' else 1):.4g}"
                f"{'/255' if self.norm == 'linf' else ''}")

    def to_dict(self) -> dict:
        return {**asdict(self), "step_size": self.alpha}


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module):
    """Batch norm keeps normalising with batch statistics but stops updating its running ones
    (momentum 0), so attack iterations do not pollute the statistics used at test time."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum


def make_perturbation(cfg: AdversarialConfig):
    """The ``perturb(model, x, y, generator)`` callable that adversarial training applies to
    every training batch."""

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        with frozen_batchnorm_stats(model):
            return pgd(model, x, y, cfg.eps, cfg.norm, cfg.steps, cfg.alpha,
                       random_start=True, generator=generator)

    return perturb


def robustness_monitor(x: torch.Tensor, y: torch.Tensor, cfg: AdversarialConfig,
                       steps: int = 10, log=print):
    """Per-epoch ``extra_eval``: PGD-``steps`` robust accuracy on ``x`` at the training budget,
    with a warning when it collapses (catastrophic overfitting of FGSM training)."""
    best = {"robust": 0.0}

    def evaluate(model: nn.Module) -> dict:
        ok = robust_correct(model, x, y, cfg.eps, cfg.norm, steps=steps, seed=0)
        robust = float(ok.float().mean())
        if best["robust"] >= 0.15 and robust < best["robust"] / 3:
            log(f"WARNING: PGD-{steps} robust accuracy fell from {best['robust']:.3f} to "
                f"{robust:.3f}: catastrophic overfitting? (use --adversarial pgd, a smaller "
                "--step-size, or the checkpoint of an earlier epoch)")
        best["robust"] = max(best["robust"], robust)
        return {f"test_robust_pgd{steps}": robust}

    return evaluate
