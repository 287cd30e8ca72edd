"""``adaptive evaluate clean|robust``: measured clean and PGD robust accuracy of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adaptive.cli.common import (
    add_data_root,
    add_device,
    add_run_options,
    dataset_for_model,
    positive_int,
    positive_number,
)
from adaptive.core.checkpoint import write_json
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import accuracy, robust_correct
from adaptive.core.runtime import resolve_device
from adaptive.core.zoo import load_model, record_measurement


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="measure models")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = what.add_parser("clean", help="clean accuracy of a model on a data set")
    c.add_argument("--model", default="mnist-cnn", help="zoo name or checkpoint path")
    c.add_argument("--dataset", help="data set (default: the model's own, test split)")
    c.add_argument("--split", default="test", choices=("train", "test"))
    c.add_argument("--n", type=positive_int, help="first N images only")
    c.add_argument("--out", help="write the result as JSON to this file")
    c.add_argument("--record", action="store_true",
                   help="store the measured accuracy in the zoo entry's metadata (developers)")
    add_device(c)
    add_data_root(c)
    c.set_defaults(run=run_clean)

    r = what.add_parser(
        "robust", help="PGD robust accuracy (random restarts), cross-checked with Foolbox",
        description="Robust accuracy under untargeted PGD on the cross-entropy with random "
                    "starts: an image counts as robust when it is classified correctly and no "
                    "restart finds an adversarial example within --eps. Scales are in the "
                    "[0, 1] pixel range (--eps 8/255). Foolbox's PGD attacks the first "
                    "--foolbox-n images too, and both robust accuracies on that subset are "
                    "reported side by side.")
    r.add_argument("--model", required=True, help="zoo name or checkpoint path")
    r.add_argument("--dataset", help="data set (default: the model's own, test split)")
    r.add_argument("--split", default="test", choices=("train", "test"))
    r.add_argument("--n", type=positive_int, help="first N images only (default: all)")
    r.add_argument("--norm", choices=("linf", "l2"), default="linf")
    r.add_argument("--eps", type=positive_number, required=True,
                   help="budget, e.g. 8/255 or 0.3")
    r.add_argument("--steps", type=positive_int, default=20, help="PGD steps (default 20)")
    r.add_argument("--step-size", type=positive_number,
                   help="default eps/4 (2/255 at 8/255)")
    r.add_argument("--restarts", type=positive_int, default=1,
                   help="random restarts per image (default 1)")
    r.add_argument("--foolbox-n", type=int, default=500,
                   help="images also attacked by Foolbox's PGD for the cross-check (0: skip; "
                        "default 500)")
    r.add_argument("--batch-size", type=positive_int, default=250)
    r.add_argument("--out", help="write the result as JSON to this file")
    r.add_argument("--record", action="store_true",
                   help="store the robust accuracy in the zoo entry's metadata (developers)")
    add_run_options(r)
    r.set_defaults(run=run_robust)


def _model_and_data(args: argparse.Namespace):
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    name = dataset_for_model(args.dataset, args.model, meta, meta["dataset"])
    data = load_dataset(name, args.split, args.data_root)
    if args.n:
        data = data.subset(slice(0, args.n))
    if data.image_shape != model.input_shape:
        raise ToolkitError(f"{name} images have shape {data.image_shape} but {args.model} "
                           f"expects {model.input_shape}")
    return device, model, meta, name, data


def run_clean(args: argparse.Namespace) -> int:
    device, model, meta, name, data = _model_and_data(args)
    acc = accuracy(model, data.x(), data.labels, device=device)
    result = {"model": args.model, "model_sha256": meta["sha256"], "dataset": name,
              "split": args.split, "n": len(data), "accuracy": acc, "command": args.command_line}
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(Path(args.out), result)
    if args.record:
        record_measurement(args.model, "accuracy", {
            "clean": acc, "split": f"{name}:{args.split}", "n": len(data),
            "command": result["command"]})
    return 0


def threat_text(norm: str, eps: float) -> str:
    """'linf eps=8/255' for budgets that are whole 255ths, else 'l2 eps=0.5'."""
    if norm == "linf" and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"linf eps={round(eps * 255)}/255"
    return f"{norm} eps={eps:g}"


def run_robust(args: argparse.Namespace) -> int:
    import time

    from adaptive.core.attacks.lp import check_budget

    check_budget(args.eps, args.norm)
    device, model, meta, name, data = _model_and_data(args)
    step_size = args.step_size if args.step_size is not None else args.eps / 4
    x, y = data.x(), data.labels
    t0 = time.perf_counter()
    clean = accuracy(model, x, y, device=device)
    ok = robust_correct(model, x, y, args.eps, args.norm, args.steps, step_size,
                        args.restarts, args.batch_size, args.seed, device,
                        progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    threat = threat_text(args.norm, args.eps)
    result = {"model": args.model, "model_sha256": meta["sha256"], "dataset": name,
              "split": args.split, "n": len(data), "threat": threat, "norm": args.norm,
              "eps": args.eps,
              "attack": {"name": "pgd", "loss": "cross-entropy", "steps": args.steps,
                         "step_size": step_size, "restarts": args.restarts,
                         "random_start": True, "seed": args.seed},
              "clean_accuracy": clean, "robust_accuracy": float(ok.float().mean()),
              "seconds": round(seconds, 1), "command": args.command_line}
    if args.foolbox_n > 0:
        from adaptive.evaluations.foolbox_check import foolbox_pgd_robust

        k = min(args.foolbox_n, len(data))
        fb_ok = foolbox_pgd_robust(model, x[:k], y[:k], args.eps, args.norm, args.steps,
                                   step_size, args.batch_size, device)
        result["foolbox_check"] = {
            "n": k, "attack": f"foolbox {'Linf' if args.norm == 'linf' else 'L2'}PGD, "
                              f"{args.steps} steps of {step_size:.6g}, random start",
            "foolbox_robust_accuracy": float(fb_ok.float().mean()),
            "ours_robust_accuracy": float(ok[:k].float().mean()),
            "robust_for_ours_not_foolbox": int((ok[:k] & ~fb_ok).sum()),
            "robust_for_foolbox_not_ours": int((~ok[:k] & fb_ok).sum())}
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(Path(args.out), result)
    if args.record:
        record_measurement(args.model, "robust_accuracy", {
            "accuracy": result["robust_accuracy"], "threat": threat,
            "attack": f"PGD-{args.steps} x {args.restarts} restart(s)",
            "split": f"{name}:{args.split}", "n": len(data), "command": args.command_line})
    return 0
