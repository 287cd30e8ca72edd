"""Device selection and seeding."""

from __future__ import annotations

import random

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
    convolutions on Ampere and later). TF32 keeps 10 mantissa bits: logits then move by ~1e-3
    relative between batches and calls, which flips examples that sit on the decision
    boundary (a C&W example at kappa 0 does), changes A2D costs, and made the
    unstable-predictions indicator fire on a deterministic model (5 of 100 examples at
    kappa 0 of the default sweep on an H200). An evaluation needs the model's real fp32
    answer, so every CUDA device the toolkit picks runs in full fp32."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _cudnn_tf32():
    try:
        return bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the legacy and new precision APIs were mixed (by a user's code)
        return None


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
