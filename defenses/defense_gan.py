"""Defense-GAN (Samangouei, Kabkab & Chellappa, ICLR 2018): the classifier only ever sees the
generator's closest image to its input, found by gradient descent on the latent code from
``restarts`` random starts (``steps`` steps each; the best restart wins). Its authors claimed
that the projection removes adversarial perturbations and, being an inner optimisation, gives
an attacker no gradient; Athalye, Carlini & Wagner (ICML 2018) broke it through the projection
(BPDA: the projection is close to the identity on the images it keeps).

Everything here is small enough for a CPU: an MLP generator on MNIST (``gan-mnist``), trained
by ``adaptive train defense-gan`` (a plain non-saturating GAN, per-epoch checkpoints,
resumable), and a projection budget far below the paper's (L = 200 steps, R = 10 restarts),
set by :data:`STEPS` and :data:`RESTARTS`. The starts are drawn from a fixed seed, so the
defense answers the same input the same way (a deterministic forward whose gradient is
hidden: the projection is computed apart from the attacker's graph).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from adaptive.core.checkpoint import atomic_torch_save, save_checkpoint
from adaptive.core.errors import ToolkitError

GAN_FORMAT = "adaptive-toolkit/generator-v1"
GENERATORS: dict[str, dict] = {
    "gan-mnist": dict(latent=32, widths=(128, 256, 512, 1024), image_shape=(1, 28, 28))}
CRITIC_WIDTHS = (512, 256)
STEPS = 100  # gradient steps on the latent code per projection
RESTARTS = 2  # random starts per image; the one closest to the input wins
LR = 0.1  # Adam's step size on the latent code
STEM = "generator"


class Generator(nn.Module):
    """An MLP from a ``latent``-dimensional Gaussian code to an image in [0, 1]: layers of
    ``widths`` with leaky ReLUs, batch norm after all but the first (against mode collapse),
    a sigmoid out."""

    def __init__(self, latent: int = 32, widths=(128, 256, 512, 1024), image_shape=(1, 28, 28)):
        super().__init__()
        self.latent, self.input_shape = latent, tuple(image_shape)
        pixels = int(torch.tensor(self.input_shape).prod())
        layers: list[nn.Module] = []
        width = latent
        for i, w in enumerate(widths):
            layers += [nn.Linear(width, w), *([nn.BatchNorm1d(w)] if i else []),
                       nn.LeakyReLU(0.2)]
            width = w
        self.net = nn.Sequential(*layers, nn.Linear(width, pixels), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), *self.input_shape)


class Critic(nn.Module):
    """The discriminator: an MLP from an image to one logit (real vs generated)."""

    def __init__(self, widths=CRITIC_WIDTHS, image_shape=(1, 28, 28)):
        super().__init__()
        pixels = int(torch.tensor(tuple(image_shape)).prod())
        layers: list[nn.Module] = [nn.Flatten()]
        width = pixels
        for w in widths:
            layers += [nn.Linear(width, w), nn.LeakyReLU(0.2)]
            width = w
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def build_generator(architecture: str, **kwargs) -> Generator:
    if architecture not in GENERATORS:
        raise ToolkitError(f"unknown generator {architecture!r}; known: "
                           f"{', '.join(GENERATORS)}")
    return Generator(**{**GENERATORS[architecture], **kwargs})


class DefenseGAN(nn.Module):
    """``classifier(project(x))``: the generator's image closest (L2) to each input, found by
    Adam on the latent code (``steps`` steps from each of ``restarts`` starts drawn from a
    fixed seed), is what the classifier labels."""

    def __init__(self, classifier: nn.Module, generator: Generator, steps: int = STEPS,
                 restarts: int = RESTARTS, lr: float = LR, seed: int = 0):
        super().__init__()
        if steps < 1 or restarts < 1:
            raise ToolkitError("Defense-GAN needs at least one step and one restart")
        self.classifier, self.generator = classifier, generator.eval().requires_grad_(False)
        self.latent = generator.latent
        self.steps, self.restarts, self.lr, self.seed = steps, restarts, lr, seed
        self.input_shape = generator.input_shape
        self.num_classes = getattr(classifier, "num_classes", None)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The closest generated image to each of ``x`` (no gradient reaches ``x``)."""
        target = x.detach()
        n, r = len(x), self.restarts
        starts = torch.randn(r, n, self.latent,
                             generator=torch.Generator().manual_seed(self.seed))
        z = starts.to(x.device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                loss = self._distances(z, target)
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
        with torch.no_grad():
            best = self._distances(z, target).argmin(0)  # (n,): the closest restart
            images = self.generator(z.detach()[best, torch.arange(n, device=x.device)])
        return images

    def _distances(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r, n = z.shape[:2]
        made = self.generator(z.reshape(r * n, -1)).view(r, n, *target.shape[1:])
        return (made - target).flatten(2).pow(2).sum(2)  # (restarts, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.project(x))


@dataclass(frozen=True)
class GANTrainConfig:
    """A plain non-saturating GAN (Goodfellow et al. 2014) with Adam (DCGAN's 2e-4, beta1
    0.5)."""

    dataset: str = "mnist"
    arch: str = "gan-mnist"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-4
    seed: int = 0


def train_gan(cfg: GANTrainConfig, train_x: torch.Tensor, out: str | Path, device,
              resume: bool = False, command: str = "", log=print) -> dict:
    """Train the generator of ``cfg.arch`` on the images ``train_x`` (in [0, 1]); a
    checkpoint after every epoch (``OUT/state.pt``; ``resume`` continues it); the generator
    is written as ``OUT/generator.pt/.json``. Returns its metadata."""
    out = Path(out)
    if (out / f"{STEM}.json").exists():
        raise ToolkitError(f"{out} already holds a trained generator; choose another --out")
    state_file = out / "state.pt"
    if state_file.exists() and not resume:
        raise ToolkitError(f"{out} holds an unfinished run; pass --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = build_generator(cfg.arch).to(device)
    if tuple(train_x.shape[1:]) != gen.input_shape:
        raise ToolkitError(f"generator {cfg.arch!r} makes images of shape {gen.input_shape}, "
                           f"the training images are {tuple(train_x.shape[1:])}")
    critic = Critic(CRITIC_WIDTHS, gen.input_shape).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    first, history, seconds = 0, [], 0.0
    if state_file.exists():
        saved = torch.load(state_file, weights_only=True)
        if {**saved["config"], "epochs": cfg.epochs} != asdict(cfg):  # (more epochs: fine)
            raise ToolkitError(f"{out} was started with other settings; use another --out")
        gen.load_state_dict(saved["generator"])
        critic.load_state_dict(saved["critic"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_c.load_state_dict(saved["opt_c"])
        first, history, seconds = saved["epoch"], saved["history"], saved["seconds"]
        torch.set_rng_state(saved["rng"])  # the generator's noise goes on as it would have
        log(f"resuming after epoch {first}")
    bce = nn.functional.binary_cross_entropy_with_logits
    for epoch in range(first, cfg.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(
            cfg.seed * 1000 + epoch))
        sums = {"critic": 0.0, "generator": 0.0}
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            real = train_x[order[i:i + cfg.batch_size]].to(device)
            fake = gen(torch.randn(len(real), gen.latent, device=device))
            ones, zeros = torch.ones(len(real), device=device), torch.zeros(len(real),
                                                                             device=device)
            loss_c = bce(critic(real), ones) + bce(critic(fake.detach()), zeros)
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            loss_g = bce(critic(fake), ones)  # non-saturating
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            sums["critic"] += float(loss_c.detach()) / (len(order) // cfg.batch_size)
            sums["generator"] += float(loss_g.detach()) / (len(order) // cfg.batch_size)
        seconds += time.perf_counter() - start
        history.append({"epoch": epoch + 1, **{k: round(v, 4) for k, v in sums.items()}})
        atomic_torch_save({"config": asdict(cfg), "generator": gen.state_dict(),
                           "critic": critic.state_dict(), "opt_g": opt_g.state_dict(),
                           "opt_c": opt_c.state_dict(), "epoch": epoch + 1,
                           "history": history, "seconds": seconds,
                           "rng": torch.get_rng_state()}, state_file)
        log(f"epoch {epoch + 1}/{cfg.epochs}: critic loss {sums['critic']:.3f}, generator "
            f"loss {sums['generator']:.3f} ({time.perf_counter() - start:.0f} s)")
    return save_checkpoint(gen.cpu(), out / STEM, architecture=cfg.arch, arch_kwargs={},
                           dataset=cfg.dataset, fmt=GAN_FORMAT,
                           training={"command": command, "config": asdict(cfg),
                                     "train_images": len(train_x), "history": history,
                                     "seconds": round(seconds, 1),
                                     "torch": torch.__version__})
