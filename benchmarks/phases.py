"""Where a command's time goes, by phase: wall time spent inside chosen functions, each
phase's own (exclusive) share, nested phases subtracted from the phase that called them.

Used by ``profile_sweep.py`` and ``profile_a2d_evaluate.py``: they name the functions that
make up a phase (``Phases.wrap``), run the command in-process, and print ``Phases.table``.
Wrapping adds two clock reads per call: negligible next to any phase worth naming.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from contextlib import contextmanager


class Phases:
    """Exclusive wall time and call counts per phase name."""

    def __init__(self):
        self.own: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [name, start, time spent in nested phases]
        self._patched: list[tuple] = []

    @contextmanager
    def phase(self, name: str):
        frame = [name, time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            spent = time.perf_counter() - frame[1]
            self.own[name] = self.own.get(name, 0.0) + spent - frame[2]
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][2] += spent

    def wrap(self, owner, attr: str, name) -> None:
        """Count every call of ``owner.attr`` (a function of a module or a class) as ``name``
        (a string, or a function of the call's arguments that returns one)."""
        original = getattr(owner, attr)
        phases = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with phases.phase(name(*args, **kwargs) if callable(name) else name):
                return original(*args, **kwargs)

        self._patched.append((owner, attr, original))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._patched):
            setattr(owner, attr, original)
        self._patched.clear()

    def table(self, total: float) -> str:
        """Each phase's own time and share of ``total`` (largest first) and the rest."""
        lines = [f"{'phase':<44} {'calls':>6} {'seconds':>8} {'share':>6}"]
        for name, t in sorted(self.own.items(), key=lambda kv: -kv[1]):
            lines.append(f"{name:<44} {self.calls[name]:>6} {t:>8.1f} {t / total:>6.1%}")
        rest = total - sum(self.own.values())
        lines.append(f"{'(everything else)':<44} {'':>6} {rest:>8.1f} {rest / total:>6.1%}")
        lines.append(f"{'total':<44} {'':>6} {total:>8.1f} {1:>6.0%}")
        return "\n".join(lines)


def profile_command(command: list[str], instrument, default_args: list[str] = ()) -> None:
    """Run ``adaptive COMMAND ARGS`` in this process (``ARGS`` from the script's own command
    line after an optional ``--``, else ``default_args``; into a temporary ``--out`` unless
    given) with ``instrument(phases)``'s timers, and print the phase table."""
    from adaptive.cli.main import main as adaptive_main

    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    args = args or list(default_args)
    p = Phases()
    instrument(p)
    with tempfile.TemporaryDirectory() as tmp:
        if "--out" not in args:
            args = [*args, "--out", f"{tmp}/out"]
        t0 = time.perf_counter()
        with p.phase("CLI: load model, data, settings"):
            rc = adaptive_main([*command, *args, "--no-progress"])
        total = time.perf_counter() - t0
    p.restore()
    print(f"adaptive {' '.join(command)} {' '.join(args)}: exit {rc}")
    print(p.table(total))
