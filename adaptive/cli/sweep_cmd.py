"""``adaptive sweep``: the main job."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from adaptive.attacks.apgd import APGDSettings
from adaptive.attacks.bounded_pgd import SCHEDULES
from adaptive.attacks.rays import RaySSettings
from adaptive.attacks.square import SquareSettings
from adaptive.cli.common import (
    add_executor_options,
    add_run_options,
    bound_number,
    dataset_for_model,
    executor_settings,
    nonnegative_int,
    positive_int,
    positive_number,
)
from adaptive.core.data import data_root
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import resolve_device
from adaptive.core.zoo import load_model
from adaptive.defense.compositions import parse_defenses, uses_randomized_magnet
from adaptive.defense.compositions import uses_magnet as magnet_needed
from adaptive.sweep import (
    ATTACKS,
    DATASET_DEFAULTS,
    CleverSettings,
    CWSettings,
    HardLabelSettings,
    PGDSettings,
    SweepConfig,
    attacked_indices,
    parse_kappas,
    run_sweep,
    validate_config,
)
from adaptive.sweep.config import STAND_INS
from adaptive.sweep.inputs import load_defense_inputs
from defenses.magnet.defense import bundled_pool

# the one source of defaults
DEFAULT, CW, PGD, HSJ = SweepConfig(), CWSettings(), PGDSettings(), HardLabelSettings()
APGD, SQUARE, RAYS = APGDSettings(), SquareSettings(), RaySSettings()


def _bounds(args: argparse.Namespace, defaults: dict) -> dict:
    """norm, max_l2 and max_linf of the SweepConfig from --norm, --eps and --max-l2."""
    if args.norm == "linf":
        if args.max_l2 is not None:
            raise ToolkitError("--max-l2 is the bound of L2 sweeps; with --norm linf give --eps")
        eps = args.eps if args.eps is not None else defaults["max_linf"]
        return dict(norm="linf", max_l2=float("inf"), max_linf=eps)
    if args.eps is not None and args.max_l2 is not None and args.eps != args.max_l2:
        raise ToolkitError("--eps and --max-l2 disagree; an L2 sweep takes one bound")
    bound = args.max_l2 if args.max_l2 is not None else args.eps
    return dict(norm="l2", max_l2=bound if bound is not None else defaults["max_l2"])
KAPPA_TEXT = ",".join(f"{k:g}" for k in DEFAULT.kappas)


def _add_what_options(p) -> None:
    """What is attacked: the model, the data, the defenses, kappa, the images, the bound."""
    p.add_argument("--model", default=DEFAULT.model, help="zoo name or checkpoint (the classifier;"
                   " for at / a2d+at, an adversarially trained one)")
    p.add_argument("--dataset", help="default: mnist-bundled (MNIST models), cifar10")
    p.add_argument("--defenses", help="comma-separated: none, a2d, magnet, a2d+magnet, at, "
                   "a2d+at ('none' is always included; default: a2d,magnet,a2d+magnet for "
                   "MNIST, at,a2d+at for CIFAR-10)")
    p.add_argument("--defense-module", metavar="PKG.MOD:FACTORY",
                   help="your own defense: factory(model=, dataset=, device=) returning a "
                        "Defense or a dict of them (see docs/plugins.md)")
    p.add_argument("--kappa", default=KAPPA_TEXT,
                   help=f"start:stop:step or a list (default {KAPPA_TEXT})")
    p.add_argument("--n", type=positive_int, default=DEFAULT.n,
                   help=f"images to attack (default {DEFAULT.n})")
    p.add_argument("--n-cal", type=positive_int, default=DEFAULT.n_cal,
                   help="benign images to calibrate A2D, disjoint from the attacked ones "
                        f"(default {DEFAULT.n_cal})")
    p.add_argument("--norm", choices=("l2", "linf"), default=DEFAULT.norm,
                   help="threat model of the bound: l2 (--max-l2) or linf (--eps; the bounded "
                        "attacks then step and project in the L-inf box; C&W stays L2 and is "
                        "judged by its L-inf distance) (default l2)")
    p.add_argument("--eps", type=positive_number,
                   help="the bound in --norm's units (with --norm linf: e.g. 0.3 MNIST, 8/255 "
                        "CIFAR-10, the defaults; with l2: the same as --max-l2)")
    p.add_argument("--max-l2", type=bound_number,
                   help="L2 bound (default " + ", ".join(
                       f"{d['max_l2']:g} {family}" for family, d in DATASET_DEFAULTS.items())
                   + ")")
    p.add_argument("--targeted", action="store_true",
                   help="attack a random other class per image (default: untargeted)")
    p.add_argument("--images-from", metavar="RUN_DIR",
                   help="attack the images another sweep run attacked (those this model "
                        "classifies correctly, at most --n), e.g. to compare models on the "
                        "same images")
    p.add_argument("--no-transfer-check", action="store_true",
                   help="with an adaptive --attack, skip the sanity check that also runs the "
                        "paper's C&W-kappa on the bare classifier against every defense (the "
                        "white-box attack must be at least as strong)")
    p.add_argument("--pairs", action="store_true",
                   help="attack every label pair: the first image of each class among the n "
                        "chosen, towards each other class (implies --targeted; for the A2D "
                        "Figures 11-13 grids drawn by `adaptive report`)")


def _add_defense_options(p) -> None:
    """MagNet, its pool, and C&W's settings."""
    p.add_argument("--magnet", help="MagNet defense: bundled name or magnet.json (default: "
                                    "mnist for MNIST)")
    p.add_argument("--magnet-pool", metavar="POOL",
                   help="rmagnet's pool of reformers: a bundled name or pool.json (default: "
                        "the MagNet's bundled pool, e.g. mnist-pool, when there is one, else "
                        "MagNet's own autoencoders)")
    p.add_argument("--cw-steps", type=positive_int, default=CW.steps,
                   help=f"C&W Adam steps per constant (default {CW.steps})")
    p.add_argument("--cw-binary-steps", type=positive_int, default=CW.binary_search_steps,
                   help="C&W binary-search steps over the constant (default "
                        f"{CW.binary_search_steps})")
    p.add_argument("--cw-warm-start", action="store_true",
                   help="C&W: start each constant after the first from the best example so far "
                        "(faster, not C&W's algorithm; default: from the image)")
    p.add_argument("--cw-lr", type=positive_number, default=CW.lr,
                   help=f"C&W Adam step size (default {CW.lr:g})")


def _add_attack_options(p) -> None:
    """The attack, its checks and the batch."""
    p.add_argument("--batch", type=positive_int, default=DEFAULT.batch,
                   help=f"images per attack batch; records are saved per batch (default "
                        f"{DEFAULT.batch})")
    p.add_argument("--clever", nargs="?", const="cpu-fast", choices=("cpu-fast", "original"),
                   help="also measure the CLEVER score (untargeted, L2, R=5) of every "
                        "adversarial example, reported as mean_clever; preset cpu-fast "
                        "(50 x 64 samples, the default when the flag is bare) or original "
                        "(500 x 1024, for a GPU)")
    p.add_argument("--attack", default=DEFAULT.attack, choices=ATTACKS,
                   help="cw: C&W-kappa on the bare classifier (the paper's adaptive attack); "
                        "cw-magnet: through MagNet's reformer, penalising its detectors; "
                        "cw-a2d: penalising a low first-order BIM_d cost; cw-full: both (and "
                        "plug-in detectors with a differentiable score); pgd, pgd-magnet, "
                        "pgd-a2d, pgd-full: the same objectives by PGD-L2 at exactly --max-l2 "
                        "instead of C&W's minimum distance; spgd, opgd: the -full objective by "
                        "Selective / Orthogonal PGD-L2 at --max-l2, stepping on the classifier "
                        "and the detectors apart; apgd, apgd-magnet, apgd-a2d, apgd-full: "
                        "Auto-PGD (Croce & Hein 2020; --apgd-loss ce or dlr) on those "
                        "objectives; square: the Square attack, score-based (no gradients; "
                        "--square-queries); hsj: HopSkipJump-L2, rays: RayS-L-inf, hard-label "
                        "attacks whose only oracle is the verdict of the last of --defenses "
                        "(accepted and misclassified), for detectors without gradients (need "
                        "--kappa 0); auto: the per-image worst case over cw (transferred), "
                        "APGD-CE, APGD-T, spgd and opgd (where there are detectors), square, "
                        "then hsj or rays on each defense's verdict (at kappa 0), every member "
                        "also through each plug-in defense's own forward, each on the images "
                        "some defense still "
                        "withstands; records say which member broke each image (default cw)")
    p.add_argument("--checks", choices=("cheap", "full"), default=DEFAULT.checks,
                   help="cheap: the indicators of attack failure of every example (always); "
                        "full: also Carlini et al.'s checklist on the smallest kappa's images "
                        "(twice the steps, twice the restarts, one step, random noise, "
                        "HopSkipJump), which attacks them again (default cheap)")
    p.add_argument("--image-seeds", action="store_true",
                   help="each image draws its random numbers (restarts, probes) from its own "
                        "seed, so its result does not depend on its batch (auto always does; "
                        "use it to compare a single attack with auto image by image)")
    p.add_argument("--eot", type=positive_int, default=PGD.eot, metavar="N",
                   help="pgd, spgd, opgd, apgd: average each step's gradient over N evaluations "
                        "(Expectation over Transformation), for defenses that are random per "
                        f"call (default {PGD.eot}: none; a defense the probes find random "
                        "gets --random-eot without being asked)")
    p.add_argument("--random-eot", type=positive_int, default=DEFAULT.random_eot, metavar="N",
                   help="gradient samples per step of the attacks aimed at a defense whose "
                        "forward the probes find random (default "
                        f"{DEFAULT.random_eot}; 1: no EOT)")
    p.add_argument("--no-bare-gradient", dest="bare_gradient", action="store_false",
                   help="aim no white-box attack at a defense whose gradient the probes find "
                        "hidden (and that declares no surrogate); by default they follow the "
                        "bare classifier's gradient through its forward (BPDA)")
    p.add_argument("--stand-in", choices=STAND_INS, default=DEFAULT.stand_in,
                   help="the gradient those attacks follow: the bare classifier's (bare, the "
                        "default) or its average over random resize-and-pad draws of the "
                        "input (diverse: input diversity; auto runs both)")
    p.add_argument("--draws", type=positive_int, default=DEFAULT.draws, metavar="K",
                   help="judge each example against a random defense on K fresh draws: ASR "
                        "counts the examples that fool a majority of them, beside those that "
                        f"fool one and those that fool all (default {DEFAULT.draws})")


def _add_budget_options(p) -> None:
    """The budgets of HopSkipJump, the -a2d penalty and the pgd attacks."""
    p.add_argument("--hsj-iterations", type=positive_int, default=HSJ.iterations,
                   help=f"hsj: rounds per image (default {HSJ.iterations})")
    p.add_argument("--hsj-evals", type=positive_int, default=HSJ.evals,
                   help=f"hsj: boundary probes in the first round, growing as sqrt(round) up "
                        f"to {HSJ.max_evals} (default {HSJ.evals})")
    p.add_argument("--square-queries", type=positive_int, default=SQUARE.queries,
                   help=f"square: model queries per image (default {SQUARE.queries})")
    p.add_argument("--rays-queries", type=positive_int, default=RAYS.queries,
                   help=f"rays: oracle queries per image (default {RAYS.queries})")
    p.add_argument("--a2d-factor", type=positive_number, default=DEFAULT.a2d_factor,
                   help="-a2d/-full attacks: target first-order cost as a multiple of A2D's "
                        f"benign cost threshold (default {DEFAULT.a2d_factor:g})")
    p.add_argument("--pgd-steps", type=positive_int, default=PGD.steps,
                   help="pgd attacks: steps per restart, of 2.5 x bound / steps (default "
                        f"{PGD.steps})")
    p.add_argument("--pgd-restarts", type=positive_int, default=PGD.restarts,
                   help="pgd attacks: restarts for the images not yet done, the first from "
                        f"the image, the others from random points of the ball (default "
                        f"{PGD.restarts})")
    p.add_argument("--pgd-targets", type=nonnegative_int, default=PGD.target_classes,
                   metavar="K",
                   help="untargeted pgd attacks: then one round towards each of the K most "
                        "likely other classes, for the images not yet done (default "
                        f"{PGD.target_classes}; 0: none)")
    p.add_argument("--pgd-schedule", choices=SCHEDULES, default=PGD.schedule,
                   help="pgd attacks: step lengths within a round, constant or decaying along "
                        f"a cosine from twice the step to 0 (default {PGD.schedule})")
    p.add_argument("--apgd-loss", choices=("ce", "dlr"), default=APGD.loss,
                   help="apgd: the loss it ascends, cross entropy or the difference of logits "
                        f"ratio (scale-invariant) (default {APGD.loss})")
    p.add_argument("--apgd-steps", type=positive_int, default=APGD.steps,
                   help=f"apgd: steps per round (default {APGD.steps})")
    p.add_argument("--apgd-restarts", type=positive_int, default=APGD.restarts,
                   help=f"apgd: rounds, the first from the image (default {APGD.restarts})")
    p.add_argument("--apgd-targets", type=nonnegative_int, default=APGD.target_classes,
                   metavar="K", help="untargeted apgd: then one targeted-DLR round towards "
                   f"each of the K most likely other classes (APGD-T) (default "
                   f"{APGD.target_classes})")
    p.add_argument("--pgd-start-images", type=nonnegative_int, default=PGD.start_images,
                   metavar="M",
                   help="pgd attacks: each random restart starts at the best (by its own loss) "
                        "of M points towards other images of the data set, as far as the bound "
                        "allows, instead of random noise: detectors that model the data "
                        "(MagNet) reject noise and accept blends of images (default "
                        f"{PGD.start_images}: noise)")


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="the main job: C&W-kappa against defense compositions",
        description="Attack each defense composition with C&W-L2 at each confidence kappa and "
                    "measure attack success under an L2 bound, distortion, each detector's "
                    "detection rate and the BIM_d attack cost. With no arguments: the MNIST "
                    "A2D + MagNet sweep on the bundled data and models, offline. Writes "
                    "records.jsonl (as it goes), summary.json/.csv, config.json and figures "
                    "to --out; --resume continues an interrupted run.")
    _add_what_options(p)
    _add_defense_options(p)
    _add_attack_options(p)
    _add_budget_options(p)
    p.add_argument("--out", help="output folder (default: a new runs/sweep-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_executor_options(p)
    add_run_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.evaluations.clever import PRESETS

    if args.resume and not args.out:
        raise ToolkitError("--resume needs --out (the folder of the run to continue)")
    if args.resume and not (Path(args.out) / "config.json").is_file():
        raise ToolkitError(f"--resume given but {args.out} holds no run to continue; leave "
                           "out --resume to start one")
    executor = executor_settings(args)
    kappas = parse_kappas(args.kappa)
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    family = meta["dataset"]
    defaults = DATASET_DEFAULTS.get(family, DATASET_DEFAULTS["mnist"])
    name = dataset_for_model(args.dataset, args.model, meta, defaults["dataset"])
    names = parse_defenses(args.defenses or defaults["defenses"]) if not (
        args.defense_module and args.defenses is None) else ["none"]
    magnet_ref = args.magnet or defaults["magnet"]
    uses_magnet = magnet_needed(names)
    if uses_magnet and magnet_ref is None:
        raise ToolkitError("the magnet defenses need --magnet (a magnet.json) for this data set")
    cfg = SweepConfig(dataset=name, model=args.model, model_sha256=meta["sha256"],
                      defenses=names, kappas=kappas,
                      n=args.n, n_cal=args.n_cal,
                      **_bounds(args, defaults),
                      targeted=args.targeted or args.pairs, pairs=args.pairs,
                      transfer_check=not args.no_transfer_check,
                      images=attacked_indices(args.images_from) if args.images_from else None,
                      seed=args.seed, batch=args.batch,
                      cw=CWSettings(steps=args.cw_steps,
                                    binary_search_steps=args.cw_binary_steps, lr=args.cw_lr,
                                    warm_start=args.cw_warm_start),
                      magnet=magnet_ref if uses_magnet else None,
                      magnet_pool=(args.magnet_pool or bundled_pool(magnet_ref)
                                   if uses_randomized_magnet(names) else None),
                      defense_module=args.defense_module,
                      clever=(CleverSettings(**PRESETS[args.clever]) if args.clever else None),
                      attack=args.attack, a2d_factor=args.a2d_factor,
                      image_seeds=args.image_seeds, checks=args.checks,
                      random_eot=args.random_eot, draws=args.draws,
                      bare_gradient=args.bare_gradient, stand_in=args.stand_in,
                      pgd=PGDSettings(steps=args.pgd_steps, restarts=args.pgd_restarts,
                                      target_classes=args.pgd_targets, eot=args.eot,
                                      schedule=args.pgd_schedule,
                                      start_images=args.pgd_start_images),
                      apgd=APGDSettings(steps=args.apgd_steps, restarts=args.apgd_restarts,
                                        loss=args.apgd_loss, target_classes=args.apgd_targets,
                                        eot=args.eot),
                      square=SquareSettings(queries=args.square_queries),
                      rays=RaySSettings(queries=args.rays_queries),
                      hsj=HardLabelSettings(iterations=args.hsj_iterations,
                                            evals=args.hsj_evals,
                                            max_evals=max(HSJ.max_evals, args.hsj_evals)))
    validate_config(cfg, magnet=uses_magnet or None)  # every setting, before any loading
    data, magnet, extra = load_defense_inputs(cfg, model, device, args.data_root)
    if extra:
        cfg.defenses = names + [d for d in extra if d not in names]
    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    result = run_sweep(cfg, model, data, out, device, magnet=magnet, extra_defenses=extra,
                       resume=args.resume, command=args.command_line,
                       progress=not args.no_progress, executor=executor,
                       data_root=data_root(args.data_root))
    print(f"{'kappa':>6} {'defense':>12} {'ASR':>6} {'mean L2':>8}")
    for r in result["rows"]:
        asr = "-" if r["attack_success_rate"] is None else f"{r['attack_success_rate']:.2f}"
        l2 = "-" if r["mean_l2"] is None else f"{r['mean_l2']:.2f}"
        by = ("  broken by " + ", ".join(f"{m} {c}" for m, c in r["broken_by"].items())
              if r.get("broken_by") else "")
        print(f"{r['kappa']:>6g} {r['defense']:>12} {asr:>6} {l2:>8}{by}")
    for c in result["sanity_checks"]:
        print(f"sanity check {'passed' if c['passed'] else 'FAILED'}: {c['name']}: "
              f"{c['detail']}")
    print(f"results: {out}")
    return 0
