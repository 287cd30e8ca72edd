"""Indicators of attack failure (Pintor et al. 2022): each fires on a case built to trip it
and stays quiet on an honest attack against a tiny model."""

import torch
from torch import nn

from adaptive.attacks.base import AttackResult, FixedBudgetAttack, Trace, kappa_margins
from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.core.models import build_model
from adaptive.diagnostics import indicators


def _tiny():
    torch.manual_seed(0)
    model = build_model("tiny-cnn", input_shape=(1, 8, 8), num_classes=3).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x, model(x).argmax(1)


def _fired(result, model=None, x=None, labels=None):
    out = indicators.from_trace(result)
    if model is not None:
        out["unstable_predictions"] = indicators.unstable_predictions(model, result.adversarial,
                                                                      labels)
    return {k: int(v.sum()) for k, v in out.items()}


def test_an_honest_attack_on_a_tiny_model_raises_none():
    model, x, y = _tiny()
    r = BoundedPGD(3.0, steps=100, restarts=2).run(model, x, y)
    assert bool(r.success.all())
    assert _fired(r, model, x, y) == {"silent_success": 0, "incomplete_optimization": 0,
                                      "unavailable_gradients": 0, "unstable_predictions": 0}


def test_a_budget_too_small_to_converge_is_incomplete():
    model, x, y = _tiny()
    r = BoundedPGD(3.0, steps=4, step_size=0.02).run(model, x, y)
    failed = int((~r.success).sum())
    assert failed >= 4 and _fired(r)["incomplete_optimization"] == failed


class Quantised(nn.Module):
    """Rounds its input to 4 grey levels before the model: the gradient is zero everywhere."""

    def __init__(self, model):
        super().__init__()
        self.model, self.input_shape, self.num_classes = model, model.input_shape, 3

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


def test_a_quantiser_hides_the_gradient():
    model, x, y = _tiny()
    r = BoundedPGD(0.5, steps=10).run(Quantised(model), x, y)
    assert _fired(r)["unavailable_gradients"] == len(x)


class Noisy(nn.Module):
    """Adds fresh noise to its input on every call: a randomised defense."""

    def __init__(self, model):
        super().__init__()
        self.model, self.input_shape, self.num_classes = model, model.input_shape, 3

    def forward(self, x):
        return self.model((x + 0.3 * torch.randn_like(x)).clamp(0, 1))


def test_a_randomised_defense_gives_unstable_predictions():
    model, x, y = _tiny()
    noisy = Noisy(model)
    r = BoundedPGD(1.0, steps=10).run(noisy, x, y)
    assert _fired(r, noisy, x, y)["unstable_predictions"] >= len(x) // 2


class LastIterate(FixedBudgetAttack):
    """A broken attack: fixed steps of the sign of the margin's gradient (no hinge, so it keeps
    pushing after success), no early stop, and it returns its last iterate, not its best."""

    name, batch_size = "last iterate", 256

    def __init__(self, eps, steps, step_size):
        self.eps, self.steps, self.step_size = eps, steps, step_size

    def _run_batch(self, model, x, labels, targeted, penalty, state):
        trace = Trace.start(self.steps + 1, len(x))
        delta = torch.zeros_like(x)
        idx = torch.arange(len(x))
        for t in range(self.steps + 1):
            d = delta.clone().requires_grad_(True)
            margin = kappa_margins(model(x + d), labels, targeted)
            loss = margin
            trace.ever_met |= (margin <= 0).detach()
            grad = torch.autograd.grad(loss.sum(), d)[0] if t < self.steps else None
            trace.step(t, idx, loss, grad)
            if grad is not None:
                delta = (delta - self.step_size * grad.sign()).clamp(-self.eps, self.eps)
                delta = (x + delta).clamp(0, 1) - x
        success = (margin <= 0).detach()
        return AttackResult((x + delta).detach(), delta.flatten(1).norm(dim=1), success,
                            margin.detach(), torch.full((len(x),), self.steps), None, trace)


class Band(nn.Module):
    """Class 1 wins only in a thin band of the mean pixel value: steps that are too long
    cross it, land beyond it, and swing back and forth across it."""

    input_shape, num_classes = (1, 2, 2), 2

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([torch.zeros_like(m), 1 - 400 * (m - 0.6) ** 2], 1)


def test_an_attack_returning_its_last_iterate_succeeds_silently():
    x = torch.full((3, 1, 2, 2), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    r = LastIterate(0.5, steps=6, step_size=0.12).run(Band(), x, y)  # 0.5, 0.62, 0.5, ...
    fired = _fired(r)
    assert fired["silent_success"] == 3, r.trace.loss
    # the honest attack on the same task keeps its successful iterate
    honest = BoundedPGD(0.5, steps=6, norm="linf", step_size=0.12).run(Band(), x, y)
    assert bool(honest.success.all()) and _fired(honest)["silent_success"] == 0


def test_transfer_failure_reads_the_verdict():
    assert indicators.transfer_failure(True, ["detected:magnet:I_l2"])
    assert not indicators.transfer_failure(True, ["bound_exceeded"])
    assert not indicators.transfer_failure(False, ["attack_failed", "detected:a2d"])
    assert not indicators.transfer_failure(True, [])


def test_every_sweep_stores_and_counts_its_indicators(tmp_path):
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.sweep import SweepConfig, read_records, run_sweep

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 40))
    cfg = SweepConfig(model_sha256=meta["sha256"], n=2, n_cal=10, kappas=[0.0], batch=2,
                      defenses=["none"], magnet=None, cw=dict(steps=5, binary_search_steps=1))
    said = []
    res = run_sweep(cfg, model, data, tmp_path / "run", "cpu", progress=False,
                    log=said.append)
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert all(set(r["indicators"]) >= {"silent_success", "incomplete_optimization",
                                        "unavailable_gradients", "unstable_predictions",
                                        "transfer_failure:none"} for r in records)
    counted = res["diagnostics"]["indicators"]
    assert counted["incomplete_optimization"]["of"] == 2
    # 5 steps of C&W reach nothing: the indicator says so, in the log too
    assert counted["incomplete_optimization"]["fired"] >= 1
    assert any("incomplete_optimization" in s for s in said)


def test_autoattacks_model_flags():
    model, x, y = _tiny()
    quiet = indicators.model_flags(model, x, y)
    assert not any(v["fired"] for v in quiet.values()), quiet
    soft = nn.Sequential(model, nn.Softmax(dim=1))
    assert indicators.model_flags(soft, x, y)["outputs_probabilities"]["fired"]
    assert indicators.model_flags(Noisy(model), x, y)["randomised_outputs"]["fired"]
    assert indicators.model_flags(Quantised(model), x, y)["zero_gradients"]["fired"]


def test_the_checklist_catches_an_attack_short_of_its_limit(tmp_path):
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.sweep import SweepConfig, run_sweep

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 40))

    def checklist(steps, out):
        cfg = SweepConfig(model_sha256=meta["sha256"], n=8, n_cal=10, kappas=[0.0], batch=8,
                          defenses=["none"], magnet=None, attack="pgd", max_l2=2.0,
                          pgd=dict(steps=steps, restarts=1, target_classes=0),
                          hsj=dict(iterations=2, evals=10, max_evals=20), checks="full")
        res = run_sweep(cfg, model, data, tmp_path / out, "cpu", progress=False,
                        log=lambda *_: None)
        return {c["name"]: c for c in res["diagnostics"]["checklist"]}

    weak = checklist(1, "weak")  # one step of 2.5 x the bound, then nothing
    assert set(weak) == {"more steps", "more restarts", "iterative beats one step",
                         "random noise", "gradient-free"}
    assert not weak["more steps"]["passed"], weak["more steps"]
    # per example, in the records: the images only the variant broke, and no others
    from adaptive.sweep import RECORDS, read_records
    recs = read_records(tmp_path / "weak" / RECORDS)
    assert recs and all("checklist" in r for r in recs)
    flagged = {r["index"] for r in recs if r["checklist"]["more steps"] == ["none"]}
    quiet_before = {r["index"] for r in recs if not r["defenses"]["none"]["success"]}
    assert flagged and flagged == quiet_before & set(weak["more steps"]["broken"]["none"])
    assert all(set(r["checklist"]) == set(weak) for r in recs)
    strong = checklist(60, "strong")
    assert strong["more steps"]["passed"] and strong["random noise"]["passed"]
