"""Feature squeezing (Xu, Evans, Qi, NDSS 2018): an input whose prediction moves when the
input is "squeezed" (fewer colour bits, a median filter) is flagged. A known-broken detector:
He et al. (2017, "Adversarial example defenses: ensembles of weak defenses are not strong")
attacked the squeezers jointly and reached near-100 % success on MNIST.

Score: ``max_s || softmax(f(x)) - softmax(f(s(x))) ||_1`` over the squeezers ``s``; the
threshold is set on benign images at a false-positive rate (the paper's 5 %). The paper's MNIST
configuration is bit depth 1 and a 2 x 2 median filter (threshold 0.0029 at 5 % FPR on its
model; detection 98.2 % of the successful adversarial examples of its attacks, 0.0 % adaptive
robustness tested there).

The squeezers as torch functions:

* ``bit_depth(x, bits)``: ``round(x * (2**bits - 1)) / (2**bits - 1)`` (NumPy's ``rint``:
  halves to even, as the paper's code);
* ``median_filter(x, size)``: the median of each ``size x size`` window, SciPy's
  ``ndimage.median_filter`` convention (window ``[i - size // 2, i + (size - 1) // 2]``,
  edges reflected, the upper median of an even window), checked against SciPy in the tests.

``relative_score`` is differentiable for adaptive attacks: the bit-depth reduction passes the
gradient straight through (BPDA, Athalye et al. 2018), the median filter passes it to the
selected pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.validation import check_images
from defenses.detector import (
    Detector,
    log_relative,
    require_model,
    restore_threshold,
    scores_in_batches,
    threshold_at,
)


def bit_depth(x: torch.Tensor, bits: int, straight_through: bool = False) -> torch.Tensor:
    """``x`` reduced to ``bits`` bits per channel; ``straight_through``: gradient of identity."""
    levels = 2 ** bits - 1
    squeezed = torch.round(x * levels) / levels
    return x + (squeezed - x).detach() if straight_through else squeezed


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per channel, the median of each ``size x size`` window (SciPy's convention: see the
    module docstring), NCHW in and out."""
    padded = _symmetric_pad(x, size // 2, (size - 1) // 2)
    n, c, h, w = x.shape
    windows = padded.unfold(2, size, 1).unfold(3, size, 1).reshape(n, c, h, w, size * size)
    # SciPy's rank for the median: size * size // 2 (the upper median of an even count)
    return windows.sort(-1).values[..., (size * size) // 2]


def _symmetric_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Pad H and W by mirroring including the edge (SciPy's ``reflect``)."""
    def pad(t, dim):
        n = t.shape[dim]
        idx = torch.cat([torch.arange(before - 1, -1, -1), torch.arange(n),
                         torch.arange(n - 1, n - 1 - after, -1)]).to(t.device)
        return t.index_select(dim, idx)

    return pad(pad(x, 2), 3)


SQUEEZERS = ("bit_depth", "median")


class FeatureSqueezingDetector(Detector):
    """Xu et al.'s joint detector on ``model`` ([0, 1] NCHW in, logits out): squeezers bit
    depth ``bits`` (None: not used) and a ``median`` x ``median`` filter (None: not used).
    ``fit(x_benign, fpr)`` sets the threshold at that false-positive rate; ``score(x)`` the
    largest L1 change of the softmax."""

    kind = "feature-squeezing"
    differentiable = True

    def __init__(self, model: nn.Module, bits: int | None = 1, median: int | None = 2,
                 name: str = "fs"):
        if bits is None and median is None:
            raise ToolkitError("feature squeezing needs at least one squeezer (bits or median)")
        if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 8):
            raise ToolkitError(f"bit depth must be a whole number from 1 to 8, got {bits!r}")
        if median is not None and not (isinstance(median, int) and median >= 2):
            raise ToolkitError(f"median window must be a whole number >= 2, got {median!r}")
        self.model, self.bits, self.median, self.name = model, bits, median, name
        self.fpr: float | None = None

    def _squeezed(self, x: torch.Tensor, straight_through: bool) -> list[torch.Tensor]:
        out = []
        if self.bits is not None:
            out.append(bit_depth(x, self.bits, straight_through))
        if self.median is not None:
            out.append(median_filter(x, self.median))
        return out

    def _score(self, x: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
        p = torch.softmax(self.model(x), 1)
        changes = [(p - torch.softmax(self.model(s), 1)).abs().sum(1)
                   for s in self._squeezed(x, straight_through)]
        return torch.stack(changes).amax(0)

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, getattr(self.model, "input_shape", None), what=f"inputs to {self.name}")
        return scores_in_batches(self._score, x, next(self.model.parameters()).device,
                                 batch_size)

    def fit(self, x_benign: torch.Tensor, fpr: float = 0.05) -> FeatureSqueezingDetector:
        """The threshold: a fraction ``fpr`` of these benign images scores above it."""
        self.threshold, self.fpr = threshold_at(self.score(x_benign), fpr), float(fpr)
        return self

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """The score on a log scale (``defenses.detector.log_relative``: a change of
        probabilities is often hundreds of times the threshold near a decision boundary),
        with the bit-depth reduction's gradient passed straight through."""
        self.check_fitted()
        return log_relative(self._score(x, straight_through=True), self.threshold)

    def to_dict(self) -> dict:
        return {"name": self.name, "bits": self.bits, "median": self.median,
                "threshold": self.threshold, "fpr": self.fpr}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> FeatureSqueezingDetector:
        det = cls(require_model(model, "feature-squeezing"), d["bits"], d["median"], d["name"])
        return restore_threshold(det, d)
