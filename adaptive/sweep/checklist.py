"""The checklist of Carlini et al. ("On Evaluating Adversarial Robustness", 2019) run on a
sweep's own attack (``--checks full``): on the images of the smallest kappa, against every
defense of the run,

* ``more steps``: the attack with twice the steps breaks no more images;
* ``more restarts``: with twice the restarts (bounded attacks) breaks no more;
* ``iterative beats one step``: one step of the whole bound breaks no more than the attack;
* ``random noise``: random points in the ball (``RANDOM_DRAWS`` per image) break no more;
* ``gradient-free``: HopSkipJump on the last defense's verdict (L2 runs) breaks no more.

``auto`` (an ensemble whose members have their own budgets, gradient-free ones among them) is
checked by one step and random noise.

"No more" allows no extra image: a variant that breaks an image the attack did not says the
attack is not at its limit (or, for noise and one step, that it is broken). Each item records
the images each variant broke, so a reader can look at them; :func:`example_flags` turns the
items into one row per checked example (``checklist.jsonl`` beside the records, merged into
them by :func:`adaptive.sweep.records.read_records`).
"""

from __future__ import annotations

import torch

from adaptive.attacks.hard_label import DecisionOracle
from adaptive.core.attacks.lp import random_in_ball
from adaptive.sweep.config import SweepConfig, bound_of, make_attack

RANDOM_DRAWS = 10  # each costs a judgement of every defense (A2D attacks each point)
MAX_IMAGES = 50  # images of the smallest kappa the checklist attacks again


def checked_records(records: list[dict], kappa: float) -> list[dict]:
    """The records the checklist attacks again: kappa's, by image, the first MAX_IMAGES."""
    return sorted((r for r in records if r["kappa"] == kappa),
                  key=lambda r: r["index"])[:MAX_IMAGES]


def _variants(cfg: SweepConfig, kappa: float, start_pool=None) -> dict:
    """name -> a fresh attack: the run's attack with one setting changed."""
    choice = cfg.attack_choice
    if choice.ensemble:  # its members' budgets are the ensemble's; one step is still a check
        return {"iterative beats one step": make_attack(
            cfg, "pgd", kappa, start_pool, steps=1, restarts=1, target_classes=0,
            step_size=bound_of(cfg))}
    if choice.spec.fixed_budget:
        def make(**change):
            return make_attack(cfg, cfg.attack, kappa, start_pool, **change)
        pgd = getattr(cfg, choice.spec.settings_key)
        return {"more steps": make(steps=2 * pgd.steps),
                "more restarts": make(restarts=2 * pgd.restarts),
                "iterative beats one step": make(steps=1, restarts=1, target_classes=0,
                                                 step_size=bound_of(cfg))}
    return {"more steps": make_attack(cfg, cfg.attack, kappa, steps=2 * cfg.cw.steps)}


def run_checklist(cfg: SweepConfig, records: list[dict], judges, attack_model, penalty,
                  x_all, y_all, device, log=print, start_pool=None) -> list[dict]:
    """The checklist's items (``{"name", "passed", "detail", "broken"}``) for the sweep's
    untargeted attack at its smallest kappa."""
    kappa = min(cfg.kappas)
    recs = checked_records(records, kappa)
    choice = cfg.attack_choice
    if cfg.targeted or not recs or choice.hard_label:
        return []
    index = torch.tensor([r["index"] for r in recs])
    x, y = x_all[index], y_all[index]
    names = list(judges.defenses)
    base = {n: {r["index"] for r in recs if r["defenses"][n]["success"]} for n in names}
    items = []

    def judge_all(adv, ok):
        verdicts = judges.measure(adv, x, y, ok, None)[2]
        return {n: {int(index[j]) for j in range(len(index)) if bool(verdicts[n].success[j])}
                for n in names}

    def item(name, broken, what):
        extra = {n: sorted(broken[n] - base[n]) for n in names}
        passed = not any(extra.values())
        detail = "; ".join(f"{n}: {len(base[n])} -> {len(broken[n] | base[n])}"
                           for n in names)
        items.append({"name": name, "passed": passed, "what": what,
                      "detail": detail + ("" if passed else " (images only the variant broke: "
                                          + ", ".join(f"{n} {v}" for n, v in extra.items()
                                                      if v) + ")"),
                      "broken": {n: sorted(v) for n, v in broken.items()}})
        log(f"checklist: {name}: {'passed' if passed else 'FAILED'}: {items[-1]['detail']}")

    for name, attack in _variants(cfg, kappa, start_pool).items():
        r = attack.run(attack_model, x.to(device), y, penalty=penalty)
        item(name, judge_all(r.adversarial, r.success), attack.config())
    # random points at the bound: an image counts once any of its points breaks a defense
    gen = torch.Generator().manual_seed(cfg.seed)
    broken = {n: set() for n in names}
    for _ in range(RANDOM_DRAWS):
        pts = (x + random_in_ball(x.shape, bound_of(cfg), cfg.norm, gen)).clamp(0, 1)
        for n, v in judge_all(pts, torch.ones(len(x), dtype=torch.bool)).items():
            broken[n] |= v
    item("random noise", broken, f"{RANDOM_DRAWS} draws per image in the {cfg.norm} ball of "
                                 f"{bound_of(cfg):g}")
    if cfg.norm == "l2" and not choice.ensemble:  # (auto's own members include hard-label ones)
        last = cfg.defenses[-1]
        oracle = DecisionOracle(judges.defenses[last])
        hsj = make_attack(cfg, "hsj", 0.0)
        r = hsj.run(oracle, x, y)
        found = judge_all(r.adversarial, r.success)
        item("gradient-free", {n: (found[n] if n == last else set()) for n in names},
             f"HopSkipJump on {last}'s verdict")
    return items


def example_flags(items: list[dict], records: list[dict], kappa: float) -> list[dict]:
    """Per checked example (the records of ``kappa`` the checklist attacked again), which
    defenses each item's variant broke although the attack did not: ``{"kappa", "index",
    "target", "checklist": {item: [defense, ...]}}`` (an empty list: the item stayed quiet
    there)."""
    if not items:
        return []
    rows = []
    for r in checked_records(records, kappa):
        flags = {}
        for c in items:
            flags[c["name"]] = sorted(n for n, images in c["broken"].items()
                                      if r["index"] in images
                                      and not r["defenses"][n]["success"])
        rows.append({"kappa": r["kappa"], "index": r["index"], "target": r.get("target"),
                     "checklist": flags})
    return rows
