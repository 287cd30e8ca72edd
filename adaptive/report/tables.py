"""Tables for reports, made from run folders (nothing is recomputed by attacking again).

Sweep folders (``summary.json``, ``records.jsonl``, ``config.json``) give the adaptive-attack
tables: ASR against every defense by kappa and by L2 bound, one column per attack, beside the
A2D paper's claims. A2D evaluations (``a2d_eval.json``) give the Table 2 (AUROC) and Table 3
(detection cost) analogues, and sweeps run with ``--clever`` the Table 4 analogue (CLEVER,
BIM_d cost and L2 by kappa), beside the paper's numbers. Each table names the runs and the
commands that produced them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from adaptive.core.checkpoint import write_json
from adaptive.core.data import dataset_label
from adaptive.core.errors import ToolkitError

# The A2D paper's claims for its combined defenses under its adaptive C&W attack (section 6,
# Figure 7): no success at any kappa within the bound.
PAPER_ASR = {("mnist", "a2d+magnet"): 0.0, ("cifar10", "a2d+at"): 0.0}


# The A2D paper's Table 2 (AUROC; MNIST/CIFAR-10, Env2 where it has the attack, else Env1) and
# Table 3 (Z-score detectors: queries and accuracies).
PAPER_AUROC = {
    "mnist": {"fgsm": (0.9665, 0.9883, 0.9846, 0.9595), "bim": (0.9986, 0.9996, 0.9995, 0.9625),
              "jsma": (0.9971, 0.9984, 0.9974, 0.984),
              "deepfool": (0.9918, 0.9971, 0.9951, 0.9587),
              "cw": (0.9456, 0.9870, 0.9769, 0.8672)},
    "cifar10": {"fgsm": (0.8808, 0.8994, 0.8998, 0.8746),
                "bim": (0.8558, 0.8636, 0.861, 0.8276),
                "jsma": (0.9774, 0.9890, 0.9873, 0.9566),
                "deepfool": (0.9832, 0.9898, 0.9902, 0.9769),
                "cw": (0.8842, 0.9176, 0.9175, 0.9004)},
}
PAPER_AUROC_ENGINES = ("jsma_d", "bim_d", "bim2_d", "dba_d")
PAPER_COSTS = {  # engine: (#adv, Acc_adv, #benign, threshold); Acc_benign >= 89.7 % / 74.0 %
    "mnist": {"jsma_d": (20, 0.954, 240, 53), "bim_d": (16, 0.998, 148, 122),
              "bim2_d": (38, 0.996, 352, 189), "dba_d": (92, 0.882, 319, 195)},
    "cifar10": {"jsma_d": (6, 0.926, 33, 13), "bim_d": (14, 0.930, 65, 35),
                "bim2_d": (29, 0.927, 129, 71), "dba_d": (252, 0.877, 744, 409)},
}


# The A2D paper's Table 4: kappa -> (CLEVER, BIM_d iterations, L2) of C&W examples.
PAPER_KAPPA = {
    "mnist": {0: (0.0, 1.01, 1.71), 2: (0.11, 10.36, 1.91), 4: (0.14, 20.28, 2.11),
              6: (0.14, 31.29, 2.32), 8: (0.17, 42.59, 2.53)},
    "cifar10": {0: (0.0, 1.37, 0.41), 2: (0.07, 8.53, 0.52), 4: (0.08, 17.29, 0.67),
                6: (0.09, 24.47, 0.82), 8: (0.13, 34.4, 0.99)},
}


def kappa_table(run: dict) -> dict:
    """Table 4 analogue: CLEVER, BIM_d cost and L2 of the attack's examples by kappa."""
    family = dataset_label(run["config"]["dataset"])
    rows = []
    for kappa in run["config"]["kappas"]:
        hit = [r for r in run["rows"] if r["kappa"] == kappa]
        if not hit:
            continue
        r = hit[0]  # these statistics do not depend on the defense
        row = {"kappa": kappa, "CLEVER": r.get("mean_clever"), "BIM_d cost": r["mean_a2d_cost"],
               "L2": r["mean_l2"]}
        paper = PAPER_KAPPA.get(family, {}).get(kappa)
        if paper:
            row.update({"paper CLEVER": paper[0], "paper BIM_d cost": paper[1],
                        "paper L2": paper[2]})
        rows.append(row)
    return {"title": f"{family.upper()} ({run['config']['model']}): robustness of "
                     f"{run['config'].get('attack', 'cw')} examples vs kappa (A2D Table 4 "
                     "analogue; means over the successful examples)", "rows": rows,
            "runs": [(run["folder"], run["command"])]}


def a2d_tables(result: dict, source: str) -> dict[str, dict]:
    """Table 2 (AUROC) and Table 3 (Z-score detection costs) analogues from ``a2d_eval.json``."""
    family = dataset_label(result["dataset"])
    engines, attacks = result["engines"], result["attacks"]
    runs = [(source, result.get("command", "?"))]
    rows = []
    for attack in attacks:
        row = {"attack": attack}
        for e in engines:
            row[f"AUROC {e}"] = result["auroc"][e].get(attack)
            paper = PAPER_AUROC.get(family, {}).get(attack)
            if paper and e in PAPER_AUROC_ENGINES:
                row[f"paper {e}"] = paper[PAPER_AUROC_ENGINES.index(e)]
        rows.append(row)
    tables = {f"{family}_a2d_auroc": {
        "title": f"{family.upper()}: AUROC of each attack-cost engine (A2D Table 2 analogue; "
                 f"n {result['n_evaluation']} per attack)", "rows": rows, "runs": runs}}
    rows = []
    for e in engines:
        z, costs = result["zscore"][e], result["costs"][e]
        adv = [a for a in attacks if a in costs]
        row = {"engine": e,
               "#adv": sum(costs[a]["mean_queries_detection_mode"] for a in adv) / len(adv),
               "Acc adv": sum(z["detection_rate"][a] for a in adv) / len(adv),
               "#benign": costs["benign"]["mean_queries_detection_mode"],
               "threshold": z["cost_threshold"], "Acc benign": z["benign_accuracy"]}
        paper = PAPER_COSTS.get(family, {}).get(e)
        if paper:
            row.update({"paper #adv": paper[0], "paper Acc adv": paper[1],
                        "paper #benign": paper[2], "paper threshold": paper[3]})
        rows.append(row)
    tables[f"{family}_a2d_costs"] = {
        "title": f"{family.upper()}: Z-score detectors, queries in detection mode and accuracy "
                 "(A2D Table 3 analogue; paper's benign accuracy >= 89.7 % MNIST, 74.0 % "
                 "CIFAR-10)", "rows": rows, "runs": runs}
    return tables


def a2d_cost_figure(result: dict, folder: Path, out: Path) -> Path:
    """Box plots of the per-image attack costs an A2D evaluation cached (evaluation split)."""
    import torch

    from adaptive.report.figures import cost_boxplots

    costs: dict = {}
    for engine in result["engines"]:
        for source in ["benign"] + list(result["attacks"]):
            f = folder / "cache" / f"cost_{engine}_eval_{source}.pt"
            if f.is_file():
                part = torch.load(f, map_location="cpu", weights_only=True)
                costs.setdefault(engine, {})[source] = part["costs"].numpy()
    if not costs:
        raise ToolkitError(f"{folder}/cache holds no per-image attack costs")
    family = dataset_label(result["dataset"])
    out.mkdir(parents=True, exist_ok=True)
    return cost_boxplots(costs, out / f"{family}_a2d_cost_boxplots.png",
                         f"{family.upper()}: attack costs of benign vs adversarial inputs "
                         f"(A2D Figures 4-5 analogue; n {result['n_evaluation']} each)")


# The paper's Table 7 (MNIST): (parameter kind, value) -> (Acc benign, Acc adv).
PAPER_PARAMETERS = {
    ("K", 5): (0.988, 0.9373), ("K", 10): (0.986, 0.9465), ("K", 25): (0.986, 0.9545),
    ("K", 50): (0.985, 0.962), ("K", 100): (0.979, 0.9685), ("K", 150): (0.977, 0.9715),
    ("K", 200): (0.976, 0.9753),
    ("ratio", "1:0.5"): (0.981, 0.9643), ("ratio", "1:0.8"): (0.979, 0.9658),
    ("ratio", "1:1"): (0.979, 0.9685), ("ratio", "1:1.2"): (0.977, 0.9705),
    ("ratio", "1:2"): (0.971, 0.9768),
    ("h", -1.0): (0.875, 0.9918), ("h", -1.281552): (0.926, 0.987),
    ("h", -1.644854): (0.963, 0.9763), ("h", -1.959964): (0.979, 0.9635),
    ("h", -2.0): (0.98, 0.962),
    ("k", 1): (0.972, 0.8835), ("k", 2): (0.926, 0.987), ("k", 3): (0.883, 0.994),
    ("k", 4): (0.775, 0.9963),
    ("classifier", "K-NN"): (0.979, 0.9685), ("classifier", "SVM"): (0.975, 0.9643),
    ("classifier", "decision tree"): (0.994, 0.9078),
    ("classifier", "random forest"): (0.994, 0.9068),
}


def a2d_parameter_table(result: dict, folder: Path) -> dict[str, dict]:
    """Table 7 analogue from an A2D evaluation's cached costs (needs several engines)."""
    from adaptive.evaluations.a2d_parameters import load_costs, parameter_study

    engines, attacks = list(result["engines"]), list(result["attacks"])
    if len(engines) < 2:
        return {}
    costs = load_costs(folder, engines, ["benign"] + attacks)
    rows = []
    knn_k = (result.get("knn_k") or {}).get("END", 100)
    for r in parameter_study(costs, engines, attacks, knn_k, result.get("h", -1.281552),
                             result.get("k", 2), result.get("knn_scale", "none")):
        paper = PAPER_PARAMETERS.get((r["kind"], r["value"]))
        family = dataset_label(result["dataset"])
        rows.append({"parameter": r["parameter"], "value": r["value"],
                     "used": "yes" if r["default"] else "",
                     "Acc benign": r["acc_benign"], "Acc adv": r["acc_adv"],
                     "paper Acc benign": paper[0] if paper and family == "mnist" else None,
                     "paper Acc adv": paper[1] if paper and family == "mnist" else None})
    return {f"{dataset_label(result['dataset'])}_a2d_parameters": {
        "title": f"{dataset_label(result['dataset']).upper()}: detector parameters (A2D Table 7 "
                 "analogue; fitted on the calibration split, scored on the evaluation split)",
        "rows": rows, "runs": [(str(folder), result.get("command", "?"))]}}


def plausibility_tables(sweeps: list[dict], references: list[dict]) -> dict[str, dict]:
    """Tramer (2021): a detector robust at distance eps implies a (slow) classifier robust at
    eps/2. Each defense's measured robustness at the run's L2 bound (1 - the highest ASR over
    attacks and kappas) beside the reference models' (``adaptive evaluate robust`` results, L2
    at eps/2 of the same data set) and the paper's claim. Sweeps attack correctly classified
    images only, so the reference counts the same way: robust / clean accuracy, the share of
    its correctly classified images that no attack flips (robust accuracy alone would also
    charge it the clean errors and make every detector look too good)."""
    tables: dict[str, dict] = {}
    by_family: dict[str, list[dict]] = {}
    for run in sweeps:
        if run["config"].get("norm", "l2") == "l2":  # the references are L2
            by_family.setdefault(dataset_label(run["config"]["dataset"]), []).append(run)
    for family, group in sorted(by_family.items()):
        bound = group[0]["config"]["max_l2"]
        refs = [r for r in references if dataset_label(r.get("dataset", "")) == family
                and r.get("norm") == "l2" and abs(r.get("eps", 0) - bound / 2) < 1e-6]
        best = max((r["robust_accuracy"] / r["clean_accuracy"] for r in refs
                    if r.get("clean_accuracy")), default=None)
        rows = []
        for run in group:
            for defense in run["config"]["defenses"]:
                asr = [x["attack_success_rate"] for x in run["rows"]
                       if x["defense"] == defense and x["attack_success_rate"] is not None]
                if not asr or defense == "none":
                    continue
                rows.append({"defense": defense, "model": run["config"]["model"],
                             "attack": run["config"].get("attack", "cw"),
                             "robust at L2 ε (1 - max ASR)": 1 - max(asr),
                             "paper claim": (1 - PAPER_ASR[(family, defense)]
                                             if (family, defense) in PAPER_ASR else None)})
        if not rows:
            continue
        merged: dict[tuple, dict] = {}
        for r in rows:  # the strongest attack decides each defense's robustness
            key = (r["defense"], r["model"])
            if key not in merged or r["robust at L2 ε (1 - max ASR)"] < \
                    merged[key]["robust at L2 ε (1 - max ASR)"]:
                merged[key] = r
        out = []
        for r in merged.values():
            ours, paper = r["robust at L2 ε (1 - max ASR)"], r["paper claim"]
            if not any(k in r["defense"].split("+") for k in ("a2d", "magnet")):
                out.append({**r, "best measured at ε/2": best,
                            "verdict": "a classifier, no detector: nothing implied"})
                continue
            r = {**r, "best measured at ε/2": best}
            if best is None:
                r["verdict"] = "no reference model measured at ε/2"
            else:
                too_good = [who for who, v in (("ours", ours), ("paper's", paper))
                            if v is not None and v > best + 0.05]
                r["verdict"] = ("plausible" if not too_good else
                                " and ".join(too_good) + " too good: implies a classifier at "
                                "ε/2 beating the reference")
            out.append(r)
        ref_text = "; ".join(
            f"{r['model']} {r['robust_accuracy']:.1%} robust at {r['clean_accuracy']:.1%} clean: "
            f"{r['robust_accuracy'] / r['clean_accuracy']:.1%} of its correctly classified images "
            f"({r.get('command', '?')})" for r in refs if r.get("clean_accuracy")) \
            or "none measured"
        tables[f"{family}_plausibility"] = {
            "title": f"{family.upper()}: plausibility (Tramèr 2021: a detector robust at L2 ε = "
                     f"{bound:g} implies a classifier robust at ε/2 = {bound / 2:g}); the "
                     "strongest of our attacks decides; both on correctly classified "
                     f"images; reference at ε/2: {ref_text}",
            "rows": out, "runs": [(r["folder"], r["command"]) for r in group]}
    return tables


def sweep_report_figures(sweeps: list[dict], pair_runs: list[dict], out: Path,
                         data_root: str | None, log=print) -> list[Path]:
    """Figures 7a/7b, ASR vs bound, Figure 8 (per run), Figure 9 (across the runs of one data
    set at kappa 0) and Figures 11-13 (``--pairs`` runs)."""
    from adaptive.core.data import load_dataset
    from adaptive.report import paper_figures as rf

    written: list[Path] = []
    groups: dict[tuple, list[dict]] = {}
    for run in sweeps:
        groups.setdefault(_group(run["config"]), []).append(run)
    out.mkdir(parents=True, exist_ok=True)
    for (family, model), group in sorted(groups.items()):
        written.append(rf.asr_figure(group, out / f"{family}_{model}_asr_vs_kappa.png",
                                     {} if model.endswith("_linf") else PAPER_ASR))
        written.append(rf.bound_figure(group, out / f"{family}_{model}_asr_vs_bound.png"))
        written.append(rf.diagnostics_figure(group, out / f"{family}_{model}_diagnostics.png"))
    datasets: dict[str, object] = {}

    def data_of(run):
        name = run["config"]["dataset"]
        if name not in datasets:
            try:
                datasets[name] = load_dataset(name, "test", data_root)
            except ToolkitError as e:
                log(f"skipping the image figures of {run['folder']}: {e}")
                datasets[name] = None
        return datasets[name]

    for run in sweeps:
        cfg, data = run["config"], data_of(run)
        if data is not None:
            name = "_".join([*_group(cfg), cfg.get("attack", "cw")])
            written.append(rf.kappa_examples_figure(run, data, out / f"{name}_examples.png"))
    by_family: dict[str, list[dict]] = {}
    for run in sweeps:
        by_family.setdefault(dataset_label(run["config"]["dataset"]), []).append(run)
    for family, group in by_family.items():
        kappas = set.intersection(*[set(r["config"]["kappas"]) for r in group])
        data = data_of(group[0])
        if len(group) > 1 and kappas and data is not None:
            written.append(rf.across_runs_figure(group, data, min(kappas),
                                                 out / f"{family}_examples_across_runs.png"))
    for run in pair_runs:
        cfg, data = run["config"], data_of(run)
        if data is None:
            continue
        for kappa in cfg["kappas"]:
            name = (f"{dataset_label(cfg['dataset'])}_{cfg['model']}_{cfg.get('attack', 'cw')}"
                    f"_pairs_k{kappa:g}.png")
            written.append(rf.pair_grid_figure(run, data, kappa, out / name))
    return [p for p in written if p is not None]


def load_sweep(folder: str | Path) -> dict:
    """A finished sweep run: its config, rows, records and command."""
    from adaptive.sweep.folder import read_sweep_folder

    folder = Path(folder)
    found = read_sweep_folder(folder)  # checked: a damaged folder is one error line
    summary, config = found["summary"], found["config"]
    return {"folder": str(folder), "config": summary["config"], "rows": summary["rows"],
            "records": found["records"], "examples": found["examples"],
            "command": config.get("command", "?"),
            "checks": summary.get("sanity_checks", []),
            "operating_points": summary.get("operating_points", []),
            "diagnostics": summary.get("diagnostics") or {},
            "binarization": _binarization_results(folder)}


def _binarization_results(folder: Path) -> list[dict]:
    """The binarization tests run on a sweep (``adaptive check binarization``), if any."""
    out = []
    for path in sorted((folder / "diagnostics").glob("binarization_*.json")):
        try:
            found = json.loads(path.read_text())
            out.append({"file": path.name, **found["config"], **found["summary"]})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ToolkitError(f"cannot read the binarization test {path}: {e}") from e
    return out


def diagnostics_tables(group: list[dict], attacks: list[str]) -> dict[str, dict]:
    """Per run of a group: which indicators of attack failure fired, on how many of its
    examples, and what that means; and the binarization tests run on its folders."""
    rows, brows = [], []
    for attack, run in zip(attacks, group):
        found = run.get("diagnostics") or {}
        for name, row in found.get("indicators", {}).items():
            rows.append({"attack": attack, "indicator": name, "fired": row["fired"],
                         "of": row["of"], "meaning": row["meaning"]})
        for c in found.get("checklist", []):
            rows.append({"attack": attack, "indicator": f"checklist: {c['name']} ({c['detail']})",
                         "fired": int(not c["passed"]), "of": 1,
                         "meaning": "a variant of the attack broke images the attack did not: "
                                    "it is not at its limit" if not c["passed"] else
                                    "the variant broke no image the attack did not"})
        for defense, flags in found.get("model_flags", {}).items():
            for name, row in flags.items():
                rows.append({"attack": attack, "indicator": f"model: {name} ({defense}: "
                                                            f"{row['detail']})",
                             "fired": int(row["fired"]), "of": 1, "meaning": row["meaning"]})
        for b in run.get("binarization", []):
            brows.append({"run attack": attack, "defense": b["defense"],
                          "tested attack": b["attack"] + (" (task only: no detector terms, "
                                                          "detectors not judged)"
                                                          if b.get("task_only") else ""),
                          "steps x restarts": f"{b['settings']['steps']} x "
                                              f"{b['settings']['restarts']}"
                                              + (f" ({b['settings']['schedule']})"
                                                 if b["settings"].get("schedule", "constant")
                                                 != "constant" else "")
                                              + (f", step {b['settings']['step_size']:g}"
                                                 if b["settings"].get("step_size") else "")
                                              + (f", starts: best of "
                                                 f"{b['settings']['start_images']} image "
                                                 "blends"
                                                 if b["settings"].get("start_images")
                                                 and b["settings"]["restarts"] > 1 else ""),
                          "inner points": f"{b.get('n_inner', '–')}"
                                          + (" (not judged)" if b.get("check_inner") is False
                                             else ""),
                          "images used": b["used"], "skipped": b["images"] - b["used"],
                          "ASR binarised": b["attack_success_rate"],
                          "ASR random control": b["random_success_rate"],
                          "passed (>= 95 %)": {True: "yes", False: "NO", None: "–"}[b["passed"]],
                          "command": b.get("command", "")})
    out = {}
    if rows:
        out["diagnostics"] = {
            "title": "indicators of attack failure (Pintor et al. 2022): on how many of each "
                     "run's examples each fired, and what it means", "rows": rows}
    if brows:
        out["binarization"] = {
            "title": "binarization test (Zimmermann et al. 2022): the attack on binarised "
                     "classifiers that provably have an adversarial example within the bound "
                     "(passing: >= 95 %), beside a random-sampling control", "rows": brows}
    return out


def _group(cfg: dict) -> tuple[str, str]:
    """(data set label, model tag) of a sweep: its runs are tabulated together; an L-inf sweep
    is a group of its own (``MODEL_linf``), so L2 and L-inf runs of one attack can be
    reported side by side."""
    model = cfg["model"] + ("_linf" if cfg.get("norm", "l2") == "linf" else "")
    return dataset_label(cfg["dataset"]), model


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ToolkitError(f"cannot read {path}: {e}") from e


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def sweep_tables(runs: list[dict]) -> dict[str, dict]:
    """``{name: {"rows": [...], "columns": [...], "title": ...}}`` for the sweep runs: ASR by
    kappa (per data set and defense, one column per attack) and ASR by L2 bound (largest kappa)."""
    from adaptive.sweep import asr_by_l2_bound_row, bound_grid
    from adaptive.sweep.config import bound_of, distance_key, norm_label

    tables: dict[str, dict] = {}
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(_group(run["config"]), []).append(run)
    for (family, model), group in sorted(groups.items()):
        attacks = [r["config"].get("attack", "cw") for r in group]
        if len(set(attacks)) != len(attacks):
            raise ToolkitError(f"two sweep runs of {model} use the same attack; pass one")
        defenses = []
        for r in group:
            defenses += [d for d in r["config"]["defenses"] if d not in defenses]
        kappas = sorted({k for r in group for k in r["config"]["kappas"]})
        rows = []
        for defense in defenses:
            for kappa in kappas:
                row = {"defense": defense, "kappa": kappa}
                for attack, r in zip(attacks, group):
                    hit = [x for x in r["rows"] if x["defense"] == defense and x["kappa"] == kappa]
                    row[f"ASR {attack}"] = hit[0]["attack_success_rate"] if hit else None
                    row[f"L2 {attack}"] = hit[0]["mean_l2"] if hit else None
                if (family, defense) in PAPER_ASR and not model.endswith("_linf"):
                    row["paper"] = PAPER_ASR[(family, defense)]  # the paper's claims are L2
                rows.append(row)
        tables[f"{family}_{model}_asr_vs_kappa"] = {
            "title": f"{family.upper()} ({model}): attack success rate by kappa, "
                     f"{norm_label(group[0]['config'])} bound "
                     f"{bound_of(group[0]['config']):g}",
            "rows": rows, "runs": [(r["folder"], r["command"]) for r in group]}
        brows = []
        for attack, r in zip(attacks, group):
            kappa = max(r["config"]["kappas"])
            recs = [x for x in r["records"] if x["kappa"] == kappa]
            for defense in r["config"]["defenses"]:
                row = {"attack": attack, "defense": defense, "kappa": kappa}
                label, dist = norm_label(r["config"]), distance_key(r["config"])
                for b in bound_grid(bound_of(r["config"])):
                    key = f"{label} ≤ ∞" if math.isinf(b) else f"{label} ≤ {b:g}"
                    row[key] = asr_by_l2_bound_row(recs, defense, b, dist) if recs else None
                brows.append(row)
        tables[f"{family}_{model}_asr_vs_bound"] = {
            "title": f"{family.upper()} ({model}): attack success rate by "
                     f"{norm_label(group[0]['config'])} bound at the largest kappa of each "
                     "run", "rows": brows,
            "runs": [(r["folder"], r["command"]) for r in group]}
        if "auto" in attacks:
            tables[f"{family}_{model}_auto"] = auto_table(group, attacks, defenses, kappas)
        for key, table in diagnostics_tables(group, attacks).items():
            table["runs"] = [(r["folder"], r["command"]) for r in group]
            tables[f"{family}_{model}_{key}"] = table
        prows = [{"attack": attack, "defense": p["defense"], "kappa": p["kappa"],
                  "SR@5% FPR": p["sr_at_fpr"],
                  **{f"AUROC {k[len('auroc:'):]}": v for k, v in p.items()
                     if k.startswith("auroc:")}}
                 for attack, r in zip(attacks, group) for p in r.get("operating_points", [])]
        if prows:
            tables[f"{family}_{model}_operating_points"] = {
                "title": f"{family.upper()} ({model}): attack success rate with the detectors "
                         "set to flag 5 % of benign images together (SR@5), and each "
                         "detector's AUROC, benign vs the attack's examples", "rows": prows,
                "runs": [(r["folder"], r["command"]) for r in group]}
    return tables


def auto_table(group: list[dict], attacks: list[str], defenses: list[str],
               kappas: list[float]) -> dict:
    """``--attack auto`` beside the single attacks of its group: per defense and kappa, auto's
    ASR, the best single attack's, which member broke how many images, and how many images a
    single run broke that auto did not (0 wherever auto is the per-image worst case)."""
    from adaptive.sweep.config import AUTO_MEMBERS

    def broken(run, defense, kappa):
        return {r["index"] for r in run["records"] if r["kappa"] == kappa
                and r["defenses"].get(defense, {}).get("success")}

    auto = group[attacks.index("auto")]
    singles = [(a, r) for a, r in zip(attacks, group) if a != "auto"]
    rows = []
    for defense in defenses:
        for kappa in kappas:
            hit = [x for x in auto["rows"] if x["defense"] == defense and x["kappa"] == kappa]
            if not hit:
                continue
            row = {"defense": defense, "kappa": kappa, "ASR auto": hit[0]["attack_success_rate"]}
            best, missed = None, set()
            mine = broken(auto, defense, kappa)
            for attack, r in singles:
                one = [x for x in r["rows"] if x["defense"] == defense and x["kappa"] == kappa]
                if one and one[0]["attack_success_rate"] is not None:
                    if best is None or one[0]["attack_success_rate"] > best[1]:
                        best = (attack, one[0]["attack_success_rate"])
                    missed |= broken(r, defense, kappa) - mine
            row["best single"] = best[0] if best else None
            row["ASR best single"] = best[1] if best else None
            row["broken by"] = ", ".join(f"{m} {c}" for m, c in
                                         hit[0].get("broken_by", {}).items()) or "none"
            row["broken alone, not by auto"] = len(missed) if singles else None
            rows.append(row)
    members = ", ".join(AUTO_MEMBERS)
    return {"title": "auto (the per-image worst case over " + members + ") beside the single "
                     "attacks of the same images: which member broke each image, and the images "
                     "a single run broke that auto did not", "rows": rows,
            "runs": [(r["folder"], r["command"]) for r in group]}


def _cell(key: str, v) -> str:
    if v is None:
        return "–"
    if not isinstance(v, float):
        return str(v)
    if key in ("kappa", "value"):
        return f"{v:g}"
    if key.startswith(("ASR", "L2 ≤", "L∞ ≤", "robust at", "best measured", "SR@")) or \
            key in ("paper", "paper claim") or "Acc" in key:
        return _pct(v)
    if "AUROC" in key or key.startswith("paper ") and key.endswith("_d"):  # AUROC columns
        return f"{v:.4f}"
    if key.startswith("paper "):
        return f"{v:.4g}"
    return f"{v:.1f}" if key.startswith("#") else f"{v:.2f}"


def write_table(out: Path, name: str, table: dict) -> list[Path]:
    """``NAME.md`` (with the title and the producing runs) and ``NAME.csv``."""
    rows = table["rows"]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    lines = [f"### {table['title']}", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    for r in rows:
        lines.append("| " + " | ".join(_cell(c, r.get(c)) for c in columns) + " |")
    lines += ["", "Runs: " + "; ".join(f"`{cmd}` ({folder})" for folder, cmd in table["runs"]),
              ""]
    out.mkdir(parents=True, exist_ok=True)
    md, cs = out / f"{name}.md", out / f"{name}.csv"
    md.write_text("\n".join(lines))
    with open(cs, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return [md, cs]


def make_report(folders: list[str | Path], out: str | Path, data_root: str | None = None,
                log=print) -> list[Path]:
    """Every table and figure the given run folders support, written into ``out``; returns the
    files. Image figures read the runs' test images (``data_root``); if the data set cannot be
    loaded they are skipped with a message."""
    out = Path(out)
    sweeps, tables, unknown, figures, references = [], {}, [], [], []
    # every sweep read and checked first: a damaged one is refused before anything is written
    loaded = {f: load_sweep(f) for f in map(Path, folders) if (f / "summary.json").is_file()}
    for f in map(Path, folders):
        if f in loaded:
            sweeps.append(loaded[f])
        elif (f / "a2d_eval.json").is_file() or f.name.endswith("a2d_eval.json"):
            path = f / "a2d_eval.json" if f.is_dir() else f
            result = _read_json(path)
            tables.update(a2d_tables(result, str(path)))
            if (path.parent / "cache").is_dir():
                figures.append(a2d_cost_figure(result, path.parent, out))
                tables.update(a2d_parameter_table(result, path.parent))
        elif f.suffix == ".json" and f.is_file() and "robust_accuracy" in _read_json(f):
            references.append({**_read_json(f), "file": str(f)})
        elif (f / "robust.json").is_file():  # an `adaptive evaluate robust` result in a folder
            references.append({**_read_json(f / "robust.json"), "file": str(f / "robust.json")})
        elif (f / "clever.json").is_file() or (f / "costs.json").is_file():
            from adaptive.report.robustness import clever_table, cost_figures

            for kind in ("clever", "costs"):
                path = f / f"{kind}.json"
                if not path.is_file():
                    continue
                result = _read_json(path)
                if kind == "clever":
                    tables.update([clever_table(result, str(path))])
                if kind == "costs" or any(im.get("cost") for im in result["images"]):
                    figures += cost_figures(result, out, str(path))
        else:
            unknown.append(str(f))
    if unknown:
        raise ToolkitError("not a run folder this report understands (a finished sweep, an "
                           "a2d evaluation, a clever or a costs run): " + ", ".join(unknown))
    pair_runs = [r for r in sweeps if r["config"].get("pairs")]
    sweeps = [r for r in sweeps if not r["config"].get("pairs")]
    # A --clever sweep (Table 4) feeds the attack-success tables and figures only when no
    # other run of its model has the same attack.
    plain = {(dataset_label(r["config"]["dataset"]), r["config"]["model"],
              r["config"].get("attack")) for r in sweeps if not r["config"].get("clever")}
    clever_runs = [r for r in sweeps if r["config"].get("clever")]
    sweeps = [r for r in sweeps if not r["config"].get("clever") or (
        dataset_label(r["config"]["dataset"]), r["config"]["model"], r["config"].get("attack"))
        not in plain]
    tables.update(sweep_tables(sweeps))
    tables.update(plausibility_tables(sweeps, references))
    figures += sweep_report_figures(sweeps, pair_runs, out, data_root, log)
    for run in clever_runs:
        cfg = run["config"]
        tables[f"{dataset_label(cfg['dataset'])}_{cfg['model']}_{cfg.get('attack', 'cw')}"
               "_robustness_vs_kappa"] = kappa_table(run)
    written = []
    for name, table in tables.items():
        written += write_table(out, name, table)
    written += figures
    write_json(out / "report_index.json", {"files": [p.name for p in written],
                                           "runs": [str(f) for f in folders]})
    return written
