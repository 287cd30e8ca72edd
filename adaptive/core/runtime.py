"""Device selection, threads, the CPU allocator, seeding."""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

from adaptive.core.errors import ToolkitError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda`` (or ``cuda:N``) to a torch device; ``auto`` prefers CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ToolkitError(
                f"--device {name} was requested but PyTorch sees no CUDA device; "
                "use --device cpu or --device auto")
        full_fp32_on_cuda()
        return torch.device(name)
    raise ToolkitError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def full_fp32_on_cuda() -> None:
    """Turn off TF32 in cuDNN convolutions and CUDA matmuls (PyTorch's default allows it in
    convolutions on Ampere and later). TF32 keeps 10 mantissa bits, so logits move by ~1e-3
    relative: enough to flip examples that sit on a decision boundary (a C&W example at
    kappa 0 does) and to change A2D's attack costs; the default sweep on an H200 with TF32
    differed from the CPU's by a few images in some rows. An evaluation needs the model's own
    fp32 answer, so every CUDA device the toolkit picks runs in full fp32."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


# Images per forward + input-gradient pass that suit each kind of device. On a CPU the zoo's
# classifiers cost the same per image from about 50 images to 256 and more below (MNIST CNN,
# this project's 2-core CPU: 1.3x at 16, 1.5x at 8; benchmarks/attack_step.py): 64 is at
# full speed and keeps an attack's memory small. A GPU wants large passes.
ATTACK_BATCH = {"cpu": 64, "cuda": 1024}


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a parameterless model or a plain
    function)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def attack_batch_size(device: torch.device | str) -> int:
    """How many images an attack passes through the model at once on ``device`` by default."""
    kind = torch.device(device).type
    return ATTACK_BATCH.get(kind, ATTACK_BATCH["cuda"])


THREADS_ENV = "ADAPTIVE_THREADS"


def cpu_budget() -> int:
    """The CPUs this process may really use: the smallest of its CPU affinity and a cgroup
    (container) CPU quota. PyTorch sizes its thread pool from the CPUs it sees, which in a
    container can be the host's many cores: threads beyond the quota wait for each other."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads: ``threads``, else ``$ADAPTIVE_THREADS``, else PyTorch's own
    choice capped at :func:`cpu_budget`. Returns the count set. Results can differ in the
    last bits between thread counts (floating-point sums split differently), so a run
    records its count (``environment.cpu_threads`` in config.json)."""
    if threads is None and os.environ.get(THREADS_ENV):
        try:
            threads = int(os.environ[THREADS_ENV])
        except ValueError:
            raise ToolkitError(f"${THREADS_ENV} must be a whole number of threads, got "
                               f"{os.environ[THREADS_ENV]!r}") from None
    if threads is not None and threads < 1:
        raise ToolkitError(f"threads must be at least 1, got {threads}")
    n = threads if threads is not None else min(torch.get_num_threads(), cpu_budget())
    torch.set_num_threads(n)
    return n


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel.

    glibc's malloc gives each allocation above its mmap threshold fresh pages from the kernel
    and unmaps them on free; an attack loop allocates and frees the same activation-sized
    tensors every step, so every step page-faults its memory in again. On this project's
    2-core CPU, C&W on 100 MNIST images (2 x 200 steps) spent 3.2-3.4 s in the kernel (1.4-1.9
    million page faults) and 10.4-13.2 s in all; with the thresholds raised 0.1 s and 8.4-9.3 s,
    with the same examples (``benchmarks/allocator.py``). The default sweep took as long as
    before (130 s): glibc raises its threshold by itself once a process frees a large block,
    which a long run soon does; short runs and benchmarks gain most. Raises the mmap threshold
    to 32 MiB (glibc's maximum) and the trim threshold to 256 MiB. Results are unchanged.
    Does nothing off glibc or where the user set glibc's own ``MALLOC_MMAP_THRESHOLD_``;
    returns whether it changed anything. Called by the CLI; a library user can call it once
    at start."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                          256 << 20))


def _cudnn_tf32():
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the legacy and new precision APIs were mixed (by a user's code)
        return None


MAX_SEED = 2**32 - 1  # the largest seed every generator takes (NumPy's end there)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def environment_info() -> dict:
    """Versions and machine facts to record beside results."""
    import platform
    import sys
    from importlib import metadata

    versions = {}
    for pkg in ("adaptive-a2d", "torch", "torchvision", "foolbox", "numpy", "scipy",
                "scikit-learn", "scikit-image"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.machine(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cudnn_tf32": _cudnn_tf32() if torch.cuda.is_available() else None,
            "versions": versions}
