"""A run folder that never loses finished work: results are written as they finish, each
atomically, under a configuration that a resumed run must match."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from core.checkpoint import atomic_torch_save, write_json
from core.errors import ToolkitError


class RunStore:
    """``OUT/config.json`` plus tensors-only results ``OUT/cache/KEY.pt``."""

    def __init__(self, out: str | Path, config: dict, resume: bool,
                 defaults: dict | None = None):
        """``defaults``: values for settings a run made by an older version did not record
        (it behaved as their defaults), so such runs can still be resumed."""
        self.out = Path(out)
        cfg_file = self.out / "config.json"
        if cfg_file.exists():
            try:
                saved = json.loads(cfg_file.read_text())
            except (OSError, ValueError) as e:
                raise ToolkitError(f"cannot read {cfg_file}: {e}") from e
            if not resume:
                raise ToolkitError(f"{self.out} already holds a run; pass --resume to continue "
                                   "it or choose another --out")
            before = {**(defaults or {}), **saved.get("config", {})}
            if before != config:
                diff = sorted(k for k in set(before) | set(config)
                              if before.get(k) != config.get(k))
                raise ToolkitError(f"{self.out} was started with a different configuration "
                                   f"(differs in: {', '.join(diff)}); use another --out")
        elif resume and self.out.exists() and any(self.out.iterdir()):
            raise ToolkitError(f"--resume given but {self.out} holds no run (no config.json)")
        self.config = config
        (self.out / "cache").mkdir(parents=True, exist_ok=True)

    def write_config(self, extra: dict) -> None:
        if not (self.out / "config.json").exists():
            write_json(self.out / "config.json", {"config": self.config, **extra})

    def _path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"bad cache key {key!r}")
        return self.out / "cache" / f"{key}.pt"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            p.unlink()  # a damaged partial result is recomputed
            return None

    def put(self, key: str, value: dict) -> dict:
        atomic_torch_save(value, self._path(key))
        return value

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
