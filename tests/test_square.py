"""The Square attack against torchattacks' Square on the same model, images and query budget
(L-inf and L2); its examples stay in the ball; a detector term it can only read (a confidence
detector, no gradient) is met; per-image seeds make an image's result independent of its
batch; and a defense whose gradients are masked (input rounding) falls to Square where a
white-box attack finds nothing."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from adaptive.attacks import APGD, Square
from adaptive.attacks.square import bump, window_share
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model


@pytest.fixture(scope="module")
def cifar(data_root):
    model, _ = load_model("cifar-cnn")
    data = load_dataset("cifar10-genuine", root=data_root)
    x, y = data.x()[:64], data.labels[:64]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:40], y[ok][:40]


def _robust(model, adv, y) -> float:
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


def test_the_schedule_and_the_bump():
    assert window_share(0.8, 0, 1000) == 0.8 and window_share(0.8, 2, 1000) == 0.4
    assert window_share(0.8, 999, 1000) == pytest.approx(0.8 / 512)
    b = bump(5)
    assert b.shape == (5, 5) and float(b.norm()) == pytest.approx(1.0)
    assert float(b[:2].sum()) > 0 > float(b[2:].sum())  # one half raised, the other lowered


@pytest.mark.parametrize("norm,eps", [("linf", 2 / 255), ("l2", 0.25)])
def test_square_is_as_strong_as_torchattacks_square(cifar, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = cifar
    ours = Square(eps, queries=200, norm=norm).run(model, x, y)
    theirs = torchattacks.Square(model, norm="Linf" if norm == "linf" else "L2", eps=eps,
                                 n_queries=200, n_restarts=1, seed=0)(x, y)
    d = (ours.adversarial - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bool((dist <= eps).all()) and bool((ours.adversarial >= 0).all())
    with torch.no_grad():
        assert bool((model(ours.adversarial[ours.success]).argmax(1) != y[ours.success]).all())
    # within two images of 40 of the reference (the random draws differ)
    assert _robust(model, ours.adversarial, y) <= _robust(model, theirs, y) + 2 / 40
    # per-sample early stop: the images broken early stop spending queries
    assert float(ours.gradient_steps.float().mean()) < 200


def test_square_meets_a_term_it_can_only_read(cifar):
    model, x, y = cifar
    x, y = x[:12], y[:12]

    def unsure(adv, labels, targeted):  # a "detector" of low confidence, read only
        with torch.no_grad():
            top = model(adv).topk(2, dim=1).values
            return torch.relu(2.0 - (top[:, 0] - top[:, 1]))

    plain = Square(8 / 255, queries=300, norm="linf").run(model, x, y)
    aware = Square(8 / 255, queries=300, norm="linf").run(model, x, y, penalty=unsure)
    met = aware.success & (unsure(aware.adversarial, y, False) <= 0)
    plain_met = plain.success & (unsure(plain.adversarial, y, False) <= 0)
    assert int(met.sum()) >= int(plain_met.sum()) + 3, (met, plain_met)


def test_per_image_seeds_make_each_result_independent_of_its_batch(cifar):
    model, x, y = cifar
    x, y = x[:6], y[:6]
    seeds = torch.arange(6) * 11 + 5
    some = torch.tensor([0, 3, 4])
    for norm, eps in (("linf", 1 / 255), ("l2", 0.1)):
        attack = Square(eps, queries=40, norm=norm)
        whole = attack.run(model, x, y, seeds=seeds)
        part = attack.run(model, x[some], y[some], seeds=seeds[some])
        assert torch.allclose(whole.adversarial[some], part.adversarial, atol=1e-6)
        assert torch.equal(whole.gradient_steps[some], part.gradient_steps)


class Rounded(nn.Module):
    """A classifier behind input rounding to ``levels`` steps: torch.round has no gradient."""

    def __init__(self, model: nn.Module, levels: int = 8):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


def test_a_masked_defense_falls_to_square_not_to_gradients():
    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    x, y = data.x()[:12], data.labels[:12]
    rounded = Rounded(model)
    white = APGD(0.2, steps=30, norm="linf").run(rounded, x, y)
    square = Square(0.2, queries=300, norm="linf").run(rounded, x, y)
    assert _robust(rounded, white.adversarial, y) == 1.0  # no gradient, no progress
    assert _robust(rounded, square.adversarial, y) <= 0.25


def test_square_aims_at_a_plug_in_detector_without_gradients(tmp_path):
    """A detector with no gradient (the rounded logit gap: flags the unsure inputs that a
    minimal attack lands on) is part of Square's loss through its score, or its flag where it
    has no score; an example that stops at the boundary is flagged."""
    from adaptive.attacks.magnet_aware import score_penalty
    from adaptive.core.threat import ThreatModel
    from adaptive.defense import Defense, judge
    from adaptive.sweep import SweepConfig
    from adaptive.sweep.objectives import defense_objective
    from tests.test_hard_label import RoundedGapDetector

    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    x, y = data.x()[:16], data.labels[:16]
    gap = RoundedGapDetector(model).fit(None)

    class FlagOnly:  # the same detector through the bare contract: detect(x), no score
        def detect(self, adv):
            return gap.detect(adv)

    defense = Defense("gapped", model, {"gap": gap})
    ok = torch.ones(len(x), dtype=torch.bool)

    def broken(penalty):
        r = Square(0.3, queries=300, norm="linf").run(model, x, y, penalty=penalty)
        v = judge(defense, r.adversarial, x, y, r.success & ok, ThreatModel("linf", 0.3))
        return int(v.success.sum())

    plain, scored, flagged = (broken(None), broken(score_penalty("gap", gap)),
                              broken(score_penalty("gap", FlagOnly())))
    # reading the detector must get at least 6 more of the 16 images past it than ignoring it
    assert scored >= plain + 6 and flagged >= plain + 6, (plain, scored, flagged)
    # a sweep's Square aims at it as part of the plug-in's own objective
    cfg = SweepConfig(defenses=["none"], kappas=[0.0], attack="square-full", norm="linf",
                      max_linf=0.3)
    assert set(defense_objective(cfg, "gapped", defense).terms) == {"gap"}
    # (a white-box attack cannot follow it: the hard-label members aim at its verdict)
    assert defense_objective(replace(cfg, attack="apgd-full"), "gapped", defense).terms == {}
