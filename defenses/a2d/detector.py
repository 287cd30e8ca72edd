"""A2D as a detector on images: a model, its attack-cost engines and Z-score detectors
calibrated on benign images only.

``detect(x)`` returns a bool tensor (True = adversarial), the interface every detector of the
toolkit shares. With one engine the decision is that engine's Z-score detector; with several it
is the ensemble (benign when at least ``k`` engines say benign).

Detection mode (on by default once calibrated): each engine stops a sample as soon as its cost
reaches the smallest cost its detector calls benign, so benign inputs cost fewer queries and
every decision stays the same. Costs (and so ``score``) are then capped; pass
``detection_mode=False`` for uncapped costs, e.g. for ROC curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError
from defenses.a2d.cost import AttackCost
from defenses.a2d.presets import build_engine
from defenses.a2d.zscore import DEFAULT_H, ZScoreEnsemble


class A2DDetector:
    def __init__(self, model: nn.Module, engines: dict, k: int | None = None,
                 h: float = DEFAULT_H, detection_mode: bool = True):
        if not engines:
            raise ToolkitError("A2D needs at least one attack-cost engine")
        self.model, self.engines = model, dict(engines)
        self.k = len(engines) if k is None and len(engines) == 1 else (k or 2)
        self.zscore = ZScoreEnsemble(list(engines), self.k, h)
        self.detection_mode = detection_mode
        self.calibrated = False

    @property
    def name(self) -> str:
        return "a2d:" + "+".join(self.engines)

    def costs(self, x: torch.Tensor, detection_mode: bool | None = None) -> dict[str, AttackCost]:
        """Each engine's attack costs for ``x``, capped at the detectors' thresholds in
        detection mode."""
        capped = self.detection_mode if detection_mode is None else detection_mode
        if capped and not self.calibrated:
            capped = False
        out = {}
        for name, engine in self.engines.items():
            cap = None
            if capped:
                cap = max(1, min(engine.max_iter,
                                 self.zscore.detectors[name].cost_threshold()))
            out[name] = engine.run(self.model, x, max_iter=cap)
        return out

    def calibrate(self, x_benign: torch.Tensor = None, *,
                  costs: dict | None = None) -> "A2DDetector":
        """Fit the Z-score detectors on benign images, or on their precomputed full costs
        (per engine: an ``AttackCost`` or a tensor of costs)."""
        if costs is None:
            if x_benign is None:
                raise ToolkitError("calibrate needs benign images or their costs")
            costs = self.costs(x_benign, detection_mode=False)
        self.zscore.fit({n: c.costs if isinstance(c, AttackCost) else c
                         for n, c in costs.items()})
        self.calibrated = True
        return self

    def _require(self):
        if not self.calibrated:
            raise ToolkitError("the A2D detector is not calibrated: call calibrate() with "
                               "benign images first")

    def decide(self, costs: dict[str, AttackCost]) -> torch.Tensor:
        self._require()
        return torch.from_numpy(self.zscore.predict({n: c.costs for n, c in costs.items()}))

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """True where ``x`` is flagged adversarial."""
        self._require()
        return self.decide(self.costs(x))

    def score(self, x: torch.Tensor, detection_mode: bool | None = None) -> torch.Tensor:
        """Higher is more adversarial; crosses -h exactly where ``detect`` flips."""
        self._require()
        costs = self.costs(x, detection_mode)
        return torch.from_numpy(self.zscore.score({n: c.costs for n, c in costs.items()}))

    def to_dict(self) -> dict:
        self._require()
        return {"type": "a2d", "version": 1, "k": self.k,
                "detection_mode": self.detection_mode,
                "engines": {n: e.config() for n, e in self.engines.items()},
                "zscore": self.zscore.to_dict()}

    def save(self, path) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path, model: nn.Module) -> "A2DDetector":
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ToolkitError(f"no saved A2D detector at {path}") from None
        except (OSError, ValueError) as e:
            raise ToolkitError(f"cannot read saved A2D detector {path}: {e}") from e
        if not isinstance(d, dict) or d.get("type") != "a2d":
            raise ToolkitError(f"{path} is not a saved A2D detector")
        engines = {n: build_engine(n, **cfg) for n, cfg in d["engines"].items()}
        det = cls(model, engines, d["k"], detection_mode=d["detection_mode"])
        det.zscore = ZScoreEnsemble.from_dict(d["zscore"])
        det.calibrated = True
        return det


def auroc_inputs(benign: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 = adversarial) and scores (lower cost = more adversarial) for ROC curves."""
    return (np.r_[np.zeros(len(benign)), np.ones(len(adversarial))],
            -np.r_[np.asarray(benign, float), np.asarray(adversarial, float)])
