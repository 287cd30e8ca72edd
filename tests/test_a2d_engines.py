import pytest
import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from defenses.a2d.bim import BIMCost
from tests.a2d_reference import bim_cost_one


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4))
    model = model.double().eval()
    model.input_shape = (1, 6, 6)
    return model


def images(n=24, seed=1):
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.3, 0.01), ("l2", 0.6, 0.05)])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_bim_costs_equal_the_per_sample_reference(norm, eps, step, batch_size):
    model, x = tiny_model(), images()
    cap = 60
    result = BIMCost(eps, step, cap, norm, batch_size=batch_size).run(model, x)
    ref = [bim_cost_one(model, x[i:i + 1], eps, step, cap, norm) for i in range(len(x))]
    assert result.costs.tolist() == [c for c, _ in ref]
    assert result.queries.tolist() == [q for _, q in ref]
    assert result.flipped.tolist() == [c < cap for c, _ in ref]
    assert 0 < int(result.flipped.sum()) < len(x)  # the test covers both outcomes


def test_bim_adversarial_output_flips_and_stays_in_the_ball():
    model, x = tiny_model(), images()
    r = BIMCost(0.3, 0.01, 60, "linf").run(model, x)
    pred0, pred1 = model(x).argmax(1), model(r.adversarial).argmax(1)
    assert torch.equal(pred1 != pred0, r.flipped)
    assert ((r.adversarial - x).abs().amax((1, 2, 3)) <= 0.3 + 1e-9).all()
    assert r.adversarial.min() >= 0 and r.adversarial.max() <= 1


def test_sample_that_never_flips_costs_the_cap():
    model, x = tiny_model(), images()
    r = BIMCost(eps=1e-4, step=1e-5, max_iter=7).run(model, x)
    assert (r.costs == 7).all() and not r.flipped.any() and (r.queries == 8).all()


def test_lower_cap_only_truncates_costs():
    model, x = tiny_model(), images()
    full = BIMCost(0.3, 0.01, 60).run(model, x)
    capped = BIMCost(0.3, 0.01, 60).run(model, x, max_iter=10)
    assert torch.equal(capped.costs, full.costs.clamp(max=10))


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 1, 5, 5, dtype=torch.float64), "expects"),
    (torch.full((3, 1, 6, 6), float("nan"), dtype=torch.float64), "NaN"),
    (torch.rand(3, 1, 6, 6, dtype=torch.float64) * 3, r"\[0, 1\]"),
    (torch.rand(0, 1, 6, 6, dtype=torch.float64), "empty"),
])
def test_bad_inputs(bad, message):
    with pytest.raises(ToolkitError, match=message):
        BIMCost().run(tiny_model(), bad)


def test_bad_cap():
    with pytest.raises(ToolkitError, match="max_iter"):
        BIMCost(max_iter=0)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_jsma_costs_equal_the_per_sample_reference(batch_size):
    from defenses.a2d.jsma import JSMACost
    from tests.a2d_reference import jsma_cost_one

    model, x = tiny_model(), images(16)
    cap = 25
    r = JSMACost(theta=0.1, max_per_pixel=3, max_iter=cap, batch_size=batch_size).run(model, x)
    ref = [jsma_cost_one(model, x[i:i + 1], 0.1, 3, cap) for i in range(len(x))]
    assert r.costs.tolist() == [c for c, _ in ref]
    assert r.queries.tolist() == [q for _, q in ref]
    assert 0 < int(r.flipped.sum()) < len(x)
    # Successful samples are classified as their target, the second most likely class.
    target = model(x).topk(2, dim=1).indices[:, 1]
    assert torch.equal(model(r.adversarial).argmax(1)[r.flipped], target[r.flipped])
    # L0: each step changes one feature by at most theta.
    changed = (r.adversarial != x).flatten(1).sum(1)
    assert (changed <= r.costs).all()


@pytest.mark.parametrize("batch_size", [1, 6, 64])
def test_dba_costs_equal_the_per_sample_reference(batch_size):
    from defenses.a2d.dba import BoundaryCost, labels_of
    from tests.a2d_reference import dba_cost_one

    model, x = tiny_model(), images(12)
    settings = dict(threshold=0.01, max_iter=40, directions=3, spherical_step=0.05,
                    source_step=0.05, step_adaptation=1.5, adapt_every=3, init_tries=20,
                    init_search_steps=8, seed=5)
    r = BoundaryCost(**settings, batch_size=batch_size).run(labels_of(model), x)
    ref = [dba_cost_one(labels_of(model), x[i:i + 1], i, 0.01, 40, 3, 0.05, 0.05, 1.5, 3, 20, 8,
                        5) for i in range(len(x))]
    assert r.costs.tolist() == [c for c, _ in ref]
    assert r.queries.tolist() == [q for _, q in ref]
    assert 0 < int(r.flipped.sum()) < len(x)


def test_dba_works_with_labels_only_and_finds_adversarials():
    from defenses.a2d.dba import BoundaryCost

    model, x = tiny_model(), images(12)
    calls = []

    def predict_labels(batch):  # no gradients, no logits: labels only
        calls.append(len(batch))
        with torch.no_grad():
            return model(batch).argmax(1)

    r = BoundaryCost(threshold=0.01, max_iter=40, directions=3).run(predict_labels, x)
    assert sum(calls) == int(r.queries.sum())
    label = predict_labels(x)
    adv_label = predict_labels(r.adversarial)
    assert (adv_label[r.flipped] != label[r.flipped]).all()
    mse = (r.adversarial - x).flatten(1).pow(2).mean(1)
    assert (mse[r.flipped] < 0.01).all()
