"""The red flags of an evaluation, each with its cure: what a reviewer would object to in the
numbers of a run, from what the probes found (``adaptive.defense.probes``) and the summary.

* ``random_forward``: the defense answers differently on the same input; one draw proves
  nothing either way.
* ``masked_gradients``: its gradient is zero, not finite, or does not predict its forward
  (Athalye et al. 2018: the usual reason published defenses looked robust).
* ``gradient_free_beats_white_box`` (AutoAttack's warning): images only an attack using no
  gradient broke.
* ``transfer_beats_white_box``: examples made on the bare model and transferred break the
  defense more often than the white-box attack aimed at it.

Each flag says whether the run already applied its cure (``applied``) or what to do.
"""

from __future__ import annotations

from adaptive.defense.probes import GRADIENTS, Probe
from adaptive.sweep.config import SweepConfig

MEANING = {
    "random_forward": "the defense answers differently on the same input",
    "masked_gradients": "its gradient cannot be followed",
    "gradient_free_beats_white_box": "an attack using no gradient broke images the white-box "
                                     "attacks did not",
    "transfer_beats_white_box": "examples made on the bare model and transferred break it "
                                "more often than the white-box attack aimed at it",
}


def _flag(flag: str, defense: str, detail: str, cure: str, applied: bool) -> dict:
    return {"flag": flag, "defense": defense, "meaning": MEANING[flag], "detail": detail,
            "cure": cure, "applied": applied}


def _probe_flags(cfg: SweepConfig, probe: Probe, has_surrogate: bool) -> list[dict]:
    out = []
    if probe.random:
        out.append(_flag("random_forward", probe.defense,
                         f"two passes over {probe.images} benign images differ: "
                         f"{probe.randomness()}",
                         f"EOT ({cfg.random_eot} gradient samples per step, --random-eot) and "
                         f"every example judged on {cfg.draws} fresh draws, ASR over a "
                         "majority (--draws)", True))
    if probe.masked:
        detail = (f"gradient {GRADIENTS[probe.gradient]} (zero on {probe.zero_share:.0%}, "
                  f"not finite on {probe.non_finite_share:.0%}, first order wrong on "
                  f"{probe.mismatch_share:.0%} of {probe.images} benign images)")
        if has_surrogate:
            cure = "BPDA: the attacks followed its declared surrogate"
        elif probe.hidden and not cfg.bare_gradient:
            cure = ("drop --no-bare-gradient (white-box attacks then follow the bare "
                    "classifier's gradient through the defense's forward), or declare a "
                    "differentiable surrogate (Defense(..., surrogate=...), defenses.BPDA); "
                    "only the gradient-free attacks (square, rays, hsj) and transfer aimed at it")
        elif probe.hidden:
            cure = ("BPDA with the bare classifier: the white-box attacks followed the bare "
                    "model's gradient through the defense's forward, beside the gradient-free "
                    "ones (square, rays, hsj); a surrogate closer to the defense (Defense(..., "
                    "surrogate=...), defenses.BPDA) may break more")
        elif cfg.attack == "auto" and cfg.bare_gradient:
            cure = ("auto's apgd-di followed the bare classifier's input-diversity gradient "
                    "through the defense's forward, beside its own gradient and the "
                    "gradient-free attacks; declare a differentiable surrogate (Defense(..., "
                    "surrogate=...), defenses.BPDA) for a closer one")
        else:
            cure = ("declare a differentiable surrogate (Defense(..., surrogate=...), "
                    "defenses.BPDA), or run --attack auto (its apgd-di follows the bare "
                    "classifier's gradient): the white-box attacks followed a gradient that "
                    "misleads")
        out.append(_flag("masked_gradients", probe.defense, detail, cure,
                         has_surrogate or (cfg.bare_gradient
                                           and (probe.hidden or cfg.attack == "auto"))))
    return out


def _summary_flags(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        where = f"kappa {row['kappa']:g}"
        if row.get("gradient_free_only"):
            free = {m: c for m, c in row["broken_by"].items() if m.split("@")[0]
                    in ("square", "rays", "hsj")}
            out.append(_flag("gradient_free_beats_white_box", row["defense"],
                             f"{row['gradient_free_only']} of {row['n']} images ({where}) fell "
                             f"only to {', '.join(free) or 'a gradient-free attack'}",
                             "a differentiable surrogate for its non-differentiable parts "
                             "(BPDA), EOT if it is random", False))
        white, moved = row.get("attack_success_rate"), row.get("transfer_success_rate")
        if white is not None and moved is not None and moved > white + 1e-12:
            out.append(_flag("transfer_beats_white_box", row["defense"],
                             f"ASR {white:.0%} white box vs {moved:.0%} transferred from the "
                             f"bare model ({where})",
                             "--attack auto (it keeps the transferred examples too), and a "
                             "surrogate (BPDA) where the defense is not differentiable",
                             False))
    return out


def red_flags(cfg: SweepConfig, probes: dict[str, Probe], surrogates: set[str],
              rows: list[dict]) -> list[dict]:
    """Every red flag of a run: from the ``probes`` of each defense (``surrogates``: the
    defenses that declare one) and the summary ``rows``."""
    out = []
    for name, probe in probes.items():
        out += _probe_flags(cfg, probe, name in surrogates)
    return out + _summary_flags(rows)
