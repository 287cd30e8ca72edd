"""Our ``auto`` beside torchattacks' AutoAttack on every defense of the suite (defenses.suite),
on the same images: AutoAttack ``standard`` on each defense's forward as deployed, and
``rand`` (APGD-CE and APGD-DLR with EOT over 20 draws) on the defenses our probes find random.
Every example of theirs is judged as ours are: a deterministic defense once, a random one over
the run's 20 fresh draws (fooling a majority). Ours are read from the suite's ``auto`` run
(``python scripts/defense_suite.py --n 50``), restricted to the same images.

    python benchmarks/suite_vs_autoattack.py [--runs runs/defenses-suite/cifar-cnn-n50]
        [--eps 4/255] [--n 20] [--defenses blur,knn] [--table-from OUTPUT...]

One line per defense as it finishes (so an interrupted run keeps what it measured), then the
table. Where AutoAttack cannot run at all (a forward with no autograd graph: its APGD raises),
the error is kept and its gradient-free member, Square (5,000 queries), runs alone. Seconds:
theirs per defense; ours is one run for all defenses at once (its wall time per image over the
whole suite, in RUNS/timings.jsonl).
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import torch

from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.defense import Defense
from adaptive.defense.probes import probe_all
from adaptive.sweep.records import read_records
from defenses.suite import make_suite


def _fooled(defense, adv, x, y, eps: float, draws: int) -> torch.Tensor:
    """Per image, whether the example or the image itself (a defense that misclassifies a
    benign image has no robustness there, as in AutoAttack's robust accuracy, and as our
    sweeps count it) fools ``defense`` within the bound: once, or over ``draws`` fresh draws
    (a majority) where ``draws`` > 1."""
    inside = (adv - x).abs().flatten(1).amax(1) <= eps + 1e-6
    out = torch.zeros(len(x), dtype=torch.bool)
    for point, ok in ((adv, inside), (x, torch.ones_like(inside))):
        votes = torch.zeros(len(x))
        with torch.no_grad():
            for _ in range(draws):
                votes += (defense.classifier(point).argmax(1) != y).float()
        out |= ok & (votes / draws > 0.5)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/defenses-suite/cifar-cnn-n50")
    p.add_argument("--eps", default="4/255")
    p.add_argument("--n", type=int, default=20, help="the first N images of the suite's run")
    p.add_argument("--defenses", default="", help="comma-separated (default: every one)")
    p.add_argument("--table-from", nargs="+", metavar="LOG",
                   help="only print the table of the JSON lines in these outputs of earlier "
                        "runs (one run interrupted, another for the rest)")
    args = p.parse_args(argv)
    import torchattacks

    runs = Path(args.runs)
    folder = runs / f"eps{args.eps.replace('/', '-')}-auto"
    config = json.loads((folder / "config.json").read_text())["config"]
    eps, draws = float(Fraction(args.eps)), int(config["draws"])
    records = read_records(folder / "records.jsonl")[:args.n]
    index = [r["index"] for r in records]
    timings = {}
    if (runs / "timings.jsonl").is_file():
        timings = {t["step"]: t["seconds"] for t in map(json.loads, (
            runs / "timings.jsonl").read_text().splitlines())}
    ours_per_image = timings.get(folder.name, float("nan")) / int(config["n"])
    torch.manual_seed(0)
    model, _ = load_model(config["model"])
    data = load_dataset(config["dataset"])
    x, y = data.x()[index], data.labels[index]
    # the bare classifier first: the baseline both evaluations should break alike
    suite = {"none": Defense("none", model), **make_suite(model, config["dataset"], "cpu")}
    probes = probe_all(suite, x, y, log=lambda s: None)
    if args.table_from:
        rows = [json.loads(line) for f in args.table_from for line in open(f)
                if line.startswith("{")]
        print_table(rows, probes, len(x))
        return
    names = [n for n in (args.defenses.split(",") if args.defenses else suite) if n]
    print(f"# {config['model']}, L-inf {args.eps}, the first {len(index)} images of {folder}; "
          f"ours: auto, {ours_per_image:.1f} s/image for all {len(suite)} (the bare model "
          "included) at once")
    rows = []
    for name in names:
        defense, random = suite[name], probes[name].random
        ours = sum(r["defenses"][name]["success"] for r in records) / len(records)
        row = {"defense": name, "random": random, "ours": ours}
        for version in (("standard", "rand") if random else ("standard",)):
            passes = [0]
            hook = defense.classifier.register_forward_pre_hook(
                lambda m, inputs: passes.__setitem__(0, passes[0] + len(inputs[0])))
            t = time.perf_counter()
            try:
                adv = torchattacks.AutoAttack(defense.classifier, norm="Linf", eps=eps,
                                              version=version, n_classes=10, seed=0)(x, y)
            except RuntimeError as e:
                # (a forward with no autograd graph at all: AutoAttack's APGD cannot start;
                # what a user is left with is its gradient-free member, Square, alone)
                row[f"{version}_error"] = str(e).splitlines()[0]
                adv = torchattacks.Square(defense.classifier, norm="Linf", eps=eps,
                                          n_queries=5000, seed=0)(x, y)
                version = f"{version}_square_only"
            seconds = time.perf_counter() - t
            hook.remove()
            fooled = _fooled(defense, adv, x, y, eps, draws if random else 1)
            row[version] = {"asr": float(fooled.float().mean()), "seconds": seconds,
                            "passes_per_image": passes[0] / len(x),
                            "broken_by_them_not_us": [
                                r["index"] for f, r in zip(fooled, records)
                                if bool(f) and not r["defenses"][name]["success"]]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, {name: probes[name] for name in names}, len(x))


def print_table(rows: list[dict], probes: dict, n: int) -> None:
    """The rows (one JSON line each) as a Markdown table; ``n`` images per defense."""
    print("\n| defense | probed | ours (auto) | AutoAttack standard | AutoAttack rand | "
          "theirs, s/image | broken by them, not by us |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        runs_of = [v for v in r if isinstance(r[v], dict)]
        sec = "; ".join(f"{r[v]['seconds'] / n:.1f}" for v in runs_of)
        missed = sorted({i for v in runs_of for i in r[v]["broken_by_them_not_us"]})

        def cell(version):
            if version in r:
                return f"{r[version]['asr']:.0%}"
            if f"{version}_square_only" in r:
                return f"crashed; Square alone {r[f'{version}_square_only']['asr']:.0%}"
            return "–"

        kind = "random" if r["random"] else probes[r["defense"]].gradient
        which = f" ({', '.join(map(str, missed))})" if missed else ""
        print(f"| `{r['defense']}` | {kind} | {r['ours']:.0%} | {cell('standard')} | "
              f"{cell('rand')} | {sec} | {len(missed)}{which} |")

if __name__ == "__main__":
    main()
