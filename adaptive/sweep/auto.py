"""``--attack auto``: the per-image worst case over a fixed ensemble, as AutoAttack does it.

Per batch and kappa, the members of ``AUTO_MEMBERS`` run in order: the paper's C&W-kappa on the
bare classifier (transferred, on every image), then ``pgd-full``, ``spgd`` and ``opgd`` (white
box on every detector they can aim at, at the bound), then HopSkipJump on the last defense's
verdict (kappa 0 and L2 only: it sees no logits and minimises L2). Each member after the first
attacks only the images that some defense still withstands.
Every image draws its random numbers from its own seed and HopSkipJump starts from the whole
batch's images, so a member's result on an image is the one it gets alone on the same images:
auto breaks every image any member breaks.

The record of an image holds, per defense, the example of the first member that broke it
(else the first member's) under ``defenses[name]``: its verdict, ``by`` (the member or None)
and that example's own measurements (``l2``, ``flags``, ``scores``, ...), which
:func:`adaptive.sweep.records.defense_view` puts in place for that defense's summary. The
record's top-level fields are the example chosen for the last defense; ``auto`` says which
members ran on the image and their gradient steps / queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from adaptive.attacks.base import AttackResult
from adaptive.attacks.hard_label import DecisionOracle
from adaptive.sweep.config import AUTO_MEMBERS, SweepConfig, make_attack, parse_attack
from adaptive.sweep.diagnostics import attack_indicators
from adaptive.sweep.records import AttackedBatch, batch_records, defense_entry

SEED_STRIDE = 1_000_003  # image seeds: seed * stride + image index (distinct for any index)


def image_seeds(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Each attacked image's own seed, from the run's seed and the image's data-set index."""
    return int(seed) * SEED_STRIDE + index.long()


def members_for(cfg: SweepConfig, kappa: float) -> list[str]:
    """The members that run at ``kappa``: HopSkipJump only at kappa 0 of an L2 run."""
    return [m for m in AUTO_MEMBERS
            if not parse_attack(m).hard_label
            or (kappa == 0 and cfg.threat.norm in parse_attack(m).spec.threat_models
                and math.isfinite(cfg.threat.eps))]


@dataclass
class Member:
    """One member of the ensemble, ready to run: its attack, the model (or oracle) it attacks
    and its penalty."""

    name: str
    attack: object
    model: object
    penalty: object = None
    # the defense it aims at through that defense's own forward (``pgd-full@mine``); None:
    # the shared objective, run on the images some defense still withstands
    aimed_at: str | None = None

    @property
    def method(self) -> str:
        """The sweep attack name it runs (``pgd-full`` of ``pgd-full@mine``)."""
        return self.name.split("@")[0]


def build_members(cfg: SweepConfig, kappa: float, model, objective_for, judges,
                  start_pool=None, own: dict | None = None) -> list[Member]:
    """The members at ``kappa``; ``objective_for(attack)`` gives an attack's Objective;
    ``start_pool``: the images the pgd members' restarts start towards (``--pgd-start-images``);
    ``own``: per plug-in defense its own objective (``own_objectives``), at which every
    white-box member after the paper's attack also aims, on that defense's unbroken images."""
    out = []
    for name in members_for(cfg, kappa):
        attack = make_attack(cfg, name, kappa, start_pool)
        if name == "cw":  # the paper's attack, on the bare classifier (transferred)
            out.append(Member(name, attack, model))
        elif parse_attack(name).hard_label:  # the oracle: the last defense's verdict
            out.append(Member(name, attack, DecisionOracle(judges.defenses[cfg.defenses[-1]])))
        else:
            objective = objective_for(name)
            out.append(Member(name, attack, objective.model, objective.penalty()))
            for defense, mine in (own or {}).items():
                out.append(Member(f"{name}@{defense}", make_attack(cfg, name, kappa, start_pool),
                                  mine.model, mine.penalty(), aimed_at=defense))
    return out


def auto_batch(cfg: SweepConfig, kappa: float, members: list[Member], model, judges, device,
               idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, targets
               ) -> tuple[torch.Tensor, list[dict]]:
    """Run the ensemble on one batch; returns (the examples chosen for the last defense, the
    batch's records)."""
    labels = targets if cfg.targeted else y
    seeds = image_seeds(cfg.seed, idx)
    names = list(judges.defenses)
    last = cfg.defenses[-1] if cfg.defenses[-1] in names else names[-1]
    n = len(idx)
    broken = {name: torch.zeros(n, dtype=torch.bool) for name in names}
    per_member: dict[str, dict[int, dict]] = {}  # member -> batch position -> its record
    advs: dict[str, dict[int, torch.Tensor]] = {}
    for member in members:
        todo = (~torch.stack(list(broken.values()))).any(0).nonzero().squeeze(1)
        if member.aimed_at is not None:
            todo = (~broken[member.aimed_at]).nonzero().squeeze(1)
        if not per_member:  # the first member runs on every image (the fallback example)
            todo = torch.arange(n)
        if len(todo) == 0:
            continue
        kwargs = {"starts": x} if parse_attack(member.method).hard_label else {}
        r: AttackResult = member.attack.run(member.model, x[todo].to(device), labels[todo],
                                            targeted=cfg.targeted, penalty=member.penalty,
                                            seeds=seeds[todo], **kwargs)
        xs, ys = x[todo], y[todo]
        ts = targets[todo] if targets is not None else None
        judged = judges.measure(r.adversarial, xs, ys, r.success, ts)
        rows = batch_records(AttackedBatch(kappa, idx[todo], xs, ys, ts, r), judged, model,
                             device, indicators=attack_indicators(
                                 replace(cfg, attack=member.method), r, member.model,
                                 labels[todo], judged.verdicts))
        per_member[member.name] = {int(p): row for p, row in zip(todo, rows)}
        advs[member.name] = {int(p): a for p, a in zip(todo, r.adversarial)}
        for name in names:
            ok = torch.tensor([row["defenses"][name]["success"] for row in rows])
            broken[name][todo] |= ok
    first = next(iter(per_member))
    records, chosen_adv = [], []
    for p in range(n):
        by = {}
        for name in names:
            by[name] = next((m for m in per_member if p in per_member[m]
                             and per_member[m][p]["defenses"][name]["success"]), None)
        primary = by[last] or first
        rec = dict(per_member[primary][p])
        rec["defenses"] = {name: defense_entry(per_member[by[name] or first][p], name,
                                                by[name], judges.defenses[name].detectors)
                           for name in names}
        rec["auto"] = {"members": [m for m in per_member if p in per_member[m]],
                       "steps": {m: per_member[m][p]["attack_steps"] for m in per_member
                                 if p in per_member[m]},
                       "primary": primary}
        records.append(rec)
        chosen_adv.append(advs[primary][p])
    return torch.stack(chosen_adv), records
