"""Bookkeeping for engines that run a shrinking, refilled batch with per-sample early stopping."""

from __future__ import annotations

import torch


class RunningBatch:
    """Per-sample state tensors (rows aligned) of the samples in the running batch.

    ``refill`` admits waiting samples (rows from ``new_rows``) until ``batch_size`` are running;
    ``keep`` drops the rows that finished. Each state tensor is an attribute (``batch.x``).
    """

    def __init__(self, n: int, batch_size: int, new_rows):
        self.n, self.batch_size, self._new_rows = n, int(batch_size), new_rows
        self.queue = 0
        self.state: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.state["idx"]) if self.state else 0

    def pending(self) -> bool:
        return self.queue < self.n or len(self) > 0

    def refill(self) -> None:
        take = min(self.batch_size - len(self), self.n - self.queue)
        if take <= 0:
            return
        rows = self._new_rows(self.queue, self.queue + take)
        rows["idx"] = torch.arange(self.queue, self.queue + take)
        self.queue += take
        if not self.state:
            self.state = rows
        else:
            self.state = {k: torch.cat([self.state[k], rows[k]]) for k in self.state}

    def keep(self, mask: torch.Tensor) -> None:
        self.state = {k: v[mask.to(v.device)] for k, v in self.state.items()}

    def __getattr__(self, name: str) -> torch.Tensor:
        state = self.__dict__.get("state", {})
        if name in state:
            return state[name]
        raise AttributeError(name)

    def set(self, **tensors: torch.Tensor) -> None:
        self.state.update(tensors)
