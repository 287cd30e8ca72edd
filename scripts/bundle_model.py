"""Bundle a trained checkpoint with the package (developers, from a source checkout): copy it
into ``adaptive/core/weights`` as a zoo entry. Users add their own with ``adaptive zoo add``,
which writes to their zoo folder instead.

    python scripts/bundle_model.py runs/train-mnist-cnn/model --name mnist-cnn
"""

from __future__ import annotations

import argparse

from adaptive.core.zoo import WEIGHTS_DIR, add_to_zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="path of a checkpoint (e.g. runs/train-mnist/model)")
    ap.add_argument("--name", required=True, help="zoo name, e.g. mnist-cnn")
    args = ap.parse_args()
    print(f"bundled: {add_to_zoo(args.checkpoint, args.name, folder=WEIGHTS_DIR)}")


if __name__ == "__main__":
    main()
