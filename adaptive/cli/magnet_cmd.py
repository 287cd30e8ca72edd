"""``adaptive magnet evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptive.cli.common import (
    add_run_options,
    dataset_for_model,
    nonnegative_number,
    positive_int,
    positive_number,
)
from adaptive.core.checkpoint import write_json
from adaptive.core.data import load_dataset
from adaptive.core.runtime import resolve_device
from adaptive.core.zoo import load_model
from adaptive.evaluations.magnet import evaluate_magnet
from defenses.magnet.defense import MagNet


def register(sub) -> None:
    p = sub.add_parser("magnet", help="MagNet: evaluate a defense")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    e = what.add_parser(
        "evaluate", help="benign false positives, reformer accuracy, C&W-kappa detection",
        description="Writes OUT/magnet_eval.json: benign_fpr (test images rejected by any "
                    "detector), reformer_accuracy, and detection_rate_cw_kappaK on C&W examples "
                    "made against the bare classifier.")
    e.add_argument("--magnet", default="mnist", help="bundled defense name or magnet.json path")
    e.add_argument("--model", default="mnist-cnn", help="the protected classifier")
    e.add_argument("--dataset", default="mnist",
                   help="test images (mnist, or mnist-bundled offline)")
    e.add_argument("--n", type=positive_int, help="first N test images for the benign figures "
                                                  "(default: all)")
    e.add_argument("--n-cw", type=positive_int, default=100, help="C&W examples (default 100)")
    e.add_argument("--kappa", type=nonnegative_number, default=20.0,
                   help="C&W confidence (default 20)")
    e.add_argument("--cw-steps", type=positive_int, default=200, help="C&W Adam steps per "
                   "constant (default 200)")
    e.add_argument("--cw-binary-steps", type=positive_int, default=5,
                   help="C&W binary-search steps (default 5)")
    e.add_argument("--cw-lr", type=positive_number, default=0.05,
                   help="C&W Adam step size (default 0.05)")
    e.add_argument("--out", default="runs/magnet-eval", help="output folder")
    add_run_options(e)
    e.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    classifier, meta = load_model(args.model, device)
    dataset = dataset_for_model(args.dataset, args.model, meta, "mnist")
    magnet = MagNet.load(args.magnet, classifier, device, classifier_sha256=meta["sha256"])
    data = load_dataset(dataset, "test", args.data_root)
    if args.n:
        data = data.subset(slice(0, args.n))
    cw = dict(steps=args.cw_steps, binary_search_steps=args.cw_binary_steps, lr=args.cw_lr,
              initial_const=0.1)
    result = evaluate_magnet(magnet, data.x(), data.labels, args.n_cw, args.kappa, cw,
                             args.seed, device)
    result = {"command": args.command_line, "magnet": args.magnet, "model": args.model,
              "model_sha256": meta["sha256"], "dataset": dataset, **result}
    out = Path(args.out)
    write_json(out / "magnet_eval.json", result)
    print(f"wrote {out / 'magnet_eval.json'}")
    return 0
