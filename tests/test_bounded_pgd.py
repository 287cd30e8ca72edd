"""BoundedPGD (PGD-L2 at the bound on C&W's objective): checked against the closed form on a
linear model and against Foolbox's L2PGD on a small CNN."""

import foolbox as fb
import pytest
import torch
from torch import nn

from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.core.errors import ToolkitError


def _linear_two_class():
    """z = W x + b with two classes: the minimal L2 distance to the boundary is
    |margin| / ||w_0 - w_1||, reached along w_0 - w_1."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():  # the boundary through the middle of the data
        model[1].bias.copy_(-model[1].weight.sum(1) * 0.5)
    x = 0.3 + 0.4 * torch.rand(200, 1, 4, 4)  # far from the box: steps of <= 0.08 stay inside
    logits = model(x)
    y = logits.argmax(1)
    w = model[1].weight.detach()
    distance = (logits[:, 0] - logits[:, 1]).abs() / (w[0] - w[1]).norm()
    return model, x, y, distance, float((w[0] - w[1]).norm())


def test_fools_exactly_the_points_closer_than_the_bound():
    model, x, y, distance, _ = _linear_two_class()
    eps = 0.08
    r = BoundedPGD(eps, steps=50).run(model, x, y)
    clear = (distance - eps).abs() > 0.005  # the last step may land either side of the boundary
    assert clear.sum() > 100 and 0.2 < float((distance < eps).float().mean()) < 0.8
    assert torch.equal(r.success[clear], (distance < eps)[clear])
    ok = r.success
    assert (r.l2[ok] <= eps + 1e-5).all() and (r.l2[ok] >= distance[ok] - 1e-5).all()
    # Early stop: the first iterate over the boundary, one step of 2.5 eps / 50 at most beyond.
    assert (r.l2[ok] <= distance[ok] + 2.5 * eps / 50 + 1e-5).all()
    assert (model(r.adversarial[ok]).argmax(1) != y[ok]).all()
    assert torch.equal(r.adversarial[~ok], x[~ok]) and (r.l2[~ok] == 0).all()
    assert (r.gradient_steps[~ok] == 50).all() and (r.gradient_steps[ok] < 50).all()


def test_penalty_is_pushed_to_zero_or_as_low_as_the_ball_allows():
    """A penalty asking for a margin of ``depth`` beyond the boundary: met where the ball has
    room, otherwise the deepest point of the ball is returned (the smallest penalty)."""
    model, x, y, distance, wnorm = _linear_two_class()
    eps, depth = 0.08, 0.02

    def penalty(adv, labels, targeted):
        z = model(adv)
        beyond = z.gather(1, (1 - labels)[:, None])[:, 0] - z.gather(1, labels[:, None])[:, 0]
        return torch.relu(depth - beyond)

    r = BoundedPGD(eps, steps=100).run(model, x, y, penalty=penalty)
    ok = r.success
    clear = (distance - eps).abs() > 0.005
    assert torch.equal(ok[clear], (distance < eps)[clear])
    left = penalty(r.adversarial[ok], y[ok], False).detach()
    room = (eps - distance[ok]) * wnorm  # the deepest margin inside the ball
    met = room > depth + 0.005
    assert met.any() and (~met).any()
    assert (left[met] == 0).all()
    # Not met: the deepest iterate, within one step of the ball's deepest point.
    step = 2.5 * eps / 100 * wnorm
    assert torch.allclose(left[~met], (depth - room[~met]).clamp_min(0), atol=step)
    assert (r.l2[ok] <= eps + 1e-5).all()


def test_at_least_as_strong_as_foolbox_l2pgd():
    torch.manual_seed(0)
    from adaptive.core.models import build_model

    model = build_model("tiny-cnn", input_shape=[1, 8, 8], num_classes=3, width=4).eval()
    x = torch.rand(48, 1, 8, 8)
    y = model(x).argmax(1)
    eps = 1.0
    ours = BoundedPGD(eps, steps=40).run(model, x, y)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, _, fooled = fb.attacks.L2PGD(steps=40, abs_stepsize=2.5 * eps / 40)(fmodel, x, y,
                                                                           epsilons=eps)
    theirs = int(fooled.sum())
    assert 5 <= theirs <= 43  # the bound matters on this model
    assert int(ours.success.sum()) >= theirs
    assert (model(ours.adversarial[ours.success]).argmax(1) != y[ours.success]).all()
    assert ((ours.adversarial - x).flatten(1).norm(dim=1) <= eps).all()  # no round-off over
    assert ours.adversarial.min() >= 0 and ours.adversarial.max() <= 1


def test_target_rounds_find_the_class_the_untargeted_margin_misses():
    """Class 1 has the higher logit but its boundary is 0.4 away; class 2's is 0.1 away,
    orthogonally. The untargeted margin follows class 1 and fails within 0.2; a targeted round
    towards the second most likely other class succeeds."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], [0.25, 0.0], [0.0, 10.0]]))
        model[1].bias.copy_(torch.tensor([0.0, -0.1 - 0.125, -1.0 - 5.0]))
    x, y = torch.full((1, 1, 1, 2), 0.5), torch.tensor([0])
    assert model(x).argsort(1, descending=True)[0].tolist() == [0, 1, 2]
    assert not BoundedPGD(0.2, steps=50).run(model, x, y).success.any()
    assert not BoundedPGD(0.2, steps=50, target_classes=1).run(model, x, y).success.any()
    r = BoundedPGD(0.2, steps=50, target_classes=2).run(model, x, y)
    assert r.success.all() and model(r.adversarial).argmax(1).item() == 2
    assert 0.1 - 1e-5 <= r.l2.item() <= 0.1 + 2.5 * 0.2 / 50 + 1e-5
    assert r.margin.item() <= 0  # the untargeted margin of the returned example
    assert r.gradient_steps.item() > 100  # two full rounds before the third
    # Targeted attacks have their target: no extra rounds.
    t = BoundedPGD(0.2, steps=50, target_classes=2).run(model, x, torch.tensor([1]),
                                                        targeted=True)
    assert not t.success.any() and t.gradient_steps.item() == 50


def test_kappa_restarts_and_bad_settings():
    model, x, y, distance, wnorm = _linear_two_class()
    strict = BoundedPGD(0.08, kappa=0.1, steps=50).run(model, x, y)
    assert (strict.margin[strict.success] <= -0.1).all()
    assert strict.success.sum() < BoundedPGD(0.08, steps=50).run(model, x, y).success.sum()
    # Restarts only add successes (a sample that succeeded is not attacked again).
    one = BoundedPGD(0.08, steps=5).run(model, x, y)
    three = BoundedPGD(0.08, steps=5, restarts=3, seed=1).run(model, x, y)
    assert (three.success >= one.success).all()
    easy = BoundedPGD(1.0, steps=20, restarts=3).run(model, x, y)  # all done in the first
    assert easy.success.all() and (easy.gradient_steps <= 20).all()
    for bad in (dict(eps=0), dict(eps=float("inf"), steps=0), dict(eps=1, restarts=0),
                dict(eps=1, step_size=-1.0), dict(eps=1, target_classes=-1)):
        with pytest.raises(ToolkitError):
            BoundedPGD(**bad)
    with pytest.raises(ToolkitError, match="\\[0, 1\\]"):
        BoundedPGD(0.08).run(model, x * 3, y)


def test_cosine_schedule_spends_the_same_length_and_settles():
    """The cosine schedule: step lengths from twice the constant one down to 0, the same total;
    on the linear model it fools exactly the points the constant schedule fools (clear of the
    boundary) and, its last steps short, lands closer to the boundary."""
    model, x, y, distance, _ = _linear_two_class()
    eps, steps = 0.08, 50
    cos = BoundedPGD(eps, steps=steps, schedule="cosine")
    lengths = [cos._step_length(t) for t in range(steps)]
    assert lengths[0] == pytest.approx(2 * cos.step_size, rel=1e-3)
    assert lengths[-1] < 0.01 * cos.step_size
    assert sum(lengths) == pytest.approx(steps * cos.step_size, rel=1e-9)
    assert all(a >= b for a, b in zip(lengths, lengths[1:]))
    r = cos.run(model, x, y)
    c = BoundedPGD(eps, steps=steps).run(model, x, y)
    clear = (distance - eps).abs() > 0.005
    assert torch.equal(r.success[clear], c.success[clear])
    assert cos.config()["schedule"] == "cosine"
    with pytest.raises(ToolkitError, match="schedule"):
        BoundedPGD(eps, schedule="linear")
