"""``adaptive evaluate clean``: measured clean accuracy of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adaptive.cli.common import add_data_root, add_device, dataset_for_model, positive_int
from core.checkpoint import write_json
from core.data import load_dataset
from core.errors import ToolkitError
from core.evaluation import accuracy
from core.runtime import resolve_device
from core.zoo import load_model, record_measurement


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


def run_clean(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    name = dataset_for_model(args.dataset, args.model, meta, meta["dataset"])
    data = load_dataset(name, args.split, args.data_root)
    if args.n:
        data = data.subset(slice(0, args.n))
    if data.image_shape != model.input_shape:
        raise ToolkitError(f"{name} images have shape {data.image_shape} but {args.model} "
                           f"expects {model.input_shape}")
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
