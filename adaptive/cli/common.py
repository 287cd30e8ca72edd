"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

from adaptive.core.runtime import DEVICE_CHOICES, MAX_SEED


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the data sets (default: $ADAPTIVE_DATA, else "
                        "~/.cache/adaptive/data)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                   help="where to compute; auto picks CUDA when present (default: auto)")


def seed_value(text: str) -> int:
    """A seed: an integer from 0 to :data:`MAX_SEED`."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SEED}, got {text}")
    return v


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=seed_value, default=default,
                   help=f"random seed, for repeatable runs, 0 to {MAX_SEED} "
                        f"(default: {default})")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every long-running command shares: --seed, --device, --data-root,
    --no-progress."""
    add_seed(p)
    add_device(p)
    add_data_root(p)
    add_progress(p)


def _float(text: str) -> float:
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def number(text: str) -> float:
    """A finite float that may be written as a fraction, e.g. 8/255."""
    v = _float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def positive_number(text: str) -> float:
    """A finite float > 0 (a step size, a budget, a factor)."""
    v = number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def nonnegative_number(text: str) -> float:
    """A finite float >= 0 (a confidence margin)."""
    v = number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def bound_number(text: str) -> float:
    """A distortion bound: a float > 0, or inf for no bound."""
    v = _float(text)
    if math.isnan(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 (inf: no bound), got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {v}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def dataset_for_model(requested: str | None, model_ref: str, meta: dict, default: str) -> str:
    """The data set to use with a model: the requested one (checked to exist and to match the
    model's training data; .npz files are the user's call) or the default."""
    from adaptive.core.data import check_dataset_name, dataset_family, is_npz_name
    from adaptive.core.errors import ToolkitError

    name = check_dataset_name(requested or default)
    if dataset_family(name) != meta["dataset"] and not is_npz_name(name):
        raise ToolkitError(f"model {model_ref!r} was trained on {meta['dataset']}, not {name}; "
                           "pick a matching --dataset")
    return name


def add_model_options(p: argparse.ArgumentParser, n_default: int) -> None:
    """--model, --dataset and --n (test images), as the per-image studies take them."""
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--dataset", help="default: mnist-bundled for MNIST models, else the "
                                     "model's data set")
    p.add_argument("--n", type=positive_int, default=n_default,
                   help=f"images (default {n_default})")


def model_and_dataset(args: argparse.Namespace, device):
    """(model, its metadata, the data set name) for --model / --dataset."""
    from adaptive.core.zoo import load_model

    model, meta = load_model(args.model, device)
    default = "mnist-bundled" if meta["dataset"] == "mnist" else meta["dataset"]
    return model, meta, dataset_for_model(args.dataset, args.model, meta, default)


def attack_list(text: str) -> list[str]:
    """--compare: comma-separated names of adversarial-set attacks, or none."""
    from adaptive.evaluations.adversarial_sets import ATTACKS

    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    bad = [t for t in names if t not in ATTACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown attack(s) {', '.join(bad) or text!r}; choose from {', '.join(ATTACKS)} "
            "or none")
    return list(dict.fromkeys(names))


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """--executor local|ray and the Ray settings (see docs/scale-out.md)."""
    g = p.add_argument_group("where the work units run")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: in this process (default); ray: as Ray tasks, on a local Ray "
                        "instance or the cluster at --ray-address (pip install "
                        "\"adaptive-a2d[ray]\"); results are the same")
    g.add_argument("--ray-address", metavar="HOST:PORT|auto",
                   help="an existing Ray cluster (default: start a local instance)")
    g.add_argument("--cpus-per-task", type=positive_number, default=1.0,
                   help="CPUs Ray reserves per unit (default: 1; the unit's torch threads)")
    g.add_argument("--gpus-per-task", type=nonnegative_number, default=0.0,
                   help="GPUs Ray reserves per unit, fractions allowed (e.g. 0.25: four units "
                        "share a GPU); > 0 runs the units on CUDA (default: 0, the CPU)")
    g.add_argument("--ray-cpus", type=positive_int, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")


def executor_settings(args: argparse.Namespace):
    """The ExecutorSettings of --executor and its options (checked)."""
    from adaptive.core.executor import ExecutorSettings

    return ExecutorSettings(kind=args.executor, address=args.ray_address,
                            cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                            local_cpus=args.ray_cpus)

