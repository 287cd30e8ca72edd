"""A2D as detectors on images (the :mod:`defenses.detector` contract): a model, its attack-cost
engines and, on their costs, Z-score detectors fitted on benign images only
(:class:`A2DDetector`; with several engines the ensemble END, benign when at least ``k``
engines say benign) or a K-NN on benign and adversarial costs (:class:`A2DKNNDetector`).

Detection mode (on by default once calibrated): each engine stops a sample as soon as its cost
reaches the smallest cost its detector calls benign, so benign inputs cost fewer queries and
every decision stays the same. Costs (and so ``score``) are then capped; pass
``detection_mode=False`` for uncapped costs, e.g. for ROC curves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from defenses.a2d.cost import AttackCost
from defenses.a2d.knn import KNNDetector
from defenses.a2d.presets import build_engine
from defenses.a2d.zscore import DEFAULT_H, ZScoreEnsemble
from defenses.detector import Detector, NotFittedError, read_saved


def _saved_engines(d: dict, model: nn.Module | None, what: str) -> dict:
    """The cost engines a saved A2D detector records (loading needs its classifier)."""
    if model is None:
        raise ToolkitError(f"loading {what} needs model= (the classifier)")
    return {n: build_engine(n, **cfg) for n, cfg in d["engines"].items()}


class A2DDetector(Detector):
    """A2D on images (a :class:`defenses.detector.Detector`): ``model``, its attack-cost
    ``engines`` (name -> engine) and a Z-score detector per engine, fitted on benign costs only;
    with several engines, END: benign when at least ``k`` of them say benign.

    ``fit(x_benign)`` (or ``fit(costs={engine: costs})``) -> self; ``score(x)``: the k-th
    largest negated z-score of the costs (higher = cheaper to attack = more adversarial), above
    ``threshold`` (= -h) exactly where ``detect(x)`` fires. Attack costs are counts, so A2D is
    not differentiable (``adaptive.attacks.a2d_aware`` attacks a first-order surrogate)."""

    kind = "a2d"
    differentiable = False

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

    @property
    def threshold(self) -> float | None:
        """-h: ``score`` above it is flagged (None until fitted)."""
        if not self.calibrated:
            return None
        return -next(iter(self.zscore.detectors.values())).h

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

    def fit(self, x_benign: torch.Tensor = None, *, costs: dict | None = None) -> A2DDetector:
        """Fit the Z-score detectors on benign images, or on their precomputed full costs
        (per engine: an ``AttackCost`` or a tensor of costs)."""
        if costs is None:
            if x_benign is None:
                raise ToolkitError("fit needs benign images or their costs")
            costs = self.costs(x_benign, detection_mode=False)
        self.zscore.fit({n: c.costs if isinstance(c, AttackCost) else c
                         for n, c in costs.items()})
        self.calibrated = True
        return self

    def check_fitted(self) -> None:
        if not self.calibrated:
            raise NotFittedError("the A2D detector is not calibrated: call fit() with benign "
                                 "images first")

    def decide(self, costs: dict[str, AttackCost]) -> torch.Tensor:
        """The decision from costs already computed (what ``detect`` does after them)."""
        self.check_fitted()
        return torch.from_numpy(self.zscore.predict({n: c.costs for n, c in costs.items()}))

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """True where ``x`` is flagged adversarial."""
        self.check_fitted()
        return self.decide(self.costs(x))

    def score(self, x: torch.Tensor, detection_mode: bool | None = None) -> torch.Tensor:
        """Higher is more adversarial; crosses ``threshold`` exactly where ``detect`` flips."""
        self.check_fitted()
        costs = self.costs(x, detection_mode)
        return torch.from_numpy(self.zscore.score({n: c.costs for n, c in costs.items()}))

    def to_dict(self) -> dict:
        self.check_fitted()
        return {"k": self.k, "detection_mode": self.detection_mode,
                "engines": {n: e.config() for n, e in self.engines.items()},
                "zscore": self.zscore.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> A2DDetector:
        """Needs ``model=``, the classifier whose attack costs A2D measures."""
        engines = _saved_engines(d, model, "an A2D detector")
        det = cls(model, engines, d["k"], detection_mode=d["detection_mode"])
        det.zscore = ZScoreEnsemble.from_dict(d["zscore"])
        det.calibrated = True
        return det

    @classmethod
    def load(cls, path, model: nn.Module = None, **context) -> A2DDetector:
        d = read_saved(path)
        if d.get("type") != cls.kind:
            raise ToolkitError(f"{path} is not a saved A2D detector")
        return super().load(path, model=model, **context)


class A2DKNNDetector(Detector):
    """A2D's K-NN detector on images (section 4.1): the attack costs of ``x`` by ``engines``
    (one: single; several: END) and the K nearest training cost vectors; flagged when more than
    half of them are adversarial. Supervised: ``fit(x_benign, x_adversarial)`` (or
    ``fit(costs=..., adversarial_costs=...)``, dicts engine -> costs). ``score(x)``: the
    fraction of adversarial neighbours, flagged above ``threshold`` = 0.5."""

    kind = "a2d-knn"
    differentiable = False

    def __init__(self, model: nn.Module, engines: dict, k: int = 100, scale: str = "none"):
        if not engines:
            raise ToolkitError("A2D needs at least one attack-cost engine")
        self.model, self.engines = model, dict(engines)
        self.knn = KNNDetector(k, scale)

    @property
    def name(self) -> str:
        return "a2d-knn:" + "+".join(self.engines)

    @property
    def threshold(self) -> float | None:
        return 0.5 if self.knn.fitted else None

    def _cost_matrix(self, x: torch.Tensor | None, costs: dict | None) -> np.ndarray:
        if costs is None:
            costs = {n: e.run(self.model, x).costs for n, e in self.engines.items()}
        missing = set(self.engines) - set(costs)
        if missing:
            raise ToolkitError(f"costs missing for engines {sorted(missing)}")
        return np.stack([np.asarray(getattr(costs[n], "costs", costs[n]), dtype=np.float64)
                         for n in self.engines], axis=1)

    def fit(self, x_benign: torch.Tensor = None, x_adversarial: torch.Tensor = None, *,
            costs: dict | None = None, adversarial_costs: dict | None = None
            ) -> A2DKNNDetector:
        """Fit on the costs of benign and adversarial images (or on their costs)."""
        if (x_benign is None and costs is None) or (x_adversarial is None
                                                     and adversarial_costs is None):
            raise ToolkitError("the K-NN detector is supervised: fit(benign, adversarial) "
                               "images, or costs= and adversarial_costs=")
        self.knn.fit(self._cost_matrix(x_benign, costs),
                     self._cost_matrix(x_adversarial, adversarial_costs))
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        self.check_fitted()
        return torch.from_numpy(self.knn.score(self._cost_matrix(x, None)))

    def to_dict(self) -> dict:
        self.check_fitted()
        return {"engines": {n: e.config() for n, e in self.engines.items()},
                "knn": self.knn.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> A2DKNNDetector:
        """Needs ``model=``, the classifier whose attack costs A2D measures."""
        engines = _saved_engines(d, model, "an A2D K-NN detector")
        det = cls(model, engines, d["knn"]["k"], d["knn"].get("scale", "none"))
        det.knn = KNNDetector.from_dict(d["knn"])
        return det


def auroc_inputs(benign: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 = adversarial) and scores (lower cost = more adversarial) for ROC curves."""
    return (np.r_[np.zeros(len(benign)), np.ones(len(adversarial))],
            -np.r_[np.asarray(benign, float), np.asarray(adversarial, float)])
