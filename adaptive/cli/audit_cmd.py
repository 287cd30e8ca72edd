"""``adaptive audit``: stress-test a defense with one command and write its report."""

from __future__ import annotations

import argparse

from adaptive.cli.common import (
    add_executor_options,
    add_run_options,
    executor_settings,
    nonnegative_int,
    positive_int,
)
from adaptive.sweep.config import SweepConfig

DEFAULT = SweepConfig()


def register(sub) -> None:
    p = sub.add_parser(
        "audit", help="stress-test a defense: one command, one report page",
        description="Probe the defense, attack it with auto (APGD-CE, APGD-T, the "
                    "detector-aware members, Square, the hard-label members, the transferred "
                    "C&W) through its own forward under each threat model, run the checks of "
                    "the evaluation itself (checklist, sanity checks, indicators, binarization "
                    "test), Tramer's reduction for detectors, and write OUT/report.html (one "
                    "self-contained page) and OUT/audit.json. Resumable with --resume.")
    p.add_argument("defense", metavar="DEFENSE",
                   help="your defense, PKG.MOD:FACTORY (factory(model=, dataset=, device=) "
                        "returning a Defense or a dict of them), or zoo compositions (a2d, "
                        "magnet, a2d+magnet, at, ..., comma-separated)")
    p.add_argument("--threat", action="append", metavar="NORM:BOUND",
                   help="a threat model, e.g. linf:8/255 or l2:0.5 (repeatable; default: the "
                        "data set's L-inf bound, 0.3 MNIST, 8/255 CIFAR-10)")
    p.add_argument("--model", default=DEFAULT.model,
                   help="the bare classifier (zoo name or checkpoint) the images are chosen "
                        "with and the transferred attack is made on (default "
                        f"{DEFAULT.model})")
    p.add_argument("--dataset", help="the test set (default: the model's; mnist-bundled for "
                                     "MNIST models)")
    p.add_argument("--n", type=positive_int, default=DEFAULT.n,
                   help=f"images to attack (default {DEFAULT.n})")
    p.add_argument("--n-cal", type=positive_int,
                   help="benign images to calibrate detectors on (A2D) and measure operating "
                        f"points, disjoint from the attacked ones (default {DEFAULT.n_cal})")
    p.add_argument("--batch", type=positive_int, help=f"images per batch (default "
                                                      f"{DEFAULT.batch})")
    p.add_argument("--binarization-images", type=nonnegative_int, default=10, metavar="K",
                   help="images of each binarization test (one per defense; 0: none; "
                        "default 10)")
    p.add_argument("--out", help="the audit's folder (default: a new runs/audit-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the audit in --out")
    add_executor_options(p)
    add_run_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.auditing import audit
    from adaptive.core.errors import ToolkitError

    if args.resume and not args.out:
        raise ToolkitError("--resume needs --out (the folder of the audit to continue)")
    result = audit(args.defense, model=args.model, data=args.dataset, threats=args.threat,
                   n=args.n, n_cal=args.n_cal, out=args.out, resume=args.resume,
                   device=args.device, seed=args.seed, batch=args.batch,
                   binarization_images=args.binarization_images,
                   executor=executor_settings(args), data_root=args.data_root,
                   progress=not args.no_progress, command=args.command_line)
    for s in result.sections:
        for d in s["defenses"]:
            lo, hi = d["interval"]
            by = ", ".join(f"{m} {c}" for m, c in d["broken_by"].items()) or "-"
            print(f"{s['threat']['label']:>12} {d['name']:>14} robust accuracy "
                  f"{d['robust_accuracy']:.0%} ({lo:.0%}-{hi:.0%}) of {d['images']}; "
                  f"broken by {by}")
    for f in result.flags():
        print(f"red flag: {f['flag']} ({f['defense']}, {f['threat']}): {f['detail']}; "
              + ("cure applied: " if f["applied"] else "cure: ") + f["cure"])
    for c in result.failed_checks():
        print(f"check FAILED ({c['threat']}): {c['kind']}: {c['name']}: {c['detail']}")
    return 0
