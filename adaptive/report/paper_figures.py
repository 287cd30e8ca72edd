"""Report figures from finished sweep runs (A2D paper, Figures 7, 8, 9 and 11-13).

* ``asr_figure``: ASR vs kappa, one panel per attack, one line per defense, the paper's claim
  dashed (Figure 7a/7b analogue); ``bound_figure``: ASR vs L2 bound at the largest kappa.
* ``kappa_examples_figure``: a few images and their adversarial examples at every kappa, each
  captioned with the class, L2 and the verdict of the run's strongest defense (Figure 8).
* ``across_runs_figure``: the same images attacked in several runs (e.g. without AT, with AT,
  with A2D+AT) side by side (Figure 9).
* ``pair_grid_figure``: a ``--pairs`` sweep's targeted examples for every (source, target)
  label pair, benign on the diagonal, undetected ones framed (Figures 11-13).

Images come from the run's cache (``adv_k{kappa}_b{batch}.pt``), verdicts from its records.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from adaptive.core.data import dataset_label
from adaptive.core.plotting import plt
from adaptive.core.plotting import save_figure as _save
from adaptive.sweep.config import bound_of, distance_key, norm_label

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _class_name(family: str, c: int) -> str:
    return CIFAR10_CLASSES[c] if family == "cifar10" else str(c)


def _title(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _show(ax, img: torch.Tensor) -> None:
    a = img.detach().permute(1, 2, 0).clamp(0, 1).numpy()
    if a.shape[-1] == 1:
        ax.imshow(a[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(a)
    ax.set_xticks([])
    ax.set_yticks([])


def cached_examples(run: dict) -> dict[tuple, torch.Tensor]:
    """``{(kappa, index, target): adversarial image}`` from a sweep run's cache (read and
    checked when the run was loaded, ``examples``; else read now)."""
    from adaptive.sweep.folder import read_cached_examples

    out = {}
    examples = run.get("examples")
    for path, part in examples if examples is not None else read_cached_examples(run["folder"]):
        kappa = float(path.name[len("adv_k"):].split("_b")[0])
        targets = part.get("target")
        for j, i in enumerate(part["index"].tolist()):
            t = int(targets[j]) if targets is not None else None
            out[(kappa, i, t)] = part["x"][j]
    return out


def strongest_defense(run: dict) -> str:
    """The run's last composition (by convention the combined one, e.g. a2d+magnet)."""
    names = [d for d in run["config"]["defenses"] if d != "none"]
    return names[-1] if names else "none"


def _panels(n: int):
    """One row of ``n`` panels sharing the ASR axis."""
    return plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False, sharey=True)


def asr_figure(runs: list[dict], path: Path, paper: dict) -> Path:
    """ASR vs kappa, one panel per run (attack) of one (data set, model) group."""
    cfg0 = runs[0]["config"]
    family = dataset_label(cfg0["dataset"])
    fig, axes = _panels(len(runs))
    for ax, run in zip(axes[0], runs):
        cfg = run["config"]
        for defense in cfg["defenses"]:
            pts = [(r["kappa"], r["attack_success_rate"]) for r in run["rows"]
                   if r["defense"] == defense and r["attack_success_rate"] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=4, label=defense)
            claim = paper.get((family, defense))
            if claim is not None:
                ax.axhline(claim, color="k", ls=":", lw=1,
                           label=f"paper: {defense} {claim:.0%}")
        ax.set_title(f"attack {cfg.get('attack', 'cw')}", fontsize=9)
        failed = [c for c in run.get("checks", []) if not c["passed"]]
        if run.get("checks"):  # the run's sanity checks, never hidden
            ax.text(0.98, 0.5, f"{len(failed)} sanity check(s) FAILED" if failed else
                    "sanity checks passed", transform=ax.transAxes, ha="right", fontsize=6,
                    color="red" if failed else "gray")
        ax.set_xlabel("confidence $\\kappa$")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"attack success rate ({norm_label(cfg0)} $\\leq$ "
                          f"{bound_of(cfg0):g})")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(_title(f"{family.upper()} ({cfg0['model']}): attack success rate vs kappa per "
                        f"defense (A2D Figure 7{'a' if family == 'mnist' else 'b'} analogue; n "
                        f"{cfg0['n']})"), fontsize=9)
    return _save(fig, path)


def bound_figure(runs: list[dict], path: Path) -> Path:
    """ASR vs the bound (in the runs' norm) at each run's largest kappa, one panel per
    attack."""
    from adaptive.sweep import asr_by_l2_bound_row

    cfg0 = runs[0]["config"]
    family = dataset_label(cfg0["dataset"])
    fig, axes = _panels(len(runs))
    for ax, run in zip(axes[0], runs):
        cfg = run["config"]
        kappa = max(cfg["kappas"])
        recs = [r for r in run["records"] if r["kappa"] == kappa]
        key, bound = distance_key(cfg), bound_of(cfg)
        top = max([r[key] for r in recs if r["attack_success"]] + [bound]) * 1.05
        bounds = [top * i / 40 for i in range(41)]
        for defense in cfg["defenses"]:
            if recs:
                ax.plot(bounds, [asr_by_l2_bound_row(recs, defense, b, key) for b in bounds],
                        label=defense)
        ax.axvline(bound, color="gray", ls="--", lw=1)
        ax.set_title(f"attack {cfg.get('attack', 'cw')}, $\\kappa$ = {kappa:g}", fontsize=9)
        ax.set_xlabel(f"{norm_label(cfg)} bound")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("attack success rate")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle(_title(f"{family.upper()} ({cfg0['model']}): attack success rate vs "
                        f"{norm_label(cfg0)} bound (dashed: the run's bound "
                        f"{bound_of(cfg0):g})"), fontsize=9)
    return _save(fig, path)


def _verdict(record: dict, defense: str) -> str:
    d = record["defenses"][defense]
    if d["success"]:
        return "fools"
    reasons = [r.split(":", 1)[0] for r in d["reasons"]]
    for reason in ("attack_failed", "bound_exceeded", "detected"):  # the first cause first
        if reason in reasons:
            return reason.replace("_", " ")
    return reasons[0].replace("_", " ") if reasons else "fails"


def kappa_examples_figure(run: dict, data, path: Path, images: int = 4) -> Path | None:
    """Benign images and their adversarial examples at every kappa (Figure 8 analogue)."""
    cfg = run["config"]
    family = dataset_label(cfg["dataset"])
    cache = cached_examples(run)
    recs = {(r["kappa"], r["index"], r.get("target")): r for r in run["records"]}
    keys = sorted({(i, t) for (_, i, t) in cache})[:images]
    if not keys:
        return None
    defense = strongest_defense(run)
    kappas = cfg["kappas"]
    fig, axes = plt.subplots(len(keys), len(kappas) + 1,
                             figsize=(1.35 * (len(kappas) + 1), 1.6 * len(keys)), squeeze=False)
    x_all, y_all = data.x(), data.labels
    for r, (i, t) in enumerate(keys):
        _show(axes[r, 0], x_all[i])
        axes[r, 0].set_title(f"benign: {_class_name(family, int(y_all[i]))}", fontsize=6)
        for c, kappa in enumerate(kappas, start=1):
            ax = axes[r, c]
            rec = recs.get((kappa, i, t))
            img = cache.get((kappa, i, t))
            if img is None or rec is None:
                ax.set_visible(False)
                continue
            _show(ax, img)
            caption = (f"$\\kappa$={kappa:g} {_class_name(family, rec['pred_bare'])}\n"
                       f"L2 {rec['l2']:.2f} {_verdict(rec, defense)}")
            ax.set_title(caption, fontsize=6)
    fig.suptitle(_title(f"{family.upper()}: {cfg.get('attack', 'cw')} examples by kappa "
                        f"(class, L2, verdict of {defense}; A2D Figure 8 analogue)", 70),
                 fontsize=8)
    return _save(fig, path)


def across_runs_figure(runs: list[dict], data, kappa: float, path: Path,
                       images: int = 4) -> Path | None:
    """The same images attacked in each run at ``kappa`` (Figure 9 analogue)."""
    caches = [cached_examples(r) for r in runs]
    recs = [{(r["kappa"], r["index"], r.get("target")): r for r in run["records"]}
            for run in runs]
    common = set.intersection(*[{(i, t) for (k, i, t) in c if k == kappa} for c in caches])
    keys = sorted(common)[:images]
    if not keys:
        return None
    family = dataset_label(runs[0]["config"]["dataset"])
    x_all, y_all = data.x(), data.labels
    fig, axes = plt.subplots(len(keys), len(runs) + 1,
                             figsize=(1.9 * (len(runs) + 1), 1.9 * len(keys)), squeeze=False)
    for r, (i, t) in enumerate(keys):
        _show(axes[r, 0], x_all[i])
        axes[r, 0].set_title(f"benign: {_class_name(family, int(y_all[i]))}", fontsize=6)
        for c, (run, cache, rec_map) in enumerate(zip(runs, caches, recs), start=1):
            rec = rec_map[(kappa, i, t)]
            defense = strongest_defense(run)
            _show(axes[r, c], cache[(kappa, i, t)])
            axes[r, c].set_title(
                f"{run['config']['model']} / {run['config'].get('attack', 'cw')}\n"
                f"{_class_name(family, rec['pred_bare'])}, L2 {rec['l2']:.2f}, "
                f"{defense}: {_verdict(rec, defense)}", fontsize=6)
    fig.suptitle(_title(f"{family.upper()}: the same images attacked at kappa {kappa:g} in "
                        "each run (A2D Figure 9 analogue)", 70), fontsize=8)
    return _save(fig, path)


def pair_grid_figure(run: dict, data, kappa: float, path: Path) -> Path | None:
    """Targeted examples for every (source class, target class) pair (Figures 11-13)."""
    cfg = run["config"]
    family = dataset_label(cfg["dataset"])
    cache = cached_examples(run)
    recs = [r for r in run["records"] if r["kappa"] == kappa and r.get("target") is not None]
    if not recs:
        return None
    defense = strongest_defense(run)
    sources = sorted({(r["label"], r["index"]) for r in recs})
    classes = sorted({r["target"] for r in recs} | {lab for lab, _ in sources})
    k = len(classes)
    fig, axes = plt.subplots(len(sources), k, figsize=(0.95 * k, 1.05 * len(sources)),
                             squeeze=False)
    x_all = data.x()
    fooled = 0
    for r, (label, i) in enumerate(sources):
        for c, target in enumerate(classes):
            ax = axes[r, c]
            if target == label:
                _show(ax, x_all[i])
                ax.set_title("benign", fontsize=5)
                continue
            rec = next((x for x in recs if x["index"] == i and x["target"] == target), None)
            img = cache.get((kappa, i, target))
            if rec is None or img is None:
                ax.set_visible(False)
                continue
            _show(ax, img)
            verdict = _verdict(rec, defense)
            fooled += verdict == "fools"
            ax.set_title(f"{verdict}", fontsize=5, color="red" if verdict == "fools" else "k")
            if verdict == "fools":
                for side in ax.spines.values():
                    side.set_edgecolor("red")
                    side.set_linewidth(2)
        axes[r, 0].set_ylabel(_class_name(family, label), fontsize=6)
    for c, target in enumerate(classes):
        axes[-1, c].set_xlabel(f"→ {_class_name(family, target)}", fontsize=6)
    total = len(recs)
    fig.suptitle(_title(f"{family.upper()} ({cfg['model']}): targeted {cfg.get('attack', 'cw')} "
                        f"examples for each label pair, kappa {kappa:g}; {fooled} of {total} get "
                        f"past {defense} (framed red; A2D Figures 11-13 analogue)", 80),
                 fontsize=7)
    return _save(fig, path)


def diagnostics_figure(runs: list[dict], path: Path) -> Path | None:
    """The share of each run's examples on which each indicator of attack failure fired, one
    bar group per indicator, one bar per attack (the report's diagnostics table, drawn)."""
    found = [(r["config"].get("attack", "cw"), (r.get("diagnostics") or {}).get("indicators"))
             for r in runs]
    found = [(a, d) for a, d in found if d]
    if not found:
        return None
    names = sorted({k for _, d in found for k in d})
    cfg0 = runs[0]["config"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 3.6))
    width = 0.8 / len(found)
    for i, (attack, d) in enumerate(found):
        shares = [d[k]["fired"] / d[k]["of"] if k in d and d[k]["of"] else 0.0 for k in names]
        ax.bar([j + i * width for j in range(len(names))], shares, width, label=attack)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("_", " ").replace(":", ":\n") for n in names], fontsize=6,
                       rotation=30, ha="right")
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("share of examples", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(_title(f"{dataset_label(cfg0['dataset']).upper()} ({cfg0['model']}, "
                        f"{norm_label(cfg0)}): indicators of attack failure per attack "
                        "(no bar: never fired)"), fontsize=9)
    return _save(fig, path)
