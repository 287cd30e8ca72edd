"""Batched CLEVER vs the per-image, per-target reference (and IBM ART's ``clever_u``), one run.

    python benchmarks/clever_speed.py [--n 4] [--batches 50] [--samples 64] [--device cpu]
                                      [--chunk POINTS] [--skip-art] [--bf16]

All three score the same MNIST images (untargeted, L2, R=5) with the same N_b batches of N_s
points. Ours and the reference draw identical points (the same per-image random stream), so
their scores differ only by the fit; the batched run is also repeated with scipy's per-row fit
(``fit="scipy"``) to show how much of the gain is the vectorised fit. ART computes gradients for
a pool of only 10 x N_s points and resamples batches from it (less gradient work than N_b x N_s
fresh points), fits with ``weibull_min`` from one start.

It ends with the work per sampled point that any exact method must do (one forward pass, shared
by the targets, and one input-gradient pass per target) at several pass sizes, and the speed-up
over the reference that this work allows at best: the ceiling of batching on this device.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from adaptive.core.data import load_dataset
from adaptive.core.runtime import resolve_device, tune_cpu_allocator
from adaptive.core.zoo import load_model
from adaptive.evaluations.clever import clever, sample_points


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def max_relative(a, b) -> float:
    return max(abs(u - v) / v for u, v in zip(a, b))


def art_scores(model, x, batches, samples, radius):
    try:
        from art.estimators.classification import PyTorchClassifier
        from art.metrics import clever_u
    except ImportError:
        return None
    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                            input_shape=tuple(x.shape[1:]), nb_classes=10, clip_values=(0, 1),
                            device_type="cpu")
    np.random.seed(0)
    return [float(clever_u(clf, xi.numpy(), batches, samples, radius, norm=2, verbose=False))
            for xi in x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--radius", type=float, default=5.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--chunk", type=int, help="points per pass (default: the device's)")
    p.add_argument("--skip-art", action="store_true")
    p.add_argument("--bf16", action="store_true",
                   help="also time ours with the model under bfloat16 autocast (not adopted: "
                        "prints how far its scores move)")
    args = p.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    import sys
    sys.path.insert(0, ".")  # the reference lives in tests/
    from tests.clever_reference import clever_reference

    device = resolve_device(args.device)
    model, _ = load_model("mnist-cnn", device)
    x = load_dataset("mnist-bundled").x()[:args.n].to(device)
    kw = dict(norm="l2", target="untargeted", radius=args.radius, n_batches=args.batches,
              n_samples=args.samples, seed=0)
    ours_kw = dict(kw, chunk_points=args.chunk)
    clever(model, x[:1], **dict(kw, n_batches=2))  # warm-up
    ours, t_ours = timed(lambda: [s.score for s in clever(model, x, **ours_kw)])
    ours_scipy, t_scipy = timed(lambda: [s.score for s in clever(model, x, fit="scipy",
                                                                 **ours_kw)])
    ref, t_ref = timed(lambda: [clever_reference(model, x[i], i, **kw)[0]
                                for i in range(len(x))])
    print(f"device {device}; {len(x)} MNIST images, untargeted L2, R={args.radius}, "
          f"N_b={args.batches}, N_s={args.samples} (9 targets each)")
    print(f"{'implementation':34s} {'seconds':>8s} {'s/image':>8s} {'ratio':>7s}")
    for name, t in (("per-image per-target reference", t_ref),
                    ("batched, scipy fit per row", t_scipy),
                    ("batched, vectorised fit (ours)", t_ours)):
        print(f"{name:34s} {t:8.2f} {t / len(x):8.2f} {t_ref / t:6.1f}x")
    print(f"scores, batched+scipy vs reference (same points, same fit): max relative "
          f"difference {max_relative(ours_scipy, ref):.2e}")
    print(f"scores, ours vs reference (same points, vectorised vs scipy fit): max relative "
          f"difference {max_relative(ours, ref):.3f}")
    print("scores ours:      " + " ".join(f"{s:.4f}" for s in ours))
    print("scores reference: " + " ".join(f"{s:.4f}" for s in ref))
    if device.type == "cpu" and not args.skip_art:
        art, t_art = timed(lambda: art_scores(model, x.cpu(), args.batches, args.samples,
                                              args.radius))
        if art is None:
            print("IBM ART not installed: skipped (pip install adversarial-robustness-toolbox)")
        else:
            print(f"IBM ART clever_u: {t_art:.2f} s ({t_art / len(x):.2f} s/image, "
                  f"{t_art / t_ours:.1f}x ours' time, with 10 x N_s = {10 * args.samples} "
                  f"gradient points per target instead of {args.batches * args.samples})")
            print("scores ART:       " + " ".join(f"{s:.4f}" for s in art))
    if args.bf16:
        low, t_low = timed(lambda: [s.score for s in clever(BFloat16(model), x, **ours_kw)])
        print(f"ours under bfloat16 autocast: {t_low:.2f} s ({t_ours / t_low:.1f}x faster than "
              f"float32); scores move by up to {100 * max_relative(low, ours):.0f} % "
              f"({' '.join(f'{v:.4f}' for v in low)})")
    work_per_point(model, x[0], args.radius, args.samples)


class BFloat16(torch.nn.Module):
    """The model under bfloat16 autocast (its backward passes follow), logits back in float32."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def work_per_point(model, x0, radius, ref_size):
    """Milliseconds per sampled point of a forward pass (F) and of a forward + one input-gradient
    pass (F + G), by pass size. The reference does nine F + G per point at ``ref_size`` points a
    pass; an exact method must still do one F and nine G per point, so no batching can be faster
    than 9 (F + G) / (F + 9 G) at the best pass size: the ceiling printed, from this table alone
    (timings on a shared machine drift between minutes, so a ratio is only taken within one
    measurement)."""
    gen = torch.Generator().manual_seed(0)
    print("work per sampled point (ms), by points per pass:")
    print(f"{'points':>7s} {'F':>7s} {'F+G':>7s}")
    rows = {}
    for size in dict.fromkeys((ref_size, 64, 256, 1024, 4096)):
        pts = sample_points(x0, size, radius, "l2", gen)

        def forward():
            with torch.no_grad():
                model(pts)

        def gradient():
            p = pts.clone().requires_grad_(True)
            out = model(p)
            torch.autograd.grad((out[:, 0] - out[:, 1]).sum(), p)

        reps = max(2, 4096 // size)
        row = []
        for fn in (forward, gradient):
            fn()  # warm-up
            _, t = timed(lambda: [fn() for _ in range(reps)])
            row.append(1e3 * t / (reps * size))
        rows[size] = row
        print(f"{size:7d} {row[0]:7.3f} {row[1]:7.3f}")
    ref = 9 * rows[ref_size][1]
    best = min(f + 9 * (fg - f) for f, fg in rows.values())
    print(f"reference's work: 9 (F+G) at {ref_size} points = {ref:.3f} ms per point; the least "
          f"an exact method does, F + 9G at the best size = {best:.3f}; ceiling {ref / best:.1f}x")


if __name__ == "__main__":
    main()
