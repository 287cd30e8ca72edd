"""Where the default ``adaptive sweep`` spends its time, by phase (issue [6/7]).

    OMP_NUM_THREADS=2 python benchmarks/profile_sweep.py [-- SWEEP ARGS...]

Runs ``adaptive sweep`` in this process (into a temporary folder unless ``--out`` is among the
sweep arguments) with timers around the functions that make up each phase, then prints each
phase's own wall time (nested phases subtracted), its share, and the import time before it.
Last, the model passes of C&W and of the BIM_d engine and what they cost at the model's own
speed (``model_floor.py``, at the sweep's batch of 50): the least time any implementation
making the same passes needs.
"""

from __future__ import annotations

import time

T_IMPORT = time.perf_counter()

from model_floor import pass_costs  # noqa: E402  (benchmarks/ is the script's folder)
from phases import Phases, profile_command  # noqa: E402

import adaptive.sweep.run as sweep_run  # noqa: E402
from adaptive.attacks.cw import CarliniWagnerL2  # noqa: E402
from adaptive.core.data import load_dataset  # noqa: E402
from adaptive.core.store import Records, RunStore  # noqa: E402
from adaptive.core.zoo import load_model  # noqa: E402
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
    p.wrap(sweep_run, "sweep_figures", "figures")
    p.wrap(sweep_run, "run_sweep", "sweep (rest)")


# Forward + input-gradient passes (F+G) and forward passes (F) per image, by attack
PASSES = {"C&W": [0, 0], "A2D BIM_d": [0, 0]}


def count_passes() -> list:
    """Tally each attack's model passes from its results (C&W: one F+G per Adam step; an
    engine: one F+G per query but the last, which only looks)."""
    def counted(owner, attr, key, tally):
        original = getattr(owner, attr)

        def run(*args, **kwargs):
            result = original(*args, **kwargs)
            fg, f = tally(result)
            PASSES[key][0] += fg
            PASSES[key][1] += f
            return result
        setattr(owner, attr, run)
        return owner, attr, original

    return [counted(CarliniWagnerL2, "run", "C&W",
                    lambda r: (int(r.gradient_steps.sum()), 0)),
            counted(CostEngine, "run", "A2D BIM_d",
                    lambda r: (int(r.queries.sum()) - len(r.queries), len(r.queries)))]


def main() -> None:
    print(f"imports before the run: {T_IMPORT:.1f} s")
    patched = count_passes()
    try:
        profile_command(["sweep"], instrument)
    finally:
        for owner, attr, original in patched:
            setattr(owner, attr, original)
    model, _ = load_model("mnist-cnn")
    fg, f = pass_costs(model, load_dataset("mnist-bundled").x()[:50])
    print(f"model passes (mnist-cnn, batch 50: F+G {fg * 1e6:.0f} us, F {f * 1e6:.0f} us per "
          f"image, measured now):")
    total = 0.0
    for key, (n_fg, n_f) in PASSES.items():
        floor = n_fg * fg + n_f * f
        total += floor
        print(f"  {key:<10} {n_fg:>9,} F+G + {n_f:>7,} F = {floor:6.1f} s at the model's speed")
    print(f"  together {total:.1f} s: no implementation making these passes on this machine "
          f"runs the sweep faster")


if __name__ == "__main__":
    main()
