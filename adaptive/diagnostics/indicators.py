"""Indicators of attack failure (Pintor et al., "Indicators of Attack Failure: Debugging and
Improving Optimization of Adversarial Examples", NeurIPS 2022), per example, from the attack's
own trace (:class:`adaptive.attacks.base.Trace`) and a few extra evaluations of the model:

* ``silent_success``: some iterate met the objective, the returned example does not (an
  attack that returns its last iterate instead of its best);
* ``incomplete_optimization``: the attack did not meet its whole objective and its loss was
  still falling at the end of its last run (more steps would help);
* ``unavailable_gradients``: the first gradient was zero or not finite (a non-differentiable
  or saturated defense: quantisation, a hard threshold);
* ``unstable_predictions``: the model's loss at the returned example changes under a repeated
  evaluation, or its mean over a tiny random perturbation and its opposite differs from it
  (a randomised or discontinuous defense: use EOT);
* ``transfer_failure`` (per defense, from the verdicts): the attack met its whole objective
  (margin and every detector penalty) on the model it attacked, yet the defense it meant to
  break was not broken for a reason other than the bound: its surrogate is not the defense.

Each is a bool tensor per example; ``describe`` says what one means. An honest, converged
attack on a deterministic differentiable model raises none.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptive.attacks.base import AttackResult, kappa_margins

MEANING = {
    "silent_success": "an earlier iterate met the objective, the returned example does not: "
                      "the attack returns the wrong iterate",
    "incomplete_optimization": "did not meet its objective (margin and detector penalties) "
                               "while its loss was still falling at the end: give it more "
                               "steps",
    "unavailable_gradients": "the first gradient was zero or not finite: the defense hides "
                             "its gradient (quantised, thresholded); use a hard-label attack or "
                             "a differentiable surrogate",
    "unstable_predictions": "the loss at the example changes between evaluations or under "
                            "tiny noise: the defense is random; average gradients (--eot)",
    "transfer_failure": "met its objective on the model it attacked, yet the defense was not "
                        "broken (detected or not misclassified): the objective is not the "
                        "defense",
}
TAIL = 10  # evaluations at the end of a run that must still lower the loss
FALLING = 1e-3  # ... by this share of the run's first loss, to count as still falling
NOISE = 1e-3  # tiny perturbation (L-inf, pixel units) for unstable predictions
UNSTABLE = 0.05  # relative loss change that counts as unstable


def describe(name: str) -> str:
    return MEANING[name]


def objective_met(result: AttackResult) -> torch.Tensor:
    """Whether each returned example meets the attack's whole objective (margin and every
    penalty term: what the attack believes breaks the defense)."""
    met = result.trace.returned_met if result.trace is not None else None
    return result.success if met is None else met


def silent_success(result: AttackResult) -> torch.Tensor:
    return result.trace.ever_met & ~objective_met(result)


def incomplete_optimization(result: AttackResult, tail: int = TAIL,
                            falling: float = FALLING) -> torch.Tensor:
    """Did not meet its whole objective, and over its last ``tail`` evaluations the loss fell
    by more than ``falling``
    times the run's first loss (a run shorter than 2 x tail is judged on its second half)."""
    out = torch.zeros(len(result.success), dtype=torch.bool)
    met = objective_met(result)
    for j in range(len(out)):
        if bool(met[j]):
            continue
        seq = result.trace.loss[:, j]
        seq = seq[torch.isfinite(seq)]
        if len(seq) < 3:
            continue
        k = min(tail, len(seq) // 2)
        drop = float(seq[-k - 1] - seq[-1])
        out[j] = drop > falling * max(abs(float(seq[0])), 1e-12)
    return out


def unavailable_gradients(result: AttackResult) -> torch.Tensor:
    g = result.trace.first_grad_norm
    stepped = g >= 0
    return (stepped & (g == 0)) | ~torch.isfinite(g)


@torch.no_grad()
def unstable_predictions(model: nn.Module, x_adv: torch.Tensor, labels: torch.Tensor,
                         targeted: bool = False, noise: float = NOISE,
                         threshold: float = UNSTABLE, seed: int = 0) -> torch.Tensor:
    """The margin at ``x_adv`` evaluated twice, and the mean of the margins at ``x_adv`` plus
    and minus the same random perturbation (L-inf ``noise``, on the pixels where both stay in
    [0, 1]): a change above ``threshold`` of the margin's scale is unstable. The pair cancels
    the first-order change (``g . d - g . d``), which a steep deterministic model shows under
    any noise (with one point instead of the pair, 3-4 of 100 C&W examples at kappa 0 on
    mnist-cnn changed by up to 0.07, the pair by at most 0.0012); what is left is a random
    model, a discontinuity (quantisation) or curvature."""
    device = next(model.parameters()).device if any(True for _ in model.parameters()) \
        else x_adv.device
    x_adv, labels = x_adv.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(seed)
    jitter = (torch.rand(x_adv.shape, generator=gen) * 2 - 1).to(x_adv) * noise
    jitter = jitter * ((x_adv - jitter.abs() >= 0) & (x_adv + jitter.abs() <= 1))
    first = kappa_margins(model(x_adv), labels, targeted)
    again = kappa_margins(model(x_adv), labels, targeted)
    nearby = (kappa_margins(model(x_adv + jitter), labels, targeted)
              + kappa_margins(model(x_adv - jitter), labels, targeted)) / 2
    scale = first.abs().clamp_min(1.0)
    change = torch.maximum((again - first).abs(), (nearby - first).abs()) / scale
    return (change > threshold).cpu()


def from_trace(result: AttackResult) -> dict[str, torch.Tensor]:
    """The indicators that need nothing but the attack's result and trace (none without a
    trace: the attack keeps none)."""
    if result.trace is None:
        return {}
    return {"silent_success": silent_success(result),
            "incomplete_optimization": incomplete_optimization(result),
            "unavailable_gradients": unavailable_gradients(result)}


def transfer_failure(objective_met: bool, reasons: list[str]) -> bool:
    """One example against one defense the attack aimed at: the attack's whole objective met
    (:func:`objective_met`), yet not broken for a reason other than the bound."""
    return bool(objective_met) and any(r != "bound_exceeded" for r in reasons)


def count(records: list[dict], key: str = "indicators") -> dict[str, dict]:
    """``{indicator: {"fired": k, "of": n, "meaning": ...}}`` over records that hold
    ``key`` (a dict of bools per record)."""
    out: dict[str, dict] = {}
    for r in records:
        for name, fired in (r.get(key) or {}).items():
            row = out.setdefault(name, {"fired": 0, "of": 0,
                                        "meaning": MEANING.get(name.split(":")[0], "")})
            row["of"] += 1
            row["fired"] += bool(fired)
    return out


def rate(row: dict) -> float:
    return row["fired"] / row["of"] if row["of"] else math.nan


MODEL_FLAGS = {
    "outputs_probabilities": "the model returns probabilities (or log-probabilities), not "
                             "logits: margins saturate and gradients vanish; attack the logits",
    "randomised_outputs": "two passes over the same inputs differ: the model is random; "
                          "average gradients (--eot) and judge over repeated passes",
    "zero_gradients": "the loss has a zero gradient at some benign inputs: gradient masking "
                      "or saturation",
}


def model_flags(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict[str, dict]:
    """AutoAttack's checks of a model on benign inputs ``x``: probabilities instead of logits,
    randomised outputs over repeated passes, zero gradients. Each: ``{"fired", "detail",
    "meaning"}``."""
    device = next((p.device for p in model.parameters()), x.device)
    x, labels = x.to(device), labels.to(device)
    with torch.no_grad():
        out, again = model(x), model(x)
    probs = bool(((out >= 0) & (out <= 1)).all() and
                 torch.allclose(out.sum(1), torch.ones(len(out), device=device), atol=1e-4))
    log_probs = bool((out <= 0).all() and torch.allclose(
        out.logsumexp(1), torch.zeros(len(out), device=device), atol=1e-4))
    changed = float((out - again).abs().max())
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = torch.nn.functional.cross_entropy(model(xg), labels, reduction="sum")
        # (a forward that does not depend on its input through autograd: a zero gradient)
        (g,) = (torch.autograd.grad(loss, xg, allow_unused=True) if loss.requires_grad
                else (None,))
    g = torch.zeros_like(xg) if g is None else g
    zero = (g.flatten(1).abs().amax(1) == 0).float().mean().item()
    found = {"outputs_probabilities": (probs or log_probs,
                                       "probabilities" if probs else
                                       "log-probabilities" if log_probs else "logits"),
             "randomised_outputs": (changed > 1e-5,
                                    f"largest change between two passes {changed:.3g}"),
             "zero_gradients": (zero > 0, f"{zero:.0%} of {len(x)} benign inputs")}
    return {k: {"fired": bool(v[0]), "detail": v[1], "meaning": MODEL_FLAGS[k]}
            for k, v in found.items()}
