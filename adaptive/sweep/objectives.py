"""What a sweep's attack optimises, per defense it judges.

The run's *shared* objective (:func:`attack_objective`) is the one its attack name describes:
``pgd-full`` through MagNet's reformer with every detector term of the run. Each defense also
has an objective *of its own* (:func:`defense_objective`): the classifier that defense answers
with (the bare model, MagNet's reformed one, a plug-in's preprocessing or other network) and
the terms of those of its detectors the attack aims at. Where a defense's own objective differs
from the shared one, the sweep attacks that defense again through it (``own_objectives``), on
the images the shared attack left standing, and ``auto`` adds members aimed at it. The paper's
transferred C&W-kappa (``cw``) and the hard-label attacks (their oracle is the whole defense
already) have no own objectives.
"""

from __future__ import annotations

from torch import nn

from adaptive.attacks.objective import Objective
from adaptive.attacks.registry import Access
from adaptive.defense import Defense
from adaptive.defense.compositions import is_composition, uses_randomized_magnet
from adaptive.sweep.config import SweepConfig, attacked_parts
from defenses.detector import is_differentiable
from defenses.detector_zoo import DETECTORS as ZOO_DETECTORS

MAGNET_PREFIX = "magnet:"  # the names of MagNet's detectors in a composition


def _reads_only(cfg: SweepConfig) -> bool:
    """Whether ``cfg.attack`` only reads its loss (score-based: Square), so a detector term
    needs no gradient."""
    choice = cfg.attack_choice
    return not choice.ensemble and choice.spec.access is Access.SCORES


def attack_objective(cfg: SweepConfig, model: nn.Module, a2d, magnet,
                     plugin_detectors: dict | None = None, log=print,
                     defenses: dict[str, Defense] | None = None) -> Objective:
    """What ``cfg.attack`` optimises: the classifier it differentiates (MagNet's reformed one
    for the -magnet and -full attacks; the very one the run's MagNet composition answers with
    when ``defenses`` are given) and one term per detector it aims at (each MagNet detector,
    A2D's first-order cost surrogate). The -full attacks also aim at the plug-in defenses'
    detectors that declare a differentiable ``relative_score(x)`` (1 at the threshold;
    ``defenses.is_differentiable``), and a score-based attack (Square) every other one too, by
    its score or flag; the others are only judged."""
    from adaptive.attacks.a2d_aware import a2d_penalty
    from adaptive.attacks.magnet_aware import detector_penalty, score_penalty

    objective, parts = Objective(model), attacked_parts(cfg.attack, cfg.defenses)
    if parts & {"magnet", "rmagnet"} and magnet is not None:
        # randomised MagNet's reformer where the run defends with it (an attack on it averages
        # over its draws with --eot), else MagNet's own
        randomized = uses_randomized_magnet(cfg.defenses or [])
        judged = _magnet_classifier(defenses or {}, "rmagnet" if randomized else "magnet")
        objective.model = judged if judged is not None else (
            magnet.randomized_classifier() if randomized else magnet.defended_classifier())
        for d in magnet.detectors:
            objective.terms[f"{MAGNET_PREFIX}{d.name}"] = detector_penalty([d])
    if "a2d" in parts and a2d is not None:
        objective.terms["a2d"] = a2d_penalty(a2d, cfg.a2d_factor)
    if cfg.attack_choice.aims_at_plugins and plugin_detectors:
        aimed = {k: d for k, d in plugin_detectors.items() if is_differentiable(d)}
        for name, d in aimed.items():
            objective.terms[name] = detector_penalty([d])
        blind = sorted(set(plugin_detectors) - set(aimed))
        if blind and _reads_only(cfg):  # Square: their scores or flags, no gradient needed
            for name in blind:
                objective.terms[name] = score_penalty(name, plugin_detectors[name])
            aimed.update({name: plugin_detectors[name] for name in blind})
            blind = []
        log(f"{cfg.attack} aims at the plug-in detectors {', '.join(sorted(aimed)) or 'none'}"
            + (f"; {', '.join(blind)} (no relative_score) only judge" if blind else ""))
    return objective


def _magnet_classifier(defenses: dict[str, Defense], part: str) -> nn.Module | None:
    """The classifier of the run's first composition with ``part`` (magnet or rmagnet)."""
    return next((d.classifier for name, d in defenses.items()
                 if is_composition(name) and part in name.split("+")), None)


def defense_objective(cfg: SweepConfig, name: str, defense: Defense,
                      stand_in: nn.Module | None = None) -> Objective:
    """``defense``'s own objective for ``cfg.attack``: the classifier it answers with (its
    surrogate where it declares one, BPDA; else the ``stand_in`` given for a defense that
    hides its gradient: its forward with the bare classifier's gradient), and a
    term for each of its detectors the attack aims at (of a built-in composition: the parts the
    attack name aims at, A2D by its cost surrogate; of a plug-in, and the bundled fs and maha,
    for the attacks that aim at plug-ins: the detectors with a differentiable score, and for
    a score-based attack, Square, every other one too, by its score or its flag:
    :func:`~adaptive.attacks.magnet_aware.score_penalty`)."""
    from adaptive.attacks.a2d_aware import a2d_penalty
    from adaptive.attacks.magnet_aware import detector_penalty, score_penalty

    choice = cfg.attack_choice
    reads_only = _reads_only(cfg)
    aimed = attacked_parts(cfg.attack, cfg.defenses)
    built_in = is_composition(name)
    terms = {}
    for dname, det in defense.detectors.items():
        if built_in and dname == "a2d":
            if "a2d" in aimed:
                terms[dname] = a2d_penalty(det, cfg.a2d_factor)
        elif built_in and dname.startswith(MAGNET_PREFIX):
            if aimed & {"magnet", "rmagnet"}:
                terms[dname] = detector_penalty([det])
        elif (not built_in or dname in ZOO_DETECTORS) and choice.aims_at_plugins:
            if is_differentiable(det):
                terms[dname] = detector_penalty([det])
            elif reads_only:  # no gradient needed: its score, or its flag
                terms[dname] = score_penalty(dname, det)
    # a declared surrogate (BPDA) is what the gradients follow; the classifier still judges
    model = defense.surrogate if defense.surrogate is not None else (
        stand_in if stand_in is not None else defense.classifier)
    return Objective(model, terms)


def own_objectives(cfg: SweepConfig, defenses: dict[str, Defense], shared: Objective,
                   log=print, stand_ins: dict[str, nn.Module] | None = None
                   ) -> dict[str, Objective]:
    """Each defense's own objective (:func:`defense_objective`, through its ``stand_ins``
    entry where it has one) where it differs from the
    ``shared`` one; defenses whose own objectives are the same share one Objective object (the
    sweep attacks it once, on the images any of them withstands: :func:`objective_groups`).
    None for ``cw`` and the hard-label attacks."""
    if cfg.attack == "cw" or cfg.attack_choice.hard_label:
        return {}
    mine = {name: defense_objective(cfg, name, d, (stand_ins or {}).get(name))
            for name, d in defenses.items()}
    # where a defense's own objective is the shared one, the shared attack is its own already
    out = shared_alike({name: o for name, o in mine.items()
                        if objective_key(o) != objective_key(shared)})
    if out:
        log(f"{cfg.attack} also aims at {', '.join(out)} through each one's own forward")
    return out


def objective_key(objective: Objective) -> tuple:
    """What makes two objectives the same attack: the model differentiated and the terms."""
    return (id(objective.model), frozenset(objective.terms))


def shared_alike(objectives: dict[str, Objective]) -> dict[str, Objective]:
    """``objectives`` with every objective equal to an earlier one (:func:`objective_key`)
    replaced by that earlier object, so that :func:`objective_groups` attacks it once."""
    first: dict[tuple, Objective] = {}
    return {name: first.setdefault(objective_key(o), o) for name, o in objectives.items()}


def objective_groups(own: dict[str, Objective]) -> list[tuple[tuple[str, ...], Objective]]:
    """The distinct objectives of ``own``, each with the defenses whose own it is, in order."""
    groups: dict[int, tuple[list[str], Objective]] = {}
    for name, objective in own.items():
        groups.setdefault(id(objective), ([], objective))[0].append(name)
    return [(tuple(names), objective) for names, objective in groups.values()]
