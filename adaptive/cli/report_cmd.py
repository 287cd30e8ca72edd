"""``adaptive report``: tables for reports from run folders."""

from __future__ import annotations

import argparse

from adaptive.report import make_report


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="tables (Markdown and CSV) from run folders",
        description="Read finished run folders (sweeps: summary.json, records.jsonl) and write "
                    "the tables they support into --out: attack success rate by kappa (one "
                    "column per attack, beside the A2D paper's claims) and by L2 bound. "
                    "Nothing is attacked again.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    p.add_argument("--out", default="reports/adaptive", help="output folder "
                                                             "(default reports/adaptive)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in make_report(args.runs, args.out):
        print(f"wrote {path}")
    return 0
