import pytest
import torch
from torch import nn

from adaptive.core.attacks import lp_norm, normalize_step, pgd, project, random_in_ball
from adaptive.core.errors import ToolkitError


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_lands_in_the_ball_and_is_idempotent(norm):
    delta = torch.randn(5, 3, 4, 4) * 3
    eps = torch.tensor([0.1, 0.5, 1.0, 2.0, 100.0])
    p = project(delta, eps, norm)
    assert (lp_norm(p, norm) <= eps + 1e-6).all()
    assert torch.allclose(project(p, eps, norm), p)
    assert torch.allclose(p[-1], delta[-1])  # already inside: untouched


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_points_fill_the_ball(norm):
    pts = random_in_ball((2000, 1, 2, 2), 0.5, norm, torch.Generator().manual_seed(0))
    n = lp_norm(pts, norm)
    assert (n <= 0.5 + 1e-6).all()
    # Uniform in volume in 4 dimensions: P(norm < r/2) is (1/2)^4 for L2, and larger for L-inf.
    frac = float((n < 0.25).float().mean())
    assert (0.03 < frac < 0.10) if norm == "l2" else frac < 0.1


def test_step_directions_have_unit_norm():
    g = torch.randn(4, 1, 5, 5)
    assert torch.allclose(lp_norm(normalize_step(g, "l2"), "l2"), torch.ones(4))
    assert torch.equal(normalize_step(g, "linf"), g.sign())
    with pytest.raises(ToolkitError, match="unknown norm"):
        normalize_step(g, "l1")


def _linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return model.eval()


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.3)])
def test_pgd_stays_in_ball_and_box_and_lowers_accuracy(norm, eps):
    model = _linear_model()
    x = torch.rand(64, 1, 4, 4)
    y = model(x).argmax(1)  # the model is right on every clean image
    adv = pgd(model, x, y, eps=eps, norm=norm, steps=20,
              generator=torch.Generator().manual_seed(1))
    assert (lp_norm(adv - x, norm) <= eps + 1e-5).all()
    assert adv.min() >= 0 and adv.max() <= 1
    robust = float((model(adv).argmax(1) == y).float().mean())
    assert robust < 1.0
    # More budget, more damage.
    adv_big = pgd(model, x, y, eps=4 * eps, norm=norm, steps=20)
    assert float((model(adv_big).argmax(1) == y).float().mean()) <= robust


def test_pgd_restarts_never_hurt():
    model = _linear_model()
    x = torch.rand(64, 1, 4, 4)
    y = model(x).argmax(1)
    one = pgd(model, x, y, 0.03, steps=5, generator=torch.Generator().manual_seed(2))
    five = pgd(model, x, y, 0.03, steps=5, restarts=5, generator=torch.Generator().manual_seed(2))
    fooled = lambda a: int((model(a).argmax(1) != y).sum())  # noqa: E731
    assert fooled(five) >= fooled(one)


def test_pgd_rejects_bad_budgets():
    model = _linear_model()
    with pytest.raises(ToolkitError):
        pgd(model, torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), eps=-1)
