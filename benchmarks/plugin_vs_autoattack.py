"""A plug-in defense that changes the classifier (a 3x3 blur, benchmarks/blur_defense.py)
stress-tested as a user would, ``adaptive sweep --defense-module blur_defense:make_defense
--attack auto``, beside torchattacks' AutoAttack (standard) on the same images of the same
blurred classifier: ASR and seconds, in one run.

    python benchmarks/plugin_vs_autoattack.py [--n 10] [--eps 0.2] [--model mnist-cnn]
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

from blur_defense import make_defense  # noqa: E402

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
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    out = Path(tempfile.mkdtemp()) / "sweep"
    t = time.perf_counter()
    rc = main(["sweep", "--model", args.model, "--defense-module", "blur_defense:make_defense",
               "--defenses", "none", "--attack", "auto", "--norm", "linf", "--eps", args.eps,
               "--kappa", "0", "--n", str(args.n), "--no-progress", "--out", str(out)])
    ours_s = time.perf_counter() - t
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    row = next(r for r in summary["rows"] if r["defense"] == "blur")
    index = sorted({r["index"] for r in read_records(out / "records.jsonl")})
    import torchattacks

    model, meta = load_model(args.model)
    data = load_dataset(summary["config"]["dataset"])
    x, y = data.x()[index], data.labels[index]
    blurred = make_defense(model, None, "cpu").classifier
    eps = ThreatModel.parse(f"linf:{args.eps}").eps  # "8/255" as the sweep reads it
    t = time.perf_counter()
    adv = torchattacks.AutoAttack(blurred, norm="Linf", eps=eps, version="standard",
                                  n_classes=10, seed=0)(x, y)
    theirs_s = time.perf_counter() - t
    with torch.no_grad():
        fooled = (blurred(adv).argmax(1) != y) & ((adv - x).abs().flatten(1).amax(1)
                                                  <= eps + 1e-6)
    print(f"{args.model} behind a 3x3 blur, L-inf {args.eps}, {len(index)} images "
          f"(correct on the bare model)")
    print(f"ours  auto (adaptive sweep --defense-module): ASR {row['attack_success_rate']:.2f}"
          f" in {ours_s:.0f} s (the whole command, BIM_d costs and figures included); "
          f"broken by {row.get('broken_by')}")
    print(f"torchattacks AutoAttack standard:               ASR {float(fooled.float().mean()):.2f}"
          f" in {theirs_s:.0f} s")


if __name__ == "__main__":
    main_()
