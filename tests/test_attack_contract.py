"""The attack contract (one run method, one result type, the Foolbox 3 split) and the
objective object whose terms detector-aware attacks read separately."""

import torch
from torch import nn

from adaptive.attacks import (
    Attack,
    AttackResult,
    BoundedPGD,
    CarliniWagnerL2,
    FixedBudgetAttack,
    MinimumDistanceAttack,
    kappa_margins,
)
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


# --- every registered attack ------------------------------------------------------------------
# Small budgets so that the contract runs in seconds; an attack registered without an entry
# here runs at its defaults.
import dataclasses  # noqa: E402

import pytest  # noqa: E402

from adaptive.attacks import ATTACK_SPECS, Access, AttackSetup, DecisionOracle  # noqa: E402
from adaptive.core.errors import ToolkitError  # noqa: E402
from adaptive.core.threat import ThreatModel  # noqa: E402
from adaptive.defense import Defense  # noqa: E402

FAST = {"cw": dict(steps=30, binary_search_steps=2), "pgd": dict(steps=10, restarts=2),
        "spgd": dict(steps=10, restarts=2), "opgd": dict(steps=10, restarts=2),
        "hsj": dict(iterations=15, evals=20, max_evals=50)}
BOUND = {"l2": 2.0, "linf": 0.3}
CASES = [(name, norm.value) for name, spec in ATTACK_SPECS.items()
         for norm in spec.threat_models]


class Steep(Linear):
    """The linear model with logits 30 times as steep: some images break within the bounds."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.fc.weight.mul_(30)


def _built(name: str, norm: str, **overrides):
    spec = ATTACK_SPECS[name]
    settings = dataclasses.replace(spec.settings(), **FAST.get(name, {}))
    attack = spec.make(AttackSetup(ThreatModel(norm, BOUND[norm]), 0.0, 0, settings,
                                   overrides=overrides))
    model = Steep()
    target = DecisionOracle(Defense("none", model)) if spec.access is Access.LABELS else model
    return spec, attack, model, target


def _images(model, n=6):
    """``n`` images, of every class in turn (a hard-label attack starts from another class)."""
    gen = torch.Generator().manual_seed(1)
    w = model.fc.weight.detach()
    towards = (w - w.mean(0)).sign().view(3, 1, 4, 4)
    x = (0.5 + 0.4 * towards[torch.arange(n) % 3]
         + 0.05 * torch.randn(n, 1, 4, 4, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        return x, model(x).argmax(1)


def test_every_attack_module_registers_once_with_a_complete_spec():
    assert {"cw", "pgd", "spgd", "opgd", "hsj"} <= set(ATTACK_SPECS)
    for name, spec in ATTACK_SPECS.items():
        assert spec.name == name and issubclass(spec.cls, Attack)
        assert dataclasses.is_dataclass(spec.settings) and spec.settings()  # defaults build
        assert spec.threat_models and spec.aims in ("chosen", "all")
        assert issubclass(spec.cls, FixedBudgetAttack if spec.fixed_budget
                          else MinimumDistanceAttack), name
    from adaptive.attacks.registry import register_attack
    with pytest.raises(ValueError, match="already registered"):
        register_attack(ATTACK_SPECS["cw"])


@pytest.mark.parametrize("name,norm", CASES)
def test_every_registered_attack_keeps_the_contract(name, norm):
    spec, attack, model, target = _built(name, norm)
    assert isinstance(attack, spec.cls) and isinstance(attack.config(), dict)
    x, y = _images(model)
    r = attack.run(target, x, y)
    n = len(x)
    assert isinstance(r, AttackResult) and r.adversarial.shape == x.shape
    assert r.adversarial.device.type == "cpu"
    assert len(r.success) == len(r.l2) == len(r.gradient_steps) == n
    assert r.success.dtype == torch.bool
    assert float(r.adversarial.min()) >= 0 and float(r.adversarial.max()) <= 1
    assert r.success.any(), f"{name} fooled no image of a 3-class linear model"
    threat = ThreatModel(norm, BOUND[norm])
    with torch.no_grad():
        fooled = model(r.adversarial).argmax(1) != y
    # a success is real: the model (or the oracle) is fooled by the returned example
    assert bool(fooled[r.success].all()), name
    if spec.fixed_budget:  # a fixed-budget attack stays within its ball
        assert bool(threat.contains(r.adversarial, x).all()), name
    # an image the attack could not break comes back unchanged
    assert torch.equal(r.adversarial[~r.success], x[~r.success]), name
    # seeded: the same attack, built again, gives the same examples
    again = _built(name, norm)[1].run(target, x, y)
    assert torch.equal(again.adversarial, r.adversarial) and torch.equal(again.success,
                                                                          r.success)


@pytest.mark.parametrize("name,norm", CASES)
def test_every_registered_attack_refuses_bad_images(name, norm):
    _, attack, model, target = _built(name, norm)
    x, y = _images(model, 2)
    with pytest.raises(ToolkitError):
        attack.run(target, x * 3, y)  # outside [0, 1]
    with pytest.raises(ToolkitError):
        attack.run(target, torch.full_like(x, float("nan")), y)


@pytest.mark.parametrize("name,norm", CASES)
def test_per_sample_seeds_make_an_image_independent_of_its_batch(name, norm):
    spec, attack, model, target = _built(name, norm)
    x, y = _images(model)
    seeds = torch.arange(len(x)) + 100
    # a hard-label attack starts from other images: the same candidates for both runs
    starts = {"starts": x} if spec.access is Access.LABELS else {}
    whole = attack.run(target, x, y, seeds=seeds, **starts)
    part = _built(name, norm)[1].run(target, x[2:4], y[2:4], seeds=seeds[2:4], **starts)
    # (to float rounding: a batch of another size sums in another order)
    assert torch.allclose(whole.adversarial[2:4], part.adversarial, atol=1e-5), name


def test_an_attack_refuses_a_threat_model_it_does_not_support():
    for spec in ATTACK_SPECS.values():
        for norm in ("l2", "linf"):
            if norm not in [n.value for n in spec.threat_models]:
                with pytest.raises(ToolkitError, match="does not attack"):
                    spec.make(AttackSetup(ThreatModel(norm, BOUND[norm])))
