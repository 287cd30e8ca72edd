"""Bundle a MagNet trained by ``adaptive train magnet``: copy its autoencoders into the
package's bundled zoo (``magnet-DATASET-KEY``, developers, from a source checkout) and write ``defenses/magnet/bundled/DATASET.json`` referring to them.

    python scripts/bundle_magnet.py runs/train-magnet-mnist --name mnist
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
    ap.add_argument("run", help="folder holding magnet.json")
    ap.add_argument("--name", required=True, help="bundled defense name, e.g. mnist")
    args = ap.parse_args()
    run = Path(args.run)
    spec = json.loads((run / "magnet.json").read_text())
    for key, ref in spec["autoencoders"].items():
        zoo_name = f"magnet-{args.name}-{key}"
        add_to_zoo(run / ref, zoo_name, folder=WEIGHTS_DIR)
        spec["autoencoders"][key] = zoo_name
        print(f"zoo: {zoo_name}")
    write_json(BUNDLED / f"{args.name}.json", spec)
    print(f"wrote {BUNDLED / f'{args.name}.json'}")


if __name__ == "__main__":
    main()
