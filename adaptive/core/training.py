"""Classifier training with per-epoch checkpoints and exact resume.

An output folder holds ``state.pt`` (model, optimiser, scheduler, epoch, RNG state; rewritten
atomically after every epoch), ``history.jsonl`` (one line per finished epoch) and, at the end,
the final checkpoint ``model.pt`` + ``model.json``. The shuffling order of epoch ``e`` depends
only on ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from adaptive.core.checkpoint import (
    atomic_torch_save,
    atomic_write_bytes,
    save_checkpoint,
    write_json,
)
from adaptive.core.data import ImageSet, dataset_family
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import accuracy
from adaptive.core.models import JUMP_TRAIN_SMOOTH, build_model, count_parameters, jump_units
from adaptive.core.runtime import seed_everything
from adaptive.core.store import FolderLock

STATE_FILE = "state.pt"
HISTORY_FILE = "history.jsonl"
MODEL_STEM = "model"
ESTIMATE_AFTER = 5  # batches timed (after the first) for the start-of-run time estimate


@dataclass
class TrainConfig:
    """Everything that defines a training run; a resumed run must match it exactly."""

    dataset: str
    arch: str
    arch_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd (momentum 0.9, nesterov)
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    augment: str = "none"  # none | crop-flip (random 4-pixel shifted crop + horizontal flip)
    seed: int = 0
    train_n: int | None = None  # first N training images only (quick experiments)
    # Adversarial training recipe (empty: standard training). Core only records it; the
    # perturbation itself is built by defenses.adversarial_training.
    adversarial: dict = field(default_factory=dict)
    # Defensive distillation (Papernot et al. 2016): the loss's softmax at this temperature,
    # and the teacher (zoo name or checkpoint, with its sha256) whose softmax at the same
    # temperature are the targets; the model is used at temperature 1 afterwards.
    temperature: float = 1.0
    distill_from: dict = field(default_factory=dict)  # {"model": ref, "sha256": ...}
    # Label smoothing (Szegedy et al. 2016; a defense of known fate): the target puts
    # 1 - label_smoothing + label_smoothing / classes on the label, the rest spread evenly.
    label_smoothing: float = 0.0

    def validate(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ToolkitError(f"--temperature must be a positive number, got {self.temperature}")
        if not 0 <= self.label_smoothing < 1:
            raise ToolkitError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.distill_from:
            raise ToolkitError("--label-smoothing and --distill-from do not combine")
        if self.epochs < 1:
            raise ToolkitError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise ToolkitError("--batch-size must be at least 1")
        if not self.lr > 0:
            raise ToolkitError("--lr must be positive")
        if self.optimizer not in ("adam", "sgd"):
            raise ToolkitError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")
        if self.schedule not in ("cosine", "constant"):
            raise ToolkitError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.augment not in ("none", "crop-flip"):
            raise ToolkitError(f"unknown augmentation {self.augment!r}; choose none or crop-flip")


def augment_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random shifted crops (zero padding) and horizontal flips, done for the whole batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # n, h
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # n, w
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    out[flip] = out[flip].flip(-1)
    return out.contiguous()


def _make_optimizer(cfg: TrainConfig, model, steps_per_epoch: int):
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def _read_resume_state(out: Path, state_file: Path, cfg) -> tuple[dict, list[dict]]:
    """The saved state and history of an interrupted training run, checked: a damaged file
    is an error that says so, not a traceback."""
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, a pickle that weights_only refuses
        raise ToolkitError(f"cannot read {state_file} ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''}); it is damaged: "
                           "delete the folder and train again") from e
    if not isinstance(state, dict) or not isinstance(state.get("config"), str):
        raise ToolkitError(f"{state_file} is not a training state of this toolkit")
    try:
        saved_cfg = json.loads(state["config"])
    except ValueError as e:
        raise ToolkitError(f"{state_file} holds a damaged configuration ({e})") from e
    if isinstance(saved_cfg, dict):  # runs made before a setting existed had its default
        defaults = {f.name: (f.default_factory() if f.default_factory is not MISSING
                             else f.default) for f in fields(cfg)
                    if f.default is not MISSING or f.default_factory is not MISSING}
        saved_cfg = {**{k: v for k, v in defaults.items() if k not in saved_cfg}, **saved_cfg}
    if saved_cfg != asdict(cfg):
        diff = {k: (saved_cfg.get(k), v) for k, v in asdict(cfg).items()
                if not isinstance(saved_cfg, dict) or saved_cfg.get(k) != v}
        raise ToolkitError(f"--resume with a different configuration than {out} was "
                           f"started with (saved, now): {diff}")
    history = []
    hist_file = out / HISTORY_FILE
    for n, line in enumerate(hist_file.read_text().splitlines() if hist_file.exists() else []):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise ToolkitError(f"{hist_file} line {n + 1} is not a JSON object; the history is "
                               "damaged: delete the folder and train again")
        history.append(row)
    return state, history


EpochStart = Callable[[nn.Module, int], None]
StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator],
                  tuple[torch.Tensor, dict]]


def fit(cfg, model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, step_fn: StepFn,
        eval_fn: Callable[[nn.Module], dict], out: Path, device: torch.device,
        resume: bool = False, progress: bool = True,
        log: Callable[[str], None] = print,
        epoch_start: EpochStart | None = None) -> tuple[list[dict], float]:
    """The epoch loop shared by every trainer: shuffling by ``(seed, epoch)``, the optimiser
    and schedule of ``cfg``, a progress bar, ``state.pt`` after every epoch, exact resume; the
    folder ``out`` is locked while it trains.

    ``step_fn(model, xb, yb, generator)`` returns the batch's mean loss and a dict of per-batch
    sums (e.g. ``{"acc": correct}``), reported per image; ``eval_fn(model)`` returns the epoch's
    held-out metrics; ``epoch_start(model, epoch)``, when given, runs before every epoch (and
    before the first one a resumed run trains: it must depend on the epoch alone). Returns the
    history and the total training seconds.
    """
    out = Path(out)
    state_file = out / STATE_FILE
    if state_file.exists() and not resume:
        raise ToolkitError(f"{out} already holds a training run; pass --resume to continue it "
                           "or choose another --out")
    if resume and not state_file.exists():
        raise ToolkitError(f"--resume given but {state_file} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, FolderLock.holder())
    try:
        return _fit(cfg, model, x_train, y_train, step_fn, eval_fn, out, device, resume,
                    progress, log, epoch_start)
    finally:
        lock.release()


def _resume(cfg, model: nn.Module, opt, sched, out: Path, state_file: Path,
            log: Callable[[str], None]) -> tuple[int, list[dict], float]:
    """The model, optimiser, schedule and RNG restored from ``state_file``: (the epoch to
    start at, the history so far, seconds spent); a state that does not fit is refused."""
    state, history = _read_resume_state(out, state_file, cfg)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch, elapsed = int(state["epoch"]), float(state["elapsed"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ToolkitError(f"{state_file} does not fit this training run ({type(e).__name__}:"
                           f" {str(e).splitlines()[0][:200]}); it is damaged: delete the "
                           "folder and train again") from e
    if len(history) < start_epoch:
        raise ToolkitError(f"{out / HISTORY_FILE} has {len(history)} epoch line(s) but "
                           f"{state_file} is after epoch {start_epoch}; the history is "
                           "damaged: delete the folder and train again")
    log(f"resuming {out} after epoch {start_epoch}/{cfg.epochs}")
    return start_epoch, history[:start_epoch], elapsed


def _fit(cfg, model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
         step_fn: StepFn, eval_fn: Callable[[nn.Module], dict], out: Path,
         device: torch.device, resume: bool, progress: bool,
         log: Callable[[str], None], epoch_start: EpochStart | None = None
         ) -> tuple[list[dict], float]:
    state_file = out / STATE_FILE
    steps = math.ceil(len(x_train) / cfg.batch_size)
    opt, sched = _make_optimizer(cfg, model, steps)
    start_epoch, history, elapsed = 0, [], 0.0
    if resume:
        start_epoch, history, elapsed = _resume(cfg, model, opt, sched, out, state_file, log)

    this_run = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if epoch_start is not None:
            epoch_start(model, epoch)
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss, sums, seen = 0.0, {}, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, unit="batch")
        for i in bar:
            if i == 1:
                t_first = time.perf_counter()  # batch 0 includes one-off warm-up costs
            elif i == ESTIMATE_AFTER + 1 and epoch == start_epoch:
                per_batch = (time.perf_counter() - t_first) / ESTIMATE_AFTER
                left = per_batch * (steps * (cfg.epochs - epoch) - i)
                log(f"time estimate: {per_batch * steps / 60:.1f} min per epoch, about "
                    f"{left / 3600:.1f} h for the {cfg.epochs - epoch} epoch(s) left "
                    "(per-epoch checkpoints: stop any time, continue with --resume)")
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            yb = y_train[idx].to(device) if y_train is not None else None
            loss, extra = step_fn(model, x_train[idx].to(device), yb, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            for k, v in extra.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            seen += len(idx)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}",
                                **{k: f"{v / seen:.4f}" for k, v in sums.items()})
        bar.close()
        model.eval()
        row = {"epoch": epoch + 1, "train_loss": total_loss / seen,
               **{f"train_{k}": v / seen for k, v in sums.items()}, **eval_fn(model)}
        seconds = time.perf_counter() - t0
        elapsed += seconds
        row["seconds"] = round(seconds, 1)
        history.append(row)
        # History first, then state: a crash in between only repeats the history line,
        # which resume truncates to the saved epoch count.
        atomic_write_bytes(out / HISTORY_FILE,
                           "".join(json.dumps(r) + "\n" for r in history).encode())
        atomic_torch_save({"config": json.dumps(asdict(cfg)), "model": model.state_dict(),
                           "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "rng": torch.get_rng_state(), "epoch": epoch + 1,
                           "elapsed": elapsed}, state_file)
        # Epochs of this run only: a resumed run may be on a machine or load unlike the first.
        this_run += seconds
        left = (cfg.epochs - epoch - 1) * this_run / (epoch + 1 - start_epoch)
        metrics = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in row.items()
                            if k not in ("epoch", "seconds"))
        log(f"epoch {epoch + 1}/{cfg.epochs}: {metrics} ({seconds:.0f} s"
            + (f"; about {left / 60:.1f} min left)" if epoch + 1 < cfg.epochs else ")"))
    model.eval()
    return history, elapsed


Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def train_classifier(cfg: TrainConfig, train: ImageSet, test: ImageSet, out: str | Path,
                     device: torch.device, resume: bool = False, command: str = "",
                     progress: bool = True, log: Callable[[str], None] = print,
                     perturb: Perturb | None = None,
                     extra_eval: Callable[[nn.Module], dict] | None = None,
                     teacher: nn.Module | None = None) -> dict:
    """Train ``cfg.arch`` on ``train``; report accuracy on ``test``; return the final metadata.

    ``perturb(model, x, y, generator)``, when given, replaces each (augmented) training batch
    by the images it returns (adversarial training); ``extra_eval(model)`` adds held-out
    metrics to every epoch's history line (e.g. robust accuracy on a test subset);
    ``teacher``: for defensive distillation (``cfg.distill_from``), the model whose softmax at
    ``cfg.temperature`` the training targets are.
    """
    cfg.validate()
    if bool(cfg.distill_from) != (teacher is not None):
        raise ToolkitError("distillation needs both cfg.distill_from and the teacher model")
    out = Path(out)
    if cfg.train_n:
        train = train.subset(slice(0, cfg.train_n))
    if (out / f"{MODEL_STEM}.json").exists() and not resume:
        raise ToolkitError(f"{out} already holds a finished model; choose another --out")
    seed_everything(cfg.seed)
    model = build_model(cfg.arch, **cfg.arch_kwargs).to(device)
    if tuple(train.image_shape) != model.input_shape:
        raise ToolkitError(f"architecture {cfg.arch!r} takes images of shape {model.input_shape}"
                           f" but {train.name} has {train.image_shape}")
    log(f"training {cfg.arch} ({count_parameters(model):,} parameters) on {train.name} "
        f"({len(train)} images) for {cfg.epochs} epochs on {device}")
    x_test, y_test = test.x(), test.labels

    def step(model, xb, yb, gen):
        if cfg.augment == "crop-flip":
            xb = augment_crop_flip(xb, gen)
        if perturb is not None:
            xb = perturb(model, xb, yb, gen)
        logits = model(xb)
        if teacher is not None:  # the teacher's softmax at the temperature as soft labels
            with torch.no_grad():
                soft = torch.softmax(teacher(xb) / cfg.temperature, 1)
            loss = -(soft * F.log_softmax(logits / cfg.temperature, 1)).sum(1).mean()
        else:
            loss = F.cross_entropy(logits / cfg.temperature, yb,
                                   label_smoothing=cfg.label_smoothing)
        return loss, {"acc": (logits.argmax(1) == yb).sum()}

    jumps = jump_units(model)
    full_height = jumps[0].height if jumps else 0.0

    def ramp_jumps(model, epoch):
        # the jump activation's step grows linearly to its full height over the epochs (the
        # self-study course's recipe: a network does not train with the full step at once),
        # and training differentiates a sigmoid in place of the step: with ReLU's gradient
        # alone the updates never see the step and accuracy falls as it grows
        for unit in jumps:
            unit.height = full_height * (epoch + 1) / cfg.epochs
            unit.smooth = JUMP_TRAIN_SMOOTH

    def evaluate(model):
        row = {"test_acc": accuracy(model, x_test, y_test, device=device)}
        return {**row, **(extra_eval(model) if extra_eval else {})}

    history, elapsed = fit(cfg, model, train.x(), train.labels, step, evaluate, out, device,
                           resume, progress, log, epoch_start=ramp_jumps if jumps else None)
    for unit in jumps:
        unit.smooth = None  # deployed as built: the step has no gradient
    final_acc = history[-1]["test_acc"]
    meta = save_checkpoint(
        model, out / MODEL_STEM, architecture=cfg.arch, arch_kwargs=cfg.arch_kwargs,
        dataset=dataset_family(train.name),
        accuracy={"clean": final_acc, "split": f"{test.name}:{test.split}", "n": len(test)},
        training={"command": command, "config": asdict(cfg), "train_images": len(train),
                  "device": str(device), "seconds": round(elapsed, 1),
                  "torch": torch.__version__})
    write_json(out / "train_summary.json", {"accuracy": final_acc, "history": history})
    log(f"final test accuracy {final_acc:.4f}; model written to {out / MODEL_STEM}.pt/.json")
    return meta
