"""The suite of defenses of known fate (defenses.suite) attacked three ways, into
reports/defenses-suite/ (issue [3/5]).

    python scripts/defense_suite.py [--model cifar-cnn] [--eps 4/255,8/255] [--n 50]
        [--part all|wrappers|trained]
    python scripts/defense_suite.py --model mnist-cnn --eps 0.1,0.2 --n 50 --table-only

Per L-inf bound and per part of the suite (the wrappers of the classifier,
``defenses.suite:make_suite``, and the networks trained by our commands,
``defenses.suite:make_trained_suite``, where bundled for the data set: run folders
``epsE-trained-*``), four ``adaptive sweep --kappa 0`` runs on the same images: three of the
part's factory (no surrogates), every defense of the part judged in each, and one of its BPDA
twins (``make_bpda_twins``, ``make_trained_twins``; skipped where the part has none):

- ``naive``: ``--attack apgd --random-eot 1 --draws 1 --no-bare-gradient
  --no-transfer-check``, the evaluation a defense's author would run: APGD on the defense's
  forward (where it has a gradient; else the bare model's examples), one gradient sample per
  step, one draw per verdict;
- ``auto``: ``--attack auto`` with no per-defense option, what the toolkit finds by itself
  (probes, EOT and 20 draws for random forwards; for hidden ones the bare classifier's
  gradient through the forward, BPDA, and the gradient-free members);
- ``eot``: ``--attack apgd --random-eot 50``, the strongest attack we can write for the random
  defenses (five times auto's gradient samples);
- ``bpda``: ``--defense-module defenses.suite:make_bpda_twins --attack apgd``, APGD through the
  declared surrogate of each defense that hides its gradient.

The strongest column is per image the union of every run and, for a defense ``D`` with a
``D-bpda`` twin (the same forward with a declared surrogate), of the twin's verdicts: every
example is judged by the real forward, so one that fools the twin fools ``D``. A finished run
is skipped and an interrupted one resumed; wall times go to RUNS/timings.jsonl. Per part, the
table (OUT/table-MODEL.md, OUT/suite-MODEL.csv; ``-trained`` added for the trained networks)
and the figure (OUT/asr_by_bound-MODEL.png) are made from its runs' summary.json and
records.jsonl alone (``--table-only`` remakes them), beside the self-study
course's published break at 4/255 for the kinds it has (``PUBLISHED_4_255``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from fractions import Fraction
from pathlib import Path

from steps import run_sweeps  # (scripts/ is the script's folder)

# the two parts of the suite, each run apart: (its factory, its twins' factory), by the prefix
# of its run folders: the wrappers of the classifier and the networks trained by our commands
PARTS = {
    "": ("defenses.suite:make_suite", "defenses.suite:make_bpda_twins"),
    "trained-": ("defenses.suite:make_trained_suite", "defenses.suite:make_trained_twins"),
}
SUITE, TWINS = "{suite}", "{twins}"  # (placeholders in RUNS, filled per part)
RUNS = {
    "naive": [SUITE, "--attack", "apgd", "--random-eot", "1", "--draws", "1",
              "--no-bare-gradient", "--no-transfer-check"],
    "auto": [SUITE, "--attack", "auto"],
    "eot": [SUITE, "--attack", "apgd", "--random-eot", "50"],
    "bpda": [TWINS, "--attack", "apgd"],
}
# The self-study course's best attack on its own version of a defense: ASR on the first 100
# CIFAR-10 test images at L-inf 4/255 (each defense's README, "Objectives"; other networks and
# details than ours, so a yardstick, not a target). Keyed by our suite's name for the kind.
PUBLISHED_4_255 = {"blur": 0.95, "random-shift": 0.71, "random-neurons": 0.80, "knn": 0.62,
                   "label-smoothing": 0.98, "jump": 0.92, "thermometer": 0.97}
# The claim each defense makes and how it falls (the self-study course's and Athalye et al.'s
# descriptions; what our runs show is in the table's numbers, not here).
CLAIMS = {
    "blur": ("a Gaussian blur removes the adversarial noise", "white box through the blur"),
    "temperature": ("logits x 1000 saturate the softmax: no gradient of the cross entropy",
                    "the margin and DLR losses ignore the scale"),
    "discretised": ("rounding to a few levels erases small changes and the gradient",
                    "transfer, gradient-free search, BPDA through the rounding"),
    "random-shift": ("a random shift (and flip) per call: no fixed target",
                     "EOT over the shifts, judged over many draws"),
    "random-neurons": ("random penultimate dropout per call: no fixed target",
                       "EOT over the dropped neurons"),
    "majority-vote": ("three networks must be fooled at once; the vote has no gradient",
                      "transfer, BPDA through a soft vote"),
    "knn": ("a k-NN vote in feature space has no gradient",
            "transfer, BPDA through a soft k-NN"),
    "defense-gan": ("the classifier sees only the generator's closest image to its input, "
                    "found by an inner optimisation: no gradient", "BPDA through the "
                    "projection (identity backward)"),
    "ensemble-adversarial": ("trained on examples transferred from static models, it resists "
                             "transfer", "white box through its own gradient"),
    "label-smoothing": ("trained towards smoothed labels: calibrated, a flatter loss",
                        "white box through its own gradient"),
    "jump": ("every activation jumps by 5 at zero: no smooth path between classes",
             "white box; BPDA through smoothed steps"),
    "thermometer": ("reads each pixel's thermometer code: no gradient",
                    "transfer, gradient-free search, BPDA through the code's ramp"),
}


def _eps(text: str) -> float:
    return float(Fraction(text))


def _tag(eps: str) -> str:
    return eps.replace("/", "-")


def _parts_with_defenses(model: str) -> dict[str, tuple[bool, bool]]:
    """Per part, whether its factory and its twins' factory give any defense for ``model``'s
    data set (the trained networks are bundled for some data sets only)."""
    from adaptive.core.checkpoint import read_metadata
    from adaptive.core.zoo import entry_path, zoo_names
    from defenses.suite import TRAINED

    family = read_metadata(entry_path(model))["dataset"] if model in zoo_names() else None
    bundled = {kind for kind, by in TRAINED.items() if by.get(family) in zoo_names()}
    return {"": (True, True),
            "trained-": (bool(bundled), bool(bundled & {"jump", "thermometer"}))}


def steps(model: str, eps: list[str], n: int,
          parts: tuple[str, ...] = tuple(PARTS)) -> list[tuple[str, list[str]]]:
    """(run folder name, adaptive arguments) of every run of ``parts``."""
    base = ["sweep", "--model", model, "--kappa", "0", "--n", str(n),
            "--n-cal", str(max(100, n)), "--norm", "linf"]
    present = _parts_with_defenses(model)
    out = []
    for e in eps:
        for part, (suite, twins) in PARTS.items():
            if part not in parts:
                continue
            for k, (factory, *extra) in RUNS.items():
                if not present[part][factory == TWINS]:
                    continue  # (no defense of this part for the model's data set)
                out.append((f"eps{_tag(e)}-{part}{k}",
                            base + ["--eps", f"{_eps(e):.8g}", "--defense-module",
                                    factory.format(suite=suite, twins=twins), *extra]))
    return out


def _broken(folder: Path, defense: str) -> dict[int, bool]:
    """Per attacked image (its index), whether ``defense``'s verdict was a success."""
    from adaptive.sweep.records import read_records

    if not (folder / "records.jsonl").is_file():
        return {}
    return {r["index"]: bool(r["defenses"][defense]["success"])
            for r in read_records(folder / "records.jsonl") if defense in r["defenses"]}


def _load(folder: Path) -> dict | None:
    f = folder / "summary.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _stem(model: str, part: str) -> str:
    """The report files' stem of a part: ``cifar-cnn`` (wrappers), ``cifar-cnn-trained``."""
    return model + (f"-{part.rstrip('-')}" if part else "")


def table(model: str, eps: list[str], runs: Path, out: Path, part: str = "") -> list[dict]:
    """One part's table, CSV and figure from its runs (rows for the runs that exist)."""
    timings: dict[str, float] = {}
    if (runs / "timings.jsonl").is_file():
        for line in (runs / "timings.jsonl").read_text().splitlines():
            t = json.loads(line)
            timings[t["step"]] = t["seconds"]
    rows = []
    for e in eps:
        found = {k: _load(runs / f"eps{_tag(e)}-{part}{k}") for k in RUNS}
        auto = found["auto"]
        if auto is None:
            continue
        flags = {}
        for f in auto["diagnostics"].get("red_flags", []):
            flags.setdefault(f["defense"], []).append(f["flag"])
        for name in [r["defense"] for r in auto["rows"]]:
            if part and name == "none":
                continue  # (the bare classifier's row is in the first part's table)
            row = {"model": model, "eps": e, "defense": name}
            for k, summary in found.items():
                for r in (summary or {}).get("rows", []):
                    if r["defense"] in (name, f"{name}-bpda"):
                        row[f"{k}_asr"] = r["attack_success_rate"]
            a = next(r for r in auto["rows"] if r["defense"] == name)
            row["auto_broken_by"] = ", ".join(f"{m} {c}" for m, c in
                                              sorted(a["broken_by"].items(),
                                                     key=lambda kv: -kv[1]))
            row["red_flags"] = ", ".join(flags.get(name, []))
            union: dict[int, bool] = {}
            for k in RUNS:
                for d in (name, f"{name}-bpda"):
                    for i, ok in _broken(runs / f"eps{_tag(e)}-{part}{k}", d).items():
                        union[i] = union.get(i, False) or ok
            row["strongest_asr"] = sum(union.values()) / len(union) if union else None
            row["images"] = len(union)
            row["seconds_auto"] = timings.get(f"eps{_tag(e)}-{part}auto")
            if Fraction(e) == Fraction(4, 255):
                row["published_asr"] = PUBLISHED_4_255.get(name)
            rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["model", "eps", "defense", "images", "naive_asr", "auto_asr", "eot_asr",
              "bpda_asr", "strongest_asr", "published_asr", "auto_broken_by", "red_flags",
              "seconds_auto"]
    stem = _stem(model, part)
    with open(out / f"suite-{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = ["| L∞ bound | defense | its claim | how it falls | naive ASR | auto ASR | "
             "strongest ASR | self-study's break | auto broke it with | red flags auto raised |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        claim, falls = CLAIMS.get(r["defense"], ("", ""))
        lines.append(f"| {r['eps']} | `{r['defense']}` | {claim} | {falls} | "
                     f"{_pct(r.get('naive_asr'))} | {_pct(r.get('auto_asr'))} | "
                     f"{_pct(r.get('strongest_asr'))} | {_pct(r.get('published_asr'))} | "
                     f"{r['auto_broken_by'] or '–'} | "
                     f"{r['red_flags'] or '–'} |")
    (out / f"table-{stem}.md").write_text("\n".join(lines) + "\n")
    _figure(rows, eps, out / f"asr_by_bound-{stem}.png")
    print(f"table: {out / f'table-{stem}.md'}; {len(rows)} rows")
    return rows


def _figure(rows: list[dict], eps: list[str], path: Path) -> None:
    """Per defense, naive / auto / strongest ASR at each bound, as grouped bars."""
    if not rows:
        return
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["defense"] for r in rows))
    fig, axes = plt.subplots(1, len(eps), figsize=(4.5 * len(eps), 4), squeeze=False)
    for ax, e in zip(axes[0], eps):
        at = {r["defense"]: r for r in rows if r["eps"] == e}
        for j, (key, label) in enumerate((("naive_asr", "naive"), ("auto_asr", "auto"),
                                          ("strongest_asr", "strongest"))):
            ax.bar([i + 0.27 * (j - 1) for i in range(len(names))],
                   [at.get(n, {}).get(key) or 0 for n in names], 0.27, label=label)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"L∞ {e}")
        ax.set_ylabel("ASR")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="lower left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar-cnn", help="the classifier the suite wraps")
    p.add_argument("--eps", default="4/255,8/255", help="comma-separated L-inf bounds")
    p.add_argument("--n", type=int, default=50, help="images per run (default 50)")
    p.add_argument("--runs", default="runs/defenses-suite", help="parent folder of the runs")
    p.add_argument("--out", default="reports/defenses-suite", help="report folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--table-only", action="store_true", help="only remake table and figure")
    p.add_argument("--part", choices=["all", "wrappers", "trained"], default="all",
                   help="the wrappers of the classifier, the trained networks, or both")
    args = p.parse_args(argv)
    parts = {"all": tuple(PARTS), "wrappers": ("",), "trained": ("trained-",)}[args.part]
    eps = [e.strip() for e in args.eps.split(",") if e.strip()]
    runs = Path(args.runs) / f"{args.model}-n{args.n}"
    if not args.table_only:
        rc = run_sweeps(steps(args.model, eps, args.n, parts), runs, args.device,
                        dry_run=args.dry_run)
        if rc != 0:
            return rc
    if not args.dry_run:
        for part in parts:
            table(args.model, eps, runs, Path(args.out), part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
