"""Local intrinsic dimensionality (Ma et al., ICLR 2018, "Characterizing adversarial subspaces
using local intrinsic dimensionality"): adversarial regions have a higher LID than benign ones.
Known broken: Athalye, Carlini, Wagner (ICML 2018, "Obfuscated gradients give a false sense of
security") attacked LID directly and evaded it.

The maximum-likelihood estimate of ``x``'s LID from its distances ``r_1 <= ... <= r_k`` to its
``k`` nearest neighbours among a reference set: ``-((1/k) sum_i log(r_i / r_k))^-1``. Ma et al.
estimate it per layer within each minibatch and train a logistic regression on adversarial
examples; here: the penultimate layer, a fixed reference set of benign training images (so a
score does not depend on the other inputs of its batch), ``k`` = 20 of 100 as their MNIST
setting, the threshold at a false-positive rate on benign images. Differentiable (almost
everywhere) in ``x``.
"""

from __future__ import annotations

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


def lid_mle(distances: torch.Tensor) -> torch.Tensor:
    """Per row of ``distances`` (n, k), sorted ascending and > 0: the MLE of the LID."""
    ratios = torch.log(distances / distances[:, -1:])
    return -1.0 / ratios.mean(1).clamp_max(-1e-12)


class LIDDetector(Detector):
    """Ma et al.'s LID on ``model``'s penultimate features against ``reference`` benign
    images' (see the module docstring); ``fit(x_reference, x_benign, fpr)``."""

    kind = "lid"
    differentiable = True

    def __init__(self, model: nn.Module, k: int = 20, name: str = "lid"):
        require_features(model, "LID")
        if not (isinstance(k, int) and k >= 2):
            raise ToolkitError(f"LID needs k >= 2 neighbours, got {k!r}")
        self.model, self.k, self.name = model, k, name
        self.reference: torch.Tensor | None = None
        self.fpr: float | None = None

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference is None:
            raise ToolkitError(f"detector {self.name!r} has no reference features: call fit()")
        f = self.model.penultimate(x)
        d = torch.cdist(f, self.reference.to(f))
        nearest = d.topk(self.k, dim=1, largest=False).values.clamp_min(1e-12)
        return lid_mle(nearest)

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.model.parameters()).device,
                                 batch_size)

    def fit(self, x_reference: torch.Tensor, x_benign: torch.Tensor,
            fpr: float = 0.05) -> LIDDetector:
        threshold_at(torch.zeros(1), fpr)  # a bad rate fails before the work
        if len(x_reference) <= self.k:
            raise ToolkitError(f"LID needs more than k = {self.k} reference images, got "
                               f"{len(x_reference)}")
        self.reference = scores_in_batches(self.model.penultimate, x_reference,
                                           next(self.model.parameters()).device).float()
        self.threshold, self.fpr = threshold_at(self.score(x_benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """LID / threshold (a dimension: ratios stay moderate), differentiable."""
        self.check_fitted()
        return self._score(x) / self.threshold

    def to_dict(self) -> dict:
        return {"name": self.name, "k": self.k, "threshold": self.threshold, "fpr": self.fpr,
                "reference": float32_list(self.reference)}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> LIDDetector:
        det = cls(require_model(model, "LID"), int(d["k"]), d["name"])
        det.reference = torch.tensor(d["reference"], dtype=torch.float32)
        if det.reference.ndim != 2 or len(det.reference) <= det.k:
            raise ValueError(f"reference features of shape {tuple(det.reference.shape)} for "
                             f"k = {det.k}")
        return restore_threshold(det, d)
