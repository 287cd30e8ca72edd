"""The audits of three kinds of defense, with their report pages and screenshots, into
reports/audit/: a zoo composition with detectors (A2D + MagNet, MNIST), a wrapped random
defense (the suite's random shift and flip, CIFAR-10) and a wrapped masked one (the suite's
input discretisation, CIFAR-10). Each is resumable: the run folders are under runs/audit-examples/.

    python scripts/audit_examples.py [--n 20] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import adaptive
from adaptive.core.zoo import load_model
from defenses.suite import make_suite

OUT = REPO / "reports" / "audit"
RUNS = REPO / "runs" / "audit-examples"


def examples(n: int) -> dict:
    """name -> (what it is, the audit's arguments)."""
    cifar, _ = load_model("cifar-cnn")
    suite = make_suite(cifar.eval(), "cifar10", "cpu")
    return {
        "a2d-magnet-mnist": ("zoo composition with detectors: A2D + MagNet on mnist-cnn",
                             dict(defense="a2d+magnet", model="mnist-cnn",
                                  threats=["linf:0.3"], n=n)),
        "random-shift-cifar": ("wrapped random defense: cifar-cnn behind a random 2-pixel "
                               "shift and flip", dict(defense=suite["random-shift"],
                                                      model="cifar-cnn",
                                                      threats=["linf:8/255"], n=n)),
        "discretised-cifar": ("wrapped masked defense: cifar-cnn behind input rounding",
                              dict(defense=suite["discretised"], model="cifar-cnn",
                                   threats=["linf:8/255"], n=n)),
    }


def screenshot(page: Path, png: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium: no screenshot")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,4200", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    rows = json.loads((OUT / "audits.json").read_text()) if (OUT / "audits.json").is_file() \
        else {}
    for name, (what, kwargs) in examples(args.n).items():
        if args.only and name not in args.only:
            continue
        folder = RUNS / name
        started = time.perf_counter()
        result = adaptive.audit(**kwargs, out=folder, resume=folder.exists(), progress=False,
                                command=f"python scripts/audit_examples.py --n {args.n} "
                                        f"--only {name}")
        seconds = time.perf_counter() - started
        keep = OUT / name
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "report.html", keep / "report.html")
        shutil.copy(folder / "audit.json", keep / "audit.json")
        screenshot(keep / "report.html", keep / "screenshot.png")
        section = result.sections[0]
        rows[name] = {"what": what, "threat": section["threat"]["label"],
                      "seconds_this_call": seconds, "seconds": section["seconds"],
                      "defenses": [{k: d[k] for k in ("name", "robust_accuracy", "interval",
                                                      "broken_by")}
                                   for d in section["defenses"]],
                      "red_flags": [f["flag"] + " (" + f["defense"] + ")"
                                    for f in result.flags()],
                      "failed_checks": [c["kind"] + ": " + c["name"]
                                        for c in result.failed_checks()]}
        (OUT / "audits.json").write_text(json.dumps(rows, indent=1))
        print(f"{name}: {result.verdict_line()} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
