"""Why does the attack fail a binarised task? The binarization test of a sweep's run (as
`adaptive check binarization`), printing for each image what the attack returned: whether the
binarised readout flipped, the attack's detector penalty there, and which detectors flag it.

    python scripts/binarization_failures.py runs/detector-attacks/mnist-sweep-auto \\
        --attack spgd --steps 300 --restarts 3 --schedule cosine --n 3

The tasks are those of `adaptive check binarization RUN_DIR --n N` at the same seed (the
first N attacked images, the run's last defense, 299 inner points, 500 random points).
"""

from __future__ import annotations

import argparse

import torch

from adaptive.cli.check_cmd import binarization_setup
from adaptive.diagnostics.binarization import binarization_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--attack", default="pgd-full")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--restarts", type=int)
    ap.add_argument("--schedule", choices=("constant", "cosine"))
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--n-inner", type=int, default=299)
    ap.add_argument("--n-random", type=int, default=500)
    args = ap.parse_args()
    setup = binarization_setup(argparse.Namespace(
        **vars(args), defense=None, start_images=None, seed=0, device="auto", data_root=None))
    cfg, defense = setup.run.cfg, setup.run.defenses[setup.defense]

    def make_attack():
        attack = setup.make_attack()
        plain_run = attack.run

        def run_and_tell(model, x, labels, penalty=None, **kw):
            r = plain_run(model, x, labels, penalty=penalty, **kw)
            adv = r.adversarial.to(x.device)
            with torch.no_grad():
                flipped = int(model(adv).argmax(1)[0]) == 1
            left = (float(penalty(adv.clone().requires_grad_(True), None, False)[0].detach())
                    if penalty is not None else 0.0)
            flags = [name for name, f in defense.flags(adv).items() if bool(f[0])]
            print(f"  returned: readout flipped {flipped}, penalty left {left:.3g}, L2 "
                  f"{float((adv - x).norm()):.2f}, flagged by {', '.join(flags) or 'none'}",
                  flush=True)
            return r
        attack.run = run_and_tell
        return attack

    s = setup.settings
    print(f"{setup.attack} {s['steps']} steps x {s['restarts']} restarts ({s['schedule']}) "
          f"against {setup.defense}, {len(setup.index)} images")
    result = binarization_test(defense, setup.objective.model, make_attack, setup.x, setup.y,
                               setup.bound, cfg.norm, penalty=setup.objective.penalty(),
                               index=setup.index, n_inner=args.n_inner,
                               n_random=args.n_random, seed=0, pool=setup.pool)
    print(result["summary"])


if __name__ == "__main__":
    main()
