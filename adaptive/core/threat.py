"""The threat model: which norm bounds a perturbation and by how much, as one small value.

Every part that needs to know the bound takes a :class:`ThreatModel`: a sweep's settings
(``SweepConfig.threat``), the bounded attacks, :func:`adaptive.defense.judge` and the reports.
``ThreatModel.parse("linf:8/255")`` reads the command-line form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

import torch

from adaptive.core.errors import ToolkitError


class Norm(str, Enum):
    """The norm of a threat model; its value is the name used in settings and files."""

    L2 = "l2"
    LINF = "linf"

    @property
    def label(self) -> str:
        """"L2" or "L∞", for titles and tables."""
        return {"l2": "L2", "linf": "L∞"}[self.value]

    @classmethod
    def of(cls, value: Norm | str) -> Norm:
        try:
            return cls(value)
        except ValueError:
            raise ToolkitError(f"norm must be l2 or linf, got {value!r}") from None


@dataclass(frozen=True)
class ThreatModel:
    """Perturbations of ``norm`` at most ``eps``, in the [0, 1] pixel range. An L2 threat model
    may have ``eps`` = inf (no bound: a minimum-distance attack's own distances); an L∞ one is
    finite and at most 1."""

    norm: Norm
    eps: float

    def __post_init__(self):
        object.__setattr__(self, "norm", Norm.of(self.norm))
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or math.isnan(eps) \
                or eps <= 0:
            raise ToolkitError(f"the {self.norm.label} bound must be a number > 0, got {eps!r}")
        if self.norm is Norm.LINF:
            if not math.isfinite(eps):
                raise ToolkitError("an L∞ bound must be finite (e.g. 8/255)")
            if eps > 1:
                raise ToolkitError(f"the L∞ bound is in the [0, 1] pixel range: {eps:g} > 1 "
                                   "(write 8/255, not 8)")
        object.__setattr__(self, "eps", float(eps))

    @classmethod
    def parse(cls, text: str) -> ThreatModel:
        """``linf:8/255``, ``l2:0.5`` (a number or a fraction after the norm)."""
        norm, sep, value = str(text).partition(":")
        if not sep:
            raise ToolkitError(f"bad threat model {text!r}: use NORM:EPS, e.g. linf:8/255 or "
                               "l2:0.5")
        try:
            eps = float(Fraction(value.strip())) if "/" in value else float(value)
        except (ValueError, ZeroDivisionError):
            raise ToolkitError(f"bad threat model {text!r}: {value!r} is not a number") \
                from None
        return cls(Norm.of(norm.strip().lower()), eps)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.eps)

    @property
    def label(self) -> str:
        """E.g. "L∞ ≤ 0.0314"."""
        return f"{self.norm.label} ≤ {self.eps:g}"

    def __str__(self) -> str:
        return f"{self.norm.value}:{self.eps:g}"

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each example's distance to its image in this norm (on the CPU)."""
        diff = (x_adv.detach() - x.detach().to(x_adv.device)).flatten(1)
        return (diff.norm(dim=1) if self.norm is Norm.L2 else diff.abs().amax(dim=1)).cpu()

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Whether each example lies within the bound of its image (bool, on the CPU)."""
        return self.distance(x_adv, x) <= self.eps


__all__ = ["Norm", "ThreatModel"]
