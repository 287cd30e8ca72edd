"""Write adaptive/core/assets/mnist_test_2000.npz: the first N MNIST test images, from the
original files.

    python scripts/make_bundled_mnist.py --data-root ../shared/data [--n 2000]

The bundled subset lets the main job run offline on a fresh machine with no data folder.
Its provenance (source files' sha256 and this command) is stored inside the file.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from adaptive.core.data import BUNDLED_MNIST, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", default=str(BUNDLED_MNIST))
    args = ap.parse_args()
    test = load_dataset("mnist", "test", args.data_root, download=False)
    x = test.images[: args.n].permute(0, 2, 3, 1).numpy()  # uint8 NHWC
    y = test.labels[: args.n].numpy().astype(np.int64)
    raw = Path(args.data_root) / "MNIST" / "raw"
    sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(raw.glob("t10k-*"))}
    source = (f"first {args.n} images of the MNIST test set (t10k), original order; made by "
              f"'python scripts/make_bundled_mnist.py --n {args.n}' from {sources}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x=x, y=y, num_classes=np.int64(10), source=np.array(source))
    print(f"wrote {args.out}: {x.shape} {np.bincount(y, minlength=10).tolist()}")


if __name__ == "__main__":
    main()
