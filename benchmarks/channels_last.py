"""mnist-cnn's forward+backward in the default (NCHW) memory format vs channels-last weights,
and whether C&W's results stay the same (the gradients change in their last bits).

    OMP_NUM_THREADS=1 python benchmarks/channels_last.py [--n 40] [--repeats 20]

Prints the time per forward+backward of a batch of --n images in each format, their ratio,
the largest logit difference, and C&W's (kappa 0, 100 steps x 4 constants) mean L2 and largest
per-image L2 difference between the two formats on the same images.
"""

from __future__ import annotations

import argparse
import time

import torch

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model


def _fwd_bwd(model, x, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xx).sum(), xx)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    x, y = (lambda d: (d.x()[:args.n], d.labels[:args.n]))(load_dataset("mnist-bundled"))
    nchw, _ = load_model("mnist-cnn")
    last, _ = load_model("mnist-cnn")
    last = last.to(memory_format=torch.channels_last)
    _fwd_bwd(nchw, x, 2), _fwd_bwd(last, x, 2)  # warm-up
    t_nchw, t_last = _fwd_bwd(nchw, x, args.repeats), _fwd_bwd(last, x, args.repeats)
    with torch.no_grad():
        logit_diff = float((nchw(x) - last(x)).abs().max())
    print(f"{args.n} images, {torch.get_num_threads()} thread(s): forward+backward NCHW "
          f"{1e3 * t_nchw:.1f} ms, channels-last {1e3 * t_last:.1f} ms: "
          f"{t_nchw / t_last:.2f}x; largest logit difference {logit_diff:.3g}")
    cw = CarliniWagnerL2(kappa=0, steps=100, binary_search_steps=4, lr=0.05, initial_const=0.1)
    a, b = cw.run(nchw, x, y), cw.run(last, x, y)
    print(f"C&W mean L2: NCHW {float(a.l2.mean()):.4f}, channels-last {float(b.l2.mean()):.4f}; "
          f"largest per-image L2 difference {float((a.l2 - b.l2).abs().max()):.4f}; same "
          f"successes: {bool(torch.equal(a.success, b.success))}")


if __name__ == "__main__":
    main()
