"""Adversarial training (Madry et al.'s PGD, the cheap FGSM-with-random-start variant, and
Tramèr et al.'s ensemble adversarial training).

Every scale is in the [0, 1] pixel range: an L-inf budget of 8/255 is ``eps=8/255`` (IBM ART's
defaults assume 0-255 images, where the same budget reads 8).

- ``pgd``: the inner maximisation is ``steps`` steps of projected gradient ascent on the
  cross-entropy from a uniformly random start in the ball (Madry et al., ICLR 2018).
- ``fgsm-rs``: one signed-gradient step of ``step_size`` (default 1.25 eps) from a random start
  (Wong, Rice & Kolter, "Fast is better than free", ICLR 2020): about a quarter of PGD-7's cost.
  It can overfit "catastrophically" (robustness to PGD collapses within an epoch); the training
  run therefore measures PGD robust accuracy on a test subset after every epoch and warns.
- ``ensemble``: ensemble adversarial training (Tramèr et al., ICLR 2018): half of every batch
  replaced by R+FGSM examples (a random signed step of ``step_size``, default eps/2, then a
  signed-gradient step of eps minus it) made on the model being trained or on one of the
  ``static`` pre-trained models, drawn per batch. Examples transferred from other models
  teach it to resist transfer; it was never meant to resist a white-box iterative attack.

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

METHODS = ("pgd", "fgsm-rs", "ensemble")


@dataclass(frozen=True)
class AdversarialConfig:
    """The inner maximisation of adversarial training, scales in [0, 1] pixels."""

    method: str = "pgd"
    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = 7
    step_size: float | None = None  # default: eps/4 for PGD, 1.25 eps for FGSM-RS, eps/2 R+FGSM
    static: tuple[str, ...] = ()  # ensemble: the pre-trained models whose examples it learns

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ToolkitError(f"unknown adversarial training method {self.method!r}; "
                               f"choose one of {', '.join(METHODS)}")
        check_budget(self.eps, self.norm)
        if self.steps < 1:
            raise ToolkitError("--steps must be at least 1")
        if self.method in ("fgsm-rs", "ensemble") and self.steps != 1:
            raise ToolkitError(f"{self.method} takes exactly one step; use --adversarial pgd "
                               "for more")
        if (self.method == "ensemble") != bool(self.static):
            raise ToolkitError("ensemble adversarial training needs --static MODEL[,MODEL...] "
                               "(the pre-trained models it learns the examples of), and only "
                               "it takes them")
        if self.method == "ensemble" and self.step_size is not None \
                and not self.step_size < self.eps:
            raise ToolkitError("the random step of R+FGSM (--step-size) must be below --eps")
        if self.step_size is not None and not self.step_size > 0:
            raise ToolkitError("--step-size must be positive")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return {"fgsm-rs": 1.25 * self.eps, "ensemble": self.eps / 2}.get(self.method,
                                                                          self.eps / 4)

    def describe(self) -> str:
        eps = f"{self.eps * 255:g}/255" if self.norm == "linf" else f"{self.eps:g}"
        scale, unit = (255, "/255") if self.norm == "linf" else (1, "")
        if self.method == "ensemble":
            return (f"ensemble {self.norm} eps={eps}: R+FGSM (random step "
                    f"{self.alpha * scale:.4g}{unit}) on the model or one of "
                    f"{', '.join(self.static)}, half of every batch")
        return (f"{self.method} {self.norm} eps={eps}, {self.steps} step(s) of "
                f"{self.alpha * scale:.4g}{unit}")

    def to_dict(self) -> dict:
        return {**asdict(self), "step_size": self.alpha, "static": list(self.static)}


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


def r_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
           norm: str, generator: torch.Generator) -> torch.Tensor:
    """Tramèr et al.'s R+FGSM: a random step of ``alpha`` (signed Gaussian; for L2 a random
    direction of that length), then a gradient step of ``eps - alpha`` (signed; for L2 the
    normalised gradient), clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    start = (x + alpha * _direction(noise, norm)).clamp(0, 1).detach().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model(start), y)
        (g,) = torch.autograd.grad(loss, start)
    return (start + (eps - alpha) * _direction(g, norm)).clamp(0, 1).detach()


def _direction(v: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return v.sign()
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (v.ndim - 1))


def make_perturbation(cfg: AdversarialConfig, static: list[nn.Module] | None = None):
    """The ``perturb(model, x, y, generator)`` callable that adversarial training applies to
    every training batch; ``static``: the loaded pre-trained models of ``ensemble``, in the
    order of ``cfg.static``."""
    if cfg.method == "ensemble":
        if not static or len(static) != len(cfg.static):
            raise ToolkitError("ensemble adversarial training needs its static models loaded")
        for m in static:
            m.eval().requires_grad_(False)

        def ensemble(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
            # the source of this batch's examples: the model itself or a static one
            pick = int(torch.randint(len(static) + 1, (1,), generator=generator))
            half = len(x) // 2
            source = model if pick == 0 else static[pick - 1]
            with frozen_batchnorm_stats(model):
                adv = r_fgsm(source, x[half:], y[half:], cfg.eps, cfg.alpha, cfg.norm,
                             generator)
            return torch.cat([x[:half], adv])

        return ensemble

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
