"""``adaptive clever``: CLEVER scores of benign images (and of C&W examples made from them)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.clever import PRESETS, TARGETS, clever
from adaptive.cli.common import add_run_options, dataset_for_model, number, positive_int
from core.checkpoint import write_json
from core.data import load_dataset
from core.evaluation import correct_subsets
from core.runtime import environment_info, resolve_device
from core.zoo import load_model


def register(sub) -> None:
    p = sub.add_parser(
        "clever", help="CLEVER robustness scores of benign and C&W examples",
        description="CLEVER scores (batched; reverse-Weibull fits with diagnostics) of N "
                    "correctly classified test images and, with --compare cw, of C&W kappa=0 "
                    "examples made from them. Writes OUT/clever.json.")
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--dataset", help="default: mnist-bundled for MNIST models")
    p.add_argument("--n", type=positive_int, default=10, help="images (default 10)")
    p.add_argument("--norm", default="2", choices=("2", "inf"))
    p.add_argument("--target", default="untargeted", choices=TARGETS)
    p.add_argument("--radius", type=number, help="sampling radius R (default 5 for L2, 0.3 "
                                                 "for L-inf)")
    p.add_argument("--preset", default="cpu-fast", choices=sorted(PRESETS),
                   help="batches x samples: original = 500 x 1024 (the paper's), cpu-fast = "
                        "50 x 64 (default)")
    p.add_argument("--batches", type=positive_int, help="override the preset's batch count")
    p.add_argument("--samples", type=positive_int, help="override the preset's samples per batch")
    p.add_argument("--compare", choices=("none", "cw"), default="cw",
                   help="also score C&W kappa=0 examples of the same images (default cw)")
    p.add_argument("--out", default="runs/clever", help="output folder")
    add_run_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, meta = load_model(args.model, device)
    default = "mnist-bundled" if meta["dataset"] == "mnist" else meta["dataset"]
    data = load_dataset(dataset_for_model(args.dataset, args.model, meta, default), "test",
                        args.data_root)
    (idx,) = correct_subsets(model, data, [args.n], args.seed, device)
    x, y = data.x()[idx], data.labels[idx]
    norm = "l2" if args.norm == "2" else "linf"
    radius = args.radius or (5.0 if norm == "l2" else 0.3)
    sizes = dict(PRESETS[args.preset])
    if args.batches:
        sizes["n_batches"] = args.batches
    if args.samples:
        sizes["n_samples"] = args.samples
    settings = dict(norm=norm, target=args.target, radius=radius, seed=args.seed, **sizes)
    t0 = time.perf_counter()
    sets = {"benign": (x, idx)}
    if args.compare == "cw":
        r = CarliniWagnerL2(kappa=0, steps=200, binary_search_steps=5, lr=0.05,
                            initial_const=0.1).run(model, x.to(device), y)
        sets["cw"] = (r.adversarial[r.success], idx[r.success])
    images, medians = [], {}
    for kind, (xs, src) in sets.items():
        scores = clever(model, xs.to(device), labels=None, progress=not args.no_progress,
                        **settings)
        medians[kind] = float(np.median([s.score for s in scores])) if scores else None
        images += [{"index": int(i), "kind": kind, **asdict(s)} for i, s in zip(src, scores)]
    summary = {f"median_{k}": v for k, v in medians.items()}
    if medians.get("cw"):
        summary["ratio_benign_to_cw"] = medians["benign"] / medians["cw"]
    result = {"command": args.command_line, "model": args.model, "model_sha256": meta["sha256"],
              "settings": settings, "summary": summary, "images": images,
              "seconds": round(time.perf_counter() - t0, 1), "environment": environment_info()}
    out = Path(args.out)
    write_json(out / "clever.json", result)
    print(summary)
    print(f"wrote {out / 'clever.json'}")
    return 0
