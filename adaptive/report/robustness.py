"""Report items about the robustness gap between benign and adversarial inputs (A2D paper,
section 3): the Table 1 analogue from ``adaptive clever`` runs (``clever.json``) and the attack
time / iteration figures (Figures 2, 4, 5, 10) from ``adaptive clever --cost`` and
``adaptive costs`` runs (``costs.json``). Nothing is recomputed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from adaptive.core.data import dataset_label
from adaptive.core.errors import ToolkitError

TARGET_LABELS = {"untargeted": "Untarget", "top2": "Target-2", "top5": "Target-5", "llc": "LLC"}
ATTACK_ORDER = ("fgsm", "bim", "jsma", "deepfool", "cw")
Z90 = 1.6448536269514722  # two-sided 90 % normal quantile, the paper's "90 % significance"

# The A2D paper's Table 1: target -> mean CLEVER score of (benign, FGSM, BIM, JSMA, C&W).
PAPER_CLEVER = {
    "mnist": {"untargeted": (3.5572, 0.1093, 0.0256, 0.0550, 0.0004),
              "top2": (3.6711, 0.1148, 0.0258, 0.0558, 0.0004),
              "top5": (3.8303, 0.2047, 0.1582, 0.1898, 0.1384),
              "llc": (3.8372, 0.2390, 0.1647, 0.2120, 0.1406)},
    "cifar10": {"untargeted": (0.3851, 0.2743, 0.0329, 0.0128, 0.0005),
                "top2": (0.4141, 0.2971, 0.0380, 0.0129, 0.0005),
                "top5": (0.4657, 0.3389, 0.0971, 0.0610, 0.0925),
                "llc": (0.4829, 0.3572, 0.1091, 0.0918, 0.1035)},
}
PAPER_AVG_LAMBDA = {"mnist": {"untargeted": 74.77, "top2": 74.62, "top5": 22.17, "llc": 20.29},
                    "cifar10": {"untargeted": 4.81, "top2": 4.75, "top5": 3.16, "llc": 2.92}}
PAPER_ATTACKS = ("fgsm", "bim", "jsma", "cw")


def mean_ci90(values) -> tuple[float, float]:
    """Mean and the half-width of its 90 % normal confidence interval."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    half = Z90 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return float(v.mean()), float(half)


def _scores(result: dict, kind: str, target: str) -> list[float]:
    out = []
    for im in result["images"]:
        if im["kind"] != kind:
            continue
        if "targets" in im:
            if target in im["targets"]:
                out.append(im["targets"][target]["score"])
        elif result["settings"].get("target") == target:
            out.append(im["score"])
    return out


def clever_table(result: dict, source: str) -> tuple[str, dict]:
    """Table 1 analogue: mean CLEVER (± 90 % CI) of benign and of each attack's examples, the
    ratios lambda = benign / adversarial, Avg lambda over all adversarial examples pooled, and
    the paper's lambdas beside them."""
    family = dataset_label(result.get("dataset", "mnist"))
    kinds = list(dict.fromkeys(im["kind"] for im in result["images"]))
    attacks = [a for a in ATTACK_ORDER if a in kinds] + [k for k in kinds
                                                         if k not in ATTACK_ORDER + ("benign",)]
    targets = result["summary"].get("targets") or [result["settings"]["target"]]
    rows = []
    for target in targets:
        benign = _scores(result, "benign", target)
        b_mean, b_half = mean_ci90(benign)
        row = {"label": TARGET_LABELS.get(target, target), "benign": f"{b_mean:.4f} ± {b_half:.4f}"}
        pooled = []
        for attack in attacks:
            s = _scores(result, attack, target)
            pooled += s
            m, h = mean_ci90(s)
            row[attack] = f"{m:.4f} ± {h:.4f} (n {len(s)})"
            row[f"λ {attack}"] = b_mean / m if m > 0 else None
        row["avg λ"] = b_mean / float(np.mean(pooled)) if pooled and np.mean(pooled) > 0 else None
        paper = PAPER_CLEVER.get(family, {}).get(target)
        if paper:
            for attack, value in zip(PAPER_ATTACKS, paper[1:]):
                if attack in attacks:
                    row[f"paper λ {attack}"] = paper[0] / value
            row["paper avg λ"] = PAPER_AVG_LAMBDA[family][target]
        rows.append(row)
    s = result["settings"]
    title = (f"{family.upper()} ({result.get('model', '?')}): CLEVER scores (mean ± 90 % CI; "
             f"L{'2' if s['norm'] == 'l2' else '∞'}, R {s['radius']:g}, "
             f"{s['n_batches']} x {s['n_samples']} samples) of benign and adversarial inputs and "
             "their ratios λ (A2D Table 1 analogue)")
    return f"{family}_clever_table1", {"title": title, "rows": rows,
                                       "runs": [(source, result.get("command", "?"))]}


def cost_rows(result: dict) -> list[dict]:
    """``[{kind, index, engine, iterations, seconds, clever?}]`` from a clever.json (its
    ``cost`` entries) or a costs.json."""
    rows = []
    for im in result["images"]:
        if "engine" in im:  # costs.json
            rows.append(dict(im))
        elif im.get("cost"):
            rows.append({"kind": im["kind"], "index": im["index"], "clever": im["score"],
                         **im["cost"]})
    return rows


def cost_figures(result: dict, out: Path, name: str) -> list[Path]:
    """Figures 4 and 5 (time and iteration boxes per engine) from a costs.json, Figure 10
    (time vs iterations) from either kind, Figure 2 (CLEVER vs time) from a clever.json."""
    from adaptive.report.figures import cost_boxplots, scatter_by_kind

    rows = cost_rows(result)
    if not rows:
        raise ToolkitError(f"{name}: no per-image attack costs in it (run `adaptive clever` "
                           "with --cost, or `adaptive costs`)")
    family = dataset_label(result.get("dataset", "mnist"))
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "clever" not in rows[0]:  # costs.json: box plots over every engine
        for key, label, fig in (("seconds", "attack time (s)", 4),
                                ("iterations", "attack cost (iterations)", 5)):
            data: dict = {}
            for r in rows:
                data.setdefault(r["engine"], {}).setdefault(r["kind"], []).append(r[key])
            written.append(cost_boxplots(
                {e: {k: np.asarray(v) for k, v in d.items()} for e, d in data.items()},
                out / f"{family}_attack_{key}_boxplots.png",
                f"{family.upper()}: per-image attack {'time' if key == 'seconds' else 'iterations'}"
                f" of benign vs adversarial inputs (A2D Figure {fig} analogue)", ylabel=label))
    for engine in engines:
        part = [r for r in rows if r["engine"] == engine]
        if engine in ("jsma_d", "bim_d", "bim2_d", "dba_d") and "clever" not in part[0]:
            written.append(scatter_by_kind(
                part, "iterations", "seconds", out / f"{family}_{engine}_time_vs_iterations.png",
                f"{family.upper()}: {engine} attack time vs iterations, one point per image "
                "(A2D Figure 10 analogue)", "iterations", "attack time (s)"))
        if "clever" in part[0]:
            written.append(scatter_by_kind(
                part, "clever", "seconds", out / f"{family}_clever_vs_{engine}_time.png",
                f"{family.upper()}: CLEVER score vs {engine} attack time, one point per image "
                "(A2D Figure 2 analogue)", "CLEVER score (untargeted, L2)", "attack time (s)",
                logx=True))
    return written
