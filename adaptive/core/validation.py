"""Checks for images handed to public APIs, with messages that say what to fix."""

from __future__ import annotations

import torch

from adaptive.core.errors import ToolkitError

# Float round-off from attacks may step a hair outside the box; anything beyond is a real error.
_RANGE_TOLERANCE = 1e-5


def check_images(x: torch.Tensor, input_shape: tuple[int, ...] | None = None,
                 what: str = "images") -> torch.Tensor:
    """Require a float NCHW tensor, finite, in [0, 1], and (optionally) of the model's shape."""
    if not isinstance(x, torch.Tensor):
        raise ToolkitError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ToolkitError(f"{what} must be float in [0, 1]; got dtype {x.dtype} "
                           "(divide uint8 images by 255)")
    if x.ndim != 4:
        raise ToolkitError(f"{what} must be NCHW (4-D), got shape {tuple(x.shape)}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ToolkitError(f"{what} have shape {tuple(x.shape[1:])} per image but the model "
                           f"expects {tuple(input_shape)}")
    if len(x) == 0:
        raise ToolkitError(f"{what}: the batch is empty")
    if not torch.isfinite(x).all():
        raise ToolkitError(f"{what} contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise ToolkitError(f"{what} must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]; "
                           "models take [0, 1] pixels and normalise inside")
    return x


def check_labels(y: torch.Tensor, n: int, num_classes: int, what: str = "labels") -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
        raise ToolkitError(f"{what} must be a 1-D integer tensor")
    if len(y) != n:
        raise ToolkitError(f"{what}: {len(y)} labels for {n} images")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ToolkitError(f"{what} must lie in 0..{num_classes - 1}")
    return y


def check_labels_fit_model(labels: torch.Tensor, model, what: str = "the data") -> None:
    """The labels must be classes the model has (a data set with more classes than the model
    would otherwise count every such image as misclassified, silently)."""
    classes = getattr(model, "num_classes", None)
    if classes is not None and len(labels) and int(labels.max()) >= classes:
        raise ToolkitError(f"{what} has label {int(labels.max())} but the model has {classes} "
                           f"classes (0..{classes - 1}); use data of the model's classes")
