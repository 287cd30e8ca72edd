"""Selective and Orthogonal PGD (Bryniarski et al. 2022) against hand-made classifiers and
detectors whose gradients we know, beside the summed objective of bounded PGD."""

import pytest
import torch
from torch import nn

from adaptive.attacks.base import kappa_margins
from adaptive.attacks.bounded_pgd import BoundedPGD, OrthogonalPGD, SelectivePGD


class TwoPixels(nn.Module):
    """Class 1 where x1 > 0.5 (logit gap 10 (x1 - 0.5)), else class 0."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.input_shape, self.num_classes = (1, 1, 2), 2

    def forward(self, x):
        f = x.flatten(1)
        return torch.stack([torch.zeros(len(x)), 10 * (f[:, 0] - 0.5)], 1)


def wedge(lam=100.0, mu=40.0):
    """A detector that fires where x1 > 0.3 + (mu / lam) x2: passing it at the classifier's
    boundary needs x2 >= 0.5, an escape mostly orthogonal to the classifier's gradient."""
    return lambda adv, labels, targeted: torch.relu(lam * (adv.flatten(1)[:, 0] - 0.3)
                                                    - mu * adv.flatten(1)[:, 1])


def tent(lam=50.0):
    """A detector that fires only on a band 0.1 < x1 < 0.45 around the start: a wall whose
    gradient is parallel to the classifier's."""
    return lambda adv, labels, targeted: torch.relu(
        lam * torch.minimum(adv.flatten(1)[:, 0] - 0.1, 0.45 - adv.flatten(1)[:, 0]))


START, LABEL = torch.tensor([[[[0.2, 0.0]]]]), torch.tensor([0])


def _broken(attack, penalty) -> bool:
    r = attack.run(TwoPixels(), START, LABEL, penalty=penalty)
    return bool(r.success[0]) and float(penalty(r.adversarial, LABEL, False)[0]) <= 0


@pytest.mark.parametrize("steps", [40, 100])
def test_orthogonal_pgd_escapes_where_the_sum_and_selective_pgd_zigzag(steps):
    kwargs = dict(eps=0.8, steps=steps, restarts=1, norm="l2")
    assert _broken(OrthogonalPGD(**kwargs), wedge())
    assert not _broken(BoundedPGD(**kwargs), wedge())
    assert not _broken(SelectivePGD(**kwargs), wedge())  # its detector step is the sum's


@pytest.mark.parametrize("norm, eps", [("l2", 0.8), ("linf", 0.6)])
def test_selective_pgd_crosses_a_wall_the_sum_cannot(norm, eps):
    kwargs = dict(eps=eps, steps=40, restarts=1, norm=norm)
    assert _broken(SelectivePGD(**kwargs), tent())
    assert not _broken(BoundedPGD(**kwargs), tent())
    # opposed parallel gradients leave Orthogonal PGD no direction at all: the two are
    # complementary
    assert not _broken(OrthogonalPGD(**kwargs), tent())


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)
        self.input_shape, self.num_classes = (1, 2, 2), 2

    def forward(self, x):
        z = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(z), z], 1)


@pytest.mark.parametrize("agree", [False, True])
def test_one_orthogonal_step_keeps_the_other_term_to_first_order(agree):
    torch.manual_seed(0)
    w_cls, w_det = torch.randn(4), torch.randn(4)
    model = Linear(w_cls)
    x = torch.full((1, 1, 2, 2), 0.5)
    pred = int(model(x).argmax(1))
    # the detector's gradient opposes the classifier step's (conflict) or helps it (agree)
    g_cls = w_cls if pred == 1 else -w_cls  # the gradient of the true class's margin
    w_det = w_det * (1.0 if (float(w_det @ g_cls) > 0) == agree else -1.0)
    detector = lambda adv, labels, targeted: torch.relu(adv.flatten(1) @ w_det + 5)  # noqa: E731
    attack = OrthogonalPGD(eps=0.5, steps=1, restarts=1, norm="l2")
    for label in (pred, 1 - pred):  # the true class (a classifier step), another (a detector step)
        y = torch.tensor([label])
        delta = torch.zeros_like(x, requires_grad=True)
        shortfall = kappa_margins(model(x + delta), y, False)
        penalty = detector(x + delta, y, False)
        # descending `direction` must not raise the other term, to first order
        other = (torch.autograd.grad(penalty.sum(), delta, retain_graph=True)[0]
                 if label == pred else
                 torch.autograd.grad(shortfall.sum(), delta, retain_graph=True)[0])
        direction = attack._direction(delta, shortfall, penalty)
        change = -float(direction.flatten() @ other.flatten())
        assert change <= 1e-5
        if label == pred:  # the classifier step: kept whole where it helps, cut where not
            assert (abs(change) < 1e-5) != agree
        assert float(direction.flatten().norm()) > 0
    # and the step taken lowers the detector's score and does not undo the classifier's
    # margin (unchanged where the two conflict; a linear model has no second order)
    y = torch.tensor([1 - pred])
    r = attack.run(model, x, y, penalty=detector)
    before = kappa_margins(model(x), y, False)
    after = kappa_margins(model(r.adversarial), y, False)
    assert float(after) <= float(before) + 1e-4
    assert float(detector(r.adversarial, y, False)) < float(detector(x, y, False))


def test_linf_steps_stay_in_the_box():
    r = SelectivePGD(eps=0.05, steps=30, restarts=2, norm="linf").run(
        TwoPixels(), START, LABEL, penalty=tent())
    assert float((r.adversarial - START).abs().max()) <= 0.05 + 1e-6


def test_spgd_and_opgd_run_through_the_sweep(tmp_path):
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.sweep import SweepConfig, read_records, run_sweep
    from defenses.magnet.defense import MagNet

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 60))
    magnet = MagNet.load("mnist", model)
    for attack in ("spgd", "opgd"):
        said = []
        cfg = SweepConfig(model_sha256=meta["sha256"], n=2, n_cal=20, kappas=[0.0], batch=2,
                          defenses=["none", "a2d+magnet"], attack=attack, max_l2=3.0,
                          pgd=dict(steps=15, restarts=1, target_classes=0),
                          transfer_check=False)
        res = run_sweep(cfg, model, data, tmp_path / attack, "cpu", magnet=magnet,
                        progress=False, log=said.append)
        records = read_records(tmp_path / attack / "records.jsonl")
        assert len(records) == 2 and all(r["l2"] <= 3.0 + 1e-5 for r in records)
        assert {r["defense"] for r in res["rows"]} == {"none", "a2d+magnet"}
        assert all(r["attack_steps"] <= 15 for r in records)


def test_operating_points_at_five_percent_benign_false_positives(tmp_path):
    import numpy as np

    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.sweep import SweepConfig, run_sweep, union_thresholds
    from defenses.magnet.defense import MagNet

    rng = np.random.default_rng(0)
    benign = {"a": rng.normal(size=400), "b": rng.normal(size=400)}
    th = union_thresholds(benign, 0.05)
    union = (benign["a"] > th["a"]) | (benign["b"] > th["b"])
    assert 0.04 <= union.mean() <= 0.05
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 60))
    cfg = SweepConfig(model_sha256=meta["sha256"], n=4, n_cal=20, kappas=[0.0], batch=4,
                      defenses=["none", "magnet", "a2d+magnet"],
                      cw=dict(steps=40, binary_search_steps=2, lr=0.05, initial_const=1.0))
    res = run_sweep(cfg, model, data, tmp_path / "run", "cpu",
                    magnet=MagNet.load("mnist", model), progress=False, log=lambda s: None)
    points = {(p["kappa"], p["defense"]): p for p in res["operating_points"]}
    assert set(points) == {(0.0, "magnet"), (0.0, "a2d+magnet")}  # none has no detector
    for p in points.values():
        assert 0 <= p["sr_at_fpr"] <= 1 and p["fpr"] == 0.05
        assert all(0 <= p[k] <= 1 for k in p if k.startswith("auroc:"))  # examples were made
    assert "auroc:a2d" in points[(0.0, "a2d+magnet")]
    # C&W at kappa 0 stops at the boundary: A2D ranks its examples far below benign costs
    assert points[(0.0, "a2d+magnet")]["auroc:a2d"] > 0.9
    from adaptive.cli.main import main

    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "mnist_mnist-cnn_operating_points.md").read_text()
    assert "SR@5% FPR" in table and "AUROC a2d" in table


def test_linf_sweeps_bound_judge_and_report_in_linf(tmp_path, capsys):
    import json

    from adaptive.cli.main import main

    argv = ["sweep", "--norm", "linf", "--eps", "0.3", "--attack", "pgd", "--kappa", "0",
            "--n", "4", "--n-cal", "10", "--defenses", "none", "--pgd-steps", "10",
            "--pgd-restarts", "1", "--pgd-targets", "0", "--no-progress", "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path / "linf")]) == 0
    summary = json.loads((tmp_path / "linf/summary.json").read_text())
    assert summary["config"]["norm"] == "linf" and summary["config"]["max_linf"] == 0.3
    records = [json.loads(x) for x in (tmp_path / "linf/records.jsonl").read_text().split("\n")
               if x]
    assert all(r["linf"] <= 0.3 + 1e-6 for r in records)
    assert any(r["l2"] > 1.0 for r in records)  # far beyond what an L2 ball of 0.3 allows
    asr = summary["asr_by_l2_bound"][0]["asr"]
    assert list(asr) == ["0.0375", "0.075", "0.15", "0.225", "0.3", "inf"]
    assert any(c["name"] == "ASR grows with the L∞ bound" for c in summary["sanity_checks"])
    assert main(["report", str(tmp_path / "linf"), "--out", str(tmp_path / "rep")]) == 0
    assert "L∞ ≤ 0.3" in (tmp_path / "rep/mnist_mnist-cnn_linf_asr_vs_bound.md").read_text()
    capsys.readouterr()
    assert main(argv + ["--max-l2", "2", "--out", str(tmp_path / "x")]) == 2
    assert main(argv[:4] + ["3"] + argv[5:] + ["--out", str(tmp_path / "y")]) == 2  # eps > 1
    assert "pixel range" in capsys.readouterr().err


class NoisyReformer(nn.Module):
    """A randomised toy defense: the classifier sees the input plus fresh noise at every call."""

    def __init__(self):
        super().__init__()
        self.model = TwoPixels()
        self.input_shape, self.num_classes = (1, 1, 2), 2

    def forward(self, x):
        return self.model((x + 0.3 * torch.randn_like(x)).clamp(0, 1))


def test_eot_lowers_the_variance_of_the_gradient():
    torch.manual_seed(0)
    model = NoisyReformer()
    x = torch.tensor([[[[0.45, 0.5]]]])
    y = torch.tensor([0])
    spread = {}
    for eot in (1, 16):
        attack = BoundedPGD(eps=0.5, steps=1, eot=eot)
        grads = []
        for _ in range(60):
            d = torch.zeros_like(x, requires_grad=True)
            shortfall = kappa_margins(model(x + d), y, False)
            g = attack._direction(d, shortfall, torch.zeros_like(shortfall))
            for _ in range(eot - 1):
                d2 = torch.zeros_like(x, requires_grad=True)
                s2 = kappa_margins(model(x + d2), y, False)
                g = g + attack._direction(d2, s2, torch.zeros_like(s2))
            grads.append((g / eot).flatten())
        spread[eot] = torch.stack(grads).var(0).sum()
    assert spread[16] < spread[1] / 4, spread
    # and the attack itself takes the averaged step
    r = BoundedPGD(eps=0.5, steps=20, restarts=1, eot=8).run(model, x, y)
    assert r.adversarial.shape == x.shape and int(r.gradient_steps[0]) >= 1
