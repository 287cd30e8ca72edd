"""The Mahalanobis detector (Lee, Lee, Lee, Shin, NeurIPS 2018): class-conditional Gaussians
with one shared covariance on the classifier's penultimate features, fitted on training
images; an input far (in Mahalanobis distance) from every class mean is flagged. A
known-broken kind of detector: a feature-space statistic that a white-box attack can add to
its loss (the GCD paper, ``../shared/papers/l2-adversarial-examples-intrinsically-different.md``
Table 2, reports its grey-box detection AUC on MNIST as 0.81-0.95, 0.89 on untargeted C&W).

Here: the penultimate layer only (the model's ``penultimate(x)`` hook), no input
pre-processing and no logistic regression over layers (Lee et al.'s extensions, which need
adversarial examples to fit); score ``min_c (f - mu_c)^T Sigma^-1 (f - mu_c)`` (the negated
confidence score of the paper), threshold at a false-positive rate on benign images.
``relative_score`` (score / threshold) is differentiable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images
from defenses.detector import (
    Detector,
    float32_list,
    require_features,
    require_model,
    restore_threshold,
    scores_in_batches,
    threshold_at,
)


def class_gaussians(features: np.ndarray, labels: np.ndarray,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(class means (C, d), precision (d, d)) of the tied-covariance Gaussian model: the
    covariance of the features centred on their class means (scikit-learn's
    ``EmpiricalCovariance``, its pseudo-inverse as precision)."""
    from sklearn.covariance import EmpiricalCovariance

    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ToolkitError(f"the Mahalanobis detector needs images of every class; none of "
                           f"class {', '.join(map(str, missing))}")
    means = np.stack([features[labels == c].mean(0) for c in range(num_classes)])
    centred = features - means[labels]
    cov = EmpiricalCovariance(assume_centered=True).fit(centred)
    return means, cov.precision_


class MahalanobisDetector(Detector):
    """Lee et al.'s detector on ``model``'s penultimate features (see the module docstring).
    ``fit(x_train, y_train, x_benign, fpr)``: the Gaussians from labelled training images,
    the threshold from benign images (which may be the same or held out)."""

    kind = "mahalanobis"
    differentiable = True

    def __init__(self, model: nn.Module, name: str = "maha"):
        require_features(model, "Mahalanobis")
        self.model, self.name = model, name
        self.means: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None
        self.fpr: float | None = None

    def _distances(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.penultimate(x)
        diff = f[:, None, :] - self.means[None].to(f)  # (n, C, d)
        return torch.einsum("ncd,de,nce->nc", diff, self.precision.to(f), diff)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        if self.means is None:
            raise ToolkitError(f"detector {self.name!r} has no class Gaussians yet: call fit()")
        return self._distances(x).amin(1)

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.model.parameters()).device,
                                 batch_size)

    def features(self, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        return scores_in_batches(self.model.penultimate, x,
                                 next(self.model.parameters()).device,
                                 batch_size).double().numpy()

    def fit(self, x_train: torch.Tensor, y_train: torch.Tensor,
            x_benign: torch.Tensor | None = None, fpr: float = 0.05) -> MahalanobisDetector:
        """Class means and shared precision from ``x_train`` (labels ``y_train``); threshold
        such that a fraction ``fpr`` of ``x_benign`` (default ``x_train``) scores above it."""
        threshold_at(torch.zeros(1), fpr)  # a bad rate fails before the work
        check_images(x_train, getattr(self.model, "input_shape", None),
                     what=f"training images of {self.name}")
        num_classes = int(getattr(self.model, "num_classes", None) or int(y_train.max()) + 1)
        means, precision = class_gaussians(self.features(x_train), y_train.numpy(), num_classes)
        self.means = torch.from_numpy(means).float()
        self.precision = torch.from_numpy(precision).float()
        benign = x_train if x_benign is None else x_benign
        self.threshold, self.fpr = threshold_at(self.score(benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """score / threshold, differentiable: above 1 is detected."""
        self.check_fitted()
        return self._score(x) / self.threshold

    def to_dict(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "fpr": self.fpr,
                "means": float32_list(self.means), "precision": float32_list(self.precision)}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> MahalanobisDetector:
        det = cls(require_model(model, "Mahalanobis"), d["name"])
        det.means = torch.tensor(d["means"], dtype=torch.float32)
        det.precision = torch.tensor(d["precision"], dtype=torch.float32)
        d_feat = det.precision.shape
        if det.means.ndim != 2 or d_feat != (det.means.shape[1], det.means.shape[1]):
            raise ValueError(f"means {tuple(det.means.shape)} and precision {tuple(d_feat)} "
                             "do not fit together")
        return restore_threshold(det, d)
