"""The attacker's unit of work: one forward + input-gradient pass (F+G) and one forward pass
(F) of the zoo's classifiers, per image, by batch size, with PyTorch's ``nn.MaxPool2d(2)`` and
with our ``MaxPool2x2`` (bit-identical outputs and gradients; checked here too).

    python benchmarks/attack_step.py [--sizes 8,16,32,50,64,100,128,256] [--reps 7] [--device cpu]

Every variant and size is timed in turn, ``--reps`` rounds, and the median round is printed,
so drift of this shared machine hits all of them alike. The per-image cost of F+G at each
batch size is what sets the attack batch (``adaptive.core.runtime.attack_batch_size``).
Last, whether C&W's examples on 200 MNIST images (3 constants x 40 steps) depend on how the
images are split: the device's equal pieces and 64 + 64 + 64 + 8, each against one batch.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.data import load_dataset
from adaptive.core.models import build_model
from adaptive.core.pooling import MaxPool2x2
from adaptive.core.runtime import attack_batch_size, resolve_device, tune_cpu_allocator
from adaptive.core.zoo import load_model


def with_torch_pool(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every MaxPool2x2 replaced by PyTorch's nn.MaxPool2d(2)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, MaxPool2x2):
                setattr(module, name, nn.MaxPool2d(2))
    return model


def forward_grad(model, x):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(logits.sum(), x)
    return logits.detach(), g


def forward(model, x):
    with torch.no_grad():
        return model(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32,50,64,100,128,256")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--archs", default="mnist-cnn,cifar-cnn")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    device = resolve_device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.reps} rounds; microseconds per image")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        ours = build_model(arch).to(device).eval()
        for p in ours.parameters():
            p.requires_grad_(False)
        theirs = with_torch_pool(ours)
        x_all = torch.rand(max(sizes), *ours.input_shape, device=device)
        same = all(torch.equal(a, b) for a, b in zip(forward_grad(ours, x_all[:64]),
                                                       forward_grad(theirs, x_all[:64])))
        print(f"\n{arch}: logits and input gradients identical with both pools: {same}")
        variants = {"F+G nn.MaxPool2d": (forward_grad, theirs),
                    "F+G MaxPool2x2": (forward_grad, ours),
                    "F nn.MaxPool2d": (forward, theirs), "F MaxPool2x2": (forward, ours)}
        times = {(v, b): [] for v in variants for b in sizes}
        for _ in range(args.reps):
            for b in sizes:
                x = x_all[:b]
                for v, (fn, model) in variants.items():
                    fn(model, x)
                    sync()
                    k = max(2, 256 // b)
                    t0 = time.perf_counter()
                    for _ in range(k):
                        fn(model, x)
                    sync()
                    times[v, b].append((time.perf_counter() - t0) / k / b)
        print(f"{'batch':>6} " + " ".join(f"{v:>18}" for v in variants))
        for b in sizes:
            print(f"{b:>6} " + " ".join(f"{statistics.median(times[v, b]) * 1e6:18.0f}"
                                         for v in variants))
        best = min(sizes, key=lambda b: statistics.median(times["F+G MaxPool2x2", b]))
        for v in ("F+G", "F"):
            ratio = [statistics.median(times[f"{v} nn.MaxPool2d", b])
                     / statistics.median(times[f"{v} MaxPool2x2", b]) for b in sizes]
            print(f"{v}: MaxPool2x2 {min(ratio):.2f}-{max(ratio):.2f}x nn.MaxPool2d")
        print(f"fastest F+G batch: {best}; attack_batch_size({device.type}) = "
              f"{attack_batch_size(device)}")
    split_check(device)


def split_check(device) -> None:
    model, _ = load_model("mnist-cnn", device)
    d = load_dataset("mnist-bundled")
    x, y = d.x()[:200].to(device), d.labels[:200].to(device)
    settings = dict(kappa=0, lr=0.05, steps=40, binary_search_steps=3, initial_const=0.1)
    whole = CarliniWagnerL2(batch_size=200, **settings).run(model, x, y).adversarial
    print("\nC&W on 200 MNIST images, examples compared with one batch of 200:")
    for label, size in (("device's equal pieces", None), ("pieces of 64 (64+64+64+8)", 64)):
        adv = CarliniWagnerL2(batch_size=size, **settings).run(model, x, y).adversarial
        print(f"  {label}: identical {torch.equal(adv, whole)}, largest difference "
              f"{float((adv - whole).abs().max()):.3g}")


if __name__ == "__main__":
    main()
