"""Where the default ``adaptive sweep`` spends its time, by phase (issue [6/7]).

    OMP_NUM_THREADS=2 python benchmarks/profile_sweep.py [-- SWEEP ARGS...]

Runs ``adaptive sweep`` in this process (into a temporary folder unless ``--out`` is among the
sweep arguments) with timers around the functions that make up each phase, then prints each
phase's own wall time (nested phases subtracted), its share, and the import time before it.
"""

from __future__ import annotations

import time

T_IMPORT = time.perf_counter()

from phases import Phases, profile_command  # noqa: E402  (benchmarks/ is the script's folder)

import adaptive.figures  # noqa: E402
import adaptive.sweep.run as sweep_run  # noqa: E402
from adaptive.attacks.cw import CarliniWagnerL2  # noqa: E402
from adaptive.core.store import Records, RunStore  # noqa: E402
from defenses.a2d.cost import CostEngine  # noqa: E402
from defenses.magnet import detectors as magnet_detectors  # noqa: E402
from defenses.magnet.defense import MagNet  # noqa: E402

T_IMPORT = time.perf_counter() - T_IMPORT


def instrument(p: Phases) -> None:
    """The phases of a sweep, from loading to figures."""
    p.wrap(sweep_run, "plan_images", "plan images (classify the test set)")
    p.wrap(sweep_run, "_build_judges", "build detectors (rest)")
    p.wrap(CostEngine, "run", "A2D BIM_d cost engine")
    p.wrap(CarliniWagnerL2, "run", "C&W attack")
    p.wrap(sweep_run.BoundedPGD, "run", "bounded PGD attack")
    p.wrap(magnet_detectors._ThresholdDetector, "score", "MagNet detector scores")
    p.wrap(MagNet, "load", "load MagNet")
    p.wrap(sweep_run._Judges, "measure", "judge examples (rest)")
    p.wrap(sweep_run, "attack_indicators", "indicators of attack failure")
    p.wrap(sweep_run, "batch_records", "build records")
    p.wrap(sweep_run, "predict_logits", "classify examples")
    p.wrap(sweep_run.metrics, "ssim", "SSIM")
    p.wrap(Records, "append", "records (durable writes)")
    p.wrap(RunStore, "put", "store (checkpoints)")
    p.wrap(sweep_run, "clever", "CLEVER")
    for name in ("summarize", "asr_by_bound", "operating_points", "sanity_checks",
                 "write_summary"):
        p.wrap(sweep_run, name, "summary, ASR by bound, checks")
    p.wrap(sweep_run, "bounded_attack_check", "bounded-attack sanity check")
    p.wrap(sweep_run, "diagnostics", "diagnostics (count indicators)")
    p.wrap(sweep_run, "model_flags", "model flags (AutoAttack's)")
    p.wrap(adaptive.figures, "sweep_figures", "figures")
    p.wrap(sweep_run, "run_sweep", "sweep (rest)")


def main() -> None:
    print(f"imports before the run: {T_IMPORT:.1f} s")
    profile_command(["sweep"], instrument)


if __name__ == "__main__":
    main()
