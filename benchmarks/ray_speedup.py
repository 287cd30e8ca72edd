"""Sweeps on Ray against the serial sweep, on this machine: the speed-up of 2 workers over 1
and the overhead per unit.

    python benchmarks/ray_speedup.py [--n 40] [--batch 10] [--kappa 0,5,10,15,20] [--units 200]

Runs the same MNIST sweep (the default defenses, the paper's C&W at every kappa; n images in
batches of --batch, so kappas x batches units) four ways, each into a fresh folder and timed
from the command to its summary: serially with 1 and with 2 torch threads, and on a fresh local
Ray instance with 1 and with 2 worker CPUs (one torch thread per unit); checks that every run
gives the same records; prints the times and the ratios. Then the overhead of a unit on Ray:
--units empty units through the executor (2 workers), per unit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from adaptive.cli.main import main as adaptive
from adaptive.core.executor import ExecutorSettings, RayExecutor


def _records(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return {(r["kappa"], r["index"], r.get("target")): r for r in rows}


def _asr(rows: list[dict]) -> list:
    return [(r["kappa"], r["defense"], r["attack_success_rate"]) for r in rows]


def _empty_unit(shared, unit):
    return unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--kappa", default="0,5,10,15,20")
    ap.add_argument("--units", type=int, default=200)
    args = ap.parse_args()
    base = ["sweep", "--n", str(args.n), "--batch", str(args.batch), "--kappa", args.kappa,
            "--no-progress"]
    n_units = len(args.kappa.split(",")) * -(-args.n // args.batch)
    ways = [("serial, 1 thread", 1, []), ("serial, 2 threads", 2, []),
            ("ray, 1 worker", 1, ["--executor", "ray", "--ray-cpus", "1"]),
            ("ray, 2 workers", 1, ["--executor", "ray", "--ray-cpus", "2"])]
    times, found, rows = {}, {}, {}
    devnull = open(os.devnull, "w")
    with tempfile.TemporaryDirectory() as tmp:
        for name, threads, extra in ways:
            torch.set_num_threads(threads)
            out = Path(tmp) / name.replace(" ", "").replace(",", "-")
            t = time.perf_counter()
            stdout, sys.stdout = sys.stdout, devnull
            try:
                rc = adaptive(base + ["--out", str(out)] + extra)
            finally:
                sys.stdout = stdout
            times[name] = time.perf_counter() - t
            assert rc == 0, f"{name}: exit {rc}"
            found[name] = _records(out)
            rows[name] = json.loads((out / "summary.json").read_text())["rows"]
            print(f"{name:>18}: {times[name]:7.1f} s", flush=True)
    # Ray's units run on one torch thread each: exactly the serial run's records on 1 thread;
    # 2 threads sum in another order (the last bits of scores differ), compared by summary
    same = all(found[k] == found["serial, 1 thread"] for k in found if k != "serial, 2 threads")
    print(f"\n{n_units} units ({args.kappa} x {-(-args.n // args.batch)} batches of "
          f"{args.batch}), {args.n} images; every Ray way the records of the serial run on 1 "
          f"thread: {same}; every way the same ASR: "
          f"{all(_asr(r) == _asr(rows['serial, 1 thread']) for r in rows.values())}")
    speedup = times["ray, 1 worker"] / times["ray, 2 workers"]
    print(f"speed-up of 2 Ray workers over 1: {speedup:.2f}x")
    print(f"2 Ray workers vs serial on 2 threads: "
          f"{times['serial, 2 threads'] / times['ray, 2 workers']:.2f}x")
    print(f"1 Ray worker vs serial on 1 thread: "
          f"{times['serial, 1 thread'] / times['ray, 1 worker']:.2f}x "
          f"(the cost of Ray: start, workers loading the model and defenses)")

    ex = RayExecutor(ExecutorSettings(kind="ray", local_cpus=2))
    try:
        shared = {"calibration": torch.zeros(1000)}
        list(ex.map(_empty_unit, shared, range(20)))  # workers started, torch imported
        t = time.perf_counter()
        got = sorted(u for u, _ in ex.map(_empty_unit, shared, range(args.units)))
        per_unit = (time.perf_counter() - t) / args.units
    finally:
        ex.close()
    assert got == list(range(args.units))
    print(f"overhead per unit on Ray (empty units, 2 warm workers): {per_unit * 1e3:.1f} ms")
    if not same:
        sys.exit("Ray gave other records than the serial run")


if __name__ == "__main__":
    main()
