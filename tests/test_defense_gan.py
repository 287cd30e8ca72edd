"""Defense-GAN (defenses.defense_gan): the projection finds the generator's closest image (more
steps, closer), answers the same input the same way, lets no gradient through (the probes call
it hidden), and its generator trains with per-epoch checkpoints that resume."""

import pytest
import torch

from adaptive.core.checkpoint import load_checkpoint
from adaptive.core.errors import ToolkitError
from adaptive.defense.probes import probe_all
from defenses import BPDA, Defense
from defenses.defense_gan import (
    GAN_FORMAT,
    DefenseGAN,
    GANTrainConfig,
    Generator,
    build_generator,
    train_gan,
)


class Flat(torch.nn.Module):
    """A linear classifier of 8x8 images."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def _toy():
    torch.manual_seed(0)
    gen = Generator(latent=4, widths=(16, 16), image_shape=(1, 8, 8)).eval()
    images = gen(torch.randn(6, 4)).detach()  # inputs the generator can make exactly
    return gen, images


def test_the_projection_gets_closer_with_steps_and_is_the_same_every_call():
    gen, x = _toy()
    few, many = DefenseGAN(Flat(), gen, steps=2), DefenseGAN(Flat(), gen, steps=200)
    far = (few.project(x) - x).flatten(1).norm(dim=1)
    near = (many.project(x) - x).flatten(1).norm(dim=1)
    assert bool((near < far).all()) and float(near.mean()) < 0.5 * float(far.mean())
    assert torch.equal(many(x), many(x))  # the starts come from a fixed seed
    out = many.project(x)
    assert out.shape == x.shape and bool(((out >= 0) & (out <= 1)).all())
    with pytest.raises(ToolkitError, match="at least one step"):
        DefenseGAN(Flat(), gen, steps=0)


def test_the_probes_find_its_gradient_hidden_and_bpda_gives_one():
    gen, x = _toy()
    classifier = Flat()
    y = classifier(x).argmax(1)
    gan = DefenseGAN(classifier, gen, steps=20)
    found = probe_all({"gan": Defense("gan", gan)}, x, y, log=lambda s: None)["gan"]
    assert not found.random and found.hidden
    twin = torch.nn.Sequential(BPDA(gan.project), gan.classifier)
    xg = x.clone().requires_grad_(True)
    twin(xg).sum().backward()
    assert float(xg.grad.abs().sum()) > 0
    with torch.no_grad():
        assert torch.equal(twin(x), gan(x))


def test_the_generator_trains_checkpoints_and_resumes(tmp_path, monkeypatch):
    import defenses.defense_gan as dg

    monkeypatch.setitem(dg.GENERATORS, "toy", dict(latent=4, widths=(16, 16),
                                                   image_shape=(1, 8, 8)))
    x = torch.rand(64, 1, 8, 8)
    cfg = GANTrainConfig(dataset="mnist", arch="toy", epochs=1, batch_size=16)
    train_gan(cfg, x, tmp_path / "a", "cpu", log=lambda s: None)
    with pytest.raises(ToolkitError, match="already holds a trained generator"):
        train_gan(cfg, x, tmp_path / "a", "cpu", log=lambda s: None)
    # two epochs in one go, and one then one more through the checkpoint, are the same
    two = GANTrainConfig(dataset="mnist", arch="toy", epochs=2, batch_size=16)
    whole = train_gan(two, x, tmp_path / "whole", "cpu", log=lambda s: None)
    (tmp_path / "half").mkdir()
    train_gan(cfg, x, tmp_path / "half", "cpu", log=lambda s: None)
    (tmp_path / "half" / "generator.json").unlink()  # as if stopped after epoch 1
    other = GANTrainConfig(dataset="mnist", arch="toy", epochs=2, batch_size=32)
    with pytest.raises(ToolkitError, match="other settings"):
        train_gan(other, x, tmp_path / "half", "cpu", resume=True, log=lambda s: None)
    with pytest.raises(ToolkitError, match="pass --resume"):
        train_gan(two, x, tmp_path / "half", "cpu", log=lambda s: None)
    resumed = train_gan(two, x, tmp_path / "half", "cpu", resume=True, log=lambda s: None)
    assert resumed["sha256"] == whole["sha256"]
    gen, meta = load_checkpoint(tmp_path / "whole" / "generator", builder=build_generator,
                                fmt=GAN_FORMAT)
    assert isinstance(gen, Generator) and meta["training"]["history"][-1]["epoch"] == 2
