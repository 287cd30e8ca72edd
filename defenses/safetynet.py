"""SafetyNet (Lu, Issaranon, Forsyth, ICCV 2017): an RBF-SVM on the quantised codes of a late
ReLU layer tells adversarial examples from benign ones. Its gradients are useless by design
(the codes are a step function of the input), so an attacker uses a hard-label attack on its
verdict or a differentiable surrogate of it (the survey in ``../shared/papers/`` lists it; Carlini
& Wagner's and later adaptive evaluations found such detectors evadable).

Here: the codes are the binary activation pattern of the penultimate ReLU layer (``f > 0`` of
the model's ``penultimate(x)``), the SVM scikit-learn's ``SVC`` (RBF kernel, ``gamma="scale"``)
trained on the codes of benign training images against those of C&W examples made of other
training images, the score its decision function (higher = adversarial), the threshold at a
false-positive rate on held-out benign images. ``relative_score`` is what an adaptive attack
steps on: the SVM's decision on the step codes (its value exactly the detector's, shifted so
that 1 is the threshold), differentiated through the smoothed codes ``sigmoid(f /
temperature)`` in their place (BPDA, Athalye et al. 2018).
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


class SafetyNetDetector(Detector):
    """SafetyNet on ``model``'s penultimate ReLU codes (see the module docstring).
    ``fit(x_benign_train, x_adversarial_train, x_benign, fpr)``."""

    kind = "safetynet"
    differentiable = True  # through the smoothed-code surrogate

    def __init__(self, model: nn.Module, temperature: float = 0.1, name: str = "safetynet"):
        require_features(model, "SafetyNet")
        if not temperature > 0:
            raise ToolkitError(f"the surrogate's temperature must be > 0, got {temperature}")
        self.model, self.temperature, self.name = model, float(temperature), name
        self.support: torch.Tensor | None = None  # (s, d) support vectors
        self.dual: torch.Tensor | None = None  # (s,) dual coefficients
        self.intercept = self.gamma = 0.0
        self.fpr: float | None = None

    def codes(self, x: torch.Tensor, smooth: bool = False) -> torch.Tensor:
        """The binary codes ``f > 0``; ``smooth``: the same values with the gradient of
        ``sigmoid(f / temperature)`` (straight through, BPDA)."""
        f = self.model.penultimate(x)
        hard = (f > 0).to(f.dtype)
        if not smooth:
            return hard
        soft = torch.sigmoid(f / self.temperature)
        return hard + (soft - soft.detach())

    def _decision(self, codes: torch.Tensor) -> torch.Tensor:
        if self.support is None:
            raise ToolkitError(f"detector {self.name!r} has no SVM yet: call fit()")
        sq = torch.cdist(codes, self.support.to(codes)).pow(2)
        return torch.exp(-self.gamma * sq) @ self.dual.to(codes) + self.intercept

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(lambda b: self._decision(self.codes(b)), x,
                                 next(self.model.parameters()).device, batch_size)

    def fit(self, x_benign_train: torch.Tensor, x_adversarial_train: torch.Tensor,
            x_benign: torch.Tensor, fpr: float = 0.05, C: float = 1.0) -> SafetyNetDetector:
        """The SVM on benign (label 0) against adversarial (label 1) codes; the threshold at
        ``fpr`` on ``x_benign``."""
        from sklearn.svm import SVC

        threshold_at(torch.zeros(1), fpr)  # a bad rate fails before the work
        if len(x_adversarial_train) == 0 or len(x_benign_train) == 0:
            raise ToolkitError("SafetyNet needs benign and adversarial training images")
        device = next(self.model.parameters()).device
        codes = torch.cat([scores_in_batches(self.codes, v, device)
                           for v in (x_benign_train, x_adversarial_train)]).double().numpy()
        labels = np.r_[np.zeros(len(x_benign_train)), np.ones(len(x_adversarial_train))]
        svm = SVC(kernel="rbf", gamma="scale", C=C).fit(codes, labels)
        self.support = torch.from_numpy(svm.support_vectors_).float()
        self.dual = torch.from_numpy(svm.dual_coef_[0]).float()
        self.intercept, self.gamma = float(svm.intercept_[0]), float(svm._gamma)
        self.threshold, self.fpr = threshold_at(self.score(x_benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """1 + (decision - threshold): the SVM's own decision on the step codes (above 1
        exactly where ``detect`` fires), its gradient through the smoothed codes (BPDA)."""
        self.check_fitted()
        return 1 + self._decision(self.codes(x, smooth=True)) - self.threshold

    def to_dict(self) -> dict:
        return {"name": self.name, "temperature": self.temperature, "threshold": self.threshold,
                "fpr": self.fpr, "gamma": self.gamma, "intercept": self.intercept,
                "dual": float32_list(self.dual), "support": float32_list(self.support)}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> SafetyNetDetector:
        det = cls(require_model(model, "SafetyNet"), d["temperature"], d["name"])
        det.support = torch.tensor(d["support"], dtype=torch.float32)
        det.dual = torch.tensor(d["dual"], dtype=torch.float32)
        if det.support.ndim != 2 or det.dual.shape != (len(det.support),):
            raise ValueError(f"support vectors {tuple(det.support.shape)} and dual "
                             f"coefficients {tuple(det.dual.shape)} do not fit together")
        det.gamma, det.intercept = float(d["gamma"]), float(d["intercept"])
        return restore_threshold(det, d)
