"""Kernel density and Bayesian uncertainty (Feinman, Curtin, Shintre, Gardner 2017,
"Detecting adversarial samples from artifacts"): adversarial examples lie off the data
manifold of their predicted class (low kernel density of the last hidden layer's features)
and where the network is uncertain (high variance of its softmax under dropout). Known broken:
Carlini & Wagner (2017, "Adversarial examples are not easily detected") added each statistic
to their loss and evaded both on MNIST.

* :class:`KernelDensityDetector` (``kd``): ``-log KD(x)``, KD the mean Gaussian kernel
  (bandwidth ``sigma``; Feinman et al.'s MNIST value 1.20 by default) between the
  penultimate features of ``x`` and those of reference training images of the class the
  model predicts for ``x``; computed in log space (``logsumexp``), so far-off inputs stay
  finite.
* :class:`BayesianUncertaintyDetector` (``bu``): ``mean_t ||p_t||^2 - ||mean_t p_t||^2`` over
  ``passes`` softmax outputs ``p_t`` with the model's dropout layers active (Monte Carlo
  dropout); random per call, as the paper's (an attack needs EOT).

Feinman et al. combine the two by a logistic regression trained on adversarial examples of
known attacks; here each is a detector of its own with its threshold at a false-positive rate
on benign images, and ``kd+bu`` (the union) is the combination, which needs no adversarial
examples to fit. Both relative scores are differentiable.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images
from defenses.detector import (
    Detector,
    float32_list,
    log_relative,
    require_features,
    require_model,
    restore_threshold,
    scores_in_batches,
    threshold_at,
)


class KernelDensityDetector(Detector):
    """Feinman et al.'s kernel density on ``model``'s penultimate features (see the module
    docstring). ``fit(x_train, y_train, x_benign, fpr, per_class)``: ``per_class`` reference
    images of each class (the first ones of ``x_train`` the model classifies correctly), the
    threshold on ``x_benign``."""

    kind = "kernel-density"
    differentiable = True

    def __init__(self, model: nn.Module, sigma: float = 1.2, name: str = "kd"):
        if not sigma > 0:
            raise ToolkitError(f"the kernel bandwidth must be > 0, got {sigma}")
        self.model, self.sigma, self.name = require_features(model, "kernel density"), \
            float(sigma), name
        self.reference: torch.Tensor | None = None  # (C, per_class, d)
        self.fpr: float | None = None

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference is None:
            raise ToolkitError(f"detector {self.name!r} has no reference features: call fit()")
        f = self.model.penultimate(x)
        # the predicted class from the same features (one pass), where the model has a head
        head = getattr(self.model, "head", None)
        logits = head(f) if callable(head) else self.model(x)
        ref = self.reference.to(f)[logits.argmax(1)]  # (n, per_class, d)
        sq = (ref - f[:, None, :]).pow(2).sum(-1)
        log_kd = torch.logsumexp(-sq / (2 * self.sigma ** 2), 1) - math.log(ref.shape[1])
        return -log_kd

    def score(self, x: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.model.parameters()).device,
                                 batch_size)

    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor, x_benign: torch.Tensor,
            fpr: float = 0.05, per_class: int = 100) -> KernelDensityDetector:
        threshold_at(torch.zeros(1), fpr)  # a bad rate fails before the work
        device = next(self.model.parameters()).device
        predicted = scores_in_batches(lambda b: self.model(b).argmax(1), x_train, device)
        refs = []
        classes = int(getattr(self.model, "num_classes", None) or int(y_train.max()) + 1)
        for c in range(classes):
            idx = ((y_train == c) & (predicted == c)).nonzero().squeeze(1)[:per_class]
            if len(idx) < per_class:
                raise ToolkitError(f"kernel density needs {per_class} correctly classified "
                                   f"training images of class {c}; found {len(idx)}")
            refs.append(scores_in_batches(self.model.penultimate, x_train[idx], device))
        self.reference = torch.stack(refs).float()
        self.threshold, self.fpr = threshold_at(self.score(x_benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """-log KD is already a log: relative to its threshold as 1 + (score - threshold)
        / |threshold| (1 at the threshold, above 1 exactly where detected)."""
        self.check_fitted()
        return 1 + (self._score(x) - self.threshold) / max(abs(self.threshold), 1e-6)

    def to_dict(self) -> dict:
        return {"name": self.name, "sigma": self.sigma, "threshold": self.threshold,
                "fpr": self.fpr, "reference": float32_list(self.reference)}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> KernelDensityDetector:
        det = cls(require_model(model, "kernel-density"), d["sigma"], d["name"])
        det.reference = torch.tensor(d["reference"], dtype=torch.float32)
        if det.reference.ndim != 3:
            raise ValueError(f"reference features of shape {tuple(det.reference.shape)}, "
                             "expected (classes, per class, features)")
        return restore_threshold(det, d)


@contextmanager
def dropout_active(model: nn.Module):
    """The model's dropout layers in training mode (everything else as it was)."""
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not drops:
        raise ToolkitError(f"Bayesian uncertainty needs dropout layers; "
                           f"{type(model).__name__} has none")
    modes = [m.training for m in drops]
    try:
        for m in drops:
            m.train()
        yield
    finally:
        for m, mode in zip(drops, modes):
            m.train(mode)


class BayesianUncertaintyDetector(Detector):
    """Feinman et al.'s Monte Carlo dropout uncertainty of ``model`` over ``passes`` passes
    (see the module docstring); ``fit(x_benign, fpr)`` sets the threshold."""

    kind = "bayesian-uncertainty"
    differentiable = True

    def __init__(self, model: nn.Module, passes: int = 50, name: str = "bu"):
        if not (isinstance(passes, int) and passes >= 2):
            raise ToolkitError(f"Bayesian uncertainty needs at least 2 passes, got {passes!r}")
        with dropout_active(model):  # (checks that it has dropout)
            pass
        self.model, self.passes, self.name = model, passes, name
        self.fpr: float | None = None

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        with dropout_active(self.model):
            p = torch.stack([torch.softmax(self.model(x), 1) for _ in range(self.passes)])
        return p.pow(2).sum(-1).mean(0) - p.mean(0).pow(2).sum(-1)

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.model.parameters()).device,
                                 batch_size)

    def fit(self, x_benign: torch.Tensor, fpr: float = 0.05) -> BayesianUncertaintyDetector:
        self.threshold, self.fpr = threshold_at(self.score(x_benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """The variance on a log scale (``log_relative``); random, as the score."""
        self.check_fitted()
        return log_relative(self._score(x), self.threshold)

    def to_dict(self) -> dict:
        return {"name": self.name, "passes": self.passes, "threshold": self.threshold,
                "fpr": self.fpr}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None,
                  **context) -> BayesianUncertaintyDetector:
        det = cls(require_model(model, "Bayesian-uncertainty"), int(d["passes"]), d["name"])
        return restore_threshold(det, d)
