"""HopSkipJump, the hard-label attack on a whole defense: it needs only the verdict, so it
breaks a detector that has no gradient at all, where gradient attacks are caught; and the
verdict oracle asks each detector only about the inputs still accepted, the cheapest first."""

import torch

from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.attacks.hard_label import DecisionOracle, HopSkipJump
from adaptive.core.data import load_dataset
from adaptive.core.threat import ThreatModel
from adaptive.core.zoo import load_model
from adaptive.defense import Defense, judge
from defenses import Detector, is_differentiable


class RoundedGapDetector(Detector):
    """Flags inputs whose two largest logits lie within ``gap`` of each other, on the rounded
    gap: piecewise constant, so its gradient is zero everywhere (no gradient attack can aim)."""

    differentiable = False

    def __init__(self, model):
        self.model, self.name = model, "gap"

    @torch.no_grad()
    def score(self, x):
        top = self.model(x).topk(2, dim=1).values
        return -torch.round(top[:, 0] - top[:, 1])

    def fit(self, benign, gap: float = 3.0):
        self.threshold = -gap
        return self


def _setup():
    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    x, y = data.x()[:4], data.labels[:4]
    assert bool((model(x).argmax(1) == y).all())
    detector = RoundedGapDetector(model).fit(data.x()[1000:1100])
    return model, x, y, Defense("gapped", model, {"gap": detector})


def test_hopskipjump_breaks_a_detector_without_gradients():
    model, x, y, defense = _setup()
    assert not is_differentiable(defense.detectors["gap"])
    oracle = DecisionOracle(defense)
    r = HopSkipJump(iterations=12, evals=40, max_evals=150, eps=5.0).run(oracle, x, y)
    hsj = judge(defense, r.adversarial, x, y, r.success, ThreatModel("l2", 5.0))
    # PGD-L2 at kappa 0 stops at the decision boundary, where this detector fires
    p = BoundedPGD(5.0, steps=50, restarts=1).run(model, x, y)
    pgd = judge(defense, p.adversarial, x, y, p.success, ThreatModel("l2", 5.0))
    assert int(hsj.success.sum()) >= 3 and int(pgd.success.sum()) <= 1, (hsj.reasons,
                                                                          pgd.reasons)
    assert (r.gradient_steps > 0).all() and oracle.queries == int(r.gradient_steps.sum())
    assert torch.allclose(r.l2, (r.adversarial - x).flatten(1).norm(dim=1))


def test_hsj_runs_through_the_sweep_on_the_last_defense(tmp_path):
    import pytest

    from adaptive.core.errors import ToolkitError
    from adaptive.sweep import SweepConfig, read_records, run_sweep

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 60))
    det = RoundedGapDetector(model).fit(None)
    said = []
    cfg = SweepConfig(model_sha256=meta["sha256"], n=2, n_cal=10, kappas=[0.0], batch=2,
                      defenses=["none", "gapped"], magnet=None, attack="hsj", max_l2=5.0,
                      hsj=dict(iterations=6, evals=30, max_evals=100))
    res = run_sweep(cfg, model, data, tmp_path / "hsj", "cpu",
                    extra_defenses={"gapped": Defense("gapped", model, {"gap": det})},
                    progress=False, log=said.append)
    assert any("hard-label attack on the verdict of 'gapped'" in s for s in said)
    records = read_records(tmp_path / "hsj" / "records.jsonl")
    assert len(records) == 2 and all(r["attack_steps"] > 0 for r in records)
    assert {r["defense"] for r in res["rows"]} == {"none", "gapped"}
    with pytest.raises(ToolkitError, match="--kappa 0"):
        run_sweep(SweepConfig(attack="hsj", kappas=[0.0, 5.0]), model, data, tmp_path / "x",
                  "cpu", progress=False, log=said.append)


class GradientNormDetector(Detector):
    """Flags inputs where the classifier's loss is flat: it differentiates inside ``detect``,
    as A2D's attack-cost count does, so an oracle must not switch autograd off around it."""

    def __init__(self, model):
        self.model, self.name, self.threshold = model, "flat", -1e-3

    def score(self, x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.model(x).logsumexp(1).sum(), x)
        return -g.flatten(1).norm(dim=1).detach()

    def fit(self, benign):
        return self


def test_the_oracle_lets_a_detector_differentiate_inside():
    model, x, y, _ = _setup()
    defense = Defense("flat", model, {"flat": GradientNormDetector(model)})
    oracle = DecisionOracle(defense)
    assert oracle(x, y, False).shape == (len(x),)
    r = HopSkipJump(iterations=2, evals=10, max_evals=20, eps=5.0).run(oracle, x[:2], y[:2])
    assert r.gradient_steps.sum() > 0


class _Counting:
    """A detector that flags bright inputs, counts the inputs it sees, and takes ``delay``
    seconds per call."""

    def __init__(self, limit: float, delay: float = 0.0):
        self.limit, self.delay, self.seen = limit, delay, 0

    def detect(self, x):
        import time

        time.sleep(self.delay)
        self.seen += len(x)
        return x.flatten(1).mean(1) > self.limit


def test_the_oracle_asks_detectors_only_about_inputs_still_accepted_cheapest_first():
    model, _, _, _ = _setup()
    data = load_dataset("mnist-bundled")
    x, y = data.x()[:40], data.labels[:40]
    slow, fast = _Counting(limit=2.0, delay=0.05), _Counting(limit=0.12)
    oracle = DecisionOracle(Defense("two", model, {"slow": slow, "fast": fast}))
    # correctly classified, so refused whatever the detectors would say: they are not asked
    assert not bool(oracle(x, y, targeted=False).any())
    assert slow.seen == fast.seen == 0
    # targeted at the true label: accepted by the classifier, so the detectors are asked;
    # once measured, the fast one goes first and the slow one sees only what it accepts
    first = oracle(x, y, targeted=True)
    again = oracle(x, y, targeted=True)
    assert torch.equal(first, again) and torch.equal(first, ~fast.detect(x))
    bright = int(fast.detect(x).sum())
    assert 0 < bright < len(x) and slow.seen == len(x) + (len(x) - bright)
