"""Batched CLEVER vs the per-image, per-target reference (and IBM ART's ``clever_u``), one run.

    python benchmarks/clever_speed.py [--n 4] [--batches 50] [--samples 64] [--device cpu]

All three score the same MNIST images (untargeted, L2, R=5) with the same N_b batches of N_s
points. Ours and the reference draw identical points (the same per-image random stream), so
their scores differ only by the fit; the batched run is also repeated with scipy's per-row fit
(``fit="scipy"``) to show how much of the gain is the vectorised fit. ART computes gradients for
a pool of only 10 x N_s points and resamples batches from it (less gradient work than N_b x N_s
fresh points), fits with ``weibull_min`` from one start, and is timed on fewer images if slow.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from adaptive.clever import clever
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
    args = p.parse_args()
    import sys
    sys.path.insert(0, ".")  # the reference lives in tests/
    from tests.clever_reference import clever_reference

    device = resolve_device(args.device)
    model, _ = load_model("mnist-cnn", device)
    x = load_dataset("mnist-bundled").x()[:args.n].to(device)
    kw = dict(norm="l2", target="untargeted", radius=args.radius, n_batches=args.batches,
              n_samples=args.samples, seed=0)
    clever(model, x[:1], **dict(kw, n_batches=2))  # warm-up
    ours, t_ours = timed(lambda: [s.score for s in clever(model, x, **kw)])
    ours_scipy, t_scipy = timed(lambda: [s.score for s in clever(model, x, fit="scipy", **kw)])
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
    if device.type == "cpu":
        art, t_art = timed(lambda: art_scores(model, x.cpu(), args.batches, args.samples,
                                              args.radius))
        if art is None:
            print("IBM ART not installed: skipped (pip install adversarial-robustness-toolbox)")
        else:
            print(f"IBM ART clever_u: {t_art:.2f} s ({t_art / len(x):.2f} s/image, "
                  f"{t_art / t_ours:.1f}x ours' time, with 10 x N_s = {10 * args.samples} "
                  f"gradient points per target instead of {args.batches * args.samples})")
            print("scores ART:       " + " ".join(f"{s:.4f}" for s in art))


if __name__ == "__main__":
    main()
