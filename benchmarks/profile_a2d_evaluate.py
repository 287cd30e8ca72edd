"""Where ``adaptive a2d evaluate`` spends its time, by phase (issue [6/7]).

    OMP_NUM_THREADS=2 python benchmarks/profile_a2d_evaluate.py [-- A2D EVALUATE ARGS...]

Runs ``adaptive a2d evaluate`` in this process (default ``--dataset mnist --n 50 --n-cal 50``;
into a temporary folder unless ``--out`` is given) with timers around each adversarial set
(per attack), each cost engine (per engine, full budget and detection mode apart), the
detectors' fits and the rest; prints each phase's own wall time and share.
"""

from __future__ import annotations

from phases import Phases, profile_command  # (benchmarks/ is the script's folder)

import adaptive.evaluations.a2d as a2d_eval
from adaptive.core.store import RunStore

DEFAULT = ["--dataset", "mnist", "--n", "50", "--n-cal", "50"]


def instrument(p: Phases) -> None:
    p.wrap(a2d_eval, "make_adversarial",
           lambda attack, *a, **k: f"adversarial set: {attack}")
    p.wrap(a2d_eval, "_cost_unit", lambda shared, unit:
           f"cost engine {unit[1]}{' (detection mode)' if unit[0].startswith('detq') else ''}")
    p.wrap(a2d_eval, "split_images", "split images (classify the test set)")
    p.wrap(RunStore, "put", "store (checkpoints)")
    p.wrap(a2d_eval, "run_a2d_evaluation", "evaluation (rest: detectors, AUROC, K-NN)")


def main() -> None:
    profile_command(["a2d", "evaluate"], instrument, DEFAULT)


if __name__ == "__main__":
    main()
