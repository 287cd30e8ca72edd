"""Training and inference speed of the zoo architectures on this machine.

    python benchmarks/model_speed.py [--device cpu] [--batches 20]

Prints images/s for a training step (forward + backward + SGD update, batch 128) and for
inference (batch 500), and the implied time per training epoch.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from adaptive.core.models import build_model, count_parameters
from adaptive.core.runtime import resolve_device, tune_cpu_allocator

EPOCH_IMAGES = {"mnist-cnn": 60000, "cifar-cnn": 50000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for arch, n_epoch in EPOCH_IMAGES.items():
        model = build_model(arch).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.rand(128, *model.input_shape, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        for i in range(args.batches + 3):  # 3 warm-up steps
            if i == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_rate = args.batches * 128 / (time.perf_counter() - t0)
        model.eval()
        xi = torch.rand(500, *model.input_shape, device=device)
        with torch.no_grad():
            model(xi)
            t0 = time.perf_counter()
            for _ in range(5):
                model(xi)
            if device.type == "cuda":
                torch.cuda.synchronize()
        infer_rate = 2500 / (time.perf_counter() - t0)
        print(f"{arch:10s} {count_parameters(model):>9,} params  train {train_rate:7.0f} img/s "
              f"(epoch of {n_epoch} ~ {n_epoch / train_rate:5.0f} s)  inference "
              f"{infer_rate:7.0f} img/s")


if __name__ == "__main__":
    main()
