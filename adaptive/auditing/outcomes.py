"""What one finished sweep of an audit found, per defense, in the shape the report reads: robust
accuracy with its binomial confidence interval, which attack broke how many images, the red
flags, the checks of the evaluation (sanity checks, checklist, binarization test, indicators),
the operating points, Tramèr's reduction and one row per attacked image. Everything comes from
the sweep's folder (read through ``adaptive.sweep.folder``) and what the audit measured beside
it (``audit_extras.json``: the defenses on the benign images, the bare model's accuracy, the
binarization tests), so ``adaptive report --html`` rebuilds the same page from the folders."""

from __future__ import annotations

import json
from pathlib import Path

from scipy.stats import binomtest

from adaptive.auditing.reduction import reduction
from adaptive.auditing.threats import NORMS, Threat
from adaptive.core.data import dataset_family
from adaptive.sweep.folder import read_sweep_folder

EXTRAS = "audit_extras.json"
CONFIDENCE = 0.95
INDICATOR = "indicator of attack failure"


def robust_interval(kept: int, images: int) -> tuple[float, float]:
    """The Clopper-Pearson interval (``CONFIDENCE``) of a share ``kept`` / ``images``."""
    if images == 0:
        return (0.0, 1.0)
    ci = binomtest(kept, images).proportion_ci(CONFIDENCE, method="exact")
    return (float(ci.low), float(ci.high))


def threat_of(config: dict) -> Threat:
    """The threat model a sweep ran under, from its settings."""
    norm = config.get("norm", "l2")
    eps = float(config["max_linf"] if norm == "linf" else config["max_l2"])
    return Threat(norm, eps, f"{norm}:{eps:.6g}")


def read_extras(folder: str | Path) -> dict:
    path = Path(folder) / EXTRAS
    return json.loads(path.read_text()) if path.is_file() else {}


def _checks(summary: dict, extras: dict) -> list[dict]:
    """Every check of the evaluation itself, one shape: kind, name, passed (None: not run),
    detail."""
    out = [{"kind": "sanity check", "name": c["name"], "passed": c["passed"],
            "detail": c["detail"]} for c in summary.get("sanity_checks", [])]
    diagnostics = summary.get("diagnostics", {})
    out += [{"kind": "checklist", "name": c["name"], "passed": c["passed"],
             "detail": c["detail"]} for c in diagnostics.get("checklist", [])]
    for b in extras.get("binarization", []):
        if "skipped" in b:
            out.append({"kind": "binarization test", "name": f"against {b['defense']}",
                        "passed": None, "detail": f"not run: {b['skipped']}"})
            continue
        s = b["summary"]
        asr = "-" if s["attack_success_rate"] is None else f"{s['attack_success_rate']:.0%}"
        out.append({"kind": "binarization test", "name": f"{b['attack']} against {b['defense']}",
                    "passed": s["passed"],
                    "detail": f"the attack solved {asr} of {s['used']} binarised tasks "
                              "(passing: at least 95 %)"})
    for name, row in diagnostics.get("indicators", {}).items():
        out.append({"kind": INDICATOR, "name": name,
                    "passed": not row["fired"],
                    "detail": f"fired on {row['fired']} of {row['of']} examples: "
                              f"{row['meaning']}"})
    return out


def _operating(summary: dict, name: str) -> dict:
    for p in summary.get("operating_points", []):
        if p.get("defense") == name and p.get("kappa") == 0:
            return {k: v for k, v in p.items() if k not in ("kappa", "defense")}
    return {}


def threat_section(folder: str | Path) -> dict:
    """The report's section for the finished sweep in ``folder`` (see the module docstring)."""
    found = read_sweep_folder(folder)
    summary, records = found["summary"], found["records"]
    config = summary["config"]
    extras = read_extras(folder)
    threat = threat_of(config)
    if "threat" in extras:
        threat = Threat(**extras["threat"])
    kappa = min(config["kappas"])
    recs = sorted((r for r in records if r["kappa"] == kappa), key=lambda r: r["index"])
    rows = {r["defense"]: r for r in summary["rows"] if r["kappa"] == kappa}
    benign = extras.get("benign", {})
    bare_accuracy = extras.get("bare_accuracy")
    flags = summary.get("diagnostics", {}).get("red_flags", [])
    defenses = []
    for name in config["defenses"]:
        row = rows.get(name, {})
        broken = [bool(r["defenses"][name]["success"]) for r in recs]
        images, kept = len(broken), broken.count(False)
        lo, hi = robust_interval(kept, images)
        entry = {"name": name, "images": images, "kept": kept,
                 "robust_accuracy": kept / images if images else None, "interval": [lo, hi],
                 "broken_by": row.get("broken_by", {}),
                 "gradient_free_only": row.get("gradient_free_only", 0),
                 "detectors": [k.split(":", 1)[1] for k in row if k.startswith("detection_rate:")],
                 "red_flags": [f for f in flags if f["defense"] == name],
                 "operating": _operating(summary, name), "reduction": None, "benign": None}
        for key in ("draws", "asr_single_draw", "asr_every_draw"):
            if key in row:
                entry[key] = row[key]
        seen = benign.get(name)
        if seen:
            by_index = dict(zip(seen["index"], zip(seen["correct"], seen["flagged"])))
            pairs = [by_index.get(r["index"], (True, False)) for r in recs]
            entry["benign"] = {"accuracy": sum(c for c, _ in pairs) / max(1, len(pairs)),
                               "flagged": sum(f for _, f in pairs) / max(1, len(pairs))}
            if entry["detectors"] and bare_accuracy is not None and images:
                # Tramèr's robust risk counts a benign image flagged as an error
                ok = sum(1 for b, (_, f) in zip(broken, pairs) if not b and not f)
                entry["reduction"] = reduction(dataset_family(config["dataset"]), threat.norm,
                                               threat.eps, ok, images,
                                               robust_interval(ok, images)[0], bare_accuracy)
        defenses.append(entry)
    by_bound = [r for r in summary.get("asr_by_l2_bound", []) if r["kappa"] == kappa]
    per_image = [{"index": r["index"], "label": r.get("label"),
                  "l2": r.get("l2"), "linf": r.get("linf"),
                  "broken": {n: bool(r["defenses"][n]["success"])
                             for n in config["defenses"]},
                  "by": {n: r["defenses"][n].get("by")
                         for n in config["defenses"]},
                  **({"fooled_draws": {n: r["defenses"][n]["fooled_draws"]
                                       for n in config["defenses"]
                                       if "fooled_draws" in r["defenses"][n]}}
                     if any("fooled_draws" in v for v in r["defenses"].values()) else {})}
                 for r in recs]
    made = found["config"]
    return {"threat": {"norm": threat.norm, "eps": threat.eps, "text": threat.text,
                       "label": threat.label},
            "norm_label": NORMS[threat.norm], "folder": str(folder),
            "dataset": config["dataset"], "model": config["model"],
            "images": len(recs), "defenses": defenses, "checks": _checks(summary, extras),
            "red_flags": flags, "asr_by_bound": by_bound, "per_image": per_image,
            "probes": summary.get("diagnostics", {}).get("probes", {}),
            "bare_accuracy": bare_accuracy, "seconds": extras.get("seconds", {}),
            "command": made.get("command", ""), "environment": made.get("environment", {}),
            "identity": made.get("identity", {}),
            "record_integrity": summary.get("record_integrity", {})}
