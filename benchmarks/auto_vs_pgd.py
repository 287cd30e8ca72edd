"""What ``--attack auto`` costs against ``pgd-full`` alone, per image, in one run.

    python benchmarks/auto_vs_pgd.py [--n 10] [--kappa 0] [--norm l2|linf] [--threads 1]

Runs the same sweep twice (MNIST, the default defenses none, a2d, magnet, a2d+magnet, the same
images and calibration size) into temporary folders: ``--attack pgd-full`` (with its transfer
check off: auto runs the transferred C&W itself) and ``--attack auto``. The attack phase of
each is timed from the sweep's own log (after A2D's calibration, to the end of the run), and
auto's records say which members ran on each image. Prints seconds per image, the ratio, and
the ASR of both against every defense.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.sweep import SweepConfig, read_records, run_sweep
from defenses.magnet.defense import MagNet


def timed_sweep(cfg: SweepConfig, model, data, magnet, out: Path) -> tuple[float, dict]:
    """(seconds from the end of calibration to the end of the run, the run's summary)."""
    marks = {}

    def log(msg: str) -> None:
        if msg.startswith("sweep:"):
            marks["start"] = time.perf_counter()

    result = run_sweep(cfg, model, data, out, "cpu", magnet=magnet, progress=False, log=log)
    return time.perf_counter() - marks["start"], result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--n-cal", type=int, default=100)
    ap.add_argument("--kappa", type=float, default=0.0)
    ap.add_argument("--norm", choices=("l2", "linf"), default="l2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    magnet = MagNet.load("mnist", model)
    bounds = {"max_linf": 0.3} if args.norm == "linf" else {}
    print(f"MNIST, n {args.n}, kappa {args.kappa:g}, {args.norm}, {args.threads} thread(s)")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for attack in ("pgd-full", "auto"):
            cfg = SweepConfig(model_sha256=meta["sha256"], n=args.n, n_cal=args.n_cal,
                              kappas=[args.kappa], attack=attack, norm=args.norm,
                              transfer_check=False, image_seeds=True, **bounds)
            seconds, result = timed_sweep(cfg, model, data, magnet, Path(tmp) / attack)
            records = read_records(Path(tmp) / attack / "records.jsonl")
            ran = {}
            for r in records:
                for m in r.get("auto", {}).get("members", []):
                    ran[m] = ran.get(m, 0) + 1
            out[attack] = {"seconds": round(seconds, 1),
                           "seconds_per_image": round(seconds / args.n, 2),
                           "asr": {row["defense"]: row["attack_success_rate"]
                                   for row in result["rows"]},
                           **({"images_per_member": ran} if ran else {})}
            print(f"{attack:9s} {seconds:7.1f} s  {seconds / args.n:6.2f} s/image  ASR "
                  + ", ".join(f"{k} {v:.0%}" for k, v in out[attack]["asr"].items())
                  + (f"  members ran on {ran}" if ran else ""))
    ratio = out["auto"]["seconds"] / out["pgd-full"]["seconds"]
    print(f"auto / pgd-full time: {ratio:.2f}x")
    print(json.dumps({"n": args.n, "kappa": args.kappa, "norm": args.norm,
                      "threads": args.threads, **out, "time_ratio_auto_over_pgd_full":
                      round(ratio, 2)}))


if __name__ == "__main__":
    main()
