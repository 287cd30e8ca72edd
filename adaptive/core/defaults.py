"""What a run uses when it is not told otherwise, per data-set family, in one place: the
library (``SweepConfig``, the studies' presets) and the command line read it here."""

from __future__ import annotations

from dataclasses import dataclass

from adaptive.core.checkpoint import read_metadata
from adaptive.core.data import dataset_family
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import resolve_model_path


@dataclass(frozen=True)
class FamilyDefaults:
    """A family's defaults: the data set a sweep attacks, its L2 and L∞ bounds, the defense
    compositions it judges and the MagNet it builds them from (None: the family has none)."""

    family: str
    dataset: str
    max_l2: float
    max_linf: float
    defenses: tuple[str, ...]
    magnet: str | None


FAMILY_DEFAULTS = {
    "mnist": FamilyDefaults("mnist", "mnist-bundled", max_l2=8.4, max_linf=0.3,
                            defenses=("a2d", "magnet", "a2d+magnet"), magnet="mnist"),
    "cifar10": FamilyDefaults("cifar10", "cifar10", max_l2=1.6, max_linf=8 / 255,
                              defenses=("at", "a2d+at"), magnet=None),
}


def preset_family(dataset: str) -> str:
    """The family whose presets (attack settings, engines, recipes) a data set uses: CIFAR-10's
    for the CIFAR-10 names, MNIST's for everything else (a user's npz data included)."""
    return "cifar10" if dataset_family(dataset) == "cifar10" else "mnist"


def family_defaults(dataset_or_family: str) -> FamilyDefaults:
    """The defaults of a family (``mnist``) or of the family of a data set (``cifar10-genuine``)."""
    return FAMILY_DEFAULTS[preset_family(dataset_or_family)]


def model_family(model: str) -> str | None:
    """The family a zoo model or checkpoint was trained on, from its metadata (None when its
    metadata cannot be read: the caller decides)."""
    try:
        return dataset_family(read_metadata(resolve_model_path(model))["dataset"])
    except (ToolkitError, OSError, KeyError, TypeError, ValueError):
        return None


__all__ = ["FAMILY_DEFAULTS", "FamilyDefaults", "family_defaults", "model_family",
           "preset_family"]
