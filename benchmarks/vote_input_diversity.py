"""Does input diversity (Xie et al., CVPR 2019) make the bare classifier's gradient a better
stand-in for a defense that hides its own? The suite's majority vote (``defenses.suite``: the
bare ``cifar-cnn``, its blurred copy and ``cifar-cnn-at`` voting) declared with the surrogate
``BPDA(vote, DiverseBare(model))``: the vote's value, the gradient of the bare model's
log-softmax averaged over random resize-and-pad draws of the input. Nothing in it knows the
vote's members. Run from the project root::

    adaptive sweep --model cifar-cnn --kappa 0 --n 50 --n-cal 100 --norm linf \\
        --eps 0.015686275 --defense-module benchmarks.vote_input_diversity:make \\
        --attack apgd --out runs/vote-input-diversity --no-progress

and compare with ``reports/defenses-suite/`` (the same 50 images: naive APGD, auto with the
plain bare-model gradient, and APGD through the soft vote of all three members). Output:
``reports/benchmarks/vote_input_diversity.txt``.
"""

import torch
from torch import nn

from defenses import BPDA, Defense
from defenses.suite import make_suite

DRAWS = 4  # resize-and-pad draws averaged per gradient
SMALLEST = 0.85  # the smallest side a draw resizes to, as a share of the image's


class DiverseBare(nn.Module):
    """The mean log-softmax of ``model`` over :data:`DRAWS` random resize-and-pad draws of
    the input (bilinear resize to a side in [SMALLEST, 1] of the image's, zero padding back
    at a random offset)."""

    def __init__(self, model: nn.Module, draws: int = DRAWS):
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        outs = []
        for _ in range(self.draws):
            s = int(torch.randint(int(SMALLEST * h), h + 1, ()))
            small = nn.functional.interpolate(x, size=(s, s), mode="bilinear",
                                              align_corners=False)
            top = int(torch.randint(0, h - s + 1, ()))
            left = int(torch.randint(0, w - s + 1, ()))
            big = nn.functional.pad(small, (left, w - s - left, top, h - s - top))
            outs.append(self.model(big).log_softmax(1))
        return torch.stack(outs).mean(0)


def make(model, dataset, device):
    vote = make_suite(model, dataset, device)["majority-vote"].classifier
    return {"vote-di": Defense("vote-di", vote, surrogate=BPDA(vote, DiverseBare(model)))}
