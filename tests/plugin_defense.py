"""A third-party defense written against the documented detector contract (docs/plugins.md),
as a user would write it: not part of the package. Plugged in by
tests/test_plugin_contract.py through ``--defense-module tests.plugin_defense:make_defense``."""

import torch

from adaptive.core.data import load_dataset
from adaptive.defense import Defense
from defenses import Detector


class LowConfidenceDetector(Detector):
    """Flags inputs the classifier is unsure of: score = minus the gap between the two largest
    logits; by default the threshold lets every benign fitting image pass."""

    kind = "example-low-confidence"
    differentiable = True

    def __init__(self, model: torch.nn.Module):
        self.model, self.name = model, "unsure"

    def fit(self, benign: torch.Tensor, drop_rate: float = 0.0) -> "LowConfidenceDetector":
        self.threshold = float(torch.quantile(self.score(benign), 1 - drop_rate))
        return self

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        top = self.model(x).topk(2, dim=1).values
        return top[:, 1] - top[:, 0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._score(x)

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        self.check_fitted()  # 1 at the threshold, above 1 flagged: one logit unit per unit
        return 1 + self._score(x) - self.threshold

    def to_dict(self) -> dict:
        return {"threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict, model: torch.nn.Module = None, **context):
        det = cls(model)
        det.threshold = d["threshold"]
        return det


def make_defense(model, dataset, device):
    benign = load_dataset(dataset).x()[-200:].to(device)  # benign images to fit on
    return Defense("mine", classifier=model,
                   detectors={"unsure": LowConfidenceDetector(model).fit(benign)})
