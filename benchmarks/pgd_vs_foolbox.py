"""Our bounded PGD-L2 vs Foolbox 3's L2PGD at equal steps and step size, same images.

    python benchmarks/pgd_vs_foolbox.py [--n 100] [--eps 1.5] [--steps 50] [--threads 1,2]

Both attack the MNIST classifier untargeted within the L2 ball of radius eps. Ours: one round
from the image on C&W's margin, each sample stopping at its first success (BoundedPGD with
restarts 1 and no target rounds); Foolbox's: its default (a random start, the cross-entropy,
every step for every sample). Prints, per thread count, both times, the speed ratio and both
success rates (a success: misclassified within eps, checked here for both), and the time
Foolbox took over the cost of our model passes at the model's own speed (``model_floor.py``):
the most any implementation making our passes could gain on it.
"""

from __future__ import annotations

import argparse
import time

import foolbox as fb
import torch
from model_floor import CountingModel, floor_seconds  # benchmarks/ is the script's folder

from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.core.data import load_dataset
from adaptive.core.runtime import tune_cpu_allocator
from adaptive.core.zoo import load_model


def _fooled(model, adv, x, y, eps) -> torch.Tensor:
    with torch.no_grad():
        wrong = model(adv).argmax(1) != y
    return wrong & ((adv - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--eps", type=float, default=1.5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    tune_cpu_allocator()  # as the CLI does (benchmarks/allocator.py)
    model, _ = load_model("mnist-cnn", "cpu")
    d = load_dataset("mnist-bundled")
    x, y = d.x()[:args.n], d.labels[:args.n]
    step = 2.5 * args.eps / args.steps
    print(f"MNIST, {args.n} images, L2 eps {args.eps}, {args.steps} steps of {step:.4g}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        counter = CountingModel(model)
        t0 = time.perf_counter()
        ours = BoundedPGD(args.eps, steps=args.steps, restarts=1, target_classes=0,
                          step_size=step).run(counter, x, y)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs = fb.attacks.L2PGD(steps=args.steps, abs_stepsize=step)(
            fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=args.eps)[1]
        t_theirs = time.perf_counter() - t0
        ok_ours = _fooled(model, ours.adversarial, x, y, args.eps)
        ok_theirs = _fooled(model, theirs, x, y, args.eps)
        print(f"{threads} thread(s): ours {t_ours:6.2f} s success "
              f"{float(ok_ours.float().mean()):.2f}"
              f" (mean steps {float(ours.gradient_steps.float().mean()):.1f}); foolbox "
              f"{t_theirs:6.2f} s success {float(ok_theirs.float().mean()):.2f}; speed ratio "
              f"(foolbox / ours) {t_theirs / t_ours:.2f}x; foolbox / our floor "
              f"{t_theirs / floor_seconds(counter, x):.2f}x")


if __name__ == "__main__":
    main()
