"""Checkpoints: a ``state_dict`` file plus a JSON metadata file beside it.

``NAME.pt`` holds only tensors and is read with ``torch.load(..., weights_only=True)``;
``NAME.json``
records the architecture and its arguments, the data set, the command that trained it, the
measured accuracy and the sha256 of ``NAME.pt``, which is checked before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from adaptive.core.errors import ToolkitError
from adaptive.core.models import build_model

FORMAT = "adaptive-toolkit/classifier-v1"
FORMAT_PREFIX = "adaptive-toolkit/"  # other kinds (e.g. MagNet's autoencoder-v1) share the layout


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def metadata_path(path: str | os.PathLike) -> Path:
    """Accept ``NAME``, ``NAME.pt`` or ``NAME.json`` and return the metadata path."""
    p = Path(path).expanduser()
    if p.suffix in (".pt", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json")


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, architecture: str,
                    arch_kwargs: dict, dataset: str, fmt: str = FORMAT, **metadata) -> dict:
    """Write ``path.pt`` and ``path.json``; returns the metadata written."""
    meta_file = metadata_path(path)
    weights = meta_file.with_suffix(".pt")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save(state, weights)
    meta = {"format": fmt, "architecture": architecture, "arch_kwargs": arch_kwargs,
            "dataset": dataset, "input_shape": list(model.input_shape),
            **({"num_classes": model.num_classes} if hasattr(model, "num_classes") else {}),
            **metadata,
            "weights": weights.name, "sha256": sha256_file(weights)}
    write_json(meta_file, meta)
    return meta


def read_metadata(path: str | os.PathLike, fmt: str | None = FORMAT) -> dict:
    """The metadata of a checkpoint of format ``fmt`` (None: any toolkit format)."""
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        weights = meta_file.with_suffix(".pt")
        hint = (f"{weights} has no metadata file {meta_file.name}; it does not look like a "
                "checkpoint written by this toolkit" if weights.is_file()
                else f"no checkpoint at {meta_file.with_suffix('')} (.pt/.json)")
        raise ToolkitError(hint)
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise ToolkitError(f"cannot read checkpoint metadata {meta_file}: {e}") from e
    found = meta.get("format", "") if isinstance(meta, dict) else ""
    if not str(found).startswith(FORMAT_PREFIX) or (fmt is not None and found != fmt):
        raise ToolkitError(f"{meta_file} is not a toolkit checkpoint of format {fmt or 'any'!r}"
                           f" (found {found or 'none'!r}); train it with the toolkit's "
                           "'adaptive train' commands")
    check_metadata_fields(meta, meta_file)
    meta["_path"] = str(meta_file)
    return meta


# field -> (type, what it must be), checked before any field is used
_FIELDS = {"architecture": (str, "a name"), "arch_kwargs": (dict, "an object"),
           "dataset": (str, "a data set name"), "weights": (str, "a file name"),
           "sha256": (str, "a hex digest")}


def check_metadata_fields(meta: dict, meta_file: Path) -> None:
    """Every field the loader uses, present and of the right type: damaged or hand-edited
    metadata gets one error naming the field. ``weights`` must name a file beside the
    metadata (never a path elsewhere)."""
    for key, (kind, what) in _FIELDS.items():
        if key not in meta:
            raise ToolkitError(f"{meta_file} lacks the field {key!r}; the metadata is damaged")
        if not isinstance(meta[key], kind):
            raise ToolkitError(f"{meta_file}: field {key!r} must be {what}, got "
                               f"{type(meta[key]).__name__}; the metadata is damaged")
    w = meta["weights"]
    if not w or w != Path(w).name or w in (".", "..") or "\\" in w:
        raise ToolkitError(f"{meta_file}: field 'weights' must be a file name beside the "
                           f"metadata, got {w!r}")
    if len(meta["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in meta["sha256"]):
        raise ToolkitError(f"{meta_file}: field 'sha256' is not a sha256 hex digest")
    if not all(isinstance(k, str) for k in meta["arch_kwargs"]):
        raise ToolkitError(f"{meta_file}: field 'arch_kwargs' must have string keys")


def load_state_dict(weights: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Read a tensors-only file after checking its hash."""
    if not weights.is_file():
        raise ToolkitError(f"checkpoint weights {weights} are missing")
    if expected_sha256 is not None:
        actual = sha256_file(weights)
        if actual != expected_sha256:
            raise ToolkitError(f"{weights} does not match the sha256 in its metadata "
                               f"({actual[:12]}... != {expected_sha256[:12]}...): the file is "
                               "damaged or was replaced; restore or retrain it")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ToolkitError(f"cannot load {weights} as a tensors-only checkpoint "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ToolkitError(f"{weights} does not hold a state_dict of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ToolkitError(f"{weights} holds NaN or infinite values (in {', '.join(bad[:3])}"
                           f"{', ...' if len(bad) > 3 else ''}); the training diverged or the "
                           "file is damaged: retrain it")
    return state


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu",
                    builder=build_model, fmt: str = FORMAT) -> tuple[torch.nn.Module, dict]:
    """Build the model recorded in the metadata (with ``builder(architecture, **kwargs)``),
    load its verified weights, set eval mode."""
    meta = read_metadata(path, fmt)
    weights = Path(meta["_path"]).with_name(meta["weights"])
    state = load_state_dict(weights, meta["sha256"])
    try:
        model = builder(meta["architecture"], **meta["arch_kwargs"])
    except (TypeError, ValueError, RuntimeError) as e:  # arguments the architecture rejects
        raise ToolkitError(f"{meta['_path']}: arch_kwargs {meta['arch_kwargs']} do not fit "
                           f"architecture {meta['architecture']!r} ({e})") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ToolkitError(f"{weights} does not fit architecture {meta['architecture']!r}: "
                           f"{str(e).splitlines()[0][:300]}") from e
    return model.to(device).eval(), meta
