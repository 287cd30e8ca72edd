"""The model zoo: named checkpoints, bundled in the package or added by the user.

Every ``adaptive/core/weights/NAME.json`` + ``NAME.pt`` pair (written by ``adaptive train`` and
bundled by the developers, ``scripts/bundle_model.py``) is a zoo entry called ``NAME``; so is
every pair in the user's zoo folder, ``$ADAPTIVE_CACHE/zoo`` (default ``~/.cache/adaptive/zoo``),
where ``adaptive zoo add`` copies checkpoints: nothing is ever written into an installed
package by a user command. A bundled name wins over a user entry of the same name.
``load_model`` also accepts a path to any toolkit checkpoint, so users' own models work wherever
a zoo name does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from adaptive.core.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_state_dict,
    metadata_path,
    read_metadata,
    write_json,
)
from adaptive.core.data import cache_dir
from adaptive.core.errors import ToolkitError
from adaptive.core.models import ImageClassifier
from adaptive.core.worker_cache import worker_cached

WEIGHTS_DIR = Path(__file__).parent / "weights"  # bundled entries


def user_zoo_dir() -> Path:
    """Where ``adaptive zoo add`` puts the user's entries."""
    return cache_dir() / "zoo"


def entry_path(name: str) -> Path | None:
    """``FOLDER/NAME`` of the zoo entry ``name`` (bundled first), or None."""
    for folder in (WEIGHTS_DIR, user_zoo_dir()):
        if (folder / f"{name}.json").is_file():
            return folder / name
    return None


def zoo_names(fmt: str | None = FORMAT) -> list[str]:
    """Names of the zoo's checkpoints of format ``fmt`` (None: every kind), bundled ones
    first."""
    names = []
    for folder in (WEIGHTS_DIR, user_zoo_dir()):
        for p in sorted(folder.glob("*.json")):
            if p.stem in names:
                continue
            try:
                read_metadata(p, fmt)
            except ToolkitError:
                continue
            names.append(p.stem)
    return names


def zoo_entries() -> list[dict]:
    """Metadata of every zoo checkpoint (classifiers and defense models), with ``name``."""
    return [{"name": n, **read_metadata(entry_path(n), None)} for n in zoo_names(None)]


def resolve_model_path(name_or_path: str) -> Path:
    if name_or_path in zoo_names():
        return entry_path(name_or_path)
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


def load_model_checked(name_or_path: str, sha256: str, device: torch.device | str = "cpu"
                       ) -> ImageClassifier:
    """``load_model``, refused unless the weights hash to ``sha256``: a worker on another
    machine must compute with the model the run was started with."""
    model, meta = load_model(name_or_path, device)
    if sha256 and meta["sha256"] != sha256:
        raise ToolkitError(f"the model {name_or_path!r} here (sha256 {meta['sha256'][:12]}) is "
                           f"not the one the run uses ({sha256[:12]}); install the same weights "
                           "on every machine")
    return model


@dataclass
class ModelRef:
    """A model as work units receive it: the model itself (``model``, in this process), or the
    zoo name / checkpoint and hash from which a Ray worker loads it once (checked) on
    ``device``."""

    name: str
    sha256: str
    device: str = "cpu"
    model: nn.Module | None = None

    def get(self) -> nn.Module:
        if self.model is not None:
            return self.model
        return worker_cached(("model", self.name, self.sha256, self.device),
                             lambda: load_model_checked(self.name, self.sha256, self.device))


def add_to_zoo(checkpoint: str | Path, name: str, measured: dict | None = None,
               folder: Path | None = None) -> Path:
    """Copy a finished checkpoint into the user's zoo (``folder``: another zoo folder, e.g. the
    package's bundled weights for developers) under ``name``."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ToolkitError(f"bad zoo name {name!r}: use letters, digits, '-' and '_'")
    folder = Path(folder) if folder is not None else user_zoo_dir()
    if folder != WEIGHTS_DIR and (WEIGHTS_DIR / f"{name}.json").is_file():
        raise ToolkitError(f"{name!r} is a bundled model; choose another name")
    meta = read_metadata(checkpoint, None)
    src = Path(meta.pop("_path")).with_name(meta["weights"])
    load_state_dict(src, meta["sha256"])  # verifies the hash before copying
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, folder / f"{name}.pt")
    meta["weights"] = f"{name}.pt"
    if measured:
        meta.update(measured)
    write_json(folder / f"{name}.json", meta)
    return folder / f"{name}.json"


def record_measurement(name: str, key: str, value: dict) -> None:
    """Store a measured figure (e.g. ``accuracy``) in a zoo entry's metadata, weights untouched
    (for a bundled entry, in the package folder: a developer's act, from a source checkout)."""
    if name not in zoo_names(None):
        raise ToolkitError(f"--record needs a zoo model name; {name!r} is not one")
    path = entry_path(name)
    meta = read_metadata(path, None)
    meta.pop("_path")
    meta[key] = value
    write_json(path.with_name(f"{name}.json"), meta)
