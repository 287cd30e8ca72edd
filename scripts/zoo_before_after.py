"""Two tables of ``scripts/defense_zoo.py`` side by side: per defense, the ``auto`` ASR (L2 and
L-inf) of an earlier report folder beside a later one, e.g. the ensemble before and after a
change.

    python scripts/zoo_before_after.py reports/defenses reports/defenses-auto-v2 \
        --out reports/defenses-auto-v2/before_after.md
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COLUMNS = (("auto_l2_asr", "auto, L2"), ("auto_linf_asr", "auto, L∞"))


def _read(folder: Path) -> dict[str, dict]:
    with open(folder / "defenses.csv", newline="") as f:
        return {row["defense"]: row for row in csv.DictReader(f)}


def _pct(value: str | None) -> str:
    return "–" if value in (None, "") else f"{float(value):.0%}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    before, after = _read(args.before), _read(args.after)
    head = " | ".join(f"{label}: before / after" for _, label in COLUMNS)
    lines = [f"| defense | {head} | wall time after |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, new in after.items():
        old = before.get(name, {})
        cells = " | ".join(f"{_pct(old.get(k))} / {_pct(new.get(k))}" for k, _ in COLUMNS)
        lines.append(f"| `{name}` | {cells} | {float(new['seconds']):.0f} s |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
