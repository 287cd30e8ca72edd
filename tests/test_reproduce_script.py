"""scripts/reproduce.py's plan: chosen steps in the given order, full checks on sweeps only,
unknown step names refused (dry runs: nothing is executed)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"


def dry_run(tmp_path, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--n", "7", "--runs", str(tmp_path),
                           "--dry-run", *args], capture_output=True, text=True)


def test_steps_in_the_given_order_with_full_checks_on_sweeps(tmp_path):
    out = dry_run(tmp_path, "--steps", "mnist-costs,mnist-sweep-cw", "--checks", "full",
                  "--no-report")
    assert out.returncode == 0, out.stderr
    runs = [line for line in out.stdout.splitlines() if line.startswith("[run]")]
    assert len(runs) == 2
    assert "adaptive costs" in runs[0] and "--checks" not in runs[0]
    assert "adaptive sweep" in runs[1] and runs[1].endswith("--checks full")
    assert "[report]" not in out.stdout


def test_unknown_step_is_a_clear_error(tmp_path):
    out = dry_run(tmp_path, "--steps", "mnist-nope")
    assert out.returncode == 2
    assert "unknown step(s) mnist-nope" in out.stderr and "mnist-sweep-cw" in out.stderr
