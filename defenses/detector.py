"""The detector contract: one shape for every detector the toolkit attacks, built in or yours.

Modelled on scikit-learn's estimators::

    det = SomeDetector(...).fit(x_benign, ...)   # fit on benign inputs (more data may follow)
    det.score(x)           # float tensor [n]: higher = more adversarial
    det.threshold          # fitted: detect(x) == score(x) > threshold
    det.detect(x)          # bool tensor [n], True = flagged adversarial
    det.differentiable     # declared: whether relative_score(x) exists and has useful gradients
    det.relative_score(x)  # differentiable, 1 at the threshold, above 1 flagged (if declared)
    det.save(path); Detector.load(path, **context)   # one JSON shape for all

Inputs ``x`` are float images in [0, 1], NCHW. A detector used before ``fit`` raises
:class:`NotFittedError`. Attacks read ``differentiable`` to decide whether they can aim at a
detector's score (gradient attacks) or only submit inputs to ``detect`` (hard-label attacks).
Subclasses implement ``fit``, ``score`` and, for saving, ``to_dict``/``from_dict``; the base
class supplies the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError


class NotFittedError(ToolkitError):
    """A detector was used before ``fit`` (or before its threshold was set)."""


# "type" in a saved detector -> its class (filled by Detector.__init_subclass__)
DETECTOR_TYPES: dict[str, type[Detector]] = {}


class Detector:
    """Base of every detector: see the module docstring for the contract.

    Class attributes: ``kind`` (the ``type`` a saved detector records; set it to make a
    subclass loadable by :meth:`Detector.load`) and ``differentiable``.
    """

    kind: ClassVar[str | None] = None
    differentiable: ClassVar[bool] = False
    name: str = "detector"
    threshold: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            DETECTOR_TYPES[cls.kind] = cls

    # -- to implement -------------------------------------------------------------------------

    def fit(self, benign: torch.Tensor, *args, **kwargs) -> Detector:
        """Fit on benign inputs (and whatever else the method needs); returns ``self``."""
        raise NotImplementedError

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per input, higher = more adversarial (a float tensor of length ``len(x)``)."""
        raise NotImplementedError

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable score, 1 at the threshold and above 1 exactly where ``detect``
        fires; only for detectors that declare ``differentiable = True``."""
        raise ToolkitError(f"detector {self.name!r} has no differentiable score "
                           "(differentiable = False); attack it with a hard-label attack")

    def to_dict(self) -> dict:
        """The fitted state as JSON-able values (without ``type``; see :meth:`save`)."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict, **context) -> Detector:
        """Rebuild a fitted detector from :meth:`to_dict`; ``context`` carries what is not
        saved with it (e.g. ``model=``, the network it attacks or reconstructs with)."""
        raise NotImplementedError

    # -- provided -------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self.threshold is not None

    def check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"detector {self.name!r} is not fitted (it has no threshold "
                                 "yet): call fit() with benign inputs first")

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """True where ``x`` is flagged adversarial: ``score(x) > threshold``."""
        self.check_fitted()
        return torch.as_tensor(self.score(x)) > self.threshold

    def save(self, path: str | Path) -> None:
        """Write the fitted detector as JSON: ``{"type": kind, "version": 1, ...}``."""
        self.check_fitted()
        if not self.kind:
            raise ToolkitError(f"{type(self).__name__} declares no kind; it cannot be saved")
        write_json(Path(path), {"type": self.kind, "version": 1, **self.to_dict()})

    @classmethod
    def load(cls, path: str | Path, **context) -> Detector:
        """A saved detector of any registered kind (or of ``cls``'s kind)."""
        return cls.from_saved(read_saved(path), path, **context)

    @classmethod
    def from_saved(cls, d: dict, path, **context) -> Detector:
        """As :meth:`load`, from the object already read from ``path`` (``read_saved``)."""
        kind = d.get("type")
        target = DETECTOR_TYPES.get(kind) if cls is Detector else cls
        if target is None or (cls is not Detector and kind != cls.kind):
            expected = cls.kind if cls is not Detector else ", ".join(sorted(DETECTOR_TYPES))
            raise ToolkitError(f"{path} is not a saved detector of type {expected} "
                               f"(found {kind!r})")
        try:
            return target.from_dict(d, **context)
        except (KeyError, TypeError, ValueError) as e:
            raise ToolkitError(f"saved detector {path} is damaged ({type(e).__name__}: "
                               f"{e})") from e


def threshold_at(scores: torch.Tensor, rate: float, what: str = "false-positive rate") -> float:
    """The threshold above which a fraction ``rate`` of these benign ``scores`` lies (the
    higher order statistic: never fewer than that fraction is flagged)."""
    import numpy as np

    if not 0 <= rate < 1:
        raise ToolkitError(f"{what} must be in [0, 1), got {rate}")
    return float(np.quantile(torch.as_tensor(scores).double().numpy(), 1 - rate,
                             method="higher"))


@torch.no_grad()
def scores_in_batches(score, x: torch.Tensor, device, batch_size: int = 500) -> torch.Tensor:
    """``score(piece)`` of ``x`` cut in ``batch_size`` pieces on ``device``, joined on the
    CPU, without gradients."""
    return torch.cat([score(x[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(x), batch_size)])


def float32_list(t: torch.Tensor) -> list:
    """A float tensor as nested lists of 8-significant-digit numbers (float32 is exact to
    that; the JSON of a saved detector is half the size of Python's shortest repr of float64
    values converted from float32)."""
    def rounded(v):
        return [rounded(u) for u in v] if isinstance(v, list) else float(f"{v:.8g}")

    return rounded(t.float().tolist())


def require_features(model, what: str):
    """``model``, checked to have the features hook ``penultimate(x)`` a detector reads."""
    if not callable(getattr(model, "penultimate", None)):
        raise ToolkitError(f"the {what} detector needs the model's features: "
                           f"{type(model).__name__} has no penultimate(x) method")
    return model


def require_model(model, what: str):
    """``model`` for rebuilding a saved detector (``from_dict(..., model=)``), or an error."""
    if model is None:
        raise ToolkitError(f"loading a {what} detector needs model=")
    return model


def restore_threshold(det: Detector, d: dict) -> Detector:
    """``det`` with the threshold and false-positive rate of its saved form ``d``."""
    det.threshold, det.fpr = float(d["threshold"]), d.get("fpr")
    return det


def log_relative(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """``1 + log((score + d) / (threshold + d))`` (``d``: 1 % of the threshold, at least
    1e-6, so a score of 0 stays finite): a relative score for a non-negative ``score`` that
    is often hundreds of times its threshold near a decision boundary (a change of
    probabilities, a variance). 1 at the threshold, above 1 exactly where the score is, and
    on a log scale, so it does not swamp the classification term of an attack that sums the
    two."""
    d = max(0.01 * threshold, 1e-6)
    return 1 + torch.log((score + d) / (threshold + d))


def read_saved(path: str | Path) -> dict:
    """A saved detector's JSON object, with one clear error for a missing or damaged file."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ToolkitError(f"no saved detector at {path}") from None
    except (OSError, ValueError) as e:
        raise ToolkitError(f"cannot read saved detector {path}: {e}") from e
    if not isinstance(d, dict):
        raise ToolkitError(f"{path} is not a saved detector (not a JSON object)")
    return d


def is_differentiable(detector: Any) -> bool:
    """Whether an attack can aim at ``detector``'s ``relative_score``: declared by a
    :class:`Detector`; for a duck-typed plug-in, whether it has a callable ``relative_score``."""
    if isinstance(detector, Detector):
        return bool(detector.differentiable)
    return callable(getattr(detector, "relative_score", None))
