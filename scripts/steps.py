"""One step of a script that chains `adaptive` commands (reproduce.py, defense_zoo.py): skipped
when finished, continued with --resume when interrupted, its wall time appended to
RUNS/timings.jsonl."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_step(name: str, command: list[str], folder: Path, finished: Path, runs: Path,
             resumable: bool = True, dry_run: bool = False) -> int:
    """Run ``command`` (a full ``adaptive ...`` argument list) unless ``finished`` exists;
    with ``--resume`` when ``folder`` exists and the command can resume. Returns its exit
    status (0 when skipped or ``dry_run``); a failure is reported on stderr."""
    if finished.is_file():
        print(f"[done] {name}", flush=True)
        return 0
    if folder.exists() and resumable:
        command = [*command, "--resume"]
    print(f"[run] {shlex.join(command)}", flush=True)
    if dry_run:
        return 0
    t0 = time.time()
    rc = subprocess.call(command)
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / "timings.jsonl", "a") as f:
        f.write(json.dumps({"step": name, "command": shlex.join(command), "rc": rc,
                            "seconds": round(time.time() - t0, 1)}) + "\n")
    if rc != 0:
        print(f"step {name} failed (exit {rc}); fix it and rerun: finished steps are kept",
              file=sys.stderr)
    return rc


def run_sweeps(steps: list[tuple[str, list[str]]], runs: Path, device: str = "auto",
               extra: list[str] | None = None, dry_run: bool = False) -> int:
    """Run each ``(name, adaptive arguments)`` sweep of ``steps`` into ``runs/name`` (finished
    when its summary.json exists), on ``device``, with ``extra`` arguments; stops at the
    first failure and returns its exit status (0 when all finished)."""
    for name, cmd in steps:
        folder = runs / name
        full = ["adaptive", *cmd, "--out", str(folder), "--device", device, "--no-progress",
                *(extra or [])]
        rc = run_step(name, full, folder, folder / "summary.json", runs, dry_run=dry_run)
        if rc != 0:
            return rc
    return 0
