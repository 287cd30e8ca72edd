"""``adaptive a2d evaluate``: AUROC, Z-score, ensemble and K-NN results of A2D on a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptive.cli.common import (
    add_executor_options,
    add_run_options,
    dataset_for_model,
    executor_settings,
    number,
    positive_int,
)
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import resolve_device
from adaptive.core.zoo import load_model
from adaptive.evaluations.a2d import RESULT_FILE, A2DEvalConfig, run_a2d_evaluation
from adaptive.evaluations.adversarial_sets import ATTACKS, CW_IMPLS, attack_settings
from defenses.a2d.knn import SCALES
from defenses.a2d.presets import ENGINE_NAMES
from defenses.a2d.zscore import DEFAULT_H

# Offline by default: MNIST models are evaluated on the bundled test images.
DEFAULT_DATASET = {"mnist": "mnist-bundled", "cifar10": "cifar10"}


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ToolkitError(f"unknown {what} {', '.join(bad) or '(none)'}; choose from "
                           f"{', '.join(allowed)}")
    return names


def register(sub) -> None:
    p = sub.add_parser("a2d", help="Attack as Defense: evaluate its detectors")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    e = what.add_parser(
        "evaluate", help="AUROC, Z-score / K-NN detection and queries per engine and attack",
        description="Make adversarial examples (FGSM, BIM, JSMA, DeepFool, C&W) from correctly "
                    "classified test images, compute every engine's attack costs, and write "
                    f"OUT/{RESULT_FILE}. Calibration images are disjoint from evaluation images. "
                    "Interrupted runs continue with --resume.")
    e.add_argument("--model", default="mnist-cnn", help="zoo name or checkpoint path")
    e.add_argument("--dataset", help="test images (default: mnist-bundled for MNIST models, "
                                     "cifar10 for CIFAR-10 ones)")
    e.add_argument("--n", type=positive_int, default=200, help="evaluation images (default 200)")
    e.add_argument("--n-cal", type=positive_int, default=200,
                   help="benign calibration images, disjoint from the evaluation ones "
                        "(default 200)")
    e.add_argument("--engines", default=",".join(ENGINE_NAMES),
                   help=f"comma-separated engines (default: {','.join(ENGINE_NAMES)})")
    e.add_argument("--attacks", default=",".join(ATTACKS),
                   help=f"comma-separated attacks (default: {','.join(ATTACKS)})")
    e.add_argument("--h", type=number, default=DEFAULT_H, help="Z-score threshold (default "
                   f"{DEFAULT_H}, about 10%% benign false positives)")
    e.add_argument("--k", type=positive_int, default=2,
                   help="ensemble: benign when at least k engines say benign (default 2)")
    e.add_argument("--knn-k", type=positive_int, default=100, help="K of the K-NN detectors")
    e.add_argument("--knn-scale", choices=SCALES, default="none",
                   help="standard: standardise each engine's costs before the K-NN ensemble "
                        "(not in the paper; keeps one engine's large costs from deciding)")
    e.add_argument("--cw-impl", choices=CW_IMPLS, default="foolbox",
                   help="who makes the C&W adversarial set at its settings: Foolbox's "
                        "L2CarliniWagnerAttack (default, as the committed results) or ours "
                        "(the same mean L2, faster)")
    e.add_argument("--out", help="output folder (default: runs/a2d-eval-MODEL)")
    e.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_executor_options(e)
    add_run_options(e)
    e.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    executor = executor_settings(args)
    engines = _names(args.engines, ENGINE_NAMES, "engine")
    attacks = _names(args.attacks, ATTACKS, "attack")
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    name = dataset_for_model(args.dataset, args.model, meta,
                             DEFAULT_DATASET.get(meta["dataset"], meta["dataset"]))
    data = load_dataset(name, "test", args.data_root)
    cfg = A2DEvalConfig(dataset=name, model=args.model, model_sha256=meta["sha256"], n=args.n,
                        n_cal=args.n_cal, engines=engines, attacks=attacks, h=args.h,
                        k=args.k, knn_k=args.knn_k, knn_scale=args.knn_scale,
                        seed=args.seed)
    if args.cw_impl != "foolbox" and "cw" in attacks:
        cfg.attack_settings["cw"] = {**attack_settings("cw", name), "impl": args.cw_impl}
    out = Path(args.out or f"runs/a2d-eval-{Path(args.model).stem}")
    result = run_a2d_evaluation(cfg, model, data, out, device, resume=args.resume,
                                command=args.command_line, progress=not args.no_progress,
                                executor=executor)
    print("AUROC (engine x attack):")
    for engine, row in result["auroc"].items():
        print(f"  {engine:7s} " + "  ".join(f"{a} {v:.4f}" for a, v in row.items()))
    return 0
