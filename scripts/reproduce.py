"""Rerun every experiment behind the A2D paper's tables and figures, then `adaptive report`.

    python scripts/reproduce.py --n 20                 # quick: a few hours on a 2-core CPU
    python scripts/reproduce.py --n 100 --device cuda  # the paper's scale, on a GPU
    python scripts/reproduce.py --n 20 --only mnist    # one data set; --dry-run lists commands

Runs go to RUNS/n{N}/ (default runs/reproduce/n{N}), the report to OUT (default
reports/paper-n{N}). Each step is an ordinary `adaptive` command; a step whose run folder is
finished is skipped and an interrupted one continues (--resume), so the script can be stopped
and restarted at any time. Wall times are appended to RUNS/n{N}/timings.jsonl and go into the
report's README table. CIFAR-10 steps need the data root (--data-root or $ADAPTIVE_DATA).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from steps import run_step  # (scripts/ is the script's folder)


def steps(n: int, runs: Path) -> list[tuple[str, str, list[str], str]]:
    """(data set, run folder name, adaptive arguments, how 'finished' is recognised)."""
    cal = max(100, n)  # calibration images, disjoint from the attacked ones
    # CLEVER costs ~20 s per MNIST image and ~4x that per CIFAR-10 image on one CPU core
    # (cpu-fast preset), so the CLEVER experiments use half the images.
    nc = str(max(5, n // 2))
    mnist_sweep = ["sweep", "--n", str(n), "--n-cal", str(cal), "--kappa", "0:20:5"]
    cifar_sweep = ["sweep", "--model", "cifar-cnn-at", "--n", str(n), "--n-cal", str(cal),
                   "--kappa", "0:20:5"]
    out = [
        # Figure 7a, 8 and the adaptive-attack tables (#8)
        *[("mnist", f"sweep-{a}", mnist_sweep + ["--attack", a], "summary.json")
          for a in ("cw", "cw-magnet", "cw-a2d", "cw-full", "pgd-full", "spgd", "opgd")],
        # Figure 11
        ("mnist", "pairs-k20", ["sweep", "--pairs", "--n", "100", "--n-cal", str(cal),
                                "--kappa", "20"], "summary.json"),
        # Table 1 and Figure 2; Figures 4, 5 and 10
        ("mnist", "clever", ["clever", "--n", str(n), "--target", "all", "--compare",
                             "fgsm,bim,jsma,cw", "--cost", "jsma_d"], "clever.json"),
        ("mnist", "costs", ["costs", "--n", str(n)], "costs.json"),
        # Table 4
        ("mnist", "robustness-vs-kappa", ["sweep", "--n", nc, "--n-cal", str(cal),
                                          "--kappa", "0:8:2", "--defenses", "none",
                                          "--clever"], "summary.json"),
        # Tables 2, 3, 7 and the cost boxes of the A2D evaluation
        ("mnist", "a2d-eval", ["a2d", "evaluate", "--n", str(3 * n), "--n-cal", str(3 * n)],
         "a2d_eval.json"),
        # CIFAR-10: Figure 7b and the adaptive-attack tables, Figures 9, 12 and 13
        *[("cifar10", f"sweep-{a}", cifar_sweep + ["--attack", a], "summary.json")
          for a in ("cw", "cw-a2d", "pgd-a2d")],
        # Figure 9: the undefended model attacked on the images of the AT runs
        ("cifar10", "sweep-undefended-cw", ["sweep", "--model", "cifar-cnn", "--n", str(n),
                                            "--n-cal", str(cal), "--kappa", "0",
                                            "--defenses", "none", "--images-from",
                                            str(runs / "cifar10-sweep-cw")], "summary.json"),
        # The plausibility table's reference: the AT model's robust accuracy at half the bound
        ("cifar10", "robust-l2-0.8", ["evaluate", "robust", "--model", "cifar-cnn-at", "--norm",
                                      "l2", "--eps", "0.8", "--n", str(50 * n), "--foolbox-n",
                                      str(10 * n)], "robust.json"),
        ("cifar10", "pairs-at", ["sweep", "--model", "cifar-cnn-at", "--pairs", "--n", "100",
                                 "--n-cal", str(cal), "--kappa", "0,10"], "summary.json"),
        # CIFAR-10: Table 1 and Table 4 (the slowest steps, last)
        ("cifar10", "clever", ["clever", "--model", "cifar-cnn", "--n", nc, "--target", "all",
                               "--compare", "fgsm,bim,jsma,cw"], "clever.json"),
        ("cifar10", "robustness-vs-kappa", ["sweep", "--model", "cifar-cnn", "--n", nc,
                                            "--n-cal", str(cal),
                                            "--kappa", "0:8:2", "--defenses", "none",
                                            "--clever"], "summary.json"),
        # CIFAR-10 Figures 4, 5, 10 and Tables 2, 3, 7 (the paper shows MNIST for the figures)
        ("cifar10", "costs", ["costs", "--model", "cifar-cnn", "--n", nc], "costs.json"),
        ("cifar10", "a2d-eval", ["a2d", "evaluate", "--model", "cifar-cnn", "--n", str(3 * n),
                                 "--n-cal", str(3 * n)], "a2d_eval.json"),
    ]
    return [(ds, f"{ds}-{name}", args, done) for ds, name, args, done in out]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="images per experiment (default 20)")
    p.add_argument("--runs", default="runs/reproduce", help="parent folder of the runs")
    p.add_argument("--out", help="report folder (default reports/paper-n{N})")
    p.add_argument("--only", choices=("mnist", "cifar10"), help="one data set")
    p.add_argument("--skip", default="", help="comma-separated step names to leave out "
                                               "(e.g. mnist-clever)")
    p.add_argument("--steps", help="comma-separated step names to run, in this order (default: "
                                   "all, in the script's order)")
    p.add_argument("--no-report", action="store_true",
                   help="run the steps only; make the report later (e.g. after runs made on "
                        "other machines are copied into RUNS)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", help="passed to every command")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the sweep, clever, costs and a2d evaluate steps run their units "
                        "(ray: a local Ray instance, or --ray-address)")
    p.add_argument("--ray-address", help="an existing Ray cluster, for --executor ray")
    p.add_argument("--checks", choices=("cheap", "full"), default="cheap",
                   help="the sweeps' checks of the attack itself: full adds Carlini et al.'s "
                        "checklist (the attack again with more steps and restarts, one step, "
                        "random noise, a gradient-free attack; slower)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    runs = Path(args.runs) / f"n{args.n}"
    out = Path(args.out or f"reports/paper-n{args.n}")
    common = ["--device", args.device, "--no-progress"]
    if args.data_root:
        common += ["--data-root", args.data_root]
    plan = steps(args.n, runs)
    if args.steps:
        by_name = {step[1]: step for step in plan}
        unknown = [s for s in args.steps.split(",") if s not in by_name]
        if unknown:
            p.error(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        plan = [by_name[s] for s in args.steps.split(",")]
    folders = []
    for dataset, name, cmd, done in plan:
        if (args.only and dataset != args.only) or name in args.skip.split(","):
            continue
        folder = runs / name
        folders.append(folder)
        # `evaluate robust` writes one file; the other commands a run folder
        target = folder / done if cmd[0] == "evaluate" else folder
        full = ["adaptive", *cmd, "--out", str(target), *common]
        if cmd[0] == "sweep" and args.checks == "full":
            full += ["--checks", "full"]
        if args.executor == "ray" and cmd[0] in ("sweep", "clever", "costs", "a2d"):
            full += ["--executor", "ray"] + (["--ray-address", args.ray_address]
                                             if args.ray_address else [])
        # `clever` and `evaluate` are not resumable
        rc = run_step(name, full, folder, folder / done, runs,
                      resumable=cmd[0] not in ("clever", "evaluate"), dry_run=args.dry_run)
        if rc != 0:
            return rc
    if args.no_report:
        return 0
    report = ["adaptive", "report", *map(str, folders), "--out", str(out)]
    if args.data_root:
        report += ["--data-root", args.data_root]
    print(f"[report] {shlex.join(report)}", flush=True)
    return 0 if args.dry_run else subprocess.call(report)


if __name__ == "__main__":
    sys.exit(main())
