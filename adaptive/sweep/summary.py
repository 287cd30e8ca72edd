"""A sweep's summary, derived from its records alone (so a resumed run summarises exactly as an
uninterrupted one): one row per kappa x defense, ASR by L2 bound, ``summary.json``/``.csv``."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError
from adaptive.defense import Defense
from adaptive.sweep.config import (
    AUTO_MEMBERS,
    SweepConfig,
    auto_member,
    bound_of,
    distance_key,
)
from adaptive.sweep.records import defense_view


def summarize(records: list[dict], cfg: SweepConfig, defenses: dict[str, Defense]) -> list[dict]:
    """One row per kappa x defense, in the order of the config."""
    rows, dist, bound = [], distance_key(cfg), bound_of(cfg)
    for kappa in cfg.kappas:
        for name, d in defenses.items():
            recs = [defense_view(r, name) for r in records if r["kappa"] == kappa]
            made = [r for r in recs if r["attack_success"]]
            row = {"kappa": kappa, "defense": name, "n": len(recs),
                   "attack_success_rate": (float(np.mean([r["defenses"][name]["success"]
                                                          for r in recs])) if recs else None),
                   "attack_objective_met_rate": float(np.mean([r["attack_success"]
                                                                for r in recs]))
                   if recs else None,
                   "mean_l2": float(np.mean([r["l2"] for r in made])) if made else None,
                   "mean_linf": float(np.mean([r["linf"] for r in made])) if made else None,
                   "mean_ssim": float(np.mean([r["ssim"] for r in made])) if made else None,
                   "mean_a2d_cost": float(np.mean([r["bim_d_cost"] for r in made]))
                   if made else None,
                   "mean_clever": _mean([r.get("clever") for r in made]),
                   "transfer_success_rate": _mean([r["transfer"][name] for r in recs
                                                   if "transfer" in r]),
                   "within_bound": float(np.mean([r[dist] <= bound for r in made]))
                   if made else None}
            shares = [r["defenses"][name]["fooled_draws"] for r in recs
                      if "fooled_draws" in r["defenses"][name]]
            if shares and len(shares) == len(recs):  # a random defense, judged over draws
                # the headline (attack_success_rate) counts examples fooling a majority
                row["draws"] = cfg.draws
                row["asr_single_draw"] = float(np.mean([f > 0 for f in shares]))
                row["asr_every_draw"] = float(np.mean([f >= 1 for f in shares]))
            for det in d.detectors:
                row[f"detection_rate:{det}"] = (float(np.mean([r["flags"][det] for r in made]))
                                                if made else None)
            reasons: dict[str, int] = {}
            for r in recs:
                for reason in r["defenses"][name]["reasons"]:
                    key = "detected" if reason.startswith("detected:") else reason
                    reasons[key] = reasons.get(key, 0) + 1
            row["failure_reasons"] = reasons
            by = [r["defenses"][name].get("by", "-") for r in recs]
            if by and "-" not in by:  # --attack auto: which member broke how many images
                # the ensemble's order; members aimed at one defense (pgd-full@mine) after
                order = [*AUTO_MEMBERS, *sorted({b for b in by if b and b not in AUTO_MEMBERS})]
                row["broken_by"] = {m: by.count(m) for m in order if m in by}
                # AutoAttack's sign of masked gradients: images only a member that uses no
                # gradient broke (members run in order, the gradient-free ones last)
                row["gradient_free_only"] = sum(c for m, c in row["broken_by"].items()
                                                if _gradient_free(m))
            rows.append(row)
    return rows


def _gradient_free(label: str) -> bool:
    """Whether the auto member ``label`` uses no gradient (older runs' members: those that
    are no longer in the ensemble used gradients)."""
    try:
        return auto_member(label).gradient_free
    except ToolkitError:
        return False


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def bound_grid(bound: float) -> list[float]:
    """Bounds for the ASR-vs-bound table: fractions of the run's bound, and no bound."""
    return [round(bound * f, 4) for f in (0.125, 0.25, 0.5, 0.75, 1.0)] + [math.inf]


def asr_by_l2_bound_row(recs: list[dict], name: str, bound: float, key: str = "l2") -> float:
    """ASR of ``recs`` against defense ``name`` had the bound been ``bound`` (on the records'
    ``key`` distance, l2 or linf): the recorded verdict with the bound condition re-applied
    (every other condition is bound-free)."""
    hits = 0
    for r in map(lambda r: defense_view(r, name), recs):
        other = [x for x in r["defenses"][name]["reasons"] if x != "bound_exceeded"]
        hits += bool(r["attack_success"] and not other and r[key] <= bound)
    return hits / len(recs)


def asr_by_bound(records: list[dict], cfg: SweepConfig, names: list[str]) -> list[dict]:
    """ASR per kappa and defense at fractions of the bound, in the sweep's norm."""
    key, rows = distance_key(cfg), []
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa]
        if not recs:
            continue
        for name in names:
            rows.append({"kappa": kappa, "defense": name, "asr": {
                ("inf" if math.isinf(b) else f"{b:g}"): asr_by_l2_bound_row(recs, name, b, key)
                for b in bound_grid(bound_of(cfg))}})
    return rows


def write_summary(out: Path, cfg: SweepConfig, rows: list[dict],
                  extra: dict | None = None) -> None:
    write_json(out / "summary.json", {"config": asdict(cfg), "rows": rows, **(extra or {})})
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})
