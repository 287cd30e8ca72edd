"""``adaptive costs``: per-image attack time and iterations of defense attacks on benign and
adversarial inputs (the A2D paper's Figures 4, 5 and 10)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptive.cli.common import (
    add_executor_options,
    add_model_options,
    add_run_options,
    attack_list,
    executor_settings,
    model_and_dataset,
)
from adaptive.core.checkpoint import write_json
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import correct_subsets
from adaptive.core.executor import make_executor
from adaptive.core.runtime import environment_info, resolve_device, seed_everything
from adaptive.core.store import RunStore
from adaptive.evaluations.adversarial_sets import examples_for_study
from adaptive.evaluations.attack_costs import COST_ENGINES, CostUnits, cost_unit

DEFAULT_ENGINES = "bim_d,bim2_d,jsma_d,dba_d,fgsm_d,cw_d"


def engine_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in COST_ENGINES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {', '.join(bad) or text!r}; "
                                         f"choose from {', '.join(COST_ENGINES)}")
    return list(dict.fromkeys(names))


def register(sub) -> None:
    p = sub.add_parser(
        "costs", help="per-image attack time and iterations, benign vs adversarial",
        description="Attack every image alone with each defense attack (the four A2D engines, "
                    "and FGSM_d and C&W_d that the paper rejects) and record its iterations and "
                    "wall time, for N correctly classified test images and adversarial examples "
                    "made from them. Resumable: each (engine, input set) is saved as it "
                    "finishes. Writes OUT/costs.json; `adaptive report OUT` draws the box plots "
                    "and the time-vs-iterations scatter.")
    add_model_options(p, 20)
    p.add_argument("--engines", type=engine_list, default=engine_list(DEFAULT_ENGINES),
                   help=f"defense attacks, comma-separated (default {DEFAULT_ENGINES})")
    p.add_argument("--compare", type=attack_list, default=attack_list("fgsm,bim,jsma,cw"),
                   help="adversarial examples to measure besides the benign images "
                        "(default fgsm,bim,jsma,cw)")
    p.add_argument("--out", default="runs/costs", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue a run in --out")
    add_executor_options(p)
    add_run_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    executor_settings(args)  # checked before anything is loaded
    device = resolve_device(args.device)
    model, meta, dataset = model_and_dataset(args, device)
    config = {"model": args.model, "model_sha256": meta["sha256"], "dataset": dataset,
              "n": args.n, "engines": args.engines, "compare": args.compare, "seed": args.seed}
    data = load_dataset(dataset, "test", args.data_root)
    (idx,) = correct_subsets(model, data, [args.n], args.seed, device)
    identity = {f"data:{data.name}:{data.split}": data.sha256(),
                f"model:{args.model}": meta["sha256"]}
    with RunStore(args.out, config, args.resume, identity=identity,
                  command=args.command_line) as store:
        store.write_config({"command": args.command_line, "environment": environment_info()})
        return _measure(store, args, model, dataset, config, data, idx, device)


def _measure(store: RunStore, args: argparse.Namespace, model, dataset: str, config: dict,
             data, idx: torch.Tensor, device) -> int:
    x, y = data.x()[idx], data.labels[idx]
    t0 = time.perf_counter()
    sets = {"benign": (x, idx)}
    for attack in args.compare:
        got = store.get(f"adv_{attack}")
        if got is None:
            seed_everything(args.seed)
            adv, keep = examples_for_study(attack, model, x, y, dataset)
            got = store.put(f"adv_{attack}", {"x": adv, "index": idx[keep]})
        if len(got["x"]) == 0:
            raise ToolkitError(f"{attack} made no adversarial example of the {args.n} images")
        sets[attack] = (got["x"], got["index"])
    keys = {(e, k): f"cost_{e}_{k}" for e in args.engines for k in sets}
    units = [u for u, key in keys.items() if store.get(key) is None]
    settings = executor_settings(args)
    shared = CostUnits(settings.model_ref(args.model, config["model_sha256"], model, device),
                       dataset, args.seed, {k: xs for k, (xs, _) in sets.items()})
    bar = tqdm(total=len(keys), initial=len(keys) - len(units), desc="attack costs",
               disable=args.no_progress)
    runner = make_executor(settings)
    try:
        for unit, got in runner.map(cost_unit, shared, units):
            store.put(keys[unit], got)
            bar.set_postfix_str(keys[unit])
            bar.update()
    finally:
        bar.close()
        runner.close()
    images = []
    for (engine, kind), key in keys.items():
        got, src = store.get(key), sets[kind][1]
        images += [{"engine": engine, "kind": kind, "index": int(i), "iterations": int(it),
                    "seconds": float(s)}
                   for i, it, s in zip(src, got["iterations"], got["seconds"])]
    summary = {}
    for engine in args.engines:
        for kind in sets:
            rows = [r for r in images if r["engine"] == engine and r["kind"] == kind]
            summary[f"{engine}:{kind}"] = {
                "n": len(rows),
                "median_iterations": float(np.median([r["iterations"] for r in rows])),
                "median_seconds": float(np.median([r["seconds"] for r in rows]))}
    result = {"command": args.command_line, **config, "summary": summary, "images": images,
              "seconds": round(time.perf_counter() - t0, 1), "environment": environment_info()}
    write_json(Path(args.out) / "costs.json", result)
    for k, v in summary.items():
        print(f"{k}: median {v['median_iterations']:g} iterations, "
              f"{v['median_seconds'] * 1000:.1f} ms (n {v['n']})")
    print(f"wrote {Path(args.out) / 'costs.json'}")
    return 0
