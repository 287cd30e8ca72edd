"""A plug-in defense that changes the classifier (``blur``: a 3x3 blur,
benchmarks/blur_defense.py; ``rounded``: MagNet's reformer behind input rounding, whose
gradients are masked, benchmarks/rounded_defense.py) stress-tested as a user would, ``adaptive
sweep --defense-module NAME_defense:make_defense --attack auto``, beside torchattacks'
AutoAttack (standard) on the same images of the same defended classifier: ASR, seconds and
seconds per image, in one run.

    python benchmarks/plugin_vs_autoattack.py [--defense blur|rounded] [--n 10] [--eps 0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import importlib  # noqa: E402

from adaptive.cli.main import main  # noqa: E402
from adaptive.core.data import load_dataset  # noqa: E402
from adaptive.core.threat import ThreatModel  # noqa: E402
from adaptive.core.zoo import load_model  # noqa: E402
from adaptive.sweep.records import read_records  # noqa: E402


def main_(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--eps", default="0.2")
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--defense", choices=("blur", "rounded"), default="blur")
    args = p.parse_args(argv)
    module = f"{args.defense}_defense"
    make_defense = importlib.import_module(module).make_defense
    torch.set_num_threads(2)
    out = Path(tempfile.mkdtemp()) / "sweep"
    t = time.perf_counter()
    rc = main(["sweep", "--model", args.model, "--defense-module", f"{module}:make_defense",
               "--defenses", "none", "--attack", "auto", "--norm", "linf", "--eps", args.eps,
               "--kappa", "0", "--n", str(args.n), "--no-progress", "--out", str(out)])
    ours_s = time.perf_counter() - t
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    row = next(r for r in summary["rows"] if r["defense"] == args.defense)
    records = read_records(out / "records.jsonl")
    index = sorted({r["index"] for r in records})
    # our passes: every member's gradient steps and queries on every image
    ours_passes = sum(sum(r["auto"]["steps"].values()) for r in records)
    import torchattacks

    model, meta = load_model(args.model)
    data = load_dataset(summary["config"]["dataset"])
    x, y = data.x()[index], data.labels[index]
    defended = make_defense(model, None, "cpu").classifier
    eps = ThreatModel.parse(f"linf:{args.eps}").eps  # "8/255" as the sweep reads it
    seen = [0]  # theirs: the images that went through the defended classifier

    def count(module, inputs):
        seen[0] += len(inputs[0])

    hook = defended.register_forward_pre_hook(count)
    t = time.perf_counter()
    adv = torchattacks.AutoAttack(defended, norm="Linf", eps=eps, version="standard",
                                  n_classes=10, seed=0)(x, y)
    theirs_s = time.perf_counter() - t
    hook.remove()
    with torch.no_grad():
        fooled = (defended(adv).argmax(1) != y) & ((adv - x).abs().flatten(1).amax(1)
                                                  <= eps + 1e-6)
    n = len(index)
    print(f"{args.model} behind {args.defense}, L-inf {args.eps}, {n} images "
          f"(correct on the bare model)")
    print(f"ours  auto (adaptive sweep --defense-module): ASR {row['attack_success_rate']:.2f}"
          f" in {ours_s:.0f} s, {ours_s / n:.1f} s/image (the whole command, figures "
          f"included); {ours_passes / n:.0f} passes/image (gradient steps and queries); "
          f"broken by {row.get('broken_by')}")
    print(f"torchattacks AutoAttack standard:               ASR {float(fooled.float().mean()):.2f}"
          f" in {theirs_s:.0f} s, {theirs_s / n:.1f} s/image; {seen[0] / n:.0f} passes/image "
          "(forward passes)")


if __name__ == "__main__":
    main_()
