"""Tables for reports, made from run folders (nothing is recomputed by attacking again).

Sweep folders (``summary.json``, ``records.jsonl``, ``config.json``) give the adaptive-attack
tables: ASR against every defense by kappa and by L2 bound, one column per attack, beside the
A2D paper's claims. Each table names the runs and the commands that produced them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from core.checkpoint import write_json
from core.errors import ToolkitError

# The A2D paper's claims for its combined defenses under its adaptive C&W attack (section 6,
# Figure 7): no success at any kappa within the bound.
PAPER_ASR = {("mnist", "a2d+magnet"): 0.0, ("cifar10", "a2d+at"): 0.0}


def load_sweep(folder: str | Path) -> dict:
    """A finished sweep run: its config, rows, records and command."""
    folder = Path(folder)
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        raise ToolkitError(f"{folder} is not a finished sweep run (no summary.json)")
    try:
        summary = json.loads(summary_file.read_text())
        records = [json.loads(line) for line in (folder / "records.jsonl").read_text()
                   .splitlines() if line.strip()]
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ToolkitError(f"cannot read the sweep run in {folder}: {e}") from e
    return {"folder": str(folder), "config": summary["config"], "rows": summary["rows"],
            "records": records, "command": config.get("command", "?")}


def _family(dataset: str) -> str:
    return "cifar10" if dataset.startswith("cifar10") else "mnist"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def sweep_tables(runs: list[dict]) -> dict[str, dict]:
    """``{name: {"rows": [...], "columns": [...], "title": ...}}`` for the sweep runs: ASR by
    kappa (per data set and defense, one column per attack) and ASR by L2 bound (largest kappa)."""
    from adaptive.sweep import asr_by_l2_bound_row, bound_grid

    tables: dict[str, dict] = {}
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        cfg = run["config"]
        groups.setdefault((_family(cfg["dataset"]), cfg["model"]), []).append(run)
    for (family, model), group in sorted(groups.items()):
        attacks = [r["config"].get("attack", "cw") for r in group]
        if len(set(attacks)) != len(attacks):
            raise ToolkitError(f"two sweep runs of {model} use the same attack; pass one")
        defenses = []
        for r in group:
            defenses += [d for d in r["config"]["defenses"] if d not in defenses]
        kappas = sorted({k for r in group for k in r["config"]["kappas"]})
        rows = []
        for defense in defenses:
            for kappa in kappas:
                row = {"defense": defense, "kappa": kappa}
                for attack, r in zip(attacks, group):
                    hit = [x for x in r["rows"] if x["defense"] == defense and x["kappa"] == kappa]
                    row[f"ASR {attack}"] = hit[0]["attack_success_rate"] if hit else None
                    row[f"L2 {attack}"] = hit[0]["mean_l2"] if hit else None
                if (family, defense) in PAPER_ASR:
                    row["paper"] = PAPER_ASR[(family, defense)]
                rows.append(row)
        tables[f"{family}_{model}_asr_vs_kappa"] = {
            "title": f"{family.upper()} ({model}): attack success rate by kappa, L2 bound "
                     f"{group[0]['config']['max_l2']:g}",
            "rows": rows, "runs": [(r["folder"], r["command"]) for r in group]}
        brows = []
        for attack, r in zip(attacks, group):
            kappa = max(r["config"]["kappas"])
            recs = [x for x in r["records"] if x["kappa"] == kappa]
            for defense in r["config"]["defenses"]:
                row = {"attack": attack, "defense": defense, "kappa": kappa}
                for b in bound_grid(r["config"]["max_l2"]):
                    key = "L2 ≤ ∞" if math.isinf(b) else f"L2 ≤ {b:g}"
                    row[key] = asr_by_l2_bound_row(recs, defense, b) if recs else None
                brows.append(row)
        tables[f"{family}_{model}_asr_vs_bound"] = {
            "title": f"{family.upper()} ({model}): attack success rate by L2 bound at the "
                     "largest kappa of each run", "rows": brows,
            "runs": [(r["folder"], r["command"]) for r in group]}
    return tables


def _cell(key: str, v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and (key.startswith("ASR") or key.startswith("L2 ≤")
                                 or key == "paper"):
        return _pct(v)
    if isinstance(v, float):
        return f"{v:.2f}" if not key == "kappa" else f"{v:g}"
    return str(v)


def write_table(out: Path, name: str, table: dict) -> list[Path]:
    """``NAME.md`` (with the title and the producing runs) and ``NAME.csv``."""
    rows = table["rows"]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    lines = [f"### {table['title']}", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    for r in rows:
        lines.append("| " + " | ".join(_cell(c, r.get(c)) for c in columns) + " |")
    lines += ["", "Runs: " + "; ".join(f"`{cmd}` ({folder})" for folder, cmd in table["runs"]),
              ""]
    out.mkdir(parents=True, exist_ok=True)
    md, cs = out / f"{name}.md", out / f"{name}.csv"
    md.write_text("\n".join(lines))
    with open(cs, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return [md, cs]


def make_report(folders: list[str | Path], out: str | Path) -> list[Path]:
    """Every table the given run folders support, written into ``out``; returns the files."""
    out = Path(out)
    sweeps = [load_sweep(f) for f in folders if (Path(f) / "summary.json").is_file()]
    unknown = [str(f) for f in folders if not (Path(f) / "summary.json").is_file()]
    if unknown:
        raise ToolkitError("not a run folder this report understands (a finished sweep): "
                           + ", ".join(unknown))
    written = []
    for name, table in sweep_tables(sweeps).items():
        written += write_table(out, name, table)
    write_json(out / "report_index.json", {"files": [p.name for p in written],
                                           "runs": [str(f) for f in folders]})
    return written
