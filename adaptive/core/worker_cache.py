"""What a worker process builds once and reuses for every unit of a run it serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_WORKER_CACHE: dict = {}


def worker_cached(key, build: Callable[[], Any]) -> Any:
    """``build()`` once per process for ``key`` (a Ray worker serves unit after unit of a run:
    it loads the model and defenses once); a new key drops what the last one built."""
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = build()
    return _WORKER_CACHE[key]


__all__ = ["worker_cached"]
