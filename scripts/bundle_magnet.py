"""Bundle a MagNet trained by ``adaptive train magnet`` (or randomised MagNet's pool trained by
``adaptive train magnet-pool``): copy its autoencoders into the package's bundled zoo
(``magnet-DATASET-KEY``, or ``magnet-DATASET-pool-I``; developers, from a source checkout) and
write ``defenses/magnet/bundled/DATASET.json`` (or ``DATASET-pool.json``) referring to them.

    python scripts/bundle_magnet.py runs/train-magnet-mnist --name mnist
    python scripts/bundle_magnet.py runs/train-magnet-pool-mnist --name mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adaptive.core.checkpoint import write_json
from adaptive.core.zoo import WEIGHTS_DIR, add_to_zoo
from defenses.magnet.defense import BUNDLED


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="folder holding magnet.json or pool.json")
    ap.add_argument("--name", required=True, help="bundled defense name, e.g. mnist")
    args = ap.parse_args()
    run = Path(args.run)
    is_pool = (run / "pool.json").is_file()
    spec = json.loads((run / ("pool.json" if is_pool else "magnet.json")).read_text())
    stem = f"{args.name}-pool" if is_pool else args.name
    for key, ref in spec["autoencoders"].items():
        zoo_name = (f"magnet-{args.name}-pool-{key[1:]}" if is_pool
                    else f"magnet-{args.name}-{key}")
        add_to_zoo(run / ref, zoo_name, folder=WEIGHTS_DIR)
        spec["autoencoders"][key] = zoo_name
        print(f"zoo: {zoo_name}")
    write_json(BUNDLED / f"{stem}.json", spec)
    print(f"wrote {BUNDLED / f'{stem}.json'}")


if __name__ == "__main__":
    main()
