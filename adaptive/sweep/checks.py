"""Checks that a trustworthy evaluation passes (Carlini et al. 2019), run on every sweep;
a failure is reported (printed, in ``summary.json``, on the ASR figure), never hidden."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from adaptive.core.attacks.pgd import pgd
from adaptive.core.evaluation import predict_logits
from adaptive.core.store import RunStore
from adaptive.defense import Defense
from adaptive.sweep.config import SweepConfig, aims_at_plugins, attacked_parts, bound_of, norm_label
from defenses.detector_zoo import DETECTORS as ZOO_DETECTORS


def sanity_checks(records: list[dict], cfg: SweepConfig, by_bound: list[dict]) -> list[dict]:
    """Checks that a trustworthy evaluation passes (Carlini et al. 2019); failures are
    reported, never hidden."""
    checks = []
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa]
        if not recs:
            continue
        fooled = float(np.mean([r["attack_success"] and (
            r["pred_bare"] == r["target"] if cfg.targeted else r["pred_bare"] != r["label"])
            for r in recs]))
        if cfg.attack == "cw":  # attacks on the bare classifier must succeed without a bound
            detail = (f"{fooled:.0%} of the images misclassified by the bare classifier with no "
                      "distortion bound (expected ~100%)")
            missed = [r["attack_confidence"] for r in recs
                      if not r["attack_success"] and r.get("attack_confidence") is not None]
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
            checks.append({"name": f"ASR grows with the {norm_label(cfg)} bound "
                                   f"({row['defense']}, kappa {row['kappa']:g})",
                           "passed": False,
                           "detail": f"ASR by bound {row['asr']} falls somewhere"})
    for kappa in cfg.kappas:
        recs = [r for r in records if r["kappa"] == kappa and "transfer" in r]
        if not recs:
            continue
        parts, ok = [], True
        for name in recs[0]["transfer"]:
            if not white_box_against(cfg.attack, name) or (
                    cfg.attack_choice.hard_label and name != cfg.defenses[-1]):
                continue  # a hard-label attack queries one defense's verdict only
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
        checks.append({"name": f"ASR grows with the {norm_label(cfg)} bound", "passed": True,
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
            or not math.isfinite(bound_of(cfg))):
        return []
    index = torch.tensor([r["index"] for r in recs])
    fooled = store.get("pgd_at_bound")
    if fooled is None or not torch.equal(fooled["index"], index):
        log(f"bounded check: PGD-{norm_label(cfg)} at {bound_of(cfg):g} on the bare classifier "
            f"({len(index)} images)")
        x, y = x_all[index].to(device), y_all[index].to(device)
        adv = pgd(model, x, y, bound_of(cfg), norm=cfg.norm, steps=PGD_STEPS,
                  generator=torch.Generator().manual_seed(cfg.seed))
        pred = predict_logits(model, adv, device=device).argmax(1).cpu()
        fooled = store.put("pgd_at_bound", {"index": index, "fooled": pred != y.cpu()})
    pgd_asr = float(fooled["fooled"].float().mean())
    parts, ok = [], True
    for name in plain:
        asr = float(np.mean([r["defenses"][name]["success"] for r in recs]))
        ok &= asr >= pgd_asr - 1e-12
        parts.append(f"{name} {asr:.0%}")
    detail = (f"PGD-{norm_label(cfg)} at the bound ({PGD_STEPS} steps) fools the bare "
              "classifier on "
              f"{pgd_asr:.0%} of the images; {cfg.attack} at kappa 0: {', '.join(parts)}")
    if not ok:
        detail += ("; the sweep's attack stops short of the bound, so its ASR at the bound "
                   "understates the attacker (more steps, a larger initial constant)")
    return [{"name": f"{cfg.attack} at least as strong as PGD at the {norm_label(cfg)} bound "
                     "(kappa 0)",
             "passed": ok, "detail": detail}]


def white_box_against(attack: str, defense: str) -> bool:
    """Whether ``attack`` attacks every detector of the composition ``defense`` (which has at
    least one; adversarial training is part of the model every attack differentiates). Only
    there must it beat the transferred attack: cw-magnet, for one, goes through MagNet's
    reformer, so it is no attack on the bare classifier."""
    parts = set(defense.split("+")) - {"at"}
    aimed = attacked_parts(attack) | (set(ZOO_DETECTORS) if aims_at_plugins(attack) else set())
    return bool(parts) and parts <= aimed
