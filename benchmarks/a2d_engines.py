"""Batched attack-cost engines vs the per-sample loop, on the same images, in one run.

    python benchmarks/a2d_engines.py [--n 32] [--device cpu] [--engines bim_d,bim2_d,jsma_d,dba_d]

For each engine: images/s of the batched engine and of a loop that runs it on one image at a
time, their ratio, and whether both gave the same costs (else on how many images and by how
many iterations at most they differ). For BIM_d and BIM2_d also the fraction of the device's
matrix-multiply FLOP rate the batched engine reaches (FLOPs of the forward and input-gradient
passes counted by torch.utils.flop_counter; the peak measured here by a float32 matmul of the
same run).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from adaptive.core.data import load_dataset
from adaptive.core.runtime import resolve_device, tune_cpu_allocator
from adaptive.core.zoo import load_model
from defenses.a2d.presets import ENGINE_NAMES, make_engine


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(device, size=1024, reps=20) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * size ** 3 * reps / (time.perf_counter() - t0)


def flops_per_query(model, x) -> float:
    """FLOPs of one BIM_d query (forward + gradient w.r.t. the input only) per image."""
    label = model(x).argmax(1)
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():  # the engine asks for input gradients only
        p.requires_grad_(False)
    try:
        xi = x.clone().requires_grad_(True)
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(xi), label, reduction="sum").backward()
    finally:
        for p, r in zip(model.parameters(), frozen):
            p.requires_grad_(r)
    return counter.get_total_flops() / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engines", default=",".join(ENGINE_NAMES))
    args = ap.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    device = resolve_device(args.device)
    model, _ = load_model("mnist-cnn", device)
    x = load_dataset("mnist-bundled").x()[:args.n].to(device)
    print(f"device {device}, {torch.get_num_threads()} threads, {args.n} benign MNIST images, "
          "MNIST presets")
    peak = matmul_flops_per_s(device)
    print(f"float32 matmul peak measured: {peak / 1e9:.1f} GFLOP/s")
    for name in args.engines.split(","):
        engine = make_engine(name, "mnist")
        sync(device)
        t0 = time.perf_counter()
        batched = engine.run(model, x)
        sync(device)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop = [engine.run(model, x[i:i + 1]) for i in range(len(x))]
        sync(device)
        t_loop = time.perf_counter() - t0
        looped = torch.tensor([int(r.costs[0]) for r in loop])
        differ = batched.costs != looped
        same = "identical costs" if not differ.any() else (
            f"costs differ on {int(differ.sum())} images, by up to "
            f"{int((batched.costs - looped).abs().max())} iterations")
        line = (f"{name:7s} batched {len(x) / t_batched:8.1f} img/s  loop {len(x) / t_loop:8.1f} "
                f"img/s  ratio {t_loop / t_batched:5.1f}x  {same}  "
                f"mean queries {batched.queries.float().mean():.0f}")
        if name in ("bim_d", "bim2_d"):
            flops = flops_per_query(model, x[:8]) * float(batched.queries.sum())
            line += (f"  {flops / t_batched / 1e9:.1f} GFLOP/s = "
                     f"{flops / t_batched / peak:.0%} of peak")
        print(line, flush=True)


if __name__ == "__main__":
    main()
