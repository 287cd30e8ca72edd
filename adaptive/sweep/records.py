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

from pathlib import Path

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


def read_records(path: Path) -> list[dict]:
    """The records of a sweep folder's ``records.jsonl``, each (kappa, image, target) once,
    under the current key names; the examples the checklist attacked again (``--checks
    full``) carry its verdict under ``checklist``: per item, the defenses its variant broke
    although the attack did not (``checklist.jsonl`` beside the records)."""
    records = [upgrade_record(r) for r in RecordLog(path, record_key).read().records]
    checked = Path(path).with_name(CHECKLIST_RECORDS)
    if checked.exists():
        flags = {record_key(r): r["checklist"]
                 for r in RecordLog(checked, record_key).read().records if "checklist" in r}
        records = [{**r, "checklist": flags[record_key(r)]} if record_key(r) in flags else r
                   for r in records]
    return records


def batch_records(kappa: float, index: list[int], labels, targets, result, l2, linf, ssim,
                  pred_bare, costs, clever_scores: list, flags: dict, verdicts: dict,
                  transfer: dict | None, scores: dict | None = None,
                  indicators: dict | None = None) -> list[dict]:
    """The records of one attacked batch: ``result`` is the attack's (per sample: success,
    gradient steps, confidence reached), the rest per sample as measured."""
    rows = []
    for j, i in enumerate(index):
        rows.append({
            "kappa": kappa, "index": int(i), "label": int(labels[j]),
            "target": int(targets[j]) if targets is not None else None,
            "attack_success": bool(result.success[j]),
            "attack_steps": int(result.gradient_steps[j]),
            "attack_confidence": (float(result.confidence_reached[j])
                                  if result.confidence_reached is not None else None),
            "l2": float(l2[j]), "linf": float(linf[j]), "ssim": float(ssim[j]),
            "pred_bare": int(pred_bare[j]), "bim_d_cost": int(costs[j]),
            "clever": clever_scores[j],
            "flags": {k: bool(v[j]) for k, v in flags.items()},
            **({"scores": {k: (float(v[j]) if v is not None else None)
                           for k, v in scores.items()}} if scores else {}),
            "defenses": {name: {"success": bool(v.success[j]), "pred": int(v.predicted[j]),
                                "reasons": v.reasons[j]}
                         for name, v in verdicts.items()},
            **({"transfer": {name: bool(v.success[j]) for name, v in transfer.items()}}
               if transfer is not None else {}),
            **({"indicators": {k: bool(v[j]) for k, v in indicators.items()}}
               if indicators else {})})
    return rows
