"""``adaptive report``: tables and figures for reports from run folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptive.cli.common import add_data_root
from adaptive.report.tables import make_report


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="tables (Markdown and CSV) and figures from run folders",
        description="Read finished run folders and write the tables and figures they support "
                    "into --out, beside the A2D paper's numbers; nothing is attacked again. "
                    "Sweeps (adaptive sweep): ASR by kappa and by L2 bound, Figures 7-9 and, "
                    "for --pairs sweeps, 11-13 analogues, and with --clever Table 4. A2D "
                    "evaluations (adaptive a2d evaluate): Tables 2, 3 and 7, Figures 4-5 cost "
                    "boxes. CLEVER runs (adaptive clever): Table 1 and, with --cost, Figure 2. "
                    "Cost runs (adaptive costs): Figures 4, 5 and 10.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    p.add_argument("--out", default="reports/adaptive", help="output folder "
                                                             "(default reports/adaptive)")
    p.add_argument("--html", action="store_true",
                   help="also write OUT/report.html, the page `adaptive audit` writes, from "
                        "the sweep folders given (one section per folder)")
    add_data_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in make_report(args.runs, args.out, data_root=args.data_root):
        print(f"wrote {path}")
    if args.html:
        from adaptive.auditing import sweep_page

        print(f"wrote {sweep_page(args.runs, Path(args.out) / 'report.html', args.data_root)}")
    return 0
