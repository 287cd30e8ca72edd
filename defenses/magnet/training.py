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

from adaptive.core.checkpoint import save_checkpoint
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

    family = "cifar10" if dataset.startswith("cifar10") else "mnist"
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
