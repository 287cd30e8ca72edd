"""``adaptive zoo list|add``."""

from __future__ import annotations

import argparse

from adaptive.core.zoo import add_to_zoo, zoo_entries


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list the zoo's models (bundled and your own)")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    ls = what.add_parser("list", help="name, data set, accuracy and training of each model")
    ls.add_argument("--json", action="store_true", help="print the metadata as JSON")
    ls.set_defaults(run=run_list)
    add = what.add_parser("add", help="copy a trained checkpoint into your zoo "
                                      "($ADAPTIVE_CACHE/zoo, default ~/.cache/adaptive/zoo); "
                                      "it is then usable by name")
    add.add_argument("checkpoint", help="path of a checkpoint (e.g. runs/train-mnist/model)")
    add.add_argument("--name", required=True, help="zoo name, e.g. mnist-cnn")
    add.set_defaults(run=run_add)


def _accuracy_text(meta: dict) -> str:
    acc = meta.get("accuracy", {})
    parts = []
    if "clean" in acc:
        parts.append(f"clean {100 * acc['clean']:.2f}% ({acc.get('split', '?')}, "
                     f"n={acc.get('n', '?')})")
    robust = meta.get("robust_accuracy")
    if robust:
        parts.append(f"robust {100 * robust['accuracy']:.2f}% ({robust.get('threat', '?')}, "
                     f"{robust.get('attack', '?')}, {robust.get('split', '?')}, "
                     f"n={robust.get('n', '?')})")
    return "; ".join(parts) or "not measured"


def run_list(args: argparse.Namespace) -> int:
    entries = zoo_entries()
    if args.json:
        import json

        print(json.dumps([{k: v for k, v in e.items() if k != "_path"} for e in entries],
                         indent=2))
        return 0
    if not entries:
        print("no models in the zoo")
        return 0
    for e in entries:
        cmd = e.get("training", {}).get("command", "?")
        kind = e["format"].split("/")[-1].rsplit("-", 1)[0]
        print(f"{e['name']}  ({kind})\n  dataset:  {e['dataset']}\n"
              f"  arch:     {e['architecture']}")
        if kind == "classifier":
            print(f"  accuracy: {_accuracy_text(e)}")
        for key, value in e.get("summary", {}).items():
            print(f"  {key + ':':9s} {value}")
        print(f"  trained:  {cmd}")
        for key in ("accuracy", "robust_accuracy"):
            if e.get(key, {}).get("command"):
                print(f"  measured: {e[key]['command']}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    path = add_to_zoo(args.checkpoint, args.name)
    print(f"added {args.name}: {path}")
    return 0
