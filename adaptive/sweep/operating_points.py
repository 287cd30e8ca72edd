"""Operating points beside the calibrated thresholds: how a defense fares when its detectors are
set to flag a fixed share of benign inputs, and how well each detector ranks benign inputs below
the attack's examples.

* ``sr_at_fpr`` (Bryniarski et al.'s SR@5): the attack's success rate when the defense's
  detectors together flag ``fpr`` (5 %) of the benign calibration images: every detector's
  threshold is the same quantile of its own benign scores, chosen so that the union of their
  flags covers ``fpr`` of the benign images; success as in the sweep (the attack met its
  objective, within the bound, misclassified), with these thresholds instead of the calibrated
  ones. A defense without detectors has no operating point (its success rate is its ASR).
* ``auroc:DETECTOR``: area under the ROC curve of the detector's score, benign calibration
  images against the attack's examples that reached its margin (1: perfectly separated,
  0.5: chance; below 0.5 the attack made its examples look more benign than benign ones).

The benign images are the run's calibration images (benign, disjoint from the attacked ones);
the scores of the examples are in the records (``scores``). Runs made before the records held
scores get None.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from adaptive.defense import Defense
from adaptive.sweep.config import SweepConfig
from adaptive.sweep.records import defense_view

FPR = 0.05


def union_thresholds(benign: dict[str, np.ndarray], fpr: float = FPR) -> dict[str, float]:
    """One threshold per detector, each the same quantile ``q`` of its benign scores, with the
    largest union false-positive rate not above ``fpr`` (bisection on ``q``)."""
    names = list(benign)
    if not names:
        return {}

    def at(q):
        return {n: float(np.quantile(benign[n], q, method="higher")) for n in names}

    def union_rate(th):
        flagged = np.zeros(len(benign[names[0]]), dtype=bool)
        for n in names:
            flagged |= benign[n] > th[n]
        return float(flagged.mean())

    lo, hi = 1.0 - fpr, 1.0  # at q = 1 nothing benign is flagged; at 1 - fpr at least fpr
    if union_rate(at(lo)) <= fpr:
        return at(lo)
    for _ in range(40):
        mid = (lo + hi) / 2
        if union_rate(at(mid)) <= fpr:
            hi = mid
        else:
            lo = mid
    return at(hi)


def operating_points(records: list[dict], cfg: SweepConfig, defenses: dict[str, Defense],
                     benign_scores: dict[str, torch.Tensor], fpr: float = FPR) -> list[dict]:
    """One row per kappa x defense with detectors: ``sr_at_fpr`` and ``auroc:DETECTOR``."""
    benign = {k: np.asarray(v, dtype=np.float64) for k, v in (benign_scores or {}).items()}
    rows = []
    for kappa in cfg.kappas:
        if not any(r["kappa"] == kappa for r in records):
            continue
        for name, defense in defenses.items():
            dets = list(defense.detectors)
            if not dets:
                continue
            recs = [defense_view(r, name) for r in records if r["kappa"] == kappa]
            made = [r for r in recs if r["attack_success"]]
            have = all(d in benign for d in dets) and all(
                r.get("scores", {}).get(d) is not None for r in recs for d in dets)
            row = {"kappa": kappa, "defense": name, "fpr": fpr, "sr_at_fpr": None}
            if have:
                th = union_thresholds({d: benign[d] for d in dets}, fpr)
                hits = 0
                for r in recs:
                    other = [x for x in r["defenses"][name]["reasons"]
                             if not x.startswith("detected:")]
                    passed = all(r["scores"][d] <= th[d] for d in dets)
                    hits += bool(not other and passed)
                row["sr_at_fpr"] = hits / len(recs)
            for d in dets:
                adv = [r.get("scores", {}).get(d) for r in made]
                ok = d in benign and adv and all(v is not None for v in adv)
                row[f"auroc:{d}"] = (float(roc_auc_score(
                    np.r_[np.zeros(len(benign[d])), np.ones(len(adv))],
                    np.r_[benign[d], np.asarray(adv, dtype=np.float64)])) if ok else None)
            rows.append(row)
    return rows
