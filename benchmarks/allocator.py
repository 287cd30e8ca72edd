"""What glibc's allocator costs an attack loop, and what ``tune_cpu_allocator`` saves.

    python benchmarks/allocator.py [--n 100] [--steps 200] [--binary-steps 2] [--rounds 2]

Runs our C&W (MNIST CNN, lr 0.01) in fresh subprocesses, alternately with glibc's default
thresholds and after ``adaptive.core.runtime.tune_cpu_allocator()``, and prints each run's
wall time, user and kernel CPU time and minor page faults; the adversarial examples of both
are compared bit for bit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import hashlib, json, resource, sys, time
import torch
from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.core.data import load_dataset
from adaptive.core.runtime import tune_cpu_allocator
from adaptive.core.zoo import load_model
n, steps, binary_steps, tune = json.loads(sys.argv[1])
tuned = tune_cpu_allocator() if tune else False
model, _ = load_model("mnist-cnn")
d = load_dataset("mnist-bundled")
x, y = d.x()[:n], d.labels[:n]
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
r = CarliniWagnerL2(kappa=0, lr=0.01, steps=steps, binary_search_steps=binary_steps,
                    initial_const=0.1).run(model, x, y)
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(tuned=tuned, wall=wall, user=r1.ru_utime - r0.ru_utime,
                      sys=r1.ru_stime - r0.ru_stime, faults=r1.ru_minflt - r0.ru_minflt,
                      digest=hashlib.sha256(r.adversarial.numpy().tobytes()).hexdigest())))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--binary-steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"C&W, {args.n} MNIST images, {args.binary_steps} x {args.steps} steps, "
          f"one fresh process per run")
    walls, digests = {False: [], True: []}, set()
    for _ in range(args.rounds):
        for tune in (False, True):
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(
                [args.n, args.steps, args.binary_steps, tune])], check=True,
                capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            label = "tuned  " if r["tuned"] else "default"
            print(f"{label} wall {r['wall']:5.1f} s  user {r['user']:5.1f} s  kernel "
                  f"{r['sys']:4.1f} s  minor page faults {r['faults']:>9,}")
            walls[tune].append(r["wall"])
            digests.add(r["digest"])
    print(f"speed-up (default / tuned, best of each): {min(walls[False]) / min(walls[True]):.2f}x;"
          f" examples identical in every run: {len(digests) == 1}")


if __name__ == "__main__":
    main()
