"""An append-only JSON-lines file of keyed records that survives any crash.

Each finished result is one line, appended and fsynced. What can go wrong and what is done:

* a crash (even SIGKILL) in the middle of a write leaves a *torn last line* with no newline:
  :meth:`RecordLog.repair` cuts it off (with a printed note) before anything is appended, so
  the records after it are never lost behind an unreadable line;
* a line that cannot be parsed elsewhere in the file (damage, or a file appended to by an older
  version after a torn line) is skipped and counted, never allowed to hide the lines after it;
* the same record written twice (two writers, a retried batch) is counted once: records carry a
  key, and :meth:`RecordLog.read` keeps the first record of each key and counts the others;
* a line that parses but is not a whole record of this file (fields missing or of the wrong
  type, or a record of a setting the run does not have: the ``check`` given to the log) is
  skipped and counted, never taken for a finished result, so the result is computed again.

The run folder's lock (:mod:`core.store`) keeps two writers apart; the key makes counting
right even where it could not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from adaptive.core.errors import ToolkitError

KeyFn = Callable[[dict], Hashable]
# what is wrong with a parsed record (None: nothing): a reason, printed once with the count
CheckFn = Callable[[dict], "str | None"]


@dataclass
class RecordSet:
    """What a record file holds: the unique records in file order, and what was left out."""

    records: list[dict] = field(default_factory=list)
    duplicates: int = 0  # records whose key an earlier record already had (not counted)
    unreadable: int = 0  # lines that were not a JSON object (skipped)
    invalid: int = 0  # parsed lines that are no whole record of the file (skipped)
    invalid_reason: str | None = None  # what was wrong with the first of them

    def integrity(self) -> dict:
        """The counts a summary reports, so that a reader sees what was left out."""
        return {"records": len(self.records), "duplicates_ignored": self.duplicates,
                "unreadable_lines_skipped": self.unreadable,
                "invalid_records_skipped": self.invalid}


class RecordLog:
    """``path``: a JSON-lines file; ``key(record)``: what makes a record unique;
    ``check(record)``: what is wrong with a parsed record (None: it is whole)."""

    def __init__(self, path: str | os.PathLike, key: KeyFn, check: CheckFn | None = None):
        self.path = Path(path)
        self.key = key
        self.check = check

    def repair(self, log: Callable[[str], None] = print) -> int:
        """Cut off a torn last line (one without its newline: a write cut short by a crash).
        Returns the number of bytes removed."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        removed = len(data) - keep
        log(f"note: {self.path} ended in a line cut short by a crash ({removed} bytes); it was "
            "removed and that result will be computed again")
        return removed

    def read(self) -> RecordSet:
        """The records, each key once (the first), skipping unreadable lines."""
        out = RecordSet()
        if not self.path.exists():
            return out
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            raise ToolkitError(f"cannot read {self.path}: {e.strerror or e}") from e
        lines = text.split("\n")
        seen = set()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError("not an object")
                key = self.key(record)
            except (ValueError, KeyError, TypeError):
                # The last line without a newline is a write in progress or cut short: not a
                # result yet. Anything else is damage: skipped and counted.
                if i != len(lines) - 1:
                    out.unreadable += 1
                continue
            problem = self.check(record) if self.check is not None else None
            if problem is not None:
                out.invalid += 1
                out.invalid_reason = out.invalid_reason or problem
                continue
            if key in seen:
                out.duplicates += 1
                continue
            seen.add(key)
            out.records.append(record)
        return out

    def append(self, rows: list[dict]) -> None:
        """Append ``rows``, one line each, and make them durable before returning."""
        if not rows:
            return
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
