"""``audit``: one call that stress-tests a defense and writes the page a reviewer reads.

Per threat model, into one run folder (``OUT/THREAT/``, each a sweep folder):

1. the probes and ``--attack auto`` (AutoAttack for defenses: APGD-CE, APGD-T, the
   detector-aware members, Square, the hard-label members and the transferred C&W, each through
   every defense's own forward) at kappa 0, with the checklist (``--checks full``), the sanity
   checks, the indicators of attack failure, the red flags and the operating points;
2. every defense on the attacked images left benign (accuracy, images flagged) and the bare
   classifier's test accuracy, for Tramèr's reduction;
3. the binarization test of APGD (on the ``-full`` objective) against each defense but
   ``none``.

Every step stores its result in the folder before the next starts, and ``resume`` reuses what
is there, so an interrupted audit loses nothing finished. Then ``audit.json`` and
``report.html`` (``adaptive.auditing.page``)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from adaptive.auditing.outcomes import EXTRAS, read_extras, threat_section
from adaptive.auditing.result import AuditResult
from adaptive.auditing.threats import Threat, parse_threat
from adaptive.core.checkpoint import write_json
from adaptive.core.data import check_dataset_name
from adaptive.core.data import data_root as resolve_data_root
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import predict_logits
from adaptive.core.runtime import resolve_device, seed_everything
from adaptive.core.zoo import load_model
from adaptive.defense import Defense
from adaptive.defense.compositions import parse_defenses, uses_randomized_magnet
from adaptive.defense.compositions import uses_magnet as magnet_needed
from adaptive.sweep.config import DATASET_DEFAULTS, SweepConfig, validate_config
from adaptive.sweep.inputs import load_defense_inputs
from adaptive.sweep.run import run_sweep
from defenses.defense import detector_flags
from defenses.magnet.defense import bundled_pool

BINARIZATION_IMAGES = 10  # images per binarization test (0: none)
BINARIZATION_INNER = 299  # inner points per image
BINARIZATION_ATTACK = "apgd-full"  # the bounded attack auto leads with, on every detector term


def default_threats(family: str) -> list[str]:
    """The data set's default bound, as a threat text."""
    d = DATASET_DEFAULTS.get(family, DATASET_DEFAULTS["mnist"])
    return [f"linf:{'8/255' if family == 'cifar10' else format(d['max_linf'], 'g')}"]


def _what(defense) -> tuple[list[str], str | None, dict[str, Defense]]:
    """(built-in compositions, plug-in factory, plug-in objects) of what ``audit`` was given."""
    if isinstance(defense, Defense):
        return ["none"], None, {defense.name: defense}
    if isinstance(defense, dict):
        if not defense or not all(isinstance(d, Defense) for d in defense.values()):
            raise ToolkitError("audit takes a Defense, a dict of them, a zoo composition "
                               "(a2d+magnet, ...) or a PKG.MOD:FACTORY")
        return ["none"], None, dict(defense)
    if not isinstance(defense, str) or not defense.strip():
        raise ToolkitError(f"audit takes a Defense, a dict of them, a zoo composition or a "
                           f"PKG.MOD:FACTORY, not {type(defense).__name__}")
    if ":" in defense:
        return ["none"], defense.strip(), {}
    return parse_defenses(defense), None, {}


def _benign(defenses: dict[str, Defense], x: torch.Tensor, y: torch.Tensor, index: list[int],
            device) -> dict:
    """Each defense on the benign images: classified correctly, flagged by any detector."""
    out = {}
    for name, d in defenses.items():
        pred = predict_logits(d.classifier, x, device=device).argmax(1)
        flagged = torch.zeros(len(x), dtype=torch.bool)
        for det_name, det in d.detectors.items():
            flagged |= detector_flags(det_name, det, x.to(device)).cpu()
        out[name] = {"index": index, "correct": (pred == y).tolist(),
                     "flagged": flagged.tolist()}
    return out


def audit(defense, *, model: str = "mnist-cnn", data: str | None = None,
          threats=None, n: int = 100, n_cal: int | None = None, out: str | Path | None = None,
          resume: bool = False, device="auto", seed: int = 0, batch: int | None = None,
          binarization_images: int = BINARIZATION_IMAGES, executor=None, data_root=None,
          progress: bool = True, command: str = "", log=print) -> AuditResult:
    """Stress-test ``defense`` and write its report; returns the :class:`AuditResult`.

    ``defense``: a :class:`~defenses.Defense` (or a dict of them by name), a zoo composition
    (``"a2d+magnet"``, comma-separated for several) or a ``"PKG.MOD:FACTORY"`` plug-in.
    ``model``: the bare classifier (zoo name or checkpoint) the images are chosen with, the
    transferred attack made on and a hidden gradient stood in for; ``data``: the test set
    (default: the model's); ``threats``: ``"linf:8/255"``, ``"l2:0.5"``, ... (default: the data
    set's L∞ bound); ``n``: images attacked (correctly classified by ``model``); ``out``: the
    run folder (default ``runs/audit-TIME``); ``resume``: continue the audit there."""
    threat_texts = [threats] if isinstance(threats, str) else list(threats or [])
    parsed = [parse_threat(t) for t in threat_texts]
    if len({t.slug for t in parsed}) != len(parsed):
        raise ToolkitError("a threat model is given twice")
    if binarization_images < 0:
        raise ToolkitError("binarization_images must be 0 or more")
    names, module, objects = _what(defense)
    device = resolve_device(device)
    bare, meta = load_model(model, device)
    family = meta["dataset"]
    defaults = DATASET_DEFAULTS.get(family, DATASET_DEFAULTS["mnist"])
    dataset = check_dataset_name(str(data or defaults["dataset"]))
    parsed = parsed or [parse_threat(t) for t in default_threats(family)]
    folder = Path(out or f"runs/audit-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume and not (folder / "audit.json").is_file() and not any(
            (folder / t.slug / "config.json").is_file() for t in parsed):
        raise ToolkitError(f"--resume given but {folder} holds no audit to continue; leave out "
                           "--resume to start one")
    if not resume and folder.exists() and any(folder.iterdir()):
        raise ToolkitError(f"{folder} is not empty; give another --out, or --resume to "
                           "continue the audit there")
    uses_magnet = magnet_needed(names)
    magnet_ref = defaults["magnet"] if uses_magnet else None
    if uses_magnet and magnet_ref is None:
        raise ToolkitError("the magnet defenses need a bundled MagNet for this data set")
    magnet_ref = str(magnet_ref) if magnet_ref else None
    base = SweepConfig(dataset=dataset, model=model, model_sha256=meta["sha256"],
                       defenses=names, kappas=[0.0], n=n, seed=seed, attack="auto",
                       checks="full", magnet=magnet_ref,
                       magnet_pool=(bundled_pool(magnet_ref)
                                    if uses_magnet and uses_randomized_magnet(names) else None),
                       defense_module=module)
    if n_cal:
        base = replace(base, n_cal=n_cal)
    if batch:
        base = replace(base, batch=batch)
    configs = []
    for t in parsed:
        cfg = (replace(base, norm="linf", max_linf=t.eps, max_l2=float("inf"))
               if t.norm == "linf" else replace(base, norm="l2", max_l2=t.eps))
        validate_config(cfg, magnet=uses_magnet or None)  # every threat, before any work
        configs.append(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    root = resolve_data_root(data_root)
    sections = []
    for t, cfg in zip(parsed, configs):
        sections.append(_audit_threat(t, cfg, bare, device, folder / t.slug, objects, resume,
                                      binarization_images, executor, data_root, root,
                                      progress, command, log))
    result = AuditResult(folder, sections, command=command,
                         settings={"defense": defense if isinstance(defense, str) else
                                   ", ".join(objects), "model": model, "dataset": dataset,
                                   "threats": [t.text for t in parsed], "n": n, "seed": seed})
    result.save()
    log(f"audit: {result.verdict_line()}")
    log(f"report: {result.html_path}")
    return result


def _audit_threat(t: Threat, cfg: SweepConfig, bare, device, sweep_out: Path,
                  objects: dict[str, Defense], resume: bool, binarization_images: int,
                  executor, data_root, root, progress: bool, command: str, log) -> dict:
    extras = read_extras(sweep_out)
    seconds = extras.get("seconds", {})
    started = time.perf_counter()
    data, magnet, extra = load_defense_inputs(cfg, bare, device, data_root)
    extra = {**extra, **objects}
    names = list(cfg.defenses or [])
    cfg = replace(cfg, defenses=names + [d for d in extra if d not in names])
    log(f"audit: {t.label}: probes and auto, into {sweep_out}")
    run_sweep(cfg, bare, data, sweep_out, device, magnet=magnet, extra_defenses=extra,
              resume=resume and (sweep_out / "config.json").is_file(), command=command,
              progress=progress, executor=executor, data_root=root, log=log)
    seconds.setdefault("attacks", time.perf_counter() - started)
    extras.update(threat={"norm": t.norm, "eps": t.eps, "text": t.text}, seconds=seconds)
    if "benign" not in extras:
        from adaptive.sweep.reopen import reopen

        started = time.perf_counter()
        run = reopen(sweep_out, device, data_root, log=log, plugins=objects or None)
        x, y = data.x()[run.attacked], data.labels[run.attacked]
        extras["benign"] = _benign(run.defenses, x, y, run.attacked, device)
        pred = predict_logits(bare, data.x(), device=device).argmax(1)
        extras["bare_accuracy"] = float((pred == data.labels).float().mean())
        seconds["benign"] = time.perf_counter() - started
        write_json(sweep_out / EXTRAS, extras)
    if binarization_images and "binarization" not in extras:
        started = time.perf_counter()
        extras["binarization"] = [_binarization(sweep_out, name, device, data_root,
                                                binarization_images, objects, log)
                                  for name in cfg.defenses or [] if name != "none"]
        seconds["binarization"] = time.perf_counter() - started
        write_json(sweep_out / EXTRAS, extras)
    return threat_section(sweep_out)


def _binarization(sweep_out: Path, name: str, device, data_root, images: int,
                  objects: dict[str, Defense], log) -> dict:
    """The binarization test of :data:`BINARIZATION_ATTACK` against ``name`` (its result
    stored beside the sweep's), or why it could not run."""
    from adaptive.sweep.binarization import binarization_setup, result_name, run_binarization

    seed_everything(0)
    try:
        setup = binarization_setup(sweep_out, device, data_root, defense=name,
                                   attack=BINARIZATION_ATTACK, n=images,
                                   plugins=objects or None)
        log(f"audit: binarization test of {setup.attack} against {name} on {len(setup.index)} "
            "images")
        # inner points unjudged: the guarantee rests on the boundary point, always judged, and
        # judging a few hundred inner points per image by A2D (an attack each) would take most
        # of the audit's time
        result = run_binarization(setup, n_inner=BINARIZATION_INNER, check_inner=False,
                                  log=lambda *_: None)
    except ToolkitError as e:  # a classifier without the features hook, ...
        log(f"audit: binarization test against {name} not run: {e}")
        return {"defense": name, "skipped": str(e)}
    path = sweep_out / "diagnostics" / result_name(setup, n_inner=BINARIZATION_INNER,
                                                    check_inner=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return {"defense": name, "attack": setup.attack, "file": str(path.relative_to(sweep_out)),
            "summary": result["summary"]}
