"""The sweep's run: attack the chosen images kappa by kappa, batch by batch, measure every
adversarial example against every defense, append its records, then summarise and check.

Everything is validated before the run folder is touched; the folder is locked while the
sweep runs; each batch's adversarial examples and records are stored as it finishes, so an
interrupted run resumes where it stopped and ends with exactly the results of an uninterrupted
one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from adaptive.attacks.hard_label import DecisionOracle
from adaptive.attacks.input_diversity import InputDiversity
from adaptive.attacks.objective import Objective
from adaptive.attacks.registry import Access
from adaptive.core.checkpoint import sha256_file
from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.executor import ExecutorSettings, LocalExecutor, make_executor
from adaptive.core.runtime import environment_info, seed_everything
from adaptive.core.store import Records, RunStore
from adaptive.core.validation import check_labels_fit_model
from adaptive.core.worker_cache import worker_cached
from adaptive.defense import (
    Defense,
    detector_flags,
    detector_scores,
    judge,
    judge_over_draws,
    module_sha256,
)
from adaptive.defense.compositions import (
    build_a2d,
    build_defenses,
    is_composition,
    load_zoo_detectors,
    zoo_parts,
)
from adaptive.defense.plugins import check_plugin_names
from adaptive.defense.probes import FIDELITY_IMAGES, Probe, check_detectors, probe_all
from adaptive.diagnostics.indicators import model_flags
from adaptive.evaluations.clever import clever
from adaptive.sweep.auto import auto_batch, build_members, image_seeds
from adaptive.sweep.checks import bounded_attack_check, sanity_checks
from adaptive.sweep.config import (
    SweepConfig,
    attacked_parts,
    bound_of,
    make_attack,
    norm_label,
    start_pool,
    validate_config,
    with_eot,
)
from adaptive.sweep.diagnostics import attack_indicators, diagnostics
from adaptive.sweep.figures import sweep_figures
from adaptive.sweep.images import plan_images
from adaptive.sweep.objectives import attack_objective, objective_groups, own_objectives
from adaptive.sweep.operating_points import operating_points
from adaptive.sweep.records import (
    CHECKLIST_RECORDS,
    RECORDS,
    AttackedBatch,
    Judgement,
    batch_records,
    defense_entry,
    record_check,
    record_key,
    upgrade_record,
)
from adaptive.sweep.red_flags import red_flags
from adaptive.sweep.summary import asr_by_bound, summarize, write_summary
from defenses.a2d.cost import AttackCost
from defenses.a2d.presets import make_engine
from defenses.bpda import BPDA
from defenses.detector import Detector
from defenses.detector_zoo import DETECTORS as ZOO_DETECTORS
from defenses.detector_zoo import bundled_path


def _probe_images(data: ImageSet, attacked: torch.Tensor, cal: torch.Tensor,
                  device) -> tuple[torch.Tensor, torch.Tensor]:
    """Benign images the probes run on: the attacked ones, then the calibration images (the
    bare model labels the attacked ones right)."""
    idx = torch.cat([attacked, cal])[:FIDELITY_IMAGES] if cal is not None else attacked
    return data.x()[idx].to(device), data.labels[idx].to(device)


def _log_probe_actions(cfg: SweepConfig, judges: _Judges, log) -> None:
    """What the probes change in how the defenses are attacked and judged, in one line each."""
    for name, probe in judges.probes.items():
        if probe.random:
            log(f"{name} is random: attacks aimed at it average {cfg.random_eot} gradient "
                f"samples per step (EOT) and each example is judged on {cfg.draws} draws")
        if probe.masked and judges.defenses[name].surrogate is not None:
            log(f"{name}: attacks follow its surrogate's gradient (BPDA); examples are judged "
                "by its real classifier")
        elif name in judges.hidden() and not cfg.bare_gradient:
            log(f"{name} hides its gradient and declares no surrogate: only the gradient-free "
                "attacks (square, rays, hsj) and transfer aim at it (--no-bare-gradient)")
        elif name in judges.hidden():
            log(f"{name} hides its gradient and declares no surrogate: white-box attacks aimed "
                "at it follow the bare classifier's gradient through its forward (BPDA), "
                "beside the gradient-free ones (square, rays, hsj); declare a surrogate for a "
                "closer one")
        elif probe.masked and cfg.attack == "auto" and cfg.bare_gradient:
            log(f"{name}: its gradient does not predict its forward (first order): white-box "
                "attacks may be misled; auto's apgd-di also follows the bare classifier's "
                "input-diversity gradient through its forward; a surrogate (BPDA) may break "
                "more")
        elif probe.masked:
            log(f"{name}: its gradient does not predict its forward (first order): white-box "
                "attacks may be misled; a surrogate (BPDA) may break more")


def run_identity(cfg: SweepConfig, data: ImageSet, magnet=None,
                 extra_defenses: dict[str, Defense] | None = None) -> dict:
    """Hashes of every input a sweep's results depend on: the data actually used, the model,
    MagNet's autoencoders and spec, and a plug-in defense's module file. A resume must match."""
    identity = {f"data:{data.name}:{data.split}": data.sha256(),
                f"model:{cfg.model}": cfg.model_sha256}
    if magnet is not None:
        identity.update({f"model:magnet:{k}": v for k, v in magnet.autoencoder_sha256.items()})
        identity["magnet_spec"] = magnet.spec_sha256()
        identity.update({f"model:magnet-pool:{k}": v for k, v in magnet.pool_sha256.items()})
    if cfg.defense_module:
        identity["defense_module"] = module_sha256(cfg.defense_module)
    for part in zoo_parts(cfg.defenses):  # the bundled detectors' files
        path = bundled_path(part, cfg.model)
        identity[f"detector:{part}"] = sha256_file(path) if path.is_file() else ""
    return identity


def run_sweep(cfg: SweepConfig, model: nn.Module, data: ImageSet, out, device, *,
              magnet=None, extra_defenses: dict[str, Defense] | None = None,
              resume: bool = False, command: str = "", progress: bool = True,
              executor: ExecutorSettings | None = None, data_root=None,
              log=print) -> SweepResult:
    """Run (or with ``resume``, continue) the sweep ``cfg`` of ``model`` on ``data`` into the
    folder ``out``. ``magnet``: the MagNet defense when the run has one; ``extra_defenses``:
    plug-in defenses by name; ``executor``: where the units (kappa x batch) run (local by
    default; on Ray every worker loads the model, ``data`` from ``data_root`` and the defenses
    itself and must find the same files). Returns a :class:`SweepResult`."""
    validate_config(cfg, magnet=magnet)
    check_labels_fit_model(data.labels, model, data.name)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    attacked, cal, targets = plan_images(cfg, model, data, device)
    identity = run_identity(cfg, data, magnet, extra_defenses)
    # a plug-in's forward probed (and its surrogate tested) before the run folder is made
    benign = _probe_images(data, attacked, cal, device)
    check_plugin_names(extra_defenses or {})
    for plugin in (extra_defenses or {}).values():
        check_detectors(plugin, benign[0])
    probes = probe_all(extra_defenses or {}, *benign, log=log, detectors=True)
    seed_everything(cfg.seed)
    with RunStore(out, asdict(cfg), resume, defaults=asdict(SweepConfig()), identity=identity,
                  command=command, log=log) as store:
        store.write_config({"command": command, "environment": environment_info(),
                            "model_sha256": {k[len("model:"):]: v for k, v in identity.items()
                                             if k.startswith("model:")}})
        executor = executor or ExecutorSettings()
        runner = make_executor(executor)
        try:
            judges = _build_judges(store, cfg, model, data, device, cal, magnet,
                                   extra_defenses, log, runner, executor)
            built_in = {k: d for k, d in judges.defenses.items() if k not in probes}
            found = {**probe_all(built_in, *benign, log=log), **probes}
            judges.use_probes(found)
            seed_everything(cfg.seed)
            _log_probe_actions(cfg, judges, log)
            records = store.records(RECORDS, record_key, record_check(cfg.kappas))
            log(f"sweep: {cfg.n} images of {data.name}, kappa {cfg.kappas}, defenses "
                f"{', '.join(judges.defenses)}, {norm_label(cfg)} bound {bound_of(cfg):g}; "
                f"results in {store.out}")
            ctx = _unit_context(cfg, model, data, device, attacked, targets, judges, magnet,
                                extra_defenses, log)
            _attack_all(store, records, ctx, identity, runner, executor, data_root, progress,
                        log)
        finally:
            runner.close()
        return _finish(store, records, cfg, model, data, device, judges, log, t_start,
                       serial_position(cfg, attacked, targets))


@dataclass
class SweepResult:
    """What a finished sweep found (the same as its folder's ``summary.json``): the settings
    (``config``), one row per kappa x defense (``rows``: ``attack_success_rate``, ``mean_l2``,
    ``detection_rate:DETECTOR``, ...), ASR by bound, the operating points (SR@5, AUROC), the
    sanity checks and the diagnostics; ``out``: the run folder. ``result["rows"]`` reads a
    field by name, as the dict earlier versions returned."""

    config: dict
    rows: list[dict]
    asr_by_l2_bound: list[dict]
    operating_points: list[dict]
    sanity_checks: list[dict]
    diagnostics: dict
    out: Path

    def __getitem__(self, name: str):
        if name not in {f.name for f in fields(self)}:
            raise KeyError(name)
        return getattr(self, name)

    def failed_checks(self) -> list[dict]:
        """The sanity checks that failed (each printed as a WARNING during the run)."""
        return [c for c in self.sanity_checks if not c["passed"]]


@dataclass
class _Judges:
    """What judges each adversarial example: the defenses, their detectors, and the engine
    that measures every example's BIM_d cost (A2D's own when A2D is in the run)."""

    cfg: SweepConfig
    model: nn.Module
    device: torch.device
    a2d: object | None
    defenses: dict[str, Defense]
    detectors: dict
    cost_engine: object
    # each detector's scores of the benign calibration images (for operating points)
    benign_scores: dict = None
    # what the probes found of each defense (adaptive.defense.probes), before any attack
    probes: dict[str, Probe] = field(default_factory=dict)
    # per defense that hides its gradient and declares no surrogate, what the attacks aimed at
    # it differentiate: its own forward, with the bare classifier's gradient (BPDA)
    stand_ins: dict[str, nn.Module] = field(default_factory=dict)
    _made: dict = field(default_factory=dict, repr=False)  # stand-ins by (classifier, kind)

    def use_probes(self, probes: dict[str, Probe]) -> None:
        """Take what the probes found (one per defense), and give each defense they found
        hiding its gradient its stand-in (``stand_ins``, of the run's ``--stand-in`` kind)."""
        self.probes = {k: probes[k] for k in self.defenses if k in probes}
        self._made = {}
        self.stand_ins = {name: self.stand_in(name, self.cfg.stand_in)
                          for name in sorted(self.hidden() if self.cfg.bare_gradient else ())}

    def stand_in(self, name: str, kind: str) -> nn.Module:
        """The forward of defense ``name`` with the gradient of the bare classifier (``bare``)
        or of its input-diversity average (``diverse``): BPDA. Defenses sharing a classifier
        share it."""
        classifier = self.defenses[name].classifier
        key = (id(classifier), kind)
        if key not in self._made:
            guide = self.model if kind == "bare" else InputDiversity(self.model)
            self._made[key] = BPDA(classifier, guide)
        return self._made[key]

    def guided(self) -> set[str]:
        """The defenses whose own gradient misleads or is missing and that declare no
        surrogate, where the bare classifier's gradient may guide (not with
        ``--no-bare-gradient``): the hidden ones given a stand-in, and those whose gradient
        does not predict their forward (first order). ``auto``'s ``apgd-di`` aims at them."""
        mismatched = {name for name, p in self.probes.items()
                      if p.gradient == "first_order_mismatch"
                      and self.defenses[name].surrogate is None}
        return set(self.stand_ins) | (mismatched if self.cfg.bare_gradient else set())

    def is_random(self, name: str) -> bool:
        probe = self.probes.get(name)
        return probe is not None and probe.random

    def random_models(self) -> set[int]:
        """ids of the classifiers (and surrogates) of the defenses probed random: an attack
        through one averages its gradients over draws (EOT)."""
        return {id(m) for name, d in self.defenses.items() if self.is_random(name)
                for m in (d.classifier, d.surrogate, *self._stand_ins_of(d.classifier))
                if m is not None}

    def _stand_ins_of(self, classifier) -> list[nn.Module]:
        return [m for (cid, _), m in self._made.items() if cid == id(classifier)]

    def hidden(self) -> set[str]:
        """The defenses whose gradient the probes found hidden (zero or not finite) and that
        declare no surrogate: no white-box attack can follow them."""
        return {name for name, p in self.probes.items()
                if p.hidden and self.defenses[name].surrogate is None}

    def unfollowable(self) -> set[str]:
        """The defenses no white-box attack can follow: hidden, without a stand-in."""
        return self.hidden() - set(self.stand_ins)

    def scores(self, x: torch.Tensor, costs=None) -> dict[str, torch.Tensor | None]:
        """Each detector's score of ``x`` (higher = more adversarial; None for a plug-in
        without ``score``); A2D's from the BIM_d ``costs`` when given (the same as its own)."""
        out = {}
        for name, det in self.detectors.items():
            if det is self.a2d and costs is not None and len(self.cfg.a2d_engines) == 1:
                out[name] = torch.from_numpy(
                    det.zscore.score({self.cfg.a2d_engines[0]: costs})).float()
            else:
                out[name] = detector_scores(name, det, x.to(self.device))
        return out

    def measure(self, adv, x, y, attack_ok, targets, all_costs: bool = True):
        """(BIM_d costs, detector flags, verdict per defense, detector scores) of the examples
        ``adv`` of the images ``x`` (labels ``y``; ``targets`` for a targeted sweep). Without
        ``all_costs`` (an auto member's examples, of which only those that break a defense can
        end up in a record) and where A2D does not judge, the BIM_d cost is measured only for
        the examples that break some defense; the others' is -1."""
        need_costs = all_costs or any(det is self.a2d for det in self.detectors.values())
        costs = self.cost_engine.run(self.model, adv.to(self.device)) if need_costs else None
        scores = self.scores(adv, None if costs is None else costs.costs)
        flags = {}
        for name, det in self.detectors.items():
            if det is self.a2d and costs is not None:  # from the BIM_d costs just computed
                flags[name] = self.a2d.decide({self.cfg.a2d_engines[0]: costs}) \
                    if len(self.cfg.a2d_engines) == 1 else self.a2d.detect(adv)
            elif isinstance(det, Detector) and det.fitted and scores[name] is not None \
                    and len(scores[name]) == len(adv):
                flags[name] = scores[name] > det.threshold  # the contract's detect, one pass
            else:
                flags[name] = detector_flags(name, det, adv.to(self.device))
        fixed = frozenset(k for k, det in self.detectors.items() if det is self.a2d)
        verdicts = {}
        for name, d in self.defenses.items():
            mine = {k: flags[k] for k in d.detectors}
            verdicts[name] = (judge_over_draws(d, adv, x, y, attack_ok, self.cfg.threat,
                                               self.cfg.draws, targets, mine, fixed,
                                               self.device)
                              if self.is_random(name) else
                              judge(d, adv, x, y, attack_ok, self.cfg.threat, targets, mine))
        if costs is None:
            costs = self._broken_costs(adv, verdicts)
        return Judgement(costs, flags, verdicts, scores)

    def _broken_costs(self, adv, verdicts) -> AttackCost:
        """The BIM_d costs of the examples that break some defense (-1 for the others)."""
        n = len(adv)
        costs = AttackCost(torch.full((n,), -1, dtype=torch.long),
                           torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool))
        broken = torch.stack([v.success for v in verdicts.values()]).any(0).nonzero()
        rows = broken.squeeze(1)
        if len(rows):
            found = self.cost_engine.run(self.model, adv[rows].to(self.device))
            costs.costs[rows] = found.costs.cpu()
            costs.queries[rows] = found.queries.cpu()
            costs.flipped[rows] = found.flipped.cpu()
        return costs


def _calibration_unit(shared: tuple, unit: tuple[str, int, int]) -> torch.Tensor:
    """A2D's cost ``unit[0]`` of the calibration images ``unit[1]:unit[2]`` (the engines count
    per image: chunks change nothing)."""
    model, dataset, x = shared
    engine, start, stop = unit
    return make_engine(engine, dataset).run(model.get(), x[start:stop].to(model.device)).costs


def _build_judges(store: RunStore, cfg: SweepConfig, model: nn.Module, data: ImageSet, device,
                  cal: torch.Tensor, magnet, extra_defenses, log, runner=None,
                  executor: ExecutorSettings | None = None) -> _Judges:
    # The A2D detector: BIM_d costs of the benign calibration images, cached for resumes.
    a2d = None
    if (any("a2d" in d.split("+") for d in cfg.defenses)
            or "a2d" in attacked_parts(cfg.attack, cfg.defenses)):
        cal_costs = store.get("a2d_calibration")
        if cal_costs is None:
            log(f"calibrating A2D ({', '.join(cfg.a2d_engines)}) on {len(cal)} benign images")
            # in chunks of a batch: units of their own on Ray
            ref = (executor or ExecutorSettings()).model_ref(cfg.model, cfg.model_sha256, model,
                                                             device)
            units = [(e, s, min(s + cfg.batch, len(cal))) for e in cfg.a2d_engines
                     for s in range(0, len(cal), cfg.batch)]
            got = dict((runner or LocalExecutor()).map(
                _calibration_unit, (ref, cfg.dataset, data.x()[cal]), units))
            cal_costs = store.put("a2d_calibration", {
                e: torch.cat([got[u] for u in units if u[0] == e]) for e in cfg.a2d_engines},
                result=False)
        a2d = build_a2d(model, cfg.dataset, cfg.a2d_engines, cfg.h, cal_costs)
    zoo = load_zoo_detectors(cfg.defenses, model, cfg.model, cfg.model_sha256)
    defenses = build_defenses([d for d in cfg.defenses if is_composition(d)], model, a2d,
                              magnet, zoo)
    defenses.update(extra_defenses or {})
    detectors = {}
    for d in defenses.values():
        detectors.update(d.detectors)
    cost_engine = (a2d.engines[cfg.a2d_engines[0]] if a2d is not None
                   else make_engine("bim_d", cfg.dataset))
    judges = _Judges(cfg, model, device, a2d, defenses, detectors, cost_engine)
    # Benign scores for the operating points: the calibration images (benign, disjoint from the
    # attacked ones), A2D's from the calibration costs already measured.
    benign = store.get("benign_scores")
    if benign is None and detectors:
        cal_costs = store.get("a2d_calibration") if a2d is not None else None
        found = judges.scores(data.x()[cal], cal_costs[cfg.a2d_engines[0]]
                              if cal_costs is not None else None)
        benign = store.put("benign_scores", {k: v for k, v in found.items() if v is not None},
                           result=False)
    judges.benign_scores = benign or {}
    return judges


def _append(records: Records, rows: list[dict]) -> None:
    """One batch's records, durable before the next batch starts."""
    records.append(rows)


@dataclass
class _UnitContext:
    """Everything one unit (a kappa and a batch of images) needs to attack and judge."""

    cfg: SweepConfig
    model: nn.Module
    device: torch.device
    x_all: torch.Tensor
    y_all: torch.Tensor
    attacked: torch.Tensor
    targets_all: torch.Tensor | None
    judges: _Judges
    objective: Objective
    attack_model: object
    penalty: object
    start_pool: torch.Tensor | None = None  # natural images the pgd restarts start towards
    # per plug-in defense whose forward the shared objective does not follow: its own
    own: dict[str, Objective] = field(default_factory=dict)


@dataclass
class _UnitRecipe:
    """What a Ray worker builds its :class:`_UnitContext` from: the configuration, where the
    data lie, the run's identity (checked against the worker's own files) and the calibration
    the driver computed once (A2D's costs, the benign scores)."""

    cfg: SweepConfig
    data_root: str | None
    device: str
    identity: dict
    stored: dict
    attacked: torch.Tensor
    targets_all: torch.Tensor | None


class _Stored(dict):
    """The driver's stored calibration, read as a worker's store (never written)."""

    def put(self, key, value, result: bool = True):
        self[key] = value
        return value


def _unit_context(cfg: SweepConfig, model: nn.Module, data: ImageSet, device, attacked,
                  targets_all, judges: _Judges, magnet, extra_defenses, log) -> _UnitContext:
    """The context of the run's units: what the attack optimises (its objective, the model or
    oracle it attacks, its penalty) beside the images and the judges."""
    plugin_detectors = {k: v for d in (extra_defenses or {}).values()
                        for k, v in d.detectors.items()}
    # the bundled detectors (fs, maha) are aimed at as plug-ins are
    plugin_detectors.update({k: v for k, v in judges.detectors.items() if k in ZOO_DETECTORS})
    objective = attack_objective(cfg, model, judges.a2d, magnet, plugin_detectors, log,
                                 judges.defenses)
    attack_model, penalty = objective.model, objective.penalty()
    own = own_objectives(cfg, judges.defenses, objective, log, judges.stand_ins)
    if cfg.attack_choice.hard_label:  # the oracle is one defense's verdict, nothing else
        target = cfg.defenses[-1]
        log(f"{cfg.attack}: a hard-label attack on the verdict of {target!r}")
        attack_model, penalty = DecisionOracle(judges.defenses[target]), None
    x_all = data.x()
    return _UnitContext(cfg, model, device, x_all, data.labels, attacked, targets_all,
                        judges, objective, attack_model, penalty,
                        start_pool(cfg, x_all, attacked), own)


def _context_from(recipe: _UnitRecipe) -> _UnitContext:
    """The unit context a Ray worker builds from ``recipe`` (once per run and process: Ray
    reuses its workers), from its own copy of the model, data and defenses."""
    key = repr((asdict(recipe.cfg), sorted(recipe.identity.items())))
    return worker_cached(key, lambda: _build_context(recipe))


def _build_context(recipe: _UnitRecipe) -> _UnitContext:
    from adaptive.core.zoo import load_model_checked
    from adaptive.sweep.inputs import load_defense_inputs

    cfg, device = recipe.cfg, torch.device(recipe.device)
    seed_everything(cfg.seed)
    model = load_model_checked(cfg.model, cfg.model_sha256, device)
    data, magnet, extra = load_defense_inputs(cfg, model, device, recipe.data_root)
    identity = run_identity(cfg, data, magnet, extra)
    if identity != recipe.identity:
        differ = sorted(k for k in set(identity) | set(recipe.identity)
                        if identity.get(k) != recipe.identity.get(k))
        raise ToolkitError(f"this worker's files differ from the driver's: {', '.join(differ)}"
                           "; install the same data, models and defenses on every machine")
    store, quiet = _Stored(recipe.stored), (lambda *_: None)
    judges = _build_judges(store, cfg, model, data, device, None, magnet, extra, quiet)
    judges.use_probes({k: Probe.from_json(v) for k, v in recipe.stored.get("probes", {}).items()})
    return _unit_context(cfg, model, data, device, recipe.attacked, recipe.targets_all,
                         judges, magnet, extra, quiet)


def _run_unit(source: _UnitContext | _UnitRecipe, unit: tuple) -> tuple[list[dict], dict]:
    """Attack and judge one unit ``(kappa, batch number, positions in attacked)``: its records
    and the adversarial examples to store. The same result wherever it runs: every unit starts
    from the run's seed."""
    ctx = source if isinstance(source, _UnitContext) else _context_from(source)
    kappa, _, rows = unit
    cfg, model, device, judges = ctx.cfg, ctx.model, ctx.device, ctx.judges
    idx = ctx.attacked[rows]
    x, y = ctx.x_all[idx], ctx.y_all[idx]
    targets = ctx.targets_all[rows] if cfg.targeted else None
    labels = targets if cfg.targeted else y
    seed_everything(cfg.seed)
    adv = {"x": None, "index": idx, **({"target": targets} if targets is not None else {})}
    choice = cfg.attack_choice
    if choice.ensemble:  # the per-image worst case over the ensemble
        members = build_members(cfg, kappa, model, lambda _: ctx.objective, judges,
                                ctx.start_pool, ctx.own)
        adv["x"], rows_ = auto_batch(cfg, kappa, members, model, judges, device, idx, x, y,
                                     targets)
        _clever_of(cfg, model, device, adv["x"], rows_)
        return rows_, adv
    paper_attack = make_attack(cfg, "cw", kappa)
    attack = make_attack(_eot_config(ctx, ctx.attack_model), cfg.attack, kappa, ctx.start_pool)
    extra = {}
    if cfg.image_seeds:  # (HopSkipJump then starts from the whole batch's images)
        extra = {"seeds": image_seeds(cfg.seed, idx),
                 **({"starts": x} if choice.hard_label else {})}
    r = attack.run(ctx.attack_model, x.to(device), labels, targeted=cfg.targeted,
                   penalty=ctx.penalty, **extra)
    x_adv = adv["x"] = r.adversarial
    judged = judges.measure(x_adv, x, y, r.success, targets)
    transfer = None
    if cfg.attack != "cw" and cfg.transfer_check:  # (auto runs C&W-kappa itself)
        # The paper's attack (C&W-kappa on the bare classifier) transferred to every
        # defense: a white-box attack weaker than this is a broken attack.
        seed_everything(cfg.seed)
        t = paper_attack.run(model, x.to(device), labels, targeted=cfg.targeted)
        transfer = judges.measure(t.adversarial, x, y, t.success, targets)[2]
    rows_ = batch_records(AttackedBatch(kappa, idx, x, y, targets, r), judged, model, device,
                          transfer, attack_indicators(cfg, r, ctx.attack_model, labels,
                                                      judged.verdicts))
    _aim_at_own(ctx, kappa, idx, x, y, targets, judged, rows_)
    _clever_of(cfg, model, device, x_adv, rows_)
    return rows_, adv


def _eot_config(ctx: _UnitContext, model) -> SweepConfig:
    """The run's settings for an attack through ``model``: with ``--random-eot`` gradient
    samples per step where the probes found that forward random."""
    if id(model) in ctx.judges.random_models():
        return with_eot(ctx.cfg, ctx.cfg.random_eot)
    return ctx.cfg


def _aim_at_own(ctx: _UnitContext, kappa: float, idx: torch.Tensor, x: torch.Tensor,
                y: torch.Tensor, targets, judged: Judgement, rows: list[dict]) -> None:
    """Each plug-in defense with an objective of its own attacked again through its own forward
    (the same attack and settings), on the images the shared attack did not break against it;
    where that example breaks it (or another defense still standing), the record keeps it for
    that defense (``by``: ``ATTACK@DEFENSE``), as ``auto`` keeps its members' examples."""
    cfg = ctx.cfg
    labels_all = targets if cfg.targeted else y
    unfollowable = ctx.judges.unfollowable()
    white_box = cfg.attack_choice.spec.access is Access.GRADIENTS
    for names, objective in objective_groups(ctx.own):
        if white_box and set(names) <= unfollowable:
            continue  # no gradient to follow (said once, when the probes ran)
        todo = (~torch.stack([judged.verdicts[n].success for n in names])).any(0)
        todo = todo.nonzero().squeeze(1)
        if len(todo) == 0:
            continue
        name = names[0]
        seed_everything(cfg.seed)
        attack = make_attack(_eot_config(ctx, objective.model), cfg.attack, kappa,
                             ctx.start_pool)
        extra = {"seeds": image_seeds(cfg.seed, idx[todo])} if cfg.image_seeds else {}
        xs, ys = x[todo], y[todo]
        ts = targets[todo] if targets is not None else None
        r = attack.run(objective.model, xs.to(ctx.device), labels_all[todo],
                       targeted=cfg.targeted, penalty=objective.penalty(), **extra)
        own = ctx.judges.measure(r.adversarial, xs, ys, r.success, ts)
        own_rows = batch_records(AttackedBatch(kappa, idx[todo], xs, ys, ts, r), own,
                                 ctx.model, ctx.device)
        for k, p in enumerate(todo.tolist()):  # every defense the example breaks first
            for other, verdict in own_rows[k]["defenses"].items():
                if verdict["success"] and not rows[p]["defenses"][other]["success"]:
                    rows[p]["defenses"][other] = defense_entry(
                        own_rows[k], other, f"{cfg.attack}@{name}",
                        ctx.judges.defenses[other].detectors)


def _attack_all(store: RunStore, records: Records, ctx: _UnitContext, identity: dict, runner,
                executor: ExecutorSettings, data_root, progress: bool, log) -> None:
    cfg, attacked, targets_all = ctx.cfg, ctx.attacked, ctx.targets_all
    done = {record_key(r) for r in records.read().records}
    batches = [list(range(i, min(i + cfg.batch, len(attacked))))
               for i in range(0, len(attacked), cfg.batch)]
    # a unit is done when every record is and its examples are stored readable (an unreadable
    # cache file is removed, said and counted by the store, and the unit computed again)
    units = [(float(kappa), b, rows) for kappa in cfg.kappas
             for b, rows in enumerate(batches)
             if not all((float(kappa), int(attacked[i]),
                         int(targets_all[i]) if cfg.targeted else None) in done for i in rows)
             or store.get(f"adv_k{float(kappa):g}_b{b}") is None]
    source = ctx
    if executor.kind != "local":
        source = _UnitRecipe(cfg, None if data_root is None else str(data_root),
                             executor.unit_device, identity,
                             {**{k: store.get(k) for k in ("a2d_calibration", "benign_scores")
                                 if store.get(k) is not None},
                              "probes": {k: p.to_json() for k, p in ctx.judges.probes.items()}},
                             attacked, targets_all)
        log(f"{len(units)} units (kappa x batch) on Ray")
    bar = tqdm(total=len(units), desc="units (kappa x batch)", disable=not progress)
    try:
        for (kappa, b, _), (rows_, adv) in runner.map(_run_unit, source, units):
            store.put(f"adv_k{kappa:g}_b{b}", adv)
            # (a batch recomputed for some of its images: the others' records stand)
            _append(records, [r for r in rows_ if record_key(r) not in done])
            bar.set_postfix(kappa=kappa)
            bar.update()
    finally:
        bar.close()
    if cfg.checks == "full" and store.get("checklist") is None:
        from adaptive.sweep.checklist import example_flags, run_checklist

        log("checklist (--checks full): the attack again with more steps, more restarts, one "
            "step; random noise; a gradient-free attack")
        seed_everything(cfg.seed)
        found = records.read().records
        items = run_checklist(cfg, found, ctx.judges, ctx.attack_model, ctx.penalty,
                              ctx.x_all, ctx.y_all, ctx.device, log, ctx.start_pool)
        # per example first, then the items (which mark the checklist done): a crash between
        # the two reruns the checklist, and the per-example log counts each example once
        store.records(CHECKLIST_RECORDS, record_key).append(
            example_flags(items, found, min(cfg.kappas)))
        store.put("checklist", {"items": items})


def _clever_of(cfg: SweepConfig, model: nn.Module, device, x_adv: torch.Tensor,
               rows: list[dict]) -> None:
    """CLEVER of each example that met the attack's objective, into its record."""
    made = [j for j, row in enumerate(rows) if row["attack_success"]]
    if not cfg.clever or not made:
        return
    scores = clever(model, x_adv[made].to(device), norm="l2", target="untargeted",
                    seed=cfg.seed, **asdict(cfg.clever))
    for j, sc in zip(made, scores):
        rows[j]["clever"] = sc.score


def serial_position(cfg: SweepConfig, attacked: torch.Tensor, targets):
    """Sort key of a record: where a serial run makes it (kappa by kappa, image by image), so
    that records finished in any order (on Ray) summarise exactly as a serial run's do."""
    kappa_at = {float(k): i for i, k in enumerate(cfg.kappas)}
    image_at = {(int(i), int(targets[j]) if cfg.targeted else None): j
                for j, i in reversed(list(enumerate(attacked.tolist())))}

    def position(r: dict) -> tuple:
        _, index, target = record_key(r)
        return (kappa_at.get(float(r["kappa"]), len(kappa_at)),
                image_at.get((index, target), len(image_at)), index)
    return position


def _model_flags(judges: _Judges, data: ImageSet, sample: torch.Tensor, log) -> dict:
    """AutoAttack's flags on the classifiers the defenses answer with, on benign images."""
    found, seen = {}, set()
    for name, d in judges.defenses.items():
        if id(d.classifier) in seen or not isinstance(d.classifier, nn.Module):
            continue
        seen.add(id(d.classifier))
        flags = found[name] = model_flags(d.classifier, data.x()[sample], data.labels[sample])
        for flag, row in flags.items():
            if row["fired"]:
                log(f"model check: {flag} ({name}: {row['detail']}): {row['meaning']}")
    return found


def _finish(store: RunStore, records: Records, cfg: SweepConfig, model: nn.Module,
            data: ImageSet, device, judges: _Judges, log, t_start: float,
            position) -> SweepResult:
    """Summary, ASR by bound, sanity checks and figures, from the records alone (in the order
    a serial run makes them)."""
    found = records.read()
    recs = sorted((upgrade_record(r) for r in found.records), key=position)
    defenses = judges.defenses
    summary = summarize(recs, cfg, defenses)
    by_bound = asr_by_bound(recs, cfg, list(defenses))
    points = operating_points(recs, cfg, defenses, judges.benign_scores)
    checks = sanity_checks(recs, cfg, by_bound)
    checks += bounded_attack_check(recs, cfg, model, defenses, data.x(), data.labels, store,
                                   device, log)
    for c in checks:
        if not c["passed"]:
            log(f"WARNING: sanity check failed: {c['name']}: {c['detail']}")
    found_diagnostics = diagnostics(recs, cfg)
    listed = store.get("checklist")
    if listed is not None:
        found_diagnostics["checklist"] = listed["items"]
    sample = torch.tensor(sorted({r["index"] for r in recs})[:64], dtype=torch.long)
    if len(sample):
        found_diagnostics["model_flags"] = _model_flags(judges, data, sample, log)
    found_diagnostics["probes"] = {k: p.to_json() for k, p in judges.probes.items()}
    raised = red_flags(cfg, judges.probes,
                       {k for k, d in defenses.items() if d.surrogate is not None}, summary)
    found_diagnostics["red_flags"] = raised
    write_summary(store.out, cfg, summary, {"asr_by_l2_bound": by_bound,
                                             "operating_points": points,
                                             "sanity_checks": checks,
                                             "diagnostics": found_diagnostics,
                                             "record_integrity": {
                                                 **found.integrity(),
                                                 "torn_line_bytes_removed":
                                                     records.torn_bytes_removed,
                                                 "unreadable_cache_removed":
                                                     len(store.removed)}})
    for f in raised:
        log(f"red flag: {f['flag']} ({f['defense']}): {f['detail']}; "
            + ("cure applied: " if f["applied"] else "cure: ") + f["cure"])
    for name, row in found_diagnostics["indicators"].items():
        if row["fired"]:
            log(f"indicator of attack failure: {name} on {row['fired']} of {row['of']} "
                f"examples: {row['meaning']}")
    sweep_figures(store.out, summary, store, cfg, data, checks)
    log(f"done in {time.perf_counter() - t_start:.0f} s; results: {store.out}/summary.json, "
        f"summary.csv, {RECORDS}, figures *.png")
    return SweepResult(asdict(cfg), summary, by_bound, points, checks, found_diagnostics,
                       store.out)
