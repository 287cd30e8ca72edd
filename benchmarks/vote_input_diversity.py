"""Does input diversity (Xie et al., CVPR 2019) make the bare classifier's gradient a better
stand-in for a defense that hides its own? The suite's majority vote (``defenses.suite``: the
bare ``cifar-cnn``, its blurred copy and ``cifar-cnn-at`` voting) alone, attacked by APGD with
the diverse stand-in (``--stand-in diverse``: the gradient of the bare model's log-softmax
averaged over resize-and-pad draws of the input, ``adaptive.attacks.input_diversity``).
Nothing in it knows the vote's members. Run from the project root::

    adaptive sweep --model cifar-cnn --kappa 0 --n 50 --n-cal 100 --norm linf \\
        --eps 0.015686275 --defense-module benchmarks.vote_input_diversity:make \\
        --attack apgd --stand-in diverse --out runs/vote-input-diversity --no-progress

and compare with ``reports/defenses-suite/`` (the same 50 images: naive APGD, auto, and APGD
through the soft vote of all three members). Output:
``reports/benchmarks/vote_input_diversity.txt``.
"""

from defenses.suite import make_suite


def make(model, dataset, device):
    return {"majority-vote": make_suite(model, dataset, device)["majority-vote"]}
