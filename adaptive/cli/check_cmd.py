"""``adaptive check``: tests of the evaluation itself, run on a sweep's folder."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from adaptive.attacks.bounded_pgd import SCHEDULES
from adaptive.cli.common import add_run_options, nonnegative_int, positive_int, positive_number
from adaptive.core.errors import ToolkitError
from adaptive.sweep.config import ATTACKS, parse_attack

# the test needs an attack at exactly the bound (the registered fixed-budget attacks)
BINARIZATION_ATTACKS = tuple(a for a in ATTACKS if not parse_attack(a).ensemble
                             and parse_attack(a).spec.fixed_budget)
DEFAULT_INNER = 999  # inner points per image (the image included), as in the paper's tests


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
    b.add_argument("--n-random", type=nonnegative_int, default=1000,
                   help="points of the random-sampling control per image (default 1000)")
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


@dataclass
class BinarizationSetup:
    """What the binarization test of a sweep's folder runs on: the reopened run, the defense
    tested, the bounded attack (name, settings, a factory of fresh ones), its objective, the
    images and the pool of other test images the points (and image starts) go towards."""

    run: object
    defense: str
    attack: str
    settings: dict
    make_attack: Callable
    objective: object
    bound: float
    index: list
    x: torch.Tensor
    y: torch.Tensor
    pool: torch.Tensor


def binarization_setup(args: argparse.Namespace) -> BinarizationSetup:
    """The setup of ``adaptive check binarization`` from its arguments (also used by
    ``scripts/binarization_failures.py``)."""
    from adaptive.attacks.registry import AttackSetup
    from adaptive.core.runtime import resolve_device, seed_everything
    from adaptive.sweep.config import bound_of, images_except
    from adaptive.sweep.reopen import reopen

    device = resolve_device(args.device)
    seed_everything(args.seed)
    run = reopen(args.run_dir, device, args.data_root)
    cfg = run.cfg
    name = args.defense or cfg.defenses[-1]
    if name not in run.defenses:
        raise ToolkitError(f"the run has no defense {name!r}; it has "
                           f"{', '.join(run.defenses)}")
    attack = args.attack or (cfg.attack if cfg.attack in BINARIZATION_ATTACKS else "pgd-full")
    settings = asdict(cfg.pgd)
    for key in ("steps", "restarts", "schedule"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    if args.start_images is not None:
        settings["start_images"] = args.start_images
    if getattr(args, "step_size", None):
        settings["step_size"] = args.step_size
    bound = bound_of(cfg)
    spec = parse_attack(attack).spec
    # other test images to draw directions towards: not attacked, not the run's calibration
    pool = images_except(run.data.x(), run.attacked + run.calibration)

    def make_attack():  # (image starts draw from the same pool as the test's points)
        return spec.make(AttackSetup(cfg.threat, 0.0, args.seed, cfg.pgd, pool, settings))

    index = run.attacked[:args.n] if args.n else run.attacked
    return BinarizationSetup(run, name, attack, settings, make_attack, run.objective(attack),
                             bound, index, run.data.x()[index].to(device),
                             run.data.labels[index], pool)


def _result_name(attack: str, settings: dict, run_restarts: int,
                 args: argparse.Namespace) -> str:
    """The result's file name: the attack and its steps, then whatever differs from the run's
    and the test's defaults (so that one test never overwrites another)."""
    parts = [f"binarization_{attack}_s{settings['steps']}"]
    if settings["restarts"] != run_restarts:
        parts.append(f"r{settings['restarts']}")
    if settings.get("schedule") == "cosine":
        parts.append("cosine")
    if settings.get("start_images"):
        parts.append(f"img{settings['start_images']}")
    if settings.get("step_size"):
        parts.append(f"ss{settings['step_size']:g}")
    if args.n_inner != DEFAULT_INNER:
        parts.append(f"in{args.n_inner}")
    if args.unchecked_inner:
        parts.append("unchecked")
    if args.task_only:
        parts.append("task")
    return "_".join(parts) + ".json"


def run_binarization(args: argparse.Namespace) -> int:
    from adaptive.core.checkpoint import write_json
    from adaptive.diagnostics.binarization import binarization_test

    setup = binarization_setup(args)
    run, cfg, name, attack = setup.run, setup.run.cfg, setup.defense, setup.attack
    settings, objective, bound, index = setup.settings, setup.objective, setup.bound, setup.index
    print(f"binarization test of {attack} ({settings['steps']} steps x "
          f"{settings['restarts']} restarts) against {name}, {cfg.norm} bound {bound:g}, "
          f"{len(index)} images")
    result = binarization_test(run.defenses[name], objective.model, setup.make_attack, setup.x,
                               setup.y, bound, cfg.norm, penalty=objective.penalty(),
                               index=index, n_inner=args.n_inner, n_random=args.n_random,
                               seed=args.seed, pool=setup.pool, directions=args.directions,
                               task_only=args.task_only,
                               check_inner=not args.unchecked_inner)
    s = result["summary"]
    result["config"] = {"run": str(run.folder), "defense": name, "attack": attack,
                        "settings": settings, "norm": cfg.norm, "bound": bound,
                        "n_inner": args.n_inner, "n_random": args.n_random, "seed": args.seed,
                        "directions": args.directions, "task_only": args.task_only,
                        "check_inner": not args.unchecked_inner,
                        "command": getattr(args, "command_line", "")}
    out = Path(args.out) if args.out else (Path(args.run_dir) / "diagnostics" /
                                           _result_name(attack, settings, cfg.pgd.restarts,
                                                        args))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    asr = "-" if s["attack_success_rate"] is None else f"{s['attack_success_rate']:.0%}"
    rnd = "-" if s["random_success_rate"] is None else f"{s['random_success_rate']:.0%}"
    verdict = {True: "PASSED", False: "FAILED", None: "no usable image"}[s["passed"]]
    print(f"{verdict}: the attack solved {asr} of {s['used']} binarised tasks (random control "
          f"{rnd}; skipped {json.dumps(s['skipped'])}); {out}")
    return 0
