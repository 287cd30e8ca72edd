"""MagNet's detectors, each a :class:`defenses.detector.Detector`: ``fit(x_benign, drop_rate)``
sets the threshold at a chosen false-positive ("drop") rate on benign images; ``score(x)`` is
higher for more suspicious inputs; ``relative_score(x)`` (score / threshold) is differentiable,
so adaptive attacks can aim at it.

* ``ReconstructionDetector``: ``mean(|x - AE(x)|^p)`` per image (p = 1 or 2).
* ``DivergenceDetector``: Jensen-Shannon divergence between ``softmax(f(x)/T)`` and
  ``softmax(f(AE(x))/T)`` for the classifier ``f``.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images
from defenses.detector import Detector, scores_in_batches, threshold_at


class _ThresholdDetector(Detector):
    differentiable = True
    drop_rate: float | None = None

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.ae, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.ae.parameters()).device, batch_size)

    def fit(self, x_benign: torch.Tensor, drop_rate: float = 0.001) -> _ThresholdDetector:
        """Threshold such that a fraction ``drop_rate`` of these benign images is rejected."""
        self.threshold = threshold_at(self.score(x_benign), drop_rate, "drop rate")
        self.drop_rate = float(drop_rate)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """score / threshold, differentiable (for adaptive attacks): above 1 is detected."""
        self.check_fitted()
        return self._score(x) / self.threshold

    def to_dict(self) -> dict:
        return {"name": self.name, **self.config()}


class ReconstructionDetector(_ThresholdDetector):
    """MagNet's detectors I and II: reconstruction error ``mean(|x - AE(x)|^p)`` of the
    autoencoder ``ae`` (p = 1 or 2). Score: that error, per image."""

    kind = "reconstruction"

    def __init__(self, ae: nn.Module, p: int = 2, name: str | None = None):
        if p not in (1, 2):
            raise ToolkitError(f"reconstruction error norm p must be 1 or 2, got {p}")
        self.ae, self.p = ae, p
        self.name = name or f"recon_l{p}"

    def _score(self, x):
        return (x - self.ae(x)).abs().pow(self.p).flatten(1).mean(1)

    def config(self) -> dict:
        return {"type": "reconstruction", "p": self.p, "threshold": self.threshold,
                "drop_rate": self.drop_rate}

    @classmethod
    def from_dict(cls, d: dict, ae: nn.Module = None, **context) -> ReconstructionDetector:
        """Needs ``ae=``, the autoencoder (saved as a checkpoint of its own)."""
        if ae is None:
            raise ToolkitError("loading a reconstruction detector needs ae= (its autoencoder)")
        det = cls(ae, d["p"], d["name"])
        det.threshold, det.drop_rate = d.get("threshold"), d.get("drop_rate")
        return det


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence (natural log) of probability vectors."""
    m = 0.5 * (p + q)

    def kl(a, b):
        return torch.where(a > 0, a * (a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log()),
                           torch.zeros_like(a)).sum(1)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class DivergenceDetector(_ThresholdDetector):
    """MagNet's JSD detector: Jensen-Shannon divergence between the classifier's softmax at
    ``temperature`` on ``x`` and on ``AE(x)``."""

    kind = "divergence"

    def __init__(self, ae: nn.Module, classifier: nn.Module, temperature: float = 10.0,
                 name: str | None = None):
        self.ae, self.classifier, self.temperature = ae, classifier, float(temperature)
        self.name = name or f"jsd_T{temperature:g}"

    def _score(self, x):
        p = torch.softmax(self.classifier(x) / self.temperature, dim=1)
        q = torch.softmax(self.classifier(self.ae(x)) / self.temperature, dim=1)
        return jensen_shannon(p.double(), q.double()).float()

    def config(self) -> dict:
        return {"type": "divergence", "temperature": self.temperature,
                "threshold": self.threshold, "drop_rate": self.drop_rate}

    @classmethod
    def from_dict(cls, d: dict, ae: nn.Module = None, classifier: nn.Module = None,
                  **context) -> DivergenceDetector:
        """Needs ``ae=`` and ``classifier=`` (saved as checkpoints of their own)."""
        if ae is None or classifier is None:
            raise ToolkitError("loading a divergence detector needs ae= and classifier=")
        det = cls(ae, classifier, d["temperature"], d["name"])
        det.threshold, det.drop_rate = d.get("threshold"), d.get("drop_rate")
        return det
