"""Restarts that start towards other images (``start_images``): the geometry, the choice of the
best start by the round's own loss, and the option through the sweep and the binarization
check."""

import json

import pytest
import torch

from adaptive.attacks.base import Draws
from adaptive.attacks.bounded_pgd import BoundedPGD, SelectivePGD
from adaptive.core.attacks.lp import towards_images
from adaptive.core.errors import ToolkitError
from adaptive.core.models import build_model


def _tiny():
    torch.manual_seed(0)
    model = build_model("tiny-cnn", input_shape=(1, 8, 8), num_classes=3).eval()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    pool = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    return model, x, model(x).argmax(1), pool


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_towards_images_goes_as_far_as_the_ball_allows(norm):
    _, x, _, pool = _tiny()
    target = pool[torch.tensor([0, 1, 2, 3, 0])]
    for eps in (0.1, 0.5, 100.0):
        p = towards_images(x, target, eps, norm)
        assert p.min() >= 0 and p.max() <= 1
        d = (p - x).flatten(1)
        far = (target - x).flatten(1)
        if norm == "l2":  # at the edge of the ball, or as far as the clipped ray gets
            dist = d.norm(dim=1)
            assert (dist <= eps + 1e-4).all()
            unit = (target - x) / far.norm(dim=1).view(-1, 1, 1, 1)
            ray = (x + 4 * (eps + 1) * unit).clamp(0, 1)
            reach = (ray - x).flatten(1).norm(dim=1) >= eps
            assert torch.allclose(dist[reach], torch.full_like(dist[reach], eps), atol=1e-4)
            assert reach.all() if eps <= 0.5 else not reach.any()  # 8x8 images: at most 8
            cos = (d * far).sum(1) / (dist * far.norm(dim=1))
            assert (cos > 0.5).all()  # towards the image (bent only by the pixel range)
        else:
            assert d.abs().max() <= eps + 1e-6
            assert torch.equal(p, x + far.view_as(x).clamp(-eps, eps))


def test_the_start_is_the_candidate_with_the_smallest_loss():
    model, x, y, pool = _tiny()
    goal = pool[2]

    def penalty(adv, labels, targeted):  # dominates the margin term: closest to pool image 2
        return 100 * (adv - goal).flatten(1).norm(dim=1)

    attack = BoundedPGD(0.8, steps=3, restarts=2, start_images=40, start_pool=pool)
    delta = attack._image_start(model, x, y, False, penalty, torch.arange(5),
                                Draws.seeded(0))
    best = towards_images(x, goal.expand_as(x), attack._radius, "l2")
    assert torch.allclose(x + delta, best, atol=1e-6)  # 40 draws of 4 images each: 2 is among them


def test_image_starts_are_seeded_and_checked():
    model, x, y, pool = _tiny()
    runs = [SelectivePGD(1.0, steps=5, restarts=3, start_images=6, start_pool=pool, seed=3)
            .run(model, x, y) for _ in range(2)]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert ((runs[0].adversarial - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
    with pytest.raises(ToolkitError, match="start_pool"):
        BoundedPGD(1.0, start_images=4)
    with pytest.raises(ToolkitError, match="whole number"):
        BoundedPGD(1.0, start_images=-1, start_pool=pool)
    assert "start_images" not in BoundedPGD(1.0).config()
    assert BoundedPGD(1.0, start_images=2, start_pool=pool).config()["start_images"] == 2


def test_sweep_option_reaches_the_attack(tmp_path):
    from adaptive.cli.main import main

    argv = ["sweep", "--attack", "pgd-magnet", "--kappa", "0", "--n", "4", "--n-cal", "10",
            "--defenses", "magnet", "--pgd-steps", "5", "--pgd-restarts", "2",
            "--pgd-targets", "0", "--pgd-start-images", "8", "--no-progress", "--device",
            "cpu", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["pgd"]["start_images"] == 8
    assert main(argv[:-2] + ["--pgd-start-images", "-1", "--out", str(tmp_path / "x")]) == 2
