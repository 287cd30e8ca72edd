"""``adaptive check``: tests of the evaluation itself, run on a sweep's folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adaptive.attacks.bounded_pgd import SCHEDULES
from adaptive.cli.common import add_run_options, nonnegative_int, positive_int, positive_number
from adaptive.sweep.binarization import (
    BINARIZATION_ATTACKS,
    DEFAULT_INNER,
    DEFAULT_RANDOM,
    BinarizationSetup,
    result_name,
)
from adaptive.sweep.binarization import binarization_setup as sweep_binarization_setup
from adaptive.sweep.binarization import run_binarization as sweep_run_binarization


def register(sub) -> None:
    p = sub.add_parser("check", help="is the evaluation itself right? (binarization test)",
                       description="Tests of the attack a sweep used, on that sweep's defenses.")
    checks = p.add_subparsers(dest="check", metavar="CHECK", required=True,
                              parser_class=type(p))
    b = checks.add_parser(
        "binarization",
        help="the binarization test (Zimmermann et al. 2022) of a sweep's bounded attack",
        description="Per attacked image of RUN_DIR: a new linear readout on the defended "
                    "classifier's features separates 1 boundary point (at the bound, accepted "
                    "by every detector) from inner points; the unchanged attack must find the "
                    "guaranteed adversarial example of that binarised classifier. Passing "
                    "means >= 95 %% success; a random-sampling control is reported beside it. "
                    "Writes RUN_DIR/diagnostics/binarization_ATTACK_sSTEPS.json (or --out).")
    b.add_argument("run_dir", metavar="RUN_DIR", help="a sweep's folder")
    b.add_argument("--defense", help="the defense to test against (default: the run's last)")
    b.add_argument("--attack", choices=BINARIZATION_ATTACKS,
                   help="the bounded attack (default: the run's when it is one of these, "
                        "else pgd-full)")
    b.add_argument("--steps", type=positive_int, help="steps per round (default: the run's)")
    b.add_argument("--restarts", type=positive_int, help="restarts (default: the run's)")
    b.add_argument("--step-size", type=positive_number, metavar="S",
                   help="step length in the run's norm (a cosine schedule's mean step; "
                        "default: 2.5 x bound / steps): fewer --steps with the full attack's "
                        "S make a truncated attack, rather than fewer longer steps")
    b.add_argument("--schedule", choices=SCHEDULES,
                   help="step lengths within a round (default: the run's)")
    b.add_argument("--start-images", type=nonnegative_int, metavar="M",
                   help="restarts start at the best of M points towards other test images "
                        "(the pgd attacks' --pgd-start-images; default: the run's)")
    b.add_argument("--n", type=positive_int, help="images (default: all the run attacked)")
    b.add_argument("--n-inner", type=positive_int, default=DEFAULT_INNER,
                   help="inner points per image, the image included (default 999)")
    b.add_argument("--n-random", type=nonnegative_int, default=DEFAULT_RANDOM,
                   help="points of the random-sampling control per image (default "
                        f"{DEFAULT_RANDOM})")
    b.add_argument("--directions", choices=("auto", "noise", "images"), default="auto",
                   help="how inner and boundary points are drawn: noise (the paper's), "
                        "images (towards other test images: blends, for detectors that reject "
                        "noise at the bound), auto (noise, else images, per image; default)")
    b.add_argument("--unchecked-inner", action="store_true",
                   help="do not judge the inner points by the detectors (the boundary point "
                        "always is: the guarantee rests on it); against A2D on a robust model "
                        "judging them is most of the test's time")
    b.add_argument("--task-only", action="store_true",
                   help="a diagnosis: the same binarised tasks attacked with no detector term "
                        "and solved when the readout flips, whatever the detectors say (a "
                        "failure left there is the task's optimisation, not the detectors')")
    b.add_argument("--out", help="output JSON file")
    add_run_options(b)
    b.set_defaults(run=run_binarization)


def binarization_setup(args: argparse.Namespace) -> BinarizationSetup:
    """The setup of ``adaptive check binarization`` from its arguments (also used by
    ``scripts/binarization_failures.py``)."""
    from adaptive.core.runtime import resolve_device

    return sweep_binarization_setup(
        args.run_dir, resolve_device(args.device), args.data_root, defense=args.defense,
        attack=args.attack, steps=args.steps, restarts=args.restarts, schedule=args.schedule,
        start_images=args.start_images, step_size=getattr(args, "step_size", None), n=args.n,
        seed=args.seed)


def run_binarization(args: argparse.Namespace) -> int:
    from adaptive.core.checkpoint import write_json

    setup = binarization_setup(args)
    cfg, settings = setup.run.cfg, setup.settings
    print(f"binarization test of {setup.attack} ({settings['steps']} steps x "
          f"{settings['restarts']} restarts) against {setup.defense}, {cfg.norm} bound "
          f"{setup.bound:g}, {len(setup.index)} images")
    options = dict(n_inner=args.n_inner, task_only=args.task_only,
                   check_inner=not args.unchecked_inner)
    result = sweep_run_binarization(setup, n_random=args.n_random, seed=args.seed,
                                    directions=args.directions,
                                    command=getattr(args, "command_line", ""), **options)
    s = result["summary"]
    out = Path(args.out) if args.out else (Path(args.run_dir) / "diagnostics" /
                                           result_name(setup, **options))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    asr = "-" if s["attack_success_rate"] is None else f"{s['attack_success_rate']:.0%}"
    rnd = "-" if s["random_success_rate"] is None else f"{s['random_success_rate']:.0%}"
    verdict = {True: "PASSED", False: "FAILED", None: "no usable image"}[s["passed"]]
    print(f"{verdict}: the attack solved {asr} of {s['used']} binarised tasks (random control "
          f"{rnd}; skipped {json.dumps(s['skipped'])}); {out}")
    return 0
