"""Our APGD (CE and DLR) beside torchattacks' APGD, and fixed-step PGD, on the adversarially
trained CIFAR-10 model at L-inf 8/255: robust accuracy left and seconds, same images and steps,
in one run.

    python benchmarks/apgd_vs_torchattacks.py [--n 40] [--steps 25]
"""

from __future__ import annotations

import argparse
import time

import torch

from adaptive.attacks import APGD, BoundedPGD
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args(argv)
    import torchattacks

    torch.manual_seed(0)
    model, _ = load_model("cifar-cnn-at")
    data = load_dataset("cifar10-genuine")
    x, y = data.x()[:4 * args.n], data.labels[:4 * args.n]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y, eps = x[ok][:args.n], y[ok][:args.n], 8 / 255

    def robust(adv) -> float:
        with torch.no_grad():
            return float((model(adv).argmax(1) == y).float().mean())

    def timed(fn):
        t = time.perf_counter()
        adv = fn()
        return robust(adv), time.perf_counter() - t

    print(f"cifar-cnn-at, L-inf 8/255, {len(x)} correctly classified genuine test images, "
          f"{args.steps} steps, one restart; robust accuracy left (lower = stronger)")
    for loss in ("ce", "dlr"):
        ours = timed(lambda: APGD(eps, steps=args.steps, loss=loss, norm="linf")
                     .run(model, x, y).adversarial)
        theirs = timed(lambda: torchattacks.APGD(model, norm="Linf", eps=eps, steps=args.steps,
                                                 loss=loss, n_restarts=1, seed=0)(x, y))
        print(f"APGD-{loss.upper():3s} ours {ours[0]:.3f} in {ours[1]:.1f} s; torchattacks "
              f"{theirs[0]:.3f} in {theirs[1]:.1f} s")
    for name, step in (("default 2.5 eps / steps", None), ("2 eps (APGD's first)", 2 * eps)):
        pgd = timed(lambda: BoundedPGD(eps, steps=args.steps, restarts=1, step_size=step,
                                       norm="linf").run(model, x, y).adversarial)
        print(f"fixed-step PGD, step {name}: {pgd[0]:.3f} in {pgd[1]:.1f} s")


if __name__ == "__main__":
    main()
