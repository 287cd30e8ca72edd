"""The objective a detector-aware attack optimises, kept term by term.

An adaptive attack on a defended system must (1) reach the kappa margin on the classifier the
defense answers with (through any input transform, e.g. MagNet's reformer) and (2) bring every
detector's term to zero. :class:`Objective` holds both parts separately: the attacks of this
package take the classifier and the *sum* of the terms (``penalty()``), while attacks that need
the parts apart (Selective or Orthogonal PGD, which step on one term's gradient with the
others' directions projected out) read each term's value and gradient on its own
(``values``, ``gradients``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from adaptive.attacks.base import Penalty, kappa_margins

CLASSIFIER = "classifier"  # the name of the margin term in values() and gradients()


@dataclass
class Objective:
    """``model``: the classifier the margin is taken through ([0, 1] NCHW in, logits out);
    ``terms``: name -> ``penalty(adv, labels, targeted)``, a differentiable per-sample term
    >= 0 that is 0 where that detector is passed."""

    model: nn.Module
    terms: dict[str, Penalty] = field(default_factory=dict)

    def margin(self, adv: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        """Per sample: <= -kappa where the classifier gives the attacker's answer at kappa."""
        return kappa_margins(self.model(adv), labels, targeted)

    def values(self, adv: torch.Tensor, labels: torch.Tensor, targeted: bool,
               kappa: float = 0.0) -> dict[str, torch.Tensor]:
        """Each term per sample: ``classifier`` (``relu(margin + kappa)``), then every
        detector term; all 0 means the objective is met."""
        out = {CLASSIFIER: torch.relu(self.margin(adv, labels, targeted) + kappa)}
        out.update({name: term(adv, labels, targeted) for name, term in self.terms.items()})
        return out

    def gradients(self, adv: torch.Tensor, labels: torch.Tensor, targeted: bool,
                  kappa: float = 0.0) -> dict[str, torch.Tensor]:
        """Each term's gradient with respect to ``adv`` (per sample, the shape of ``adv``),
        computed separately: the directions an orthogonalising attack projects apart."""
        grads = {}
        for name in (CLASSIFIER, *self.terms):
            x = adv.detach().requires_grad_(True)
            value = (torch.relu(self.margin(x, labels, targeted) + kappa) if name == CLASSIFIER
                     else self.terms[name](x, labels, targeted))
            (grads[name],) = torch.autograd.grad(value.sum(), x, allow_unused=True)
            if grads[name] is None:  # a term that does not depend on the input here
                grads[name] = torch.zeros_like(x)
        return grads

    def penalty(self) -> Penalty | None:
        """The detector terms summed, as the attacks' ``penalty`` argument (None: no terms)."""
        if not self.terms:
            return None
        terms = list(self.terms.values())
        return lambda adv, labels, targeted: sum(t(adv, labels, targeted) for t in terms)
