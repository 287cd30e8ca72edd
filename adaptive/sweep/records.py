"""A sweep's records: one JSON line per (kappa, attacked image, target), appended to
``records.jsonl`` as each batch finishes (``adaptive.core.records`` keeps them whole and
counted once).

A record holds the attack's own outcome (``attack_success``: the kappa margin reached, and the
other objective terms met for the adaptive attacks; ``attack_steps``: gradient steps spent;
``attack_confidence``: the highest confidence any iterate reached; ``indicators``: which
indicators of attack failure fired, adaptive.diagnostics.indicators), the distortion (``l2``,
``linf``, ``ssim``), the bare classifier's prediction, the BIM_d cost, CLEVER, every detector's
flag, and per defense the verdict with every reason it failed. Runs made before the keys were
attack-neutral wrote ``cw_success``, ``cw_steps`` and ``cw_confidence``; they are read under the
new names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch

from adaptive.attacks.base import AttackResult
from adaptive.core import metrics
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import predict_logits
from adaptive.core.records import RecordLog

RECORDS = "records.jsonl"
# the checklist's verdict per example it attacked again (``--checks full``), beside the records
CHECKLIST_RECORDS = "checklist.jsonl"
# old key -> attack-neutral key (records written before every attack shared the names)
RENAMED = {"cw_success": "attack_success", "cw_steps": "attack_steps",
           "cw_confidence": "attack_confidence"}


def record_key(r: dict) -> tuple:
    """What makes a sweep record unique: one per (kappa, image, target)."""
    return (float(r["kappa"]), int(r["index"]), r.get("target"))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(r: dict, kappas: set[float] | None = None) -> str | None:
    """What is wrong with a sweep record (after :func:`upgrade_record`), None if it is whole:
    the fields every reader needs, of the right types, and (``kappas``: the run's) a kappa
    of the run."""
    for name, ok in (("kappa", _number), ("index", lambda v: type(v) is int),
                     ("label", lambda v: type(v) is int),
                     ("attack_success", lambda v: isinstance(v, bool)),
                     ("l2", lambda v: v is None or _number(v)),
                     ("defenses", lambda v: isinstance(v, dict) and bool(v))):
        if name not in r:
            return f"no {name!r}"
        if not ok(r[name]):
            return f"{name!r} is {r[name]!r}"
    for name, v in r["defenses"].items():
        if not isinstance(v, dict) or not isinstance(v.get("success"), bool):
            return f"no verdict for defense {name!r}"
    if kappas is not None and float(r["kappa"]) not in kappas:
        return f"kappa {r['kappa']:g} is not one of the run's"
    return None


def record_check(kappas: list[float] | None = None):
    """:func:`record_problem` as a records file's check (``RecordLog(check=...)``)."""
    run = None if kappas is None else {float(k) for k in kappas}
    return lambda r: record_problem(upgrade_record(r), run)


def upgrade_record(r: dict) -> dict:
    """A record under the current key names (old runs' ``cw_*`` keys renamed)."""
    if not any(k in r for k in RENAMED):
        return r
    return {RENAMED.get(k, k): v for k, v in r.items()}


# What a record of ``--attack auto`` holds per defense (its example for that defense may come
# from another member than the record's own, see adaptive.sweep.auto).
PER_DEFENSE = ("attack_success", "attack_steps", "attack_confidence", "l2", "linf", "ssim",
               "pred_bare", "bim_d_cost", "flags", "scores")  # CLEVER: of the record's example


def defense_view(r: dict, name: str) -> dict:
    """The record as defense ``name`` saw it: for ``--attack auto`` the measurements of the
    example chosen for that defense; for every other attack the record itself."""
    entry = r["defenses"][name]
    if "by" not in entry:
        return r
    return {**r, **{k: entry[k] for k in PER_DEFENSE if k in entry}}


def defense_entry(record: dict, name: str, by: str | None, detectors) -> dict:
    """The verdict against ``name`` of the example in ``record`` with that example's own
    measurements (see :func:`defense_view`)."""
    entry = dict(record["defenses"][name])
    entry["by"] = by
    for key in PER_DEFENSE:
        if key in ("flags", "scores"):
            if key in record:
                entry[key] = {d: record[key][d] for d in detectors if d in record[key]}
        else:
            entry[key] = record[key]
    return entry


def read_records(path: Path, refuse_damage: bool = False) -> list[dict]:
    """The records of a sweep folder's ``records.jsonl``, each (kappa, image, target) once,
    under the current key names, lines that are not whole records skipped (``refuse_damage``:
    refused in one line instead, for readers that must not guess); the examples the checklist
    attacked again (``--checks full``) carry its verdict under ``checklist``: per item, the
    defenses its variant broke although the attack did not (``checklist.jsonl`` beside the
    records)."""
    found = RecordLog(path, record_key, record_check()).read()
    if refuse_damage and (found.unreadable or found.invalid):
        what = [f"{found.unreadable} unreadable line(s)"] if found.unreadable else []
        what += [f"{found.invalid} invalid record(s) ({found.invalid_reason})"] \
            if found.invalid else []
        raise ToolkitError(f"{path} is damaged: {', '.join(what)}; resume the sweep "
                           "(--resume) to compute them again")
    records = [upgrade_record(r) for r in found.records]
    checked = Path(path).with_name(CHECKLIST_RECORDS)
    if checked.exists():
        flags = {record_key(r): r["checklist"]
                 for r in RecordLog(checked, record_key).read().records if "checklist" in r}
        records = [{**r, "checklist": flags[record_key(r)]} if record_key(r) in flags else r
                   for r in records]
    return records


@dataclass
class SweepRecord:
    """One line of ``records.jsonl``: an attacked (kappa, image, target) as measured.

    ``attack_*``: the attack's own outcome (objective met, gradient steps or queries spent,
    highest confidence any iterate reached); ``l2``, ``linf``, ``ssim``: the example's
    distortion; ``pred_bare``: the bare classifier's label; ``bim_d_cost``: its BIM_d attack
    cost; ``clever``: its CLEVER score (None: not measured); ``flags`` and ``scores``: each
    detector's verdict and score; ``defenses``: per defense ``{"success", "pred", "reasons"}``
    (and ``fooled_draws``, the share of draws fooled, against a defense probed random)
    (``auto`` adds ``by`` and that example's own measurements, :data:`PER_DEFENSE`);
    ``transfer``: per defense, whether the paper's attack transferred from the bare classifier
    broke it; ``indicators``: the indicators of attack failure that fired; ``auto``: which
    members ran; ``checklist``: the checklist's verdict (merged by :func:`read_records`).
    Optional parts are None and left out of the JSON; ``extra`` keeps keys this version does not
    know, so a record read and written again loses nothing."""

    kappa: float
    index: int
    label: int
    target: int | None
    attack_success: bool
    attack_steps: int
    attack_confidence: float | None
    l2: float
    linf: float
    ssim: float
    pred_bare: int
    bim_d_cost: int
    clever: float | None
    flags: dict
    defenses: dict
    scores: dict | None = None
    transfer: dict | None = None
    indicators: dict | None = None
    auto: dict | None = None
    checklist: dict | None = None
    extra: dict = field(default_factory=dict)

    # the JSON's key order (as every version wrote it); optional keys only where set
    _ORDER = ("kappa", "index", "label", "target", "attack_success", "attack_steps",
              "attack_confidence", "l2", "linf", "ssim", "pred_bare", "bim_d_cost", "clever",
              "flags", "scores", "defenses", "transfer", "indicators", "auto", "checklist")
    _OPTIONAL = ("scores", "transfer", "indicators", "auto", "checklist")

    def to_json(self) -> dict:
        out = {}
        for key in self._ORDER:
            value = getattr(self, key)
            if value is not None or key not in self._OPTIONAL:
                out[key] = value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, r: dict) -> SweepRecord:
        """A record from its JSON (old runs' ``cw_*`` keys read under the current names);
        a record missing a required key is refused with a ``ToolkitError``."""
        r = upgrade_record(r)
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [k for k in cls._ORDER if k not in cls._OPTIONAL and k not in r]
        if missing:
            raise ToolkitError(f"a record of (kappa {r.get('kappa')}, image {r.get('index')}) "
                               f"lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in r.items() if k in known},
                   extra={k: v for k, v in r.items() if k not in known})


@dataclass
class AttackedBatch:
    """One batch an attack ran on: ``kappa``, the images' data-set ``index``, the images ``x``,
    their ``labels``, the ``targets`` (targeted runs) and the attack's ``result``."""

    kappa: float
    index: torch.Tensor
    x: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    result: AttackResult


class Judgement(NamedTuple):
    """What judging a batch's examples measured (``adaptive.sweep.run``'s judges): the BIM_d
    costs, every detector's flags and scores, and the verdict per defense."""

    costs: Any  # an AttackCost: per-image ``costs``
    flags: dict
    verdicts: dict
    scores: dict


def batch_records(batch: AttackedBatch, judged: Judgement, model, device,
                  transfer: dict | None = None,
                  indicators: dict | None = None) -> list[dict]:
    """The records (JSON) of one attacked batch, as judged; the distortion and the bare
    classifier's labels are measured here."""
    r, x = batch.result, batch.x
    adv = r.adversarial
    l2, linf, ssim = metrics.l2(adv, x), metrics.linf(adv, x), metrics.ssim(adv, x)
    pred_bare = predict_logits(model, adv, device=device).argmax(1)
    costs, flags, verdicts, scores = judged
    rows = []
    for j, i in enumerate(batch.index.tolist()):
        rows.append(SweepRecord(
            kappa=batch.kappa, index=int(i), label=int(batch.labels[j]),
            target=int(batch.targets[j]) if batch.targets is not None else None,
            attack_success=bool(r.success[j]), attack_steps=int(r.gradient_steps[j]),
            attack_confidence=(float(r.confidence_reached[j])
                               if r.confidence_reached is not None else None),
            l2=float(l2[j]), linf=float(linf[j]), ssim=float(ssim[j]),
            pred_bare=int(pred_bare[j]), bim_d_cost=int(costs.costs[j]), clever=None,
            flags={k: bool(v[j]) for k, v in flags.items()},
            scores=({k: (float(v[j]) if v is not None else None) for k, v in scores.items()}
                    if scores else None),
            defenses={name: _verdict_json(v, j) for name, v in verdicts.items()},
            transfer=({name: bool(v.success[j]) for name, v in transfer.items()}
                      if transfer is not None else None),
            indicators=({k: bool(v[j]) for k, v in indicators.items()}
                        if indicators else None)).to_json())
    return rows


def _verdict_json(v, j: int) -> dict:
    """One sample's verdict against one defense (a random defense's: with the share of its
    draws the example fooled)."""
    out = {"success": bool(v.success[j]), "pred": int(v.predicted[j]), "reasons": v.reasons[j]}
    if v.fooled_draws is not None:
        out["fooled_draws"] = round(float(v.fooled_draws[j]), 6)
    return out
