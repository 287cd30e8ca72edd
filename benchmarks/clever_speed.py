"""Batched CLEVER vs the per-image, per-target reference (and IBM ART's ``clever_u``), one run.

    python benchmarks/clever_speed.py [--n 4] [--batches 50] [--samples 64] [--device cpu]
                                      [--chunk POINTS] [--skip-art]

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

from adaptive.clever import clever, sample_points
from core.data import load_dataset
from core.runtime import resolve_device
from core.zoo import load_model


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


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
    args = p.parse_args()
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
    rel = [abs(a - b) / b for a, b in zip(ours_scipy, ref)]
    print(f"scores, batched+scipy vs reference (same points, same fit): max relative "
          f"difference {max(rel):.2e}")
    rel = [abs(a - b) / b for a, b in zip(ours, ref)]
    print(f"scores, ours vs reference (same points, vectorised vs scipy fit): max relative "
          f"difference {max(rel):.3f}")
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
    work_per_point(model, x[0], args.radius, args.samples)


def work_per_point(model, x0, radius, ref_size):
    """Milliseconds per sampled point of a forward pass, a forward + one gradient pass and a
    forward + nine gradient passes (one per target), by pass size. The reference does nine
    forward + one gradient passes of ``ref_size`` points; the ceiling ratio is that over the
    best forward + nine, both from this table (timings on a shared machine drift between
    minutes, so a ratio is only taken within one measurement)."""
    gen = torch.Generator().manual_seed(0)
    print("work per sampled point (ms), by points per pass:")
    print(f"{'points':>7s} {'forward':>8s} {'fwd+1grad':>10s} {'fwd+9grad':>10s}")
    best, ref = float("inf"), None
    for size in dict.fromkeys((ref_size, 64, 256, 1024, 4096)):
        pts = sample_points(x0, size, radius, "l2", gen)

        def forward():
            with torch.no_grad():
                model(pts)

        def gradients(k):
            p = pts.clone().requires_grad_(True)
            out = model(p)
            for q in range(k):
                torch.autograd.grad((out[:, 0] - out[:, q + 1]).sum(), p, retain_graph=q < k - 1)

        reps = max(1, 2048 // size)
        row = []
        for fn in (forward, lambda: gradients(1), lambda: gradients(9)):
            fn()  # warm-up
            _, t = timed(lambda: [fn() for _ in range(reps)])
            row.append(1e3 * t / (reps * size))
        best = min(best, row[2])
        ref = 9 * row[1] if ref is None else ref
        print(f"{size:7d} {row[0]:8.3f} {row[1]:10.3f} {row[2]:10.3f}")
    print(f"reference's work: 9 x fwd+1grad at {ref_size} points = {ref:.3f} ms per point; "
          f"ceiling of any exact batched method: {ref / best:.1f}x (best fwd+9grad)")


if __name__ == "__main__":
    main()
