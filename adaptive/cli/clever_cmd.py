"""``adaptive clever``: CLEVER scores of benign images and of adversarial examples made from them
(the A2D paper's Table 1), optionally with each image's A2D attack cost and time (Figures 2, 10)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from adaptive.cli.common import (
    add_executor_options,
    add_model_options,
    add_run_options,
    attack_list,
    executor_settings,
    model_and_dataset,
    positive_int,
    positive_number,
)
from adaptive.core.checkpoint import write_json
from adaptive.core.data import load_dataset
from adaptive.core.evaluation import correct_subsets
from adaptive.core.executor import make_executor
from adaptive.core.runtime import environment_info, resolve_device
from adaptive.evaluations.adversarial_sets import ATTACKS
from adaptive.evaluations.attack_costs import COST_ENGINES
from adaptive.evaluations.clever import PRESETS, TARGETS
from adaptive.evaluations.clever_study import CleverStudy, adversarial_unit, score_unit


def register(sub) -> None:
    p = sub.add_parser(
        "clever", help="CLEVER robustness scores of benign and adversarial examples",
        description="CLEVER scores (batched; reverse-Weibull fits with diagnostics) of N "
                    "correctly classified test images and of adversarial examples made from "
                    "them (--compare), for one target kind or all four (--target all: the A2D "
                    "paper's Table 1, at the cost of the untargeted score alone). With --cost, "
                    "also the per-image attack cost and time of an A2D engine (Figures 2 and "
                    "10). Writes OUT/clever.json.")
    add_model_options(p, 10)
    p.add_argument("--norm", default="2", choices=("2", "inf"))
    p.add_argument("--target", default="untargeted", choices=TARGETS + ("all",))
    p.add_argument("--radius", type=positive_number,
                   help="sampling radius R (default 5 for L2, 0.3 "
                                                 "for L-inf)")
    p.add_argument("--preset", default="cpu-fast", choices=sorted(PRESETS),
                   help="batches x samples: original = 500 x 1024 (the paper's), cpu-fast = "
                        "50 x 64 (default)")
    p.add_argument("--batches", type=positive_int, help="override the preset's batch count")
    p.add_argument("--samples", type=positive_int, help="override the preset's samples per batch")
    p.add_argument("--compare", type=attack_list, default=["cw"],
                   help="adversarial examples of the same images to score too, comma-separated "
                        f"from {', '.join(ATTACKS)}, or none (default cw: C&W kappa=0)")
    p.add_argument("--cost", choices=COST_ENGINES,
                   help="also attack every image (benign and adversarial) one at a time with "
                        "this defense attack and record its iterations and seconds")
    p.add_argument("--out", default="runs/clever", help="output folder")
    add_executor_options(p)
    add_run_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings_ex = executor_settings(args)  # checked before anything is loaded
    device = resolve_device(args.device)
    model, meta, dataset = model_and_dataset(args, device)
    data = load_dataset(dataset, "test", args.data_root)
    (idx,) = correct_subsets(model, data, [args.n], args.seed, device)
    x, y = data.x()[idx], data.labels[idx]
    norm = "l2" if args.norm == "2" else "linf"
    radius = args.radius or (5.0 if norm == "l2" else 0.3)
    sizes = dict(PRESETS[args.preset])
    if args.batches:
        sizes["n_batches"] = args.batches
    if args.samples:
        sizes["n_samples"] = args.samples
    targets = TARGETS if args.target == "all" else (args.target,)
    settings = dict(norm=norm, target=args.target, radius=radius, seed=args.seed, **sizes)
    t0 = time.perf_counter()
    study = CleverStudy(settings_ex.model_ref(args.model, meta["sha256"], model, device), x, y,
                        dataset, args.seed, {k: v for k, v in settings.items() if k != "target"},
                        targets, args.cost,
                        progress=not args.no_progress and settings_ex.kind == "local")
    runner = make_executor(settings_ex)
    sets = {"benign": (x, torch.arange(len(x)))}  # kind -> (images, their position in x)
    attempted = {}
    try:
        made = dict(runner.map(adversarial_unit, study, args.compare))
        for attack in args.compare:
            sets[attack] = made[attack]
            attempted[attack] = len(x)
            print(f"{attack}: {len(made[attack][0])}/{len(x)} adversarial examples")
        study.sets = {kind: xs for kind, (xs, _) in sets.items()}
        scored = dict(runner.map(score_unit, study, list(sets)))
    finally:
        runner.close()
    images = []
    summary: dict = {"targets": list(targets), "attempted": attempted}
    for kind, (xs, pos) in sets.items():
        scores, costs = scored[kind]
        l2 = (xs - x[pos]).flatten(1).norm(dim=1)
        for i, s in enumerate(idx[pos]):
            entry = {"index": int(s), "kind": kind, "l2": float(l2[i]),
                     **asdict(scores[targets[0]][i])}
            if len(targets) > 1:
                entry["targets"] = {t: asdict(scores[t][i]) for t in targets}
            if costs[i] is not None:
                entry["cost"] = {"engine": args.cost, **costs[i]}
            images.append(entry)
        for t in targets:
            values = [sc.score for sc in scores[t]]
            key = f"median_{kind}" if t == targets[0] else f"median_{kind}_{t}"
            summary[key] = float(np.median(values)) if values else None
    if summary.get("median_cw"):
        summary["ratio_benign_to_cw"] = summary["median_benign"] / summary["median_cw"]
    result = {"command": args.command_line, "model": args.model, "model_sha256": meta["sha256"],
              "dataset": dataset, "settings": settings, "cost_engine": args.cost,
              "summary": summary, "images": images,
              "seconds": round(time.perf_counter() - t0, 1), "environment": environment_info()}
    out = Path(args.out)
    write_json(out / "clever.json", result)
    print({k: v for k, v in summary.items() if k.startswith(("median", "ratio"))})
    print(f"wrote {out / 'clever.json'}")
    return 0
