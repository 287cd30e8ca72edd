"""The attack contract (one run method, one result type, the Foolbox 3 split) and the
objective object whose terms detector-aware attacks read separately."""

import torch
from torch import nn

from adaptive.attacks import (Attack, AttackResult, BoundedPGD, CarliniWagnerL2,
                              FixedBudgetAttack, MinimumDistanceAttack, kappa_margins)
from adaptive.attacks.objective import CLASSIFIER, Objective


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 3)
        self.input_shape, self.num_classes = (1, 4, 4), 3

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_attacks_share_one_contract():
    model = Linear()
    x = torch.rand(5, 1, 4, 4)
    y = model(x).argmax(1)
    cw = CarliniWagnerL2(steps=20, binary_search_steps=2, batch_size=2)
    pgd = BoundedPGD(eps=2.0, steps=10, batch_size=2)
    assert isinstance(cw, MinimumDistanceAttack) and isinstance(pgd, FixedBudgetAttack)
    for attack in (cw, pgd):
        assert isinstance(attack, Attack)
        r = attack.run(model, x, y)  # three batches of at most 2, joined
        assert isinstance(r, AttackResult) and r.adversarial.shape == x.shape
        assert len(r.success) == len(r.l2) == len(r.gradient_steps) == 5
        assert r.success.dtype == torch.bool and r.confidence_reached is not None
    # a hand-made attack needs only _run_batch
    class Identity(Attack):
        name = "identity"

        def _run_batch(self, model, x, labels, targeted, penalty, state):
            n = len(x)
            return AttackResult(x.clone(), torch.zeros(n), torch.zeros(n, dtype=torch.bool),
                                torch.full((n,), float("nan")), torch.zeros(n, dtype=torch.long))

    r = Identity().run(model, x, y)
    assert torch.equal(r.adversarial, x) and r.confidence_reached is None


def test_the_objective_keeps_its_terms_apart():
    model = Linear()
    x = torch.rand(4, 1, 4, 4)
    y = model(x).argmax(1)
    bright = lambda adv, labels, targeted: torch.relu(adv.flatten(1).mean(1) - 0.3)  # noqa: E731
    dark = lambda adv, labels, targeted: torch.relu(0.7 - adv.flatten(1).mean(1))  # noqa: E731
    obj = Objective(model, {"bright": bright, "dark": dark})
    values = obj.values(x, y, False, kappa=1.0)
    assert list(values) == [CLASSIFIER, "bright", "dark"]
    assert torch.allclose(values[CLASSIFIER], torch.relu(kappa_margins(model(x), y, False) + 1))
    assert torch.allclose(obj.penalty()(x, y, False), values["bright"] + values["dark"])
    grads = obj.gradients(x, y, False, kappa=1.0)
    assert all(g.shape == x.shape for g in grads.values())
    # the two detector terms pull in opposite directions where both are active
    both = (values["bright"] > 0) & (values["dark"] > 0)
    if both.any():
        dot = (grads["bright"][both] * grads["dark"][both]).flatten(1).sum(1)
        assert (dot < 0).all()
    # the margin term's gradient is the linear model's weight difference
    z = model(x)
    other = z.scatter(1, y[:, None], float("-inf")).argmax(1)
    w = model.fc.weight
    expected = (w[y] - w[other]).view(-1, 1, 4, 4)
    assert torch.allclose(grads[CLASSIFIER], expected, atol=1e-6)
    assert Objective(model).penalty() is None
