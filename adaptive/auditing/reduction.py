"""Tramèr's reduction (ICML 2022, "Detecting Adversarial Examples Is (Nearly) As Hard As
Classifying Them"): a detector defense robust at distance eps implies an (inefficient)
classifier robust at eps/2 with the same robust accuracy. A detector whose measured robustness
implies a classifier far beyond the best published one at eps/2 is more likely badly evaluated
than a breakthrough; the audit says which is the case for each defense with detectors, against
the published results bundled in ``published.json`` (each with its source)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def published() -> list[dict]:
    """The bundled published robust accuracies (data set family, norm, eps, robust accuracy of
    the whole test set, model, source)."""
    text = resources.files("adaptive.auditing").joinpath("published.json").read_text()
    return json.loads(text)["entries"]


def reference_at(family: str, norm: str, eps: float) -> dict | None:
    """The bundled result for ``family`` under ``norm`` at exactly ``eps``, or None."""
    for entry in published():
        if (entry["dataset"] == family and entry["norm"] == norm
                and math.isclose(entry["eps"], eps, rel_tol=1e-4)):
            return entry
    return None


def reduction(family: str, norm: str, eps: float, kept: int, images: int, lower: float,
              bare_accuracy: float) -> dict:
    """The reduction for a detector defense that kept ``kept`` of ``images`` attacked images
    (neither broken at ``eps`` nor flagged when benign; ``lower``: the lower end of that
    share's confidence interval), the attacked images being ones the bare classifier gets
    right, a share ``bare_accuracy`` of the test set. Returns the implied robust accuracy at
    eps/2 on the test set (the share kept times ``bare_accuracy``: an estimate that counts the
    bare model's errors as the defense's), the bundled reference there and the verdict
    (``exceeds``: True when even the interval's lower end beats the reference, None without a
    reference)."""
    half = eps / 2
    implied = kept / images * bare_accuracy
    implied_lower = lower * bare_accuracy
    ref = reference_at(family, norm, half)
    out: dict[str, Any] = {"at": half, "implied_robust_accuracy": implied,
                           "implied_lower": implied_lower, "reference": ref, "exceeds": None}
    if ref is None:
        out["detail"] = (f"implies a classifier with {implied:.0%} robust accuracy at "
                         f"{norm} {half:.4g}; no published result at that bound is bundled to "
                         "compare with")
        return out
    out["exceeds"] = implied_lower > ref["robust_accuracy"]
    verdict = ("beyond the best published result: doubt the evaluation before the defense"
               if out["exceeds"] else "within what is published: no contradiction")
    out["detail"] = (f"implies a classifier with {implied:.0%} robust accuracy (at least "
                     f"{implied_lower:.0%}) at {norm} {ref['eps_text']}; published: "
                     f"{ref['robust_accuracy']:.1%} ({ref['source'].split(';')[0]}): {verdict}")
    return out
