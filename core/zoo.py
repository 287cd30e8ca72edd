"""The model zoo: named checkpoints shipped inside the package.

Every ``core/weights/NAME.json`` + ``NAME.pt`` pair written by ``adaptive train classifier`` (and
copied here by ``adaptive zoo add``) is a zoo entry called ``NAME``. ``load_model`` also accepts a
path to any toolkit checkpoint, so users' own models work wherever a zoo name does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from core.checkpoint import (FORMAT, load_checkpoint, load_state_dict, metadata_path,
                             read_metadata, write_json)
from core.errors import ToolkitError
from core.models import ImageClassifier

WEIGHTS_DIR = Path(__file__).parent / "weights"


def zoo_names(fmt: str | None = FORMAT) -> list[str]:
    """Names of the bundled checkpoints of format ``fmt`` (None: every kind)."""
    names = []
    for p in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            read_metadata(p, fmt)
        except ToolkitError:
            continue
        names.append(p.stem)
    return names


def zoo_entries() -> list[dict]:
    """Metadata of every bundled checkpoint (classifiers and defense models), with ``name``."""
    return [{"name": n, **read_metadata(WEIGHTS_DIR / n, None)} for n in zoo_names(None)]


def resolve_model_path(name_or_path: str) -> Path:
    if name_or_path in zoo_names():
        return WEIGHTS_DIR / name_or_path
    p = Path(name_or_path).expanduser()
    if metadata_path(p).is_file() or p.with_suffix(".pt").is_file() or p.is_file():
        return p
    known = ", ".join(zoo_names()) or "(none bundled)"  # classifiers
    raise ToolkitError(f"unknown model {name_or_path!r}: not a zoo name ({known}) and no "
                       "checkpoint at that path")


def load_model(name_or_path: str, device: torch.device | str = "cpu"
               ) -> tuple[ImageClassifier, dict]:
    """A zoo model (or a checkpoint path) in eval mode, with its metadata."""
    model, meta = load_checkpoint(resolve_model_path(name_or_path), device)
    meta.setdefault("name", name_or_path)
    return model, meta


def add_to_zoo(checkpoint: str | Path, name: str, measured: dict | None = None) -> Path:
    """Copy a finished checkpoint into the package's weights folder under ``name``."""
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ToolkitError(f"bad zoo name {name!r}: use letters, digits, '-' and '_'")
    meta = read_metadata(checkpoint, None)
    src = Path(meta.pop("_path")).with_name(meta["weights"])
    load_state_dict(src, meta["sha256"])  # verifies the hash before copying
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, WEIGHTS_DIR / f"{name}.pt")
    meta["weights"] = f"{name}.pt"
    if measured:
        meta.update(measured)
    write_json(WEIGHTS_DIR / f"{name}.json", meta)
    return WEIGHTS_DIR / f"{name}.json"


def record_measurement(name: str, key: str, value: dict) -> None:
    """Store a measured figure (e.g. ``accuracy``) in a zoo entry's metadata, weights untouched."""
    if name not in zoo_names(None):
        raise ToolkitError(f"--record needs a zoo model name; {name!r} is not one")
    meta = read_metadata(WEIGHTS_DIR / name, None)
    meta.pop("_path")
    meta[key] = value
    write_json(WEIGHTS_DIR / f"{name}.json", meta)
