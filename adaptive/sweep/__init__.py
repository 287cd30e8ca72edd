"""The main job: C&W-kappa (or an adaptive attack) against defense compositions, kappa by kappa
(A2D paper, section 6).

For each kappa, the correctly classified test images chosen for the run are attacked in batches
with C&W-L2 at confidence kappa against the bare classifier (the paper's adaptive attack), or
with an attack on the defended system (``--attack``: C&W or PGD-L2 at the bound, with penalties
for the detectors); each adversarial example is then measured: L2, L-inf, SSIM, its BIM_d
attack cost, every detector's verdict, and its success against every composition, with the
reasons for each failure.

One module per part: ``config`` (settings, defaults, validation), ``images`` (which images),
``records`` (one JSON line per example), ``summary`` (rows and ASR by bound),
``operating_points`` (success at 5 % benign false positives, AUROC), ``checks``
(sanity checks), ``run`` (the loop). Results are never lost: records are appended as each batch
finishes and ``--resume`` skips what is there; the summary and figures are derived from the
records alone, so a resumed run summarises exactly as an uninterrupted one.
"""

from adaptive.sweep.checks import bounded_attack_check, sanity_checks, white_box_against
from adaptive.sweep.config import (
                                   ATTACKS,
                                   DATASET_DEFAULTS,
                                   CleverSettings,
                                   CWSettings,
                                   HardLabelSettings,
                                   PGDSettings,
                                   SweepConfig,
                                   attacked_parts,
                                   parse_kappas,
                                   validate_config,
)
from adaptive.sweep.images import attacked_indices, choose_images, label_pairs, plan_images
from adaptive.sweep.objectives import attack_objective
from adaptive.sweep.operating_points import operating_points, union_thresholds
from adaptive.sweep.records import RECORDS, read_records, record_key, upgrade_record
from adaptive.sweep.run import run_identity, run_sweep
from adaptive.sweep.summary import (
                                   asr_by_bound,
                                   asr_by_l2_bound_row,
                                   bound_grid,
                                   summarize,
                                   write_summary,
)

__all__ = ["ATTACKS", "DATASET_DEFAULTS", "RECORDS", "CWSettings", "CleverSettings",
           "HardLabelSettings",
           "PGDSettings", "SweepConfig", "asr_by_bound", "asr_by_l2_bound_row",
           "attack_objective", "attacked_indices", "attacked_parts", "bound_grid",
           "bounded_attack_check", "choose_images", "label_pairs", "operating_points",
           "parse_kappas",
           "plan_images", "read_records", "record_key", "run_identity", "run_sweep",
           "sanity_checks", "summarize", "union_thresholds", "upgrade_record",
           "validate_config",
           "white_box_against", "write_summary"]
