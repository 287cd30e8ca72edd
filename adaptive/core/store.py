"""A run folder that never loses or double-counts finished work.

Results are written as they finish, each atomically (``cache/KEY.pt``) or as fsynced record
lines (:mod:`core.records`), under a configuration and an *identity* (hashes of the data and of
every model or defense file used) that a resumed run must match. One run at a time: the folder
is locked for the whole run, and a second run on it gets an error naming the holder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import torch

from adaptive.core.checkpoint import atomic_torch_save, write_json
from adaptive.core.errors import ToolkitError
from adaptive.core.records import CheckFn, KeyFn, RecordLog, RecordSet

CONFIG = "config.json"
LOCK = ".lock"

try:  # POSIX advisory locks; released by the kernel when the holder dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, the record keys still prevent
    fcntl = None     # double counting


class FolderLock:
    """An exclusive lock on ``folder`` for as long as this object holds it open."""

    def __init__(self, folder: Path, holder: dict):
        self.path = folder / LOCK
        self._fd = None
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                who = {}
            os.close(fd)
            desc = ", ".join(f"{k} {who[k]}" for k in ("pid", "host", "started", "command")
                             if k in who) or "holder unknown"
            raise ToolkitError(f"{folder} is in use by another run ({desc}); wait for it to "
                               "finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    @staticmethod
    def holder(command: str = "") -> dict:
        """Who holds a lock, as a second run's error names it."""
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __del__(self):  # a lock nobody holds any more is released with it
        self.release()


class RunStore:
    """``OUT/config.json``, tensors-only results ``OUT/cache/KEY.pt`` and, for runs that write
    records, ``OUT/RECORDS``; locked while open. Use it as a context manager (or call
    :meth:`close`): a fresh run that fails before it has stored any result leaves no folder
    behind, so the corrected command can use the same ``--out``.

    ``config``: the settings a resumed run must match. ``identity``: name -> hash of each input
    (data, weights, defense files); a resume must match every entry both runs recorded.
    ``defaults``: values for settings a run made by an older version did not record (it
    behaved as their defaults), so such runs can still be resumed.
    """

    def __init__(self, out: str | os.PathLike, config: dict, resume: bool,
                 defaults: dict | None = None, identity: dict | None = None,
                 command: str = "", log: Callable[[str], None] = print):
        self.out = Path(out)
        self.config = config
        self.identity = dict(identity or {})
        self.log = log
        self._lock = None
        self._created: list[Path] = []
        self.removed: list[str] = []  # the cache entries found unreadable and removed
        self._prepared: list[str] = []  # what put(result=False) stored
        if resume and not (self.out / CONFIG).is_file():
            raise ToolkitError(f"--resume given but {self.out} holds no run to continue (no "
                               f"{CONFIG}); leave out --resume to start one")
        if self.out.exists() and not self.out.is_dir():
            raise ToolkitError(f"--out {self.out} is a file, not a folder")
        missing = [p for p in [self.out, *self.out.parents] if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        self._created = missing[::-1]  # removed again if this run stores nothing
        self._lock = FolderLock(self.out, FolderLock.holder(command))
        # fresh: nothing of this folder's run existed before; only then may a failure clean up
        self.fresh = not (self.out / CONFIG).exists()
        try:
            self._check_against_saved(resume, defaults or {})
        except BaseException:
            self.close(failed=True)
            raise
        (self.out / "cache").mkdir(exist_ok=True)

    def _check_against_saved(self, resume: bool, defaults: dict) -> None:
        cfg_file = self.out / CONFIG
        if not cfg_file.exists():
            return
        if not resume:
            raise ToolkitError(f"{self.out} already holds a run; pass --resume to continue "
                               "it or choose another --out")
        try:
            saved = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as e:
            raise ToolkitError(f"cannot read {cfg_file}: {e}") from e
        if not isinstance(saved, dict) or not isinstance(saved.get("config", {}), dict):
            raise ToolkitError(f"{cfg_file} is not a run configuration (expected a JSON object "
                               "with a 'config' object); the folder is damaged or not a run")
        before = _with_defaults(defaults, saved.get("config", {}))
        if before != self.config:
            diff = sorted(k for k in set(before) | set(self.config)
                          if before.get(k) != self.config.get(k))
            raise ToolkitError(f"{self.out} was started with a different configuration "
                               f"(differs in: {', '.join(diff)}); use another --out")
        saved_id = saved.get("identity", {})
        if not isinstance(saved_id, dict):
            saved_id = {}
        changed = sorted(k for k in set(saved_id) & set(self.identity)
                         if saved_id[k] != self.identity[k])
        if changed:
            raise ToolkitError(f"{self.out} was made from other inputs: {', '.join(changed)} "
                               "changed since (different content hash); restore them or "
                               "start a new run with another --out")

    # -- configuration and results ----------------------------------------------------------

    def write_config(self, extra: dict) -> None:
        if not (self.out / CONFIG).exists():
            write_json(self.out / CONFIG, {"config": self.config, "identity": self.identity,
                                           **extra})

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
        except Exception as e:
            p.unlink()  # a damaged partial result is recomputed
            self.removed.append(key)
            self.log(f"note: {p} could not be read ({type(e).__name__}); it was removed and "
                     "will be computed again")
            return None

    def put(self, key: str, value: dict, result: bool = True) -> dict:
        """Store ``value`` under ``key``; ``result=False``: a preparation (a calibration), not a
        result, which a fresh run that fails removes with its folder."""
        atomic_torch_save(value, self._path(key))
        if result:
            self.fresh = False
        else:
            self._prepared.append(key)
        return value

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def records(self, name: str, key: KeyFn, check: CheckFn | None = None) -> Records:
        """The record file ``OUT/name``, its torn last line (if any) cut off first; ``check``:
        see :class:`~adaptive.core.records.RecordLog`."""
        log = RecordLog(self.out / name, key, check)
        return Records(self, log, torn_bytes_removed=log.repair(self.log))

    # -- closing --------------------------------------------------------------------------------

    def close(self, failed: bool = False) -> None:
        """Release the lock; after a failure of a run that stored nothing, remove the folders
        and the config it made."""
        if failed and self.fresh:
            for key in self._prepared:
                self._path(key).unlink(missing_ok=True)
            for name in (CONFIG, "cache"):
                p = self.out / name
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
                elif p.is_file():
                    p.unlink()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            if failed and self.fresh:
                (self.out / LOCK).unlink(missing_ok=True)
        if failed and self.fresh:
            for folder in reversed(self._created):
                try:
                    folder.rmdir()  # only if empty
                except OSError:
                    break

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def _with_defaults(defaults: dict, saved: dict) -> dict:
    """``saved`` with every setting it lacks taken from ``defaults``, nested settings (dicts)
    included: a run made before a setting existed behaved as its default."""
    out = dict(defaults)
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            value = _with_defaults(defaults[key], value)
        out[key] = value
    return out


class Records:
    """A run's record file: append as results finish, read them back de-duplicated."""

    def __init__(self, store: RunStore, log: RecordLog, torn_bytes_removed: int = 0):
        self.store, self.log = store, log
        self._noted: tuple | None = None  # what was last said of the file's damage
        # of a last line cut short by a crash, removed when the file was opened
        self.torn_bytes_removed = torn_bytes_removed

    def append(self, rows: list[dict]) -> None:
        self.log.append(rows)
        if rows:
            self.store.fresh = False

    def read(self) -> RecordSet:
        found = self.log.read()
        said = (found.duplicates, found.unreadable, found.invalid)
        if any(said) and said != self._noted:
            self._noted = said
            invalid = (f", {found.invalid} invalid record(s) skipped ({found.invalid_reason}: "
                       "not a finished result)" if found.invalid else "")
            self.store.log(f"note: {self.log.path}: {found.duplicates} duplicate record(s) "
                           f"ignored, {found.unreadable} unreadable line(s) skipped{invalid}")
        return found

