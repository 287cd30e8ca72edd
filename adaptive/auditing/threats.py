"""The threat models an audit judges a defense under, as users write them: ``linf:8/255``,
``l2:0.5`` (a norm and a bound; the bound a number or a fraction)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from adaptive.core.errors import ToolkitError

NORMS = {"linf": "L∞", "l2": "L2"}


@dataclass(frozen=True)
class Threat:
    """One threat model: ``norm`` (``linf`` or ``l2``), its bound ``eps`` and the text the
    user gave (``linf:8/255``), kept for the report."""

    norm: str
    eps: float
    text: str

    @property
    def label(self) -> str:
        """For people: ``L∞ 8/255``."""
        return f"{NORMS[self.norm]} {self.text.split(':', 1)[1]}"

    @property
    def slug(self) -> str:
        """For the audit's sub-folder: ``linf-0.031373``."""
        return f"{self.norm}-{self.eps:.6g}"


def parse_threat(text: str) -> Threat:
    """``NORM:BOUND`` with NORM ``linf`` or ``l2`` and BOUND a positive number or fraction."""
    norm, sep, bound = str(text).strip().lower().partition(":")
    if not sep or norm not in NORMS:
        raise ToolkitError(f"threat {text!r}: give NORM:BOUND with NORM one of "
                           f"{', '.join(NORMS)} (e.g. linf:8/255, l2:0.5)")
    try:
        eps = float(Fraction(bound.strip()))
    except (ValueError, ZeroDivisionError):
        raise ToolkitError(f"threat {text!r}: the bound {bound!r} is not a number or a "
                           "fraction (e.g. 8/255, 0.5)") from None
    if not (math.isfinite(eps) and eps > 0):
        raise ToolkitError(f"threat {text!r}: the bound must be a positive finite number")
    if norm == "linf" and eps >= 1:
        raise ToolkitError(f"threat {text!r}: an L∞ bound of {eps:g} or more allows any image "
                           "in [0, 1]; give a bound below 1")
    return Threat(norm, eps, f"{norm}:{bound.strip()}")
