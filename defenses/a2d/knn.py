"""K-NN detectors on attack costs (A2D, section 4.1).

Fit on cost vectors (one engine, or several: the ensemble "END") of benign and adversarial
examples; an input is adversarial when more than half of its K nearest neighbours are
(the paper: ``|A_x| > |B_x|``, K = 100, so a tie is benign).

``scale="standard"`` (not in the paper) first standardises each engine's costs by the mean and
standard deviation of the training costs. Without it the engine with the largest costs decides
the neighbours of an ensemble (DBA_d counts queries, in the hundreds for benign MNIST images,
where JSMA_d counts tens of pixels); docs/a2d.md (Table 7) has the measured effect.
A single engine's neighbours do not change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError
from defenses.a2d.zscore import as_costs
from defenses.detector import read_saved

SCALES = ("none", "standard")


def knn_classifier(k: int, scale: str = "none"):
    """The scikit-learn estimator behind :class:`KNNDetector`: K-NN, after standardising each
    feature (engine) by the training costs' mean and standard deviation when ``scale`` is
    "standard"."""
    if scale not in SCALES:
        raise ToolkitError(f"unknown K-NN cost scaling {scale!r}; choose {' or '.join(SCALES)}")
    knn = KNeighborsClassifier(n_neighbors=k)
    return make_pipeline(StandardScaler(), knn) if scale == "standard" else knn


class KNNDetector:
    """``fit(benign, adversarial)`` on costs of shape (n,) or (n, engines); True = adversarial."""

    def __init__(self, k: int = 100, scale: str = "none"):
        if int(k) < 1:
            raise ToolkitError(f"K must be at least 1, got {k}")
        self._knn = knn_classifier(int(k), scale)  # checks the scaling's name
        self.k = int(k)
        self.scale = scale
        self._benign = self._adversarial = None  # set by fit

    def fit(self, benign_costs, adversarial_costs) -> KNNDetector:
        b = as_costs(benign_costs, "benign costs", ndim=2)
        a = as_costs(adversarial_costs, "adversarial costs", ndim=2)
        if b.shape[1] != a.shape[1]:
            raise ToolkitError(f"benign costs have {b.shape[1]} engines, adversarial "
                               f"{a.shape[1]}")
        if len(b) + len(a) < self.k:
            raise ToolkitError(f"K={self.k} needs at least {self.k} training costs, got "
                               f"{len(b) + len(a)}")
        self._benign, self._adversarial = b, a
        self._knn.fit(np.concatenate([b, a]), np.r_[np.zeros(len(b)), np.ones(len(a))])
        return self

    @property
    def fitted(self) -> bool:
        return self._benign is not None

    def score(self, costs) -> np.ndarray:
        """Fraction of the K nearest training costs that are adversarial."""
        if self._benign is None:
            raise ToolkitError("the detector is not fitted yet: call fit(benign, adversarial)")
        c = as_costs(costs, ndim=2)
        if c.shape[1] != self._benign.shape[1]:
            raise ToolkitError(f"expected costs of {self._benign.shape[1]} engines, got "
                               f"{c.shape[1]}")
        return self._knn.predict_proba(c)[:, 1]

    def predict(self, costs) -> np.ndarray:
        return self.score(costs) > 0.5

    def to_dict(self) -> dict:
        if self._benign is None:
            raise ToolkitError("the detector is not fitted yet")
        return {"type": "knn", "version": 1, "k": self.k, "scale": self.scale,
                "benign": self._benign.tolist(), "adversarial": self._adversarial.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> KNNDetector:
        if not isinstance(d, dict) or d.get("type") != "knn":
            raise ToolkitError("not a saved K-NN detector (expected type 'knn')")
        try:
            # detectors saved before scaling existed have no "scale": raw costs
            return cls(d["k"], d.get("scale", "none")).fit(d["benign"], d["adversarial"])
        except KeyError as e:
            raise ToolkitError(f"saved K-NN detector lacks the field {e}") from e

    def save(self, path) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path) -> KNNDetector:
        return cls.from_dict(read_saved(path))
