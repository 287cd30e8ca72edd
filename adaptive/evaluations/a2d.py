"""Evaluate A2D's detectors on a model: the paper's Tables 2 and 3 and Figure 6, measured.

Correctly classified test images are split (seeded) into a calibration set and a disjoint
evaluation set. Adversarial examples (FGSM, BIM, JSMA, DeepFool, C&W) are made from both. Every
engine's attack costs are computed for every set. Then:

* AUROC per engine and attack: benign evaluation costs vs adversarial evaluation costs.
* Z-score detectors (calibrated on benign calibration costs only; threshold h): detection rate
  on each attack's evaluation examples, accuracy on benign evaluation images, and the mean
  queries in detection mode (each engine stopped at its detector's cost threshold).
* The Z-score ensemble END (benign when at least k engines say benign).
* K-NN detectors, trained on calibration costs (benign + that attack's examples; END: benign +
  an equal share of every attack's), tested on evaluation costs.

Every finished piece is stored under ``OUT/cache`` as it finishes, so an interrupted run resumes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from adaptive.core.checkpoint import write_json
from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import correct_subsets
from adaptive.core.executor import ExecutorSettings, make_executor
from adaptive.core.runtime import environment_info, seed_everything
from adaptive.core.store import RunStore
from adaptive.core.zoo import ModelRef
from adaptive.evaluations.adversarial_sets import AdversarialSet, attack_settings, make_adversarial
from defenses.a2d.knn import KNNDetector
from defenses.a2d.presets import build_engine, engine_settings
from defenses.a2d.zscore import DEFAULT_H, MIN_CALIBRATION, ZScoreDetector, ZScoreEnsemble

RESULT_FILE = "a2d_eval.json"


@dataclass
class A2DEvalConfig:
    """Everything that defines an A2D evaluation (Tables 2, 3 and 7): the data set and model,
    ``n`` evaluation and ``n_cal`` disjoint calibration images, the cost ``engines`` and
    adversarial-set ``attacks`` (with their settings, filled from the data set's presets by
    ``complete()``), the Z-score threshold ``h``, the ensemble's ``k``, the K-NN's K and cost
    scaling, the seed and the engines' chunk of images per stored piece."""

    dataset: str
    model: str
    model_sha256: str
    n: int = 200
    n_cal: int = 200
    engines: list = field(default_factory=lambda: ["bim_d", "bim2_d", "jsma_d", "dba_d"])
    attacks: list = field(default_factory=lambda: ["fgsm", "bim", "jsma", "deepfool", "cw"])
    engine_settings: dict = field(default_factory=dict)
    attack_settings: dict = field(default_factory=dict)
    h: float = DEFAULT_H
    k: int = 2
    knn_k: int = 100
    knn_scale: str = "none"  # "standard": standardised costs (not in the paper; see knn.py)
    seed: int = 0
    chunk: int = 100

    def complete(self) -> A2DEvalConfig:
        """Fill in the data set's presets for engines and attacks not given explicitly."""
        for e in self.engines:
            self.engine_settings.setdefault(e, engine_settings(e, self.dataset))
        for a in self.attacks:
            self.attack_settings.setdefault(a, attack_settings(a, self.dataset))
        if len(self.engines) > 1 and not 1 <= self.k <= len(self.engines):
            raise ToolkitError(f"--k must be between 1 and {len(self.engines)}")
        if self.n_cal < MIN_CALIBRATION:
            raise ToolkitError(f"--n-cal {self.n_cal}: A2D's Z-score calibrates on at least "
                               f"{MIN_CALIBRATION} benign images")
        return self


def split_images(model: nn.Module, data: ImageSet, n_cal: int, n: int, seed: int,
                 device) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint calibration and evaluation indices among the correctly classified images."""
    cal, ev = correct_subsets(model, data, [n_cal, n], seed, device)
    return cal, ev


@dataclass
class _EvalUnits:
    """What the units of an evaluation share: the configuration, the model and the inputs:
    per split the (images, labels) for the adversarial sets, per (split, set) the images for
    the costs."""

    cfg: A2DEvalConfig
    model: ModelRef
    inputs: dict


def _adversarial_unit(shared: _EvalUnits, unit: tuple[str, str]) -> dict:
    """One adversarial set ``(split, attack)``, from the run's seed."""
    split, attack = unit
    x, y = shared.inputs[split]
    seed_everything(shared.cfg.seed)
    t0 = time.perf_counter()
    device = shared.model.device
    s: AdversarialSet = make_adversarial(attack, shared.model.get(), x.to(device), y.to(device),
                                         shared.cfg.attack_settings[attack])
    return {"x": s.x.cpu(), "source": s.source.cpu(), "attempted": torch.tensor(s.attempted),
            "seconds": torch.tensor(time.perf_counter() - t0)}


def _cost_unit(shared: _EvalUnits, unit: tuple) -> dict:
    """One chunk of an engine's costs: ``(key, engine, (split, set), part, start, cap)``."""
    _, engine, which, _, start, cap = unit
    x = shared.inputs[which][start:start + shared.cfg.chunk].to(shared.model.device)
    r = build_engine(engine, **shared.cfg.engine_settings[engine]).run(
        shared.model.get(), x, max_iter=cap)
    return {"costs": r.costs, "queries": r.queries, "flipped": r.flipped}


def _measure_costs(store: RunStore, runner, shared: _EvalUnits, jobs: list[tuple], bar: tqdm
                   ) -> None:
    """The costs of ``jobs`` ``(key, engine, (split, set), cap)``, chunk by chunk as units;
    each chunk is stored as it finishes, each job's costs once its chunks are all in."""
    jobs = [j for j in jobs if store.get(j[0]) is None]
    sizes = {j[0]: len(shared.inputs[j[2]]) for j in jobs}
    units = [(key, engine, which, i, start, cap) for key, engine, which, cap in jobs
             for i, start in enumerate(range(0, sizes[key], shared.cfg.chunk))
             if store.get(f"{key}.part{i}") is None]
    for unit, part in runner.map(_cost_unit, shared, units):
        store.put(f"{unit[0]}.part{unit[3]}", part)
        bar.set_postfix_str(f"{unit[0]} {min(unit[4] + shared.cfg.chunk, sizes[unit[0]])}/"
                            f"{sizes[unit[0]]}")
    for key, *_ in jobs:
        n_parts = len(range(0, sizes[key], shared.cfg.chunk))
        parts = [store.get(f"{key}.part{i}") for i in range(n_parts)]
        store.put(key, {k: torch.cat([p[k] for p in parts])
                        for k in ("costs", "queries", "flipped")})
        for i in range(n_parts):
            store.remove(f"{key}.part{i}")
        bar.update()


def run_a2d_evaluation(cfg: A2DEvalConfig, model: nn.Module, data: ImageSet, out, device,
                       resume: bool = False, command: str = "", progress: bool = True,
                       executor: ExecutorSettings | None = None, log=print) -> dict:
    """Make the adversarial sets, measure every engine's costs, fit and score the detectors
    (Tables 2, 3 and 7) into the locked folder ``out``; returns what ``a2d_eval.json`` holds.
    ``executor``: where the units (an adversarial set; a chunk of an engine's costs) run, in
    this process by default or on Ray (each worker loads the model and checks its hash)."""
    cfg.complete()
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    cal_idx, eval_idx = split_images(model, data, cfg.n_cal, cfg.n, cfg.seed, device)
    identity = {f"data:{data.name}:{data.split}": data.sha256(),
                f"model:{cfg.model}": cfg.model_sha256}
    # runs made before knn_scale existed used raw costs: its default
    with RunStore(out, asdict(cfg), resume, defaults={"knn_scale": A2DEvalConfig.knn_scale},
                  identity=identity, command=command, log=log) as store:
        store.write_config({"command": command, "environment": environment_info()})
        runner = make_executor(executor)
        try:
            return _evaluate(store, cfg, model, data, device, cal_idx, eval_idx, command,
                             progress, log, t_start, runner, executor or ExecutorSettings())
        finally:
            runner.close()


def _adversarial_sets(store: RunStore, cfg: A2DEvalConfig, runner, shared: _EvalUnits,
                      splits: dict, x_all: torch.Tensor, y_all: torch.Tensor, progress: bool
                      ) -> tuple[dict[tuple[str, str], torch.Tensor], dict]:
    """Every split's benign images and each attack's adversarial set (made where not stored
    yet), and per attack what its evaluation set holds (``adv_info``)."""
    keys = {(split, attack): f"adv_{split}_{attack}" for split in splits for attack in cfg.attacks}
    missing = [u for u, key in keys.items() if store.get(key) is None]
    bar = tqdm(total=len(keys), initial=len(keys) - len(missing), desc="adversarial sets",
               disable=not progress)
    for unit, got in runner.map(_adversarial_unit, shared, missing):
        store.put(keys[unit], got)
        bar.set_postfix_str(keys[unit])
        bar.update()
    bar.close()
    sets: dict[tuple[str, str], torch.Tensor] = {}
    adv_info = {}
    for split, idx in splits.items():
        sets[(split, "benign")] = x_all[idx]
        for attack in cfg.attacks:
            got = store.get(keys[(split, attack)])
            sets[(split, attack)] = got["x"]
            if split == "eval":
                l2 = (got["x"] - x_all[idx][got["source"]]).flatten(1).norm(dim=1)
                adv_info[attack] = {"attempted": int(got["attempted"]),
                                    "succeeded": len(got["x"]),
                                    "mean_l2": float(l2.mean()) if len(l2) else None,
                                    "settings": cfg.attack_settings[attack]}
            if len(got["x"]) == 0:
                raise ToolkitError(f"{attack} produced no successful adversarial example on "
                                   f"the {split} images; nothing to evaluate")

    return sets, adv_info


def _zscore_results(store: RunStore, cfg: A2DEvalConfig, runner, shared: _EvalUnits,
                    engines: dict, c, costs: dict, result: dict, progress: bool) -> dict:
    """Each engine's Z-score detector fitted on the benign calibration costs: its AUROCs,
    accuracy and detection rates, its costs, and its detection-mode run (each engine stopped at
    its threshold; a changed decision is a bug) into ``result``; returns the detectors."""
    zdet, threshold = {}, {}
    for name in cfg.engines:
        zdet[name] = ZScoreDetector(cfg.h).fit(c(name, "cal", "benign"))
        threshold[name] = zdet[name].cost_threshold()
    # Detection mode: each engine stopped at its detector's threshold (measured, not derived)
    bar = tqdm(total=len(cfg.engines) * (1 + len(cfg.attacks)), desc="detection mode",
               disable=not progress, leave=False)
    _measure_costs(store, runner, shared,
                   [(f"detq_{name}_eval_{set_name}", name, ("eval", set_name),
                     max(1, min(threshold[name], engines[name].max_iter)))
                    for name in cfg.engines for set_name in ["benign", *cfg.attacks]], bar)
    bar.close()
    for name in cfg.engines:
        benign = c(name, "eval", "benign")
        result["auroc"][name] = {}
        for attack in cfg.attacks:
            adv = c(name, "eval", attack)
            labels = np.r_[np.zeros(len(benign)), np.ones(len(adv))]
            result["auroc"][name][attack] = float(roc_auc_score(labels, -np.r_[benign, adv]))
        det = zdet[name]
        detq = {}
        for set_name in ["benign", *cfg.attacks]:
            r = store.get(f"detq_{name}_eval_{set_name}")
            if not np.array_equal(det.predict(r["costs"].numpy()),
                                  det.predict(c(name, "eval", set_name))):
                raise RuntimeError(f"detection mode changed a decision of {name}")
            detq[set_name] = float(r["queries"].float().mean())
        result["zscore"][name] = {
            "benign_accuracy": float(1 - det.predict(benign).mean()),
            "detection_rate": {a: float(det.predict(c(name, "eval", a)).mean())
                               for a in cfg.attacks},
            "cost_threshold": threshold[name], "boxcox_lambda": det.boxcox_lambda,
            "normality_p": det.normality_p, "calibration": det.to_dict()}
        result["costs"][name] = {
            s: {"mean_cost": float(costs[(name, "eval", s)]["costs"].float().mean()),
                "median_cost": float(costs[(name, "eval", s)]["costs"].float().median()),
                "mean_queries": float(costs[(name, "eval", s)]["queries"].float().mean()),
                "mean_queries_detection_mode": detq[s],
                "flipped": float(costs[(name, "eval", s)]["flipped"].float().mean())}
            for s in ["benign", *cfg.attacks]}
        zdet[name].save(store.out / f"zscore_{name}.json")

    return zdet


def _ensemble_result(store: RunStore, cfg: A2DEvalConfig, zdet: dict, c) -> dict:
    """The Z-score ensemble of every engine (END): benign accuracy and detection rates."""
    ens = ZScoreEnsemble(cfg.engines, cfg.k, cfg.h)
    ens.detectors = zdet
    ens.save(store.out / "zscore_ensemble.json")

    def vec(split, set_name):
        return {e: c(e, split, set_name) for e in cfg.engines}
    return {"k": cfg.k, "benign_accuracy": float(1 - ens.predict(vec("eval", "benign")).mean()),
            "detection_rate": {a: float(ens.predict(vec("eval", a)).mean())
                               for a in cfg.attacks}}


def _knn_results(cfg: A2DEvalConfig, c, result: dict) -> None:
    """The K-NN detectors on each engine's costs (and on all engines', END) into ``result``."""
    knn_k_used = {}
    for name in cfg.engines + (["END"] if len(cfg.engines) > 1 else []):
        names = cfg.engines if name == "END" else [name]

        def mat(split, set_name):
            return np.stack([c(e, split, set_name) for e in names], axis=1)
        result["knn"][name] = {}
        train_sets = ({a: mat("cal", a) for a in cfg.attacks} if name != "END" else
                      {"all": np.concatenate([mat("cal", a)[:max(1, cfg.n_cal // len(cfg.attacks))]
                                              for a in cfg.attacks])})
        for key, adv_train in train_sets.items():
            benign_train = mat("cal", "benign")
            k_used = min(cfg.knn_k, len(benign_train) + len(adv_train))
            knn = KNNDetector(k_used, cfg.knn_scale).fit(benign_train, adv_train)
            knn_k_used[name] = k_used
            attacks = cfg.attacks if key == "all" else [key]
            benign_acc = float(1 - knn.predict(mat("eval", "benign")).mean())
            for a in attacks:
                result["knn"][name][a] = {
                    "benign_accuracy": benign_acc,
                    "adversarial_accuracy": float(knn.predict(mat("eval", a)).mean())}
    result["knn_k"] = knn_k_used
    result["knn_scale"] = cfg.knn_scale
    result["knn_k"] = knn_k_used
    result["knn_scale"] = cfg.knn_scale


def _evaluate(store: RunStore, cfg: A2DEvalConfig, model: nn.Module, data: ImageSet, device,
              cal_idx: torch.Tensor, eval_idx: torch.Tensor, command: str, progress: bool,
              log, t_start: float, runner, executor: ExecutorSettings) -> dict:
    out = store.out
    x_all, y_all = data.x(), data.labels
    splits = {"cal": cal_idx, "eval": eval_idx}
    log(f"A2D evaluation: {cfg.n_cal} calibration + {cfg.n} evaluation images of {data.name}, "
        f"engines {', '.join(cfg.engines)}, attacks {', '.join(cfg.attacks)}; results in {out}")

    shared = _EvalUnits(cfg, executor.model_ref(cfg.model, cfg.model_sha256, model, device),
                        {split: (x_all[idx], y_all[idx]) for split, idx in splits.items()})
    sets, adv_info = _adversarial_sets(store, cfg, runner, shared, splits, x_all, y_all,
                                       progress)
    engines = {e: build_engine(e, **cfg.engine_settings[e]) for e in cfg.engines}
    shared.inputs = sets
    bar = tqdm(total=len(engines) * len(sets), desc="attack costs", disable=not progress)
    _measure_costs(store, runner, shared, [(f"cost_{name}_{split}_{set_name}", name,
                                            (split, set_name), None)
                                           for name in engines for split, set_name in sets],
                   bar)
    bar.close()
    costs = {(name, split, set_name): store.get(f"cost_{name}_{split}_{set_name}")
             for name in engines for split, set_name in sets}

    def c(name, split, set_name):
        return costs[(name, split, set_name)]["costs"].numpy().astype(float)

    result = {"command": command, "seed": cfg.seed, "dataset": cfg.dataset, "model": cfg.model,
              "model_sha256": cfg.model_sha256, "n_calibration": cfg.n_cal, "n_evaluation": cfg.n,
              "h": cfg.h, "k": cfg.k, "engines": {n: e.config() for n, e in engines.items()},
              "attacks": adv_info, "auroc": {}, "zscore": {}, "zscore_ensemble": {},
              "knn": {}, "costs": {}}
    zdet = _zscore_results(store, cfg, runner, shared, engines, c, costs, result, progress)
    if len(cfg.engines) > 1:
        result["zscore_ensemble"] = _ensemble_result(store, cfg, zdet, c)
    _knn_results(cfg, c, result)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["environment"] = environment_info()
    write_json(store.out / RESULT_FILE, result)
    log(f"wrote {store.out / RESULT_FILE}")
    return result
