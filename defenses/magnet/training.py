"""Training MagNet's autoencoders and setting its thresholds.

Autoencoders learn to reconstruct clean images from noisy ones (``x + noise * N(0, 1)``,
clipped to [0, 1]) under the MSE loss with Adam, as in MagNet. MagNet trained 100 epochs at
Adam's default 1e-3; these sigmoid networks sit on a plateau for the first epochs at that rate
(validation MSE 0.087 after 4 epochs of 20,000 MNIST images vs 0.037 at 3e-3, measured here),
so on a CPU we train 20 epochs at 3e-3 with a cosine schedule. Training images exclude the last
``val_n`` images of the training split; those are the held-out benign validation images on
which each detector's threshold is set at its drop rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from adaptive.core.checkpoint import save_checkpoint, write_json
from adaptive.core.defaults import preset_family
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import seed_everything
from adaptive.core.training import fit
from defenses.magnet.autoencoder import AE_FORMAT, build_autoencoder

# MagNet's published configurations; drop rates as the issue fixes them.
RECIPES = {
    "mnist": {
        "autoencoders": {"I": {"arch": "magnet-mnist-I", "noise": 0.1},
                         "II": {"arch": "magnet-mnist-II", "noise": 0.1}},
        "detectors": [
            {"name": "I_l2", "ae": "I", "type": "reconstruction", "p": 2, "drop_rate": 0.001},
            {"name": "II_l1", "ae": "II", "type": "reconstruction", "p": 1, "drop_rate": 0.001}],
        "reformer": "I", "epochs": 20,
    },
    "cifar10": {
        "autoencoders": {"AE": {"arch": "magnet-cifar", "noise": 0.025}},
        "detectors": [
            {"name": "recon_l1", "ae": "AE", "type": "reconstruction", "p": 1,
             "drop_rate": 0.005},
            {"name": "jsd_T10", "ae": "AE", "type": "divergence", "temperature": 10,
             "drop_rate": 0.01},
            {"name": "jsd_T40", "ae": "AE", "type": "divergence", "temperature": 40,
             "drop_rate": 0.01}],
        "reformer": "AE", "epochs": 20,
    },
}


@dataclass
class AETrainConfig:
    """Everything that defines an autoencoder's training (a resumed run must match it): the
    data set, architecture, the Gaussian ``noise`` added to training inputs, and the
    optimiser, schedule and data settings of ``adaptive.core.training``."""

    dataset: str
    arch: str
    noise: float
    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    val_n: int = 5000


def train_autoencoder(cfg: AETrainConfig, x_train: torch.Tensor, x_val: torch.Tensor,
                      out: Path, device, resume=False, command="", progress=True,
                      log=print) -> tuple[torch.nn.Module, dict]:
    if cfg.epochs < 1 or cfg.noise < 0:
        raise ToolkitError("autoencoder training needs epochs >= 1 and noise >= 0")
    seed_everything(cfg.seed)
    ae = build_autoencoder(cfg.arch).to(device)
    if tuple(x_train.shape[1:]) != ae.input_shape:
        raise ToolkitError(f"{cfg.arch} takes images of shape {ae.input_shape}, the data has "
                           f"{tuple(x_train.shape[1:])}")

    def step(model, xb, _yb, gen):
        noisy = (xb + cfg.noise * torch.randn(xb.shape, generator=gen).to(xb.device)).clamp(0, 1)
        return F.mse_loss(model(noisy), xb), {}

    @torch.no_grad()
    def evaluate(model):
        err = sum(float(F.mse_loss(model(x_val[i:i + 1000].to(device)),
                                   x_val[i:i + 1000].to(device), reduction="sum"))
                  for i in range(0, len(x_val), 1000))
        return {"val_mse": err / x_val.numel()}

    log(f"training autoencoder {cfg.arch} on {len(x_train)} images (noise {cfg.noise})")
    history, elapsed = fit(cfg, ae, x_train, None, step, evaluate, out, device, resume,
                           progress, log)
    meta = save_checkpoint(ae, Path(out) / "model", architecture=cfg.arch, arch_kwargs={},
                           dataset=cfg.dataset, fmt=AE_FORMAT,
                           summary={"val_mse": f"{history[-1]['val_mse']:.6f} (clean "
                                    f"reconstruction, {len(x_val)} validation images)"},
                           training={"command": command, "config": asdict(cfg),
                                     "train_images": len(x_train), "device": str(device),
                                     "seconds": round(elapsed, 1),
                                     "torch": torch.__version__})
    return ae.eval(), meta


def train_magnet(dataset: str, x_all_train: torch.Tensor, classifier, classifier_ref: str,
                 classifier_sha256: str, out: Path, device, epochs: int | None = None,
                 resume=False, command="", progress=True, log=print, val_n: int = 5000,
                 seed: int = 0):
    """Train every autoencoder of the data set's recipe, set the detectors' thresholds on the
    held-out validation images and write ``OUT/magnet.json``; returns the MagNet defense."""
    from defenses.magnet.defense import MagNet, load_autoencoder, make_detector

    family = preset_family(dataset)
    recipe = RECIPES[family]
    if len(x_all_train) <= val_n:
        raise ToolkitError(f"need more than {val_n} training images (the last {val_n} are "
                           "held out for thresholds)")
    x_train, x_val = x_all_train[:-val_n], x_all_train[-val_n:]
    out = Path(out)
    aes, refs = {}, {}
    for key, spec in recipe["autoencoders"].items():
        sub = out / f"ae-{key}"
        cfg = AETrainConfig(dataset=family, arch=spec["arch"], noise=spec["noise"],
                            epochs=epochs or recipe["epochs"], seed=seed, val_n=val_n)
        if (sub / "model.json").is_file() and resume:
            aes[key] = load_autoencoder("model", sub, device)[0]
            log(f"autoencoder {key} already trained in {sub}")
        else:
            aes[key], _ = train_autoencoder(cfg, x_train, x_val, sub, device,
                                            resume=resume and (sub / "state.pt").exists(),
                                            command=command, progress=progress, log=log)
        refs[key] = f"ae-{key}/model"
    detectors = []
    for d in recipe["detectors"]:
        det = make_detector(d, aes[d["ae"]], classifier).fit(x_val, d["drop_rate"])
        log(f"detector {det.name}: threshold {det.threshold:.6g} at drop rate {d['drop_rate']}")
        detectors.append(det)
    magnet = MagNet(classifier, aes, detectors, recipe["reformer"])
    magnet.save(out / "magnet.json", refs, extra={
        "dataset": family, "classifier": classifier_ref, "classifier_sha256": classifier_sha256,
        "thresholds_on": f"the last {val_n} images of the {dataset} training split, held out "
                         "from autoencoder training", "command": command})
    log(f"wrote {out / 'magnet.json'}")
    return magnet


# -- randomised MagNet's pool (Meng & Chen 2017, section on randomisation) ----------------------

POOL_SPEC_TYPE = "magnet-pool"


@dataclass
class PoolTrainConfig(AETrainConfig):
    """A pool of ``k`` autoencoders of one architecture trained together (a resumed run must
    match it): each reconstructs clean images from noisy ones, and ``diversity`` weighs a
    reward for their outputs differing (MagNet's randomisation: the attacker knows the pool,
    not the member that answers).

    The members' mean squared error splits into the pool mean's error plus their spread
    around that mean, so the loss is ``mean error + (1 - diversity) x spread``: below 1 the
    spread is penalised (on MNIST, from one trained autoencoder, 0.5 and 0.9 left the members
    within 0.0001 of each other in MSE after 3 epochs), above 1 it is rewarded without bound (2
    drove their error to 0.17); at 1 it is free, the mean reconstructs and the members drift
    apart (error 0.0024, spread 0.0012 after 3 epochs; measured with ``adaptive train
    magnet-pool --k 6 --train-n 20000 --epochs 3 --init magnet-mnist-I --lr 0.001
    --diversity D``). Hence the defaults: 1, from the trained reformer, a few epochs."""

    k: int = 8
    diversity: float = 1.0
    train_n: int = 20000
    epochs: int = 3
    lr: float = 1e-3
    # start every member from this trained autoencoder (a zoo name), its weights perturbed by
    # init_noise x their scale so that the members differ (identical members get no gradient
    # from the diversity reward); None: from scratch
    init: str | None = None
    init_noise: float = 0.05


class AutoencoderPool(torch.nn.Module):
    """``k`` autoencoders of architecture ``arch``; ``forward`` stacks their outputs (k, n, ...)."""

    def __init__(self, arch: str, k: int):
        super().__init__()
        self.members = torch.nn.ModuleList(build_autoencoder(arch) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([ae(x) for ae in self.members])


def _start_from(pool: AutoencoderPool, ref: str, arch: str, noise: float, device) -> None:
    """Every member from the trained autoencoder ``ref`` (its weights times ``1 + noise * N(0,
    1)``, each member its own draw of torch's seeded generator)."""
    from defenses.magnet.defense import load_autoencoder

    base, meta = load_autoencoder(ref, Path("."), device)
    if meta.get("architecture") != arch:
        raise ToolkitError(f"--init {ref} is a {meta.get('architecture')}, the pool's members "
                           f"are {arch}")
    with torch.no_grad():
        for ae in pool.members:
            ae.load_state_dict(base.state_dict())
            for w in ae.parameters():
                w.mul_(1 + noise * torch.randn_like(w))


def pool_loss(outs: torch.Tensor, clean: torch.Tensor, diversity: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, spread) of the pool's outputs ``outs`` (k, n, ...): the members'
    mean squared reconstruction error minus ``diversity`` times their mean squared distance
    from the pool's mean output (Meng & Chen's regulariser)."""
    recon = (outs - clean.unsqueeze(0)).pow(2).mean()
    spread = (outs - outs.mean(0, keepdim=True)).pow(2).mean()
    return recon - diversity * spread, recon, spread


def train_pool(cfg: PoolTrainConfig, x_all_train: torch.Tensor, out: Path, device,
               resume=False, command="", progress=True, log=print) -> dict:
    """Train the pool on the first ``train_n`` training images (the last ``val_n`` held out:
    its members' validation error and spread are measured there), save each member as an
    autoencoder checkpoint (``OUT/pool-I/model``) and write ``OUT/pool.json``; returns the
    pool spec."""
    if cfg.k < 2 or cfg.epochs < 1 or cfg.noise < 0 or cfg.diversity < 0:
        raise ToolkitError("a pool needs k >= 2 members, epochs >= 1, noise >= 0 and "
                           "diversity >= 0")
    if len(x_all_train) <= cfg.val_n:
        raise ToolkitError(f"need more than {cfg.val_n} training images")
    x_train = x_all_train[:-cfg.val_n][:cfg.train_n]
    x_val = x_all_train[-cfg.val_n:]
    seed_everything(cfg.seed)
    pool = AutoencoderPool(cfg.arch, cfg.k).to(device)
    if cfg.init:
        _start_from(pool, cfg.init, cfg.arch, cfg.init_noise, device)
    if tuple(x_train.shape[1:]) != pool.members[0].input_shape:
        raise ToolkitError(f"{cfg.arch} takes images of shape {pool.members[0].input_shape}, "
                           f"the data has {tuple(x_train.shape[1:])}")

    def step(model, xb, _yb, gen):
        noisy = (xb + cfg.noise * torch.randn(xb.shape, generator=gen).to(xb.device)).clamp(0, 1)
        loss, recon, spread = pool_loss(model(noisy), xb, cfg.diversity)
        return loss, {"recon": float(recon.detach()) * len(xb),
                      "spread": float(spread.detach()) * len(xb)}

    @torch.no_grad()
    def evaluate(model):
        recon = spread = 0.0
        for i in range(0, len(x_val), 1000):
            xb = x_val[i:i + 1000].to(device)
            _, r, s = pool_loss(model(xb), xb, cfg.diversity)
            recon, spread = recon + float(r) * len(xb), spread + float(s) * len(xb)
        return {"val_mse": recon / len(x_val), "val_spread": spread / len(x_val)}

    log(f"training a pool of {cfg.k} {cfg.arch} autoencoders on {len(x_train)} images "
        f"(noise {cfg.noise}, diversity {cfg.diversity})")
    out = Path(out)
    history, elapsed = fit(cfg, pool, x_train, None, step, evaluate, out, device, resume,
                           progress, log)
    refs = {}
    for i, ae in enumerate(pool.members):
        save_checkpoint(ae, out / f"pool-{i}" / "model", architecture=cfg.arch, arch_kwargs={},
                        dataset=cfg.dataset, fmt=AE_FORMAT,
                        summary={"pool_val_mse": f"{history[-1]['val_mse']:.6f}",
                                 "pool_val_spread": f"{history[-1]['val_spread']:.6f}"},
                        training={"command": command, "config": asdict(cfg), "member": i,
                                  "train_images": len(x_train), "device": str(device),
                                  "seconds": round(elapsed, 1), "torch": torch.__version__})
        refs[f"P{i}"] = f"pool-{i}/model"
    spec = {"type": POOL_SPEC_TYPE, "version": 1, "dataset": cfg.dataset, "arch": cfg.arch,
            "noise": cfg.noise, "diversity": cfg.diversity, "command": command,
            "val_mse": history[-1]["val_mse"], "val_spread": history[-1]["val_spread"],
            "autoencoders": refs}
    write_json(out / "pool.json", spec)
    log(f"wrote {out / 'pool.json'} (validation MSE {history[-1]['val_mse']:.5f}, spread "
        f"{history[-1]['val_spread']:.5f})")
    return spec
