"""The main job: C&W-kappa against defense compositions, kappa by kappa (A2D paper, section 6).

For each kappa, the correctly classified test images chosen for the run are attacked in batches
with C&W-L2 at confidence kappa against the bare classifier (the paper's adaptive attack), or
with an attack on the defended system (``--attack``: C&W or PGD-L2 at the bound, with penalties
for the detectors); each adversarial example is then measured: L2, L-inf, SSIM, its BIM_d
attack cost, every detector's verdict, and its success against every composition, with the
reasons for each failure.

Results are never lost: one JSON line per (kappa, example) is appended to ``records.jsonl``
as each batch finishes; ``--resume`` skips what is there. ``summary.json`` / ``summary.csv`` and
the figures are derived from the records alone, so a resumed run summarises exactly as an
uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from adaptive import metrics
from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.clever import clever
from adaptive.compositions import COMPOSITIONS, build_a2d, build_defenses
from adaptive.defense import Defense, detector_flags, judge, module_sha256
from adaptive.core.attacks.pgd import pgd
from adaptive.core.checkpoint import write_json
from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import correct_subsets, predict_logits
from adaptive.core.records import RecordLog
from adaptive.core.runtime import environment_info, seed_everything
from adaptive.core.store import Records, RunStore
from adaptive.core.validation import check_labels_fit_model
from defenses.a2d.presets import make_engine
from defenses.a2d.zscore import DEFAULT_H

RECORDS = "records.jsonl"
# An attack is a method and what it attacks besides the classifier: cw (C&W's minimum-distance
# attack) or pgd (PGD-L2 at exactly the bound, on the same objective), plus -magnet, -a2d or
# -full for the penalties against those defenses' detectors.
ATTACKED_PARTS = {"": set(), "-magnet": {"magnet"}, "-a2d": {"a2d"}, "-full": {"a2d", "magnet"}}
ATTACKS = tuple(method + parts for method in ("cw", "pgd") for parts in ATTACKED_PARTS)
MAX_KAPPAS = 1000  # values in one --kappa range: more is a typo, not a sweep


def attacked_parts(attack: str) -> set[str]:
    """The defenses whose detectors ``attack`` penalises (``cw-full`` -> a2d and magnet)."""
    if attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKED_PARTS[attack[attack.find("-"):] if "-" in attack else ""]


@dataclass
class SweepConfig:
    dataset: str = "mnist-bundled"
    model: str = "mnist-cnn"
    model_sha256: str = ""
    defenses: list = field(default_factory=lambda: ["none", "a2d", "magnet", "a2d+magnet"])
    kappas: list = field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0, 20.0])
    n: int = 100
    n_cal: int = 200
    max_l2: float = 8.4
    targeted: bool = False
    seed: int = 0
    batch: int = 50
    cw: dict = field(default_factory=lambda: dict(steps=200, binary_search_steps=5, lr=0.05,
                                                  initial_const=0.1))
    a2d_engines: list = field(default_factory=lambda: ["bim_d"])
    h: float = DEFAULT_H
    magnet: str | None = "mnist"
    defense_module: str | None = None
    # CLEVER (untargeted, L2) of every adversarial example the attack made, for mean_clever;
    # None: not measured. E.g. {"n_batches": 50, "n_samples": 64, "radius": 5.0}.
    clever: dict | None = None
    # The attack: cw (C&W-kappa on the bare classifier, the paper's), cw-magnet (through
    # MagNet's reformer, penalising its detectors), cw-a2d (penalising a low first-order
    # BIM_d cost), cw-full (both, against whatever the run defends with); pgd, pgd-magnet,
    # pgd-a2d, pgd-full: the same objectives by PGD-L2 at exactly max_l2.
    attack: str = "cw"
    pgd: dict = field(default_factory=lambda: dict(steps=100, restarts=3, target_classes=3))
    a2d_factor: float = 2.0
    # Every label pair (A2D Figures 11-13): one attacked image per class (the first of each
    # class among the n chosen), attacked towards each other class; implies targeted.
    pairs: bool = False
    # The images to attack (e.g. those of another run, --images-from) instead of a random
    # choice of n; kept only where this model classifies them correctly.
    images: list | None = None
    # For an adaptive attack, also run the paper's C&W-kappa on the bare classifier and judge it
    # against every defense: the white-box attack must do at least as well (a sanity check).
    transfer_check: bool = True


def parse_kappas(text: str) -> list[float]:
    """``0:20:5`` (start:stop:step, stop included) or ``0,2,4``: finite values >= 0, at most
    ``MAX_KAPPAS`` of them."""
    bad = ToolkitError(f"bad --kappa {text!r}: use start:stop:step (e.g. 0:20:5) or a "
                       "comma-separated list of finite numbers >= 0")
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if (len(parts) != 3 or not all(map(math.isfinite, parts)) or parts[2] <= 0
                    or parts[1] < parts[0]):
                raise ValueError
            start, stop, step = parts
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > MAX_KAPPAS:  # before building the list: 0:1e12:1 is a typo
                raise ToolkitError(f"--kappa {text!r} gives {count:,} values; at most "
                                   f"{MAX_KAPPAS}")
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise bad from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise bad
    if len(values) > MAX_KAPPAS:
        raise ToolkitError(f"--kappa gives {len(values):,} values; at most {MAX_KAPPAS}")
    return values


def choose_images(model: nn.Module, data: ImageSet, n: int, n_cal: int, seed: int, device,
                  fixed: list[int] | None = None):
    """Correctly classified images: ``n`` to attack and ``n_cal`` disjoint ones to calibrate.
    ``fixed``: attack these images instead (those this model classifies correctly, at most n),
    so that runs on different models attack the same images."""
    if not fixed:
        attacked, cal = correct_subsets(model, data, [n, n_cal], seed, device)
        return attacked, cal
    pred = predict_logits(model, data.x(), device=device).argmax(1)
    ok = pred == data.labels
    attacked = torch.tensor(sorted({i for i in fixed if 0 <= i < len(ok) and ok[i]}))[:n]
    if len(attacked) == 0:
        raise ToolkitError("none of the images of --images-from is classified correctly by "
                           "this model")
    rest = ok.clone()
    rest[attacked] = False
    order = rest.nonzero().squeeze(1)
    order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))]
    if len(order) < n_cal:
        raise ToolkitError(f"{data.name} has too few other correctly classified images for "
                           f"{n_cal} calibration images")
    return attacked, order[:n_cal].sort().values


def attacked_indices(folder: str | Path) -> list[int]:
    """The images a sweep run attacked (from its records), for ``images_from``."""
    records = read_records(Path(folder) / RECORDS)
    if not records:
        raise ToolkitError(f"{folder} holds no sweep records to take the images from")
    return sorted({r["index"] for r in records})


def label_pairs(chosen: torch.Tensor, labels: torch.Tensor,
                n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image index, target class) for every ordered label pair: the first image of each class
    among ``chosen``, repeated once per other class."""
    firsts = {}
    for i in chosen.tolist():
        firsts.setdefault(int(labels[i]), i)
    missing = sorted(set(range(n_classes)) - set(firsts))
    if missing:
        raise ToolkitError(f"no image of class(es) {missing} among the {len(chosen)} chosen; "
                           "raise --n for a --pairs sweep")
    index, target = [], []
    for c in range(n_classes):
        for t in range(n_classes):
            if t != c:
                index.append(firsts[c])
                target.append(t)
    return torch.tensor(index), torch.tensor(target)


def record_key(r: dict) -> tuple:
    """What makes a sweep record unique: one per (kappa, image, target)."""
    return (float(r["kappa"]), int(r["index"]), r.get("target"))


def read_records(path: Path) -> list[dict]:
    """The records of a sweep folder's ``records.jsonl``, each (kappa, image, target) once."""
    return RecordLog(path, record_key).read().records


def _append(records: Records, rows: list[dict]) -> None:
    """One batch's records, durable before the next batch starts."""
    records.append(rows)


def _finite(value, name: str, minimum: float | None = 0.0, strict: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        rel = ">" if strict else ">="
        raise ToolkitError(f"{name} must be a finite number"
                           + (f" {rel} {minimum:g}" if minimum is not None else "")
                           + f", got {value!r}")


def _count(value, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ToolkitError(f"{name} must be an integer >= {minimum}, got {value!r}")


def validate_config(cfg: SweepConfig, magnet=None) -> None:
    """Every setting checked at once, before any work or any file: finite numbers where
    numbers must be finite, counts >= 1, a bounded kappa list, and settings that need each
    other. Raises ``ToolkitError`` naming the setting."""
    if cfg.attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {cfg.attack!r}; choose from {', '.join(ATTACKS)}")
    if not isinstance(cfg.kappas, list) or not cfg.kappas:
        raise ToolkitError("kappa: give at least one value")
    if len(cfg.kappas) > MAX_KAPPAS:
        raise ToolkitError(f"kappa: {len(cfg.kappas)} values; at most {MAX_KAPPAS}")
    for k in cfg.kappas:
        _finite(k, "kappa", 0.0, strict=False)
    for name in ("n", "n_cal", "batch"):
        _count(getattr(cfg, name), name)
    if not isinstance(cfg.max_l2, (int, float)) or math.isnan(cfg.max_l2) or cfg.max_l2 <= 0:
        raise ToolkitError(f"max_l2 (the L2 bound) must be a number > 0 (inf: no bound), got "
                           f"{cfg.max_l2!r}")
    # The attacks' own settings: those given (an absent one takes the attack's default).
    for key, check, what in (("steps", _count, "cw steps"),
                             ("binary_search_steps", _count, "cw binary search steps"),
                             ("lr", _finite, "cw lr"),
                             ("initial_const", _finite, "cw initial constant")):
        if key in cfg.cw:
            check(cfg.cw[key], what)
    for key, minimum in (("steps", 1), ("restarts", 1), ("target_classes", 0)):
        if key in cfg.pgd:
            _count(cfg.pgd[key], f"pgd {key.replace('_', ' ')}", minimum)
    _finite(cfg.h, "h (A2D's Z-score threshold)", None)
    _finite(cfg.a2d_factor, "a2d_factor")
    for key, check in (("n_batches", _count), ("n_samples", _count), ("radius", _finite)):
        if key in (cfg.clever or {}):
            check(cfg.clever[key], f"clever {key}")
    if cfg.pairs and not cfg.targeted:
        raise ToolkitError("a --pairs sweep is targeted (set targeted=True)")
    if cfg.attack.endswith("-magnet") and magnet is None:
        raise ToolkitError(f"--attack {cfg.attack} needs a MagNet defense in the run")
    if cfg.attack.startswith("pgd") and not math.isfinite(cfg.max_l2):
        raise ToolkitError(f"--attack {cfg.attack} attacks at the L2 bound; give a finite "
                           "--max-l2")


def run_identity(cfg: SweepConfig, data: ImageSet, magnet=None,
                 extra_defenses: dict[str, Defense] | None = None) -> dict:
    """Hashes of every input a sweep's results depend on: the data actually used, the model,
    MagNet's autoencoders and spec, and a plug-in defense's module file. A resume must match."""
    identity = {f"data:{data.name}:{data.split}": data.sha256(),
                f"model:{cfg.model}": cfg.model_sha256}
    if magnet is not None:
        identity.update({f"model:magnet:{k}": v for k, v in magnet.autoencoder_sha256.items()})
        identity["magnet_spec"] = magnet.spec_sha256()
    if cfg.defense_module:
        identity["defense_module"] = module_sha256(cfg.defense_module)
    return identity


def run_sweep(cfg: SweepConfig, model: nn.Module, data: ImageSet, out, device, *,
              magnet=None, extra_defenses: dict[str, Defense] | None = None,
              resume: bool = False, command: str = "", progress: bool = True,
              log=print) -> dict:
    """Run (or with ``resume``, continue) the sweep ``cfg`` into the folder ``out``; returns
    the summary (``config``, ``rows``, ``asr_by_l2_bound``, ``sanity_checks``). Everything is
    checked before the folder is touched; the folder is locked while the sweep runs."""
    validate_config(cfg, magnet=magnet)
    check_labels_fit_model(data.labels, model, data.name)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    attacked, cal = choose_images(model, data, cfg.n, cfg.n_cal, cfg.seed, device,
                                  cfg.images)
    y_all = data.labels
    n_classes = getattr(model, "num_classes", 10)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    offsets = torch.randint(1, n_classes, (len(attacked),), generator=gen)
    targets_all = (y_all[attacked] + offsets) % n_classes if cfg.targeted else None
    if cfg.pairs:
        attacked, targets_all = label_pairs(attacked, y_all, n_classes)
    identity = run_identity(cfg, data, magnet, extra_defenses)
    with RunStore(out, asdict(cfg), resume, defaults=asdict(SweepConfig()), identity=identity,
                  command=command, log=log) as store:
        store.write_config({"command": command, "environment": environment_info(),
                            "model_sha256": {k[len("model:"):]: v for k, v in identity.items()
                                             if k.startswith("model:")}})
        return _sweep(store, cfg, model, data, device, attacked, cal, targets_all, magnet,
                      extra_defenses, progress, log, t_start)


def _sweep(store: RunStore, cfg: SweepConfig, model: nn.Module, data: ImageSet, device,
           attacked: torch.Tensor, cal: torch.Tensor, targets_all: torch.Tensor | None, magnet,
           extra_defenses: dict[str, Defense] | None, progress: bool, log,
           t_start: float) -> dict:
    x_all, y_all = data.x(), data.labels
    # The A2D detector: BIM_d costs of the benign calibration images, cached for resumes.
    parts = attacked_parts(cfg.attack)
    a2d = None
    needs_a2d = any("a2d" in d.split("+") for d in cfg.defenses) or "a2d" in parts
    if needs_a2d:
        cal_costs = store.get("a2d_calibration")
        if cal_costs is None:
            log(f"calibrating A2D ({', '.join(cfg.a2d_engines)}) on {len(cal)} benign images")
            cal_costs = store.put("a2d_calibration", {
                e: make_engine(e, cfg.dataset).run(model, x_all[cal].to(device)).costs
                for e in cfg.a2d_engines})
        a2d = build_a2d(model, cfg.dataset, cfg.a2d_engines, cfg.h, cal_costs)
    defenses = build_defenses([d for d in cfg.defenses if d in COMPOSITIONS], model, a2d,
                              magnet)
    defenses.update(extra_defenses or {})
    detectors = {}
    for d in defenses.values():
        detectors.update(d.detectors)
    # Every example's BIM_d cost is measured, with A2D's own engine when A2D is in the run.
    cost_engine = (a2d.engines[cfg.a2d_engines[0]] if a2d is not None
                   else make_engine("bim_d", cfg.dataset))

    records = store.records(RECORDS, record_key)
    done = {record_key(r) for r in records.read().records}
    log(f"sweep: {cfg.n} images of {data.name}, kappa {cfg.kappas}, defenses "
        f"{', '.join(defenses)}, L2 bound {cfg.max_l2}; results in {store.out}")
    batches = [list(range(i, min(i + cfg.batch, len(attacked))))
               for i in range(0, len(attacked), cfg.batch)]
    plugin_detectors = {k: v for d in (extra_defenses or {}).values()
                        for k, v in d.detectors.items()}
    attack_model, penalty = attack_objective(cfg, model, a2d, magnet, plugin_detectors, log)
    kbar = tqdm(cfg.kappas, desc="kappa", disable=not progress)
    for kappa in kbar:
        kbar.set_postfix(kappa=kappa)
        paper_attack = CarliniWagnerL2(kappa=kappa, **cfg.cw)
        attack = (BoundedPGD(cfg.max_l2, kappa, seed=cfg.seed, **cfg.pgd)
                  if cfg.attack.startswith("pgd") else paper_attack)
        for b, rows in enumerate(tqdm(batches, desc=f"kappa {kappa:g} batches", leave=False,
                                      disable=not progress)):
            if all((float(kappa), int(attacked[i]),
                    int(targets_all[i]) if cfg.targeted else None) in done for i in rows):
                continue
            idx = attacked[rows]
            x, y = x_all[idx], y_all[idx]
            labels = targets_all[rows] if cfg.targeted else y
            seed_everything(cfg.seed)
            r = attack.run(attack_model, x.to(device), labels, targeted=cfg.targeted,
                           penalty=penalty)
            store.put(f"adv_k{kappa:g}_b{b}", {"x": r.adversarial, "index": idx,
                                               **({"target": targets_all[rows]}
                                                  if cfg.targeted else {})})
            x_adv = r.adversarial
            targets = targets_all[rows] if cfg.targeted else None

            def measure(adv, ok):
                """(BIM_d costs, detector flags, verdict per defense) of examples ``adv``."""
                costs = cost_engine.run(model, adv.to(device))
                flags = {}
                for name, det in detectors.items():
                    if det is a2d:  # decided from the BIM_d costs just computed (same result)
                        flags[name] = a2d.decide({cfg.a2d_engines[0]: costs}) \
                            if len(cfg.a2d_engines) == 1 else a2d.detect(adv)
                    else:
                        flags[name] = detector_flags(name, det, adv.to(device))
                return costs, flags, {name: judge(d, adv, x, y, ok, cfg.max_l2, targets,
                                                  {k: flags[k] for k in d.detectors})
                                      for name, d in defenses.items()}

            costs, flags, verdicts = measure(x_adv, r.success)
            transfer = None
            if cfg.attack != "cw" and cfg.transfer_check:
                # The paper's attack (C&W-kappa on the bare classifier) transferred to every
                # defense: a white-box attack weaker than this is a broken attack.
                seed_everything(cfg.seed)
                t = paper_attack.run(model, x.to(device), labels, targeted=cfg.targeted)
                transfer = measure(t.adversarial, t.success)[2]
            l2, linf, ssim = metrics.l2(x_adv, x), metrics.linf(x_adv, x), metrics.ssim(x_adv, x)
            pred_bare = predict_logits(model, x_adv, device=device).argmax(1)
            clever_scores = [None] * len(rows)
            if cfg.clever:
                made = r.success.nonzero().squeeze(1).tolist()
                if made:
                    scores = clever(model, x_adv[made].to(device), norm="l2",
                                    target="untargeted", seed=cfg.seed, **cfg.clever)
                    for j, sc in zip(made, scores):
                        clever_scores[j] = sc.score
            out_rows = []
            for j, i in enumerate(rows):
                out_rows.append({
                    "kappa": kappa, "index": int(attacked[i]), "label": int(y[j]),
                    "target": int(targets_all[i]) if cfg.targeted else None,
                    # cw_*: the sweep's attack, C&W or bounded PGD (names kept for old runs)
                    "cw_success": bool(r.success[j]), "cw_steps": int(r.gradient_steps[j]),
                    "cw_confidence": (float(r.confidence_reached[j])
                                      if r.confidence_reached is not None else None),
                    "l2": float(l2[j]), "linf": float(linf[j]), "ssim": float(ssim[j]),
                    "pred_bare": int(pred_bare[j]), "bim_d_cost": int(costs.costs[j]),
                    "clever": clever_scores[j],
                    "flags": {k: bool(v[j]) for k, v in flags.items()},
                    "defenses": {name: {"success": bool(v.success[j]),
                                        "pred": int(v.predicted[j]), "reasons": v.reasons[j]}
                                 for name, v in verdicts.items()},
                    **({"transfer": {name: bool(v.success[j]) for name, v in transfer.items()}}
                       if transfer is not None else {})})
            _append(records, out_rows)
    kbar.close()

    found = records.read()
    records = found.records
    summary = summarize(records, cfg, defenses)
    by_bound = asr_by_bound(records, cfg, list(defenses))
    checks = sanity_checks(records, cfg, by_bound)
    checks += bounded_attack_check(records, cfg, model, defenses, x_all, y_all, store, device,
                                   log)
    for c in checks:
        if not c["passed"]:
            log(f"WARNING: sanity check failed: {c['name']}: {c['detail']}")
    write_summary(store.out, cfg, summary, {"asr_by_l2_bound": by_bound,
                                             "sanity_checks": checks,
                                             "record_integrity": found.integrity()})
    from adaptive.figures import sweep_figures

    sweep_figures(store.out, summary, store, cfg, data, checks)
    log(f"done in {time.perf_counter() - t_start:.0f} s; results: {store.out}/summary.json, "
        f"summary.csv, {RECORDS}, figures *.png")
    return {"config": asdict(cfg), "rows": summary, "asr_by_l2_bound": by_bound,
            "sanity_checks": checks}


def attack_objective(cfg: SweepConfig, model: nn.Module, a2d, magnet,
                     plugin_detectors: dict | None = None, log=print):
    """(the model the attack differentiates, the penalty it must bring to 0) for
    ``cfg.attack``. The -full attacks also aim at the plug-in defenses' detectors that have a
    differentiable ``relative_score(x)`` (1 at the threshold); the others are only judged."""
    from adaptive.attacks.a2d_aware import a2d_penalty
    from adaptive.attacks.magnet_aware import detector_penalty

    target, penalties, parts = model, [], attacked_parts(cfg.attack)
    if "magnet" in parts and magnet is not None:
        target = magnet.defended_classifier()
        penalties.append(detector_penalty(magnet.detectors))
    if "a2d" in parts and a2d is not None:
        penalties.append(a2d_penalty(a2d, cfg.a2d_factor))
    if cfg.attack.endswith("-full") and plugin_detectors:
        aimed = {k: d for k, d in plugin_detectors.items()
                 if callable(getattr(d, "relative_score", None))}
        if aimed:
            penalties.append(detector_penalty(list(aimed.values())))
        blind = sorted(set(plugin_detectors) - set(aimed))
        log(f"{cfg.attack} aims at the plug-in detectors {', '.join(sorted(aimed)) or 'none'}"
            + (f"; {', '.join(blind)} (no relative_score) only judge" if blind else ""))
    if not penalties:
        return target, None
    return target, lambda adv, labels, targeted: sum(p(adv, labels, targeted)
                                                     for p in penalties)


def summarize(records: list[dict], cfg: SweepConfig, defenses: dict[str, Defense]) -> list[dict]:
    """One row per kappa x defense, in the order of the config."""
    rows = []
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa]
        made = [r for r in recs if r["cw_success"]]
        for name, d in defenses.items():
            row = {"kappa": kappa, "defense": name, "n": len(recs),
                   "attack_success_rate": (float(np.mean([r["defenses"][name]["success"]
                                                          for r in recs])) if recs else None),
                   "cw_success_rate": float(np.mean([r["cw_success"] for r in recs]))
                   if recs else None,
                   "mean_l2": float(np.mean([r["l2"] for r in made])) if made else None,
                   "mean_linf": float(np.mean([r["linf"] for r in made])) if made else None,
                   "mean_ssim": float(np.mean([r["ssim"] for r in made])) if made else None,
                   "mean_a2d_cost": float(np.mean([r["bim_d_cost"] for r in made]))
                   if made else None,
                   "mean_clever": _mean([r.get("clever") for r in made]),
                   "transfer_success_rate": _mean([r["transfer"][name] for r in recs
                                                   if "transfer" in r]),
                   "within_bound": float(np.mean([r["l2"] <= cfg.max_l2 for r in made]))
                   if made else None}
            for det in d.detectors:
                row[f"detection_rate:{det}"] = (float(np.mean([r["flags"][det] for r in made]))
                                                if made else None)
            reasons: dict[str, int] = {}
            for r in recs:
                for reason in r["defenses"][name]["reasons"]:
                    key = "detected" if reason.startswith("detected:") else reason
                    reasons[key] = reasons.get(key, 0) + 1
            row["failure_reasons"] = reasons
            rows.append(row)
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def bound_grid(max_l2: float) -> list[float]:
    """L2 bounds for the ASR-vs-bound table: fractions of the run's bound, and no bound."""
    return [round(max_l2 * f, 4) for f in (0.125, 0.25, 0.5, 0.75, 1.0)] + [math.inf]


def asr_by_l2_bound_row(recs: list[dict], name: str, bound: float) -> float:
    """ASR of ``recs`` against defense ``name`` had the L2 bound been ``bound``: the recorded
    verdict with the bound condition re-applied (every other condition is bound-free)."""
    hits = 0
    for r in recs:
        other = [x for x in r["defenses"][name]["reasons"] if x != "bound_exceeded"]
        hits += bool(r["cw_success"] and not other and r["l2"] <= bound)
    return hits / len(recs)


def asr_by_bound(records: list[dict], cfg: SweepConfig, names: list[str]) -> list[dict]:
    rows = []
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa]
        if not recs:
            continue
        for name in names:
            rows.append({"kappa": kappa, "defense": name, "asr": {
                ("inf" if math.isinf(b) else f"{b:g}"): asr_by_l2_bound_row(recs, name, b)
                for b in bound_grid(cfg.max_l2)}})
    return rows


def sanity_checks(records: list[dict], cfg: SweepConfig, by_bound: list[dict]) -> list[dict]:
    """Checks that a trustworthy evaluation passes (Carlini et al. 2019); failures are
    reported, never hidden."""
    checks = []
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa]
        if not recs:
            continue
        fooled = float(np.mean([r["cw_success"] and (
            r["pred_bare"] == r["target"] if cfg.targeted else r["pred_bare"] != r["label"])
            for r in recs]))
        if cfg.attack == "cw":  # attacks on the bare classifier must succeed without a bound
            detail = (f"{fooled:.0%} of the images misclassified by the bare classifier with no "
                      "distortion bound (expected ~100%)")
            missed = [r["cw_confidence"] for r in recs
                      if not r["cw_success"] and r.get("cw_confidence") is not None]
            if missed:  # out of budget, or a margin the model cannot reach at all?
                detail += (f"; the {len(missed)} failed image(s) reached a confidence of at most "
                           f"{max(missed):.2f} (median {float(np.median(missed)):.2f}) of the "
                           f"{kappa:g} asked for")
            checks.append({"name": f"unbounded attack fools the bare classifier (kappa {kappa:g})",
                           "passed": fooled >= 0.95, "detail": detail})
    for row in by_bound:
        values = list(row["asr"].values())
        ok = all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
        if not ok:
            checks.append({"name": f"ASR grows with the L2 bound ({row['defense']}, kappa "
                                   f"{row['kappa']:g})", "passed": False,
                           "detail": f"ASR by bound {row['asr']} falls somewhere"})
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa and "transfer" in r]
        if not recs:
            continue
        parts, ok = [], True
        for name in recs[0]["transfer"]:
            if not white_box_against(cfg.attack, name):
                continue
            white = float(np.mean([r["defenses"][name]["success"] for r in recs]))
            moved = float(np.mean([r["transfer"][name] for r in recs]))
            ok &= white >= moved - 1e-12
            parts.append(f"{name} {white:.0%} vs {moved:.0%}")
        if not parts:
            continue
        checks.append({"name": f"white-box {cfg.attack} at least as strong as the transferred "
                               f"attack (kappa {kappa:g})", "passed": ok,
                       "detail": "ASR white-box vs C&W-kappa on the bare classifier: "
                                 + ", ".join(parts)})
    if by_bound and all(c["passed"] for c in checks if c["name"].startswith("ASR grows")):
        checks.append({"name": "ASR grows with the L2 bound", "passed": True,
                       "detail": "non-decreasing for every defense and kappa"})
    return checks


PGD_STEPS = 20


def bounded_attack_check(records: list[dict], cfg: SweepConfig, model: nn.Module,
                         defenses: dict[str, Defense], x_all: torch.Tensor,
                         y_all: torch.Tensor, store: RunStore, device, log=print) -> list[dict]:
    """A minimum-distance attack with a small budget can stop short of the bound on a robust
    model, and then the ASR at the bound understates what an attacker gets. So PGD-L2 (cross
    entropy, ``PGD_STEPS`` steps, a random start) at exactly the bound attacks the bare
    classifier on the same images, and the sweep's attack must do at least as well at kappa 0
    against every defense that is the bare classifier alone (no detectors). Untargeted sweeps
    with kappa 0 and ``--attack cw`` only: PGD's examples have no margin to compare at kappa > 0,
    and the adaptive attacks aim at detectors, not at the bare classifier (they are judged
    against the transferred C&W instead)."""
    plain = [name for name, d in defenses.items() if not d.detectors and d.classifier is model]
    recs = [r for r in records if r["kappa"] == 0]
    if (cfg.attack != "cw" or cfg.targeted or not recs or not plain
            or not math.isfinite(cfg.max_l2)):
        return []
    index = torch.tensor([r["index"] for r in recs])
    fooled = store.get("pgd_at_bound")
    if fooled is None or not torch.equal(fooled["index"], index):
        log(f"bounded check: PGD-L2 at {cfg.max_l2:g} on the bare classifier "
            f"({len(index)} images)")
        x, y = x_all[index].to(device), y_all[index].to(device)
        adv = pgd(model, x, y, cfg.max_l2, norm="l2", steps=PGD_STEPS,
                  generator=torch.Generator().manual_seed(cfg.seed))
        pred = predict_logits(model, adv, device=device).argmax(1).cpu()
        fooled = store.put("pgd_at_bound", {"index": index, "fooled": pred != y.cpu()})
    pgd_asr = float(fooled["fooled"].float().mean())
    parts, ok = [], True
    for name in plain:
        asr = float(np.mean([r["defenses"][name]["success"] for r in recs]))
        ok &= asr >= pgd_asr - 1e-12
        parts.append(f"{name} {asr:.0%}")
    detail = (f"PGD-L2 at the bound ({PGD_STEPS} steps) fools the bare classifier on "
              f"{pgd_asr:.0%} of the images; {cfg.attack} at kappa 0: {', '.join(parts)}")
    if not ok:
        detail += ("; the sweep's attack stops short of the bound, so its ASR at the bound "
                   "understates the attacker (more steps, a larger initial constant)")
    return [{"name": f"{cfg.attack} at least as strong as PGD at the L2 bound (kappa 0)",
             "passed": ok, "detail": detail}]


def white_box_against(attack: str, defense: str) -> bool:
    """Whether ``attack`` attacks every detector of the composition ``defense`` (which has at
    least one; adversarial training is part of the model every attack differentiates). Only
    there must it beat the transferred attack: cw-magnet, for one, goes through MagNet's
    reformer, so it is no attack on the bare classifier."""
    parts = set(defense.split("+")) - {"at"}
    return bool(parts) and parts <= attacked_parts(attack)


def write_summary(out: Path, cfg: SweepConfig, rows: list[dict],
                  extra: dict | None = None) -> None:
    write_json(out / "summary.json", {"config": asdict(cfg), "rows": rows, **(extra or {})})
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()})
