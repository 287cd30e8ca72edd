"""Our C&W-L2 (kappa=0) vs Foolbox 3's L2CarliniWagnerAttack at equal settings, same images.

    python benchmarks/cw_vs_foolbox.py [--n 50] [--steps 200] [--binary-steps 5] [--device cpu]

Prints both run times, the speed ratio and both success rates and mean L2 (over images where
both succeeded). Foolbox returns an all-zero image where it found nothing; those are not
counted as successes. Then each attack's model passes and their cost at the model's own speed
(``model_floor.py``): the time no implementation making the same passes can beat.
"""

from __future__ import annotations

import argparse
import time

import foolbox as fb
import torch
from model_floor import CountingModel, floor_seconds  # benchmarks/ is the script's folder

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.data import load_dataset
from adaptive.core.runtime import resolve_device, tune_cpu_allocator
from adaptive.core.zoo import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--binary-steps", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--initial-const", type=float, default=0.1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--warm-start", action="store_true",
                    help="also ours with warm-started constants (each from the best example so "
                         "far; not C&W's or Foolbox's algorithm)")
    args = ap.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    device = resolve_device(args.device)
    model, _ = load_model("mnist-cnn", device)
    d = load_dataset("mnist-bundled")
    x, y = d.x()[:args.n].to(device), d.labels[:args.n].to(device)
    settings = dict(steps=args.steps, binary_search_steps=args.binary_steps,
                    initial_const=args.initial_const)
    ours_model, their_model = CountingModel(model), CountingModel(model)
    t0 = time.perf_counter()
    ours = CarliniWagnerL2(kappa=0, lr=args.lr, **settings).run(ours_model, x, y)
    t_ours = time.perf_counter() - t0
    warm = None
    if args.warm_start:
        t0 = time.perf_counter()
        warm = CarliniWagnerL2(kappa=0, lr=args.lr, warm_start=True, **settings).run(model, x, y)
        t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = fb.attacks.L2CarliniWagnerAttack(stepsize=args.lr, confidence=0, **settings)(
        fb.PyTorchModel(their_model, bounds=(0, 1)), x, y, epsilons=None)[1]
    t_theirs = time.perf_counter() - t0
    with torch.no_grad():
        their_ok = ((model(theirs).argmax(1) != y) & (theirs.flatten(1).abs().sum(1) > 0)).cpu()
    their_l2 = (theirs - x).flatten(1).norm(dim=1).cpu()
    both = ours.success & their_ok
    print(f"device {device}, {args.n} MNIST images, kappa 0, {settings}, lr {args.lr}")
    print(f"ours:    {t_ours:7.1f} s  success {float(ours.success.float().mean()):.2f}  "
          f"mean L2 {float(ours.l2[both].mean()):.4f}  mean Adam steps "
          f"{float(ours.gradient_steps.float().mean()):.0f}")
    print(f"foolbox: {t_theirs:7.1f} s  success {float(their_ok.float().mean()):.2f}  "
          f"mean L2 {float(their_l2[both].mean()):.4f}")
    print(f"speed ratio (foolbox time / ours): {t_theirs / t_ours:.2f}x; L2 ratio (ours / "
          f"foolbox) {float(ours.l2[both].mean()) / float(their_l2[both].mean()):.3f} on "
          f"{int(both.sum())} images both attacks solved")
    floors = {}
    for who, counter, t in (("ours", ours_model, t_ours), ("foolbox", their_model, t_theirs)):
        floors[who] = floor_seconds(counter, x)
        print(f"{who}: {counter.with_grad:,} image passes with gradient, {counter.without:,} "
              f"without, batches up to {counter.largest_batch}: {floors[who]:.1f} s at the "
              f"model's speed; time / that floor {t / floors[who]:.2f}")
    print(f"foolbox time / our floor: {t_theirs / floors['ours']:.2f}x (the most any "
          f"implementation making our passes could be faster than foolbox)")
    if warm is not None:
        all3 = both & warm.success
        print(f"ours, warm-started constants: {t_warm:7.1f} s  success "
              f"{float(warm.success.float().mean()):.2f}  mean Adam steps "
              f"{float(warm.gradient_steps.float().mean()):.0f}; speed ratio (foolbox / it) "
              f"{t_theirs / t_warm:.2f}x; L2 ratio (it / foolbox) "
              f"{float(warm.l2[all3].mean()) / float(their_l2[all3].mean()):.3f} on "
              f"{int(all3.sum())} images all three solved")


if __name__ == "__main__":
    main()
