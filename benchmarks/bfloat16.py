"""mnist-cnn's forward + input-gradient pass (F+G) in float32 vs under bfloat16 autocast, and
what bfloat16 does to C&W's examples: is lower precision a way below the float32 floor
(``benchmarks/model_floor.py``) on a CPU that has bfloat16 instructions?

    python benchmarks/bfloat16.py [--n 50] [--rounds 15]

Prints the median time per F+G of a batch of --n images in each precision (rounds alternate,
so drift hits both alike), their ratio, the largest logit difference, the smallest per-image
cosine between the two input gradients, and C&W's (kappa 0, 100 steps x 4 constants) mean L2
and successes with the classifier in each precision (judged by the float32 classifier).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.data import load_dataset
from adaptive.core.runtime import tune_cpu_allocator
from adaptive.core.zoo import load_model


class Bfloat16Autocast(nn.Module):
    """``model`` run under CPU bfloat16 autocast, returning float32 logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(x).float()


def forward_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.sum(), x)
    return logits.detach(), grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    tune_cpu_allocator()
    data = load_dataset("mnist-bundled")
    x, y = data.x()[:args.n], data.labels[:args.n]
    fp32, _ = load_model("mnist-cnn", device="cpu")
    bf16 = Bfloat16Autocast(fp32)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(3):  # warm-up
        forward_grad(fp32, x), forward_grad(bf16, x)
    for _ in range(args.rounds):
        for name, model in (("float32", fp32), ("bfloat16", bf16)):
            t0 = time.perf_counter()
            forward_grad(model, x)
            times[name].append(time.perf_counter() - t0)
    t32, t16 = (statistics.median(times[k]) for k in ("float32", "bfloat16"))
    (l32, g32), (l16, g16) = forward_grad(fp32, x), forward_grad(bf16, x)
    cos = torch.nn.functional.cosine_similarity(g32.flatten(1), g16.flatten(1))
    print(f"{args.n} images, {torch.get_num_threads()} thread(s): F+G float32 {1e3 * t32:.2f} ms, "
          f"bfloat16 autocast {1e3 * t16:.2f} ms: {t32 / t16:.2f}x; largest logit difference "
          f"{float((l32 - l16).abs().max()):.3g}; smallest gradient cosine {float(cos.min()):.4f}")
    cw = CarliniWagnerL2(kappa=0, steps=100, binary_search_steps=4, lr=0.05, initial_const=0.1)
    a, b = cw.run(fp32, x, y), cw.run(bf16, x, y)
    with torch.no_grad():  # bfloat16's examples, judged by the float32 classifier
        b_fools = (fp32(b.adversarial).argmax(1) != y) & b.success
    print(f"C&W mean L2 of successes: float32 {float(a.l2[a.success].mean()):.4f} "
          f"({int(a.success.sum())}/{args.n}), bfloat16 {float(b.l2[b.success].mean()):.4f} "
          f"({int(b.success.sum())}/{args.n}, of which {int(b_fools.sum())} fool the float32 "
          f"classifier)")


if __name__ == "__main__":
    main()
