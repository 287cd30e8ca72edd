"""Where a run's work units execute: in this process (``local``) or as Ray tasks (``ray``: a
local Ray instance on this machine, or an existing cluster by its address).

A run splits its work into independent units and hands them to an executor with one *shared*
object (what every unit needs: the configuration, the calibration); the executor yields each
unit's result as it finishes, and the caller stores it at once, so a run on Ray keeps the
guarantee of a local one: nothing finished is lost. A Ray worker that dies in the middle of a
unit (killed, out of memory, its node lost) has that unit retried on another worker; the unit's
result is stored once, by the caller, so nothing is counted twice either.

Ray is an optional dependency (``pip install ".[ray]"``); only the ``ray`` executor imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from adaptive.core.errors import ToolkitError

EXECUTORS = ("local", "ray")
UnitFn = Callable[[Any, Any], Any]  # fn(shared, unit) -> result


@dataclass
class ExecutorSettings:
    """How to run units: ``kind`` local or ray; for Ray the cluster's ``address`` (None: start
    a local instance with ``local_cpus`` CPUs, all of this machine's by default), CPUs and GPUs
    (fractions allowed) reserved per unit, and how often a unit whose worker died is retried."""

    kind: str = "local"
    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3
    local_cpus: int | None = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ToolkitError(f"unknown executor {self.kind!r}; choose from "
                               f"{', '.join(EXECUTORS)}")
        if self.kind == "local" and (self.address or self.gpus_per_task):
            raise ToolkitError("--ray-address and --gpus-per-task need --executor ray")
        if not self.cpus_per_task > 0 or self.gpus_per_task < 0:
            raise ToolkitError("--cpus-per-task must be > 0 and --gpus-per-task >= 0")
        if self.max_retries < 0:
            raise ToolkitError("max_retries must be >= 0")

    @property
    def unit_device(self) -> str:
        """The device a Ray unit computes on: its reserved GPU, else the CPU."""
        return "cuda" if self.gpus_per_task > 0 else "cpu"

    def model_ref(self, name: str, sha256: str, model, device):
        """The model as units receive it: this process's ``model`` (on ``device``) for the
        local executor, else the name and hash from which each Ray worker loads it on its
        unit device."""
        from adaptive.core.zoo import ModelRef

        if self.kind == "local":
            return ModelRef(name, sha256, str(device), model)
        return ModelRef(name, sha256, self.unit_device)


def _ray_unit(fn: UnitFn, threads: int, shared: Any, unit: Any) -> Any:
    """A unit in a Ray worker, on as many torch threads as Ray reserved CPUs for it: then its
    results equal those of a serial run on that many threads (other thread counts change the
    last bits of floating-point sums)."""
    import torch

    from adaptive.core.runtime import full_fp32_on_cuda, tune_cpu_allocator

    torch.set_num_threads(threads)
    full_fp32_on_cuda()
    tune_cpu_allocator()
    return fn(shared, unit)


class LocalExecutor:
    """Runs the units one after another in this process, in the order given."""

    kind = "local"

    def map(self, fn: UnitFn, shared: Any, units: Iterable) -> Iterator[tuple[Any, Any]]:
        for unit in units:
            yield unit, fn(shared, unit)

    def close(self) -> None:
        pass


class RayExecutor:
    """Runs the units as Ray tasks and yields (unit, result) as they finish, in any order.
    ``shared`` goes into Ray's object store once and every task reads it from there."""

    kind = "ray"

    def __init__(self, settings: ExecutorSettings):
        try:
            import ray
        except ImportError as e:
            raise ToolkitError("--executor ray needs Ray: pip install \"adaptive-a2d[ray]\" "
                               "(or pip install ray)") from e
        self.ray, self.settings = ray, settings
        self._started = False
        if not ray.is_initialized():
            try:
                if settings.address:
                    ray.init(address=settings.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=settings.local_cpus, include_dashboard=False,
                             log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = settings.address or "a local instance"
                raise ToolkitError(f"cannot start or reach Ray ({where}): {e}") from e
            self._started = True

    def map(self, fn: UnitFn, shared: Any, units: Iterable) -> Iterator[tuple[Any, Any]]:
        ray, s = self.ray, self.settings
        task = ray.remote(_ray_unit).options(
            num_cpus=s.cpus_per_task, num_gpus=s.gpus_per_task, max_retries=s.max_retries,
            retry_exceptions=False)
        ref, threads = ray.put(shared), max(1, int(s.cpus_per_task))
        pending = {task.remote(fn, threads, ref, unit): unit for unit in units}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for r in done:
                    unit = pending.pop(r)
                    yield unit, self._get(r, unit)
        finally:  # the caller stopped (an error, Ctrl-C): the rest is not needed
            for r in pending:
                ray.cancel(r, force=True)

    def _get(self, ref, unit):
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, ToolkitError):  # a clear error stays a clear error
                raise ToolkitError(f"unit {unit}: {cause}") from None
            if isinstance(cause, BaseException):  # the unit's own exception, as locally
                raise cause from e
            raise
        except ray.exceptions.WorkerCrashedError as e:
            raise ToolkitError(f"unit {unit}: its worker died {self.settings.max_retries + 1} "
                               f"times; giving up ({e})") from e

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_executor(settings: ExecutorSettings | None = None):
    """The executor ``settings`` ask for (local when None)."""
    settings = settings or ExecutorSettings()
    return RayExecutor(settings) if settings.kind == "ray" else LocalExecutor()
