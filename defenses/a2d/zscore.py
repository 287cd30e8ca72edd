"""Z-score detectors on attack costs (A2D, section 4.2), calibrated on benign costs only.

A single detector fits the benign cost distribution of one engine. When a normality test
(Shapiro-Wilk up to 5,000 costs, D'Agostino-Pearson above) rejects normality at
``normality_alpha``, costs are Box-Cox transformed first; Box-Cox needs positive data and
costs can be 0, so the transform is applied to ``cost + 1``. An input is adversarial when its
z-score is below ``h`` (default -1.281552: about 10% of benign inputs are flagged).

The ensemble (``END``) calls an input benign when at least ``k`` of its detectors do
(the paper: k = 2 of 4).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import special, stats

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError
from defenses.detector import read_saved

DEFAULT_H = -1.281552
MIN_CALIBRATION = 3  # benign costs the Z-score needs (a mean, a spread, a normality test)
COST_SHIFT = 1.0  # Box-Cox is defined for positive data; costs start at 0


def as_costs(costs, what: str = "costs", ndim: int = 1) -> np.ndarray:
    """Validate attack costs: finite, non-negative numbers, 1-D (or 2-D: samples x engines)."""
    try:
        arr = np.asarray(costs.cpu() if hasattr(costs, "cpu") else costs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ToolkitError(f"{what} must be numbers: {e}") from e
    if ndim == 2 and arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != ndim:
        raise ToolkitError(f"{what} must be {'a 1-D array' if ndim == 1 else 'samples x engines'}"
                           f", got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ToolkitError(f"{what}: no costs given (the set is empty)")
    if not np.isfinite(arr).all():
        raise ToolkitError(f"{what} contain NaN or infinite values")
    if (arr < 0).any():
        raise ToolkitError(f"{what} must be >= 0 (iteration or query counts)")
    return arr


class ZScoreDetector:
    """One engine's Z-score detector: ``fit`` on benign costs, ``predict`` True = adversarial."""

    def __init__(self, h: float = DEFAULT_H, normality_alpha: float = 0.05):
        self.h, self.normality_alpha = float(h), float(normality_alpha)
        self.boxcox_lambda: float | None = None
        self.mean = self.std = None
        self.normality_p: float | None = None
        self.n_calibration = 0

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, benign_costs) -> ZScoreDetector:
        c = as_costs(benign_costs, "benign calibration costs")
        if len(c) < MIN_CALIBRATION:
            raise ToolkitError(f"need at least {MIN_CALIBRATION} benign costs to calibrate, "
                               f"got {len(c)}")
        if np.ptp(c) == 0:
            raise ToolkitError(f"all {len(c)} benign costs equal {c[0]:g}: no spread to "
                               "calibrate on (is the engine's cap too low, or its step too big?)")
        test = stats.shapiro if len(c) <= 5000 else stats.normaltest
        self.normality_p = float(test(c).pvalue) if len(c) >= 8 else 1.0
        self.boxcox_lambda = None
        t = c
        if self.normality_p < self.normality_alpha:
            t, lmbda = stats.boxcox(c + COST_SHIFT)
            self.boxcox_lambda = float(lmbda)
        self.mean, self.std = float(np.mean(t)), float(np.std(t, ddof=1))
        self.n_calibration = len(c)
        return self

    def _check_fitted(self):
        if not self.fitted:
            raise ToolkitError("the detector is not calibrated yet: call fit() on benign costs")

    def transform(self, costs) -> np.ndarray:
        c = as_costs(costs)
        if self.boxcox_lambda is None:
            return c
        return special.boxcox(c + COST_SHIFT, self.boxcox_lambda)

    def zscores(self, costs) -> np.ndarray:
        self._check_fitted()
        return (self.transform(costs) - self.mean) / self.std

    def predict(self, costs) -> np.ndarray:
        """True where the input is flagged adversarial (z-score below h)."""
        return self.zscores(costs) < self.h

    def score(self, costs) -> np.ndarray:
        """Higher means more adversarial (the negated z-score), for ROC curves."""
        return -self.zscores(costs)

    def cost_threshold(self) -> int:
        """The smallest integer cost judged benign: an engine may stop a sample there
        (detection mode) without changing any decision, as the transform is increasing."""
        self._check_fitted()
        target = self.mean + self.h * self.std
        if self.boxcox_lambda is None:
            guess = target
        else:
            guess = float(special.inv_boxcox(target, self.boxcox_lambda)) - COST_SHIFT
            if not math.isfinite(guess):  # below the transform's range: every cost is benign
                guess = 0.0
        c = max(0, math.ceil(guess))
        while c > 0 and not self.predict([c - 1])[0]:
            c -= 1
        while self.predict([c])[0]:
            c += 1
        return c

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"type": "zscore", "version": 1, "h": self.h,
                "normality_alpha": self.normality_alpha, "normality_p": self.normality_p,
                "boxcox_lambda": self.boxcox_lambda, "boxcox_shift": COST_SHIFT,
                "mean": self.mean, "std": self.std, "n_calibration": self.n_calibration}

    @classmethod
    def from_dict(cls, d: dict) -> ZScoreDetector:
        if not isinstance(d, dict) or d.get("type") != "zscore":
            raise ToolkitError("not a saved Z-score detector (expected type 'zscore')")
        try:
            det = cls(d["h"], d["normality_alpha"])
            det.boxcox_lambda, det.mean, det.std = d["boxcox_lambda"], d["mean"], d["std"]
            det.normality_p, det.n_calibration = d["normality_p"], d["n_calibration"]
        except KeyError as e:
            raise ToolkitError(f"saved Z-score detector lacks the field {e}") from e
        return det

    def save(self, path) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path) -> ZScoreDetector:
        return cls.from_dict(read_saved(path))


class ZScoreEnsemble:
    """END: benign when at least ``k`` of the engines' Z-score detectors say benign."""

    def __init__(self, engines: list[str], k: int = 2, h: float = DEFAULT_H,
                 normality_alpha: float = 0.05):
        if not engines:
            raise ToolkitError("an ensemble needs at least one engine")
        if not 1 <= k <= len(engines):
            raise ToolkitError(f"k must be between 1 and {len(engines)}, got {k}")
        self.k = int(k)
        self.detectors = {e: ZScoreDetector(h, normality_alpha) for e in engines}

    def _costs(self, costs: dict) -> dict:
        missing = set(self.detectors) - set(costs)
        if missing:
            raise ToolkitError(f"costs missing for engines {sorted(missing)}")
        n = {len(np.atleast_1d(as_costs(costs[e]))) for e in self.detectors}
        if len(n) != 1:
            raise ToolkitError(f"engines have different numbers of costs: {sorted(n)}")
        return costs

    def fit(self, benign_costs: dict) -> ZScoreEnsemble:
        self._costs(benign_costs)
        for name, det in self.detectors.items():
            det.fit(benign_costs[name])
        return self

    def votes(self, costs: dict) -> np.ndarray:
        """Number of detectors that call each input benign."""
        self._costs(costs)
        return sum((~det.predict(costs[name])).astype(int)
                   for name, det in self.detectors.items())

    def predict(self, costs: dict) -> np.ndarray:
        return self.votes(costs) < self.k

    def score(self, costs: dict) -> np.ndarray:
        """The k-th largest negated z-score: above -h exactly when the ensemble flags."""
        self._costs(costs)
        s = np.stack([det.score(costs[n]) for n, det in self.detectors.items()], axis=1)
        return np.sort(s, axis=1)[:, len(self.detectors) - self.k]

    def to_dict(self) -> dict:
        return {"type": "zscore-ensemble", "version": 1, "k": self.k,
                "detectors": {n: d.to_dict() for n, d in self.detectors.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> ZScoreEnsemble:
        if not isinstance(d, dict) or d.get("type") != "zscore-ensemble":
            raise ToolkitError("not a saved Z-score ensemble (expected type 'zscore-ensemble')")
        ens = cls(list(d["detectors"]), d["k"])
        ens.detectors = {n: ZScoreDetector.from_dict(v) for n, v in d["detectors"].items()}
        return ens

    def save(self, path) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path) -> ZScoreEnsemble:
        return cls.from_dict(read_saved(path))

