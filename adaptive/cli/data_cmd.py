"""``adaptive data list``: which data sets are found where."""

from __future__ import annotations

import argparse

from adaptive.cli.common import add_data_root
from adaptive.core.data import data_root, dataset_names, load_dataset
from adaptive.core.errors import ToolkitError


def register(sub) -> None:
    p = sub.add_parser("data", help="show the data sets the toolkit can find")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    ls = what.add_parser("list", help="try each built-in data set and report what loads")
    add_data_root(ls)
    ls.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    print(f"data root: {data_root(args.data_root)}")
    for name in dataset_names():
        for split in ("train", "test"):
            try:
                d = load_dataset(name, split, args.data_root, download=False)
                print(f"  {name:16s} {split:5s} {len(d):6d} images of {d.image_shape}")
            except ToolkitError as e:
                print(f"  {name:16s} {split:5s} unavailable: {e}")
    return 0
