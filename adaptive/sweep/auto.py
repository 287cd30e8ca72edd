"""``--attack auto``: the per-image worst case over a fixed ensemble, as AutoAttack does it, for
defenses with detectors.

Per batch and kappa, the members of ``AUTO_ENSEMBLE`` (``adaptive.sweep.config``) run in order:
the paper's C&W-kappa on the bare classifier (transferred, on every image); APGD-CE, then
APGD-T (the DLR loss, then target rounds towards the most likely other classes), white box at
the bound on every detector they can aim at; at each defense whose gradient the probes found
hidden or first-order wrong, APGD-CE again following the input-diversity average of the bare
classifier's gradient through its forward (``apgd-di@DEFENSE``); Selective and Orthogonal
PGD where there are detector terms (without them they are PGD again); Square (scores only, no
gradients, every detector in its loss by its score or flag); then a hard-label attack on each
defense's own verdict (HopSkipJump at L2, RayS at L-inf; kappa 0 only: they see no logits).
Every white-box and score-based member also aims at each plug-in
defense through that defense's own forward (``MEMBER@DEFENSE``, ``own_objectives``), and every
hard-label member at each defense's verdict (``hsj@DEFENSE``), each on the images that defense
still withstands. Each member after the first attacks only the images that some defense still
withstands. Every image draws its random numbers from its own seed and HopSkipJump starts from
the whole batch's images, so a member's result on an image is the one it gets alone on the same
images (:func:`~adaptive.sweep.config.member_config` is the sweep that runs it alone): auto
breaks every image any member breaks.

The record of an image holds, per defense, the example of the first member that broke it
(else the first member's) under ``defenses[name]``: its verdict, ``by`` (the member or None)
and that example's own measurements (``l2``, ``flags``, ``scores``, ...), which
:func:`adaptive.sweep.records.defense_view` puts in place for that defense's summary. The
record's top-level fields are the example chosen for the last defense; ``auto`` says which
members ran on the image and their gradient steps / queries. An image that only a
gradient-free member broke is AutoAttack's warning sign of masked gradients (the summary's
``gradient_free_only``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adaptive.attacks.base import AttackResult
from adaptive.attacks.hard_label import DecisionOracle
from adaptive.sweep.config import (
    AUTO_ENSEMBLE,
    AutoMember,
    SweepConfig,
    make_attack,
    member_config,
    parse_attack,
    with_eot,
)
from adaptive.sweep.diagnostics import attack_indicators
from adaptive.sweep.objectives import defense_objective, objective_groups, shared_alike
from adaptive.sweep.records import AttackedBatch, batch_records, defense_entry

SEED_STRIDE = 1_000_003  # image seeds: seed * stride + image index (distinct for any index)
# members that only differ from PGD by how they treat detector terms: skipped without terms
_DETECTOR_AWARE = ("spgd", "opgd")


def image_seeds(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Each attacked image's own seed, from the run's seed and the image's data-set index."""
    return int(seed) * SEED_STRIDE + index.long()


def members_for(cfg: SweepConfig, kappa: float) -> list[AutoMember]:
    """The members that run at ``kappa``: the hard-label ones only at kappa 0, in a threat model
    they attack in, at a finite bound."""
    return [m for m in AUTO_ENSEMBLE
            if not parse_attack(m.attack).hard_label
            or (kappa == 0 and cfg.threat.norm in parse_attack(m.attack).spec.threat_models
                and math.isfinite(cfg.threat.eps))]


@dataclass
class Member:
    """One member of the ensemble, ready to run: its attack, the sweep that runs it alone
    (``cfg``), the model (or oracle) it attacks and its penalty."""

    name: str
    attack: object
    model: object
    cfg: SweepConfig
    penalty: object = None
    # the defenses it aims at through their own forward or verdict (``apgd-ce@mine``,
    # ``hsj@a2d``; several where they share one objective: named after the first), run on the
    # images any of them withstands; None: the shared objective, on the images some defense
    # still withstands
    aimed_at: tuple[str, ...] | None = None

    @property
    def method(self) -> str:
        """The sweep attack it runs (``apgd-full`` for ``apgd-t@mine``)."""
        return self.cfg.attack


def build_members(cfg: SweepConfig, kappa: float, model, objective_for, judges,
                  start_pool=None, own: dict | None = None) -> list[Member]:
    """The members at ``kappa``; ``objective_for(attack)`` gives an attack's Objective;
    ``start_pool``: the images the pgd members' restarts start towards (``--pgd-start-images``);
    ``own``: per defense its own objective (``own_objectives``), at which every
    white-box and score-based member after the paper's attack also aims, on that defense's
    unbroken images. Through a forward the probes found random the gradient members average
    ``cfg.random_eot`` samples per step; at a defense whose gradient is hidden (and that
    declares no surrogate) they follow its stand-in (``_Judges.stand_ins``), and
    only the gradient-free members aim where it has none (``--no-bare-gradient``)."""
    out = []
    unfollowable = judges.unfollowable()
    members = [(m, member_config(cfg, m)) for m in members_for(cfg, kappa)]
    # the stand-ins are made here, before the random models (which include them) are read
    guided = {m.label: _guided_groups(cfg, mcfg, judges) for m, mcfg in members
              if m.guided_only}
    random_models = judges.random_models()

    def attack(mcfg, objective_model=None):
        if id(objective_model) in random_models:
            mcfg = with_eot(mcfg, cfg.random_eot)
        return make_attack(mcfg, mcfg.attack, kappa, start_pool), mcfg

    for m, mcfg in members:
        if m.guided_only:  # through the stand-ins of its kind, where gradients mislead
            for names, mine in guided[m.label]:
                made, used = attack(mcfg, mine.model)
                out.append(Member(f"{m.label}@{names[0]}", made, mine.model, used,
                                  mine.penalty(), aimed_at=names))
        elif m.label == "cw":  # the paper's attack, on the bare classifier (transferred)
            out.append(Member(m.label, attack(mcfg)[0], model, mcfg))
        elif parse_attack(m.attack).hard_label:  # each defense's own verdict
            for name, defense in judges.defenses.items():
                out.append(Member(f"{m.label}@{name}", attack(mcfg)[0],
                                  DecisionOracle(defense), mcfg, aimed_at=(name,)))
        else:
            objective = objective_for(mcfg.attack)
            if objective.terms or m.label not in _DETECTOR_AWARE:
                made, used = attack(mcfg, objective.model)
                out.append(Member(m.label, made, objective.model, used, objective.penalty()))
            for names, mine in objective_groups(own or {}):
                if set(names) <= unfollowable and not m.gradient_free:
                    continue  # no gradient to follow: the gradient-free members aim at it
                if mine.terms or m.label not in _DETECTOR_AWARE:
                    made, used = attack(mcfg, mine.model)
                    out.append(Member(f"{m.label}@{names[0]}", made, mine.model, used,
                                      mine.penalty(), aimed_at=names))
    return out


def _guided_groups(cfg: SweepConfig, mcfg: SweepConfig, judges
                   ) -> list[tuple[tuple[str, ...], object]]:
    """Per distinct stand-in of ``mcfg.stand_in``'s kind, the defenses it stands in for
    (``judges.guided()``, less the hidden ones whose run stand-in is of that kind already:
    every member aimed at them follows it) and their objective, through it."""
    own = {name: defense_objective(mcfg, name, judges.defenses[name],
                                   judges.stand_in(name, mcfg.stand_in))
           for name in sorted(judges.guided())
           if not (name in judges.stand_ins and cfg.stand_in == mcfg.stand_in)}
    return objective_groups(shared_alike(own))


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
            todo = (~torch.stack([broken[a] for a in member.aimed_at])).any(0).nonzero()
            todo = todo.squeeze(1)
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
        # (only the first member's examples can stand in a record without breaking a defense)
        judged = judges.measure(r.adversarial, xs, ys, r.success, ts,
                                all_costs=not per_member)
        rows = batch_records(AttackedBatch(kappa, idx[todo], xs, ys, ts, r), judged, model,
                             device, indicators=attack_indicators(
                                 member.cfg, r, member.model,
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
