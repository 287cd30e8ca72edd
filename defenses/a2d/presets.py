"""Engine settings per data set, by engine name.

MNIST and CIFAR-10 BIM settings are the A2D authors'; BIM2_d converts their Foolbox-1 RMS-norm
settings to true L2 (x sqrt(d)); JSMA_d is Foolbox 1's default saliency attack with the
authors' cap of 2000; DBA_d uses the authors' MNIST threshold (0.02 mean squared distance) and,
for CIFAR-10, 0.002 (our choice: CIFAR-10 adversarial distances are ~10x smaller in MSE).
"""

from __future__ import annotations

from adaptive.core.defaults import preset_family
from adaptive.core.errors import ToolkitError
from defenses.a2d.bim import BIMCost
from defenses.a2d.dba import BoundaryCost
from defenses.a2d.jsma import JSMACost

ENGINE_NAMES = ("bim_d", "bim2_d", "jsma_d", "dba_d")

PRESETS = {
    "mnist": {
        "bim_d": dict(eps=0.3, step=0.0006, max_iter=500),
        "bim2_d": dict(eps=8.4, step=0.0168, max_iter=500),
        "jsma_d": dict(theta=0.1, max_per_pixel=7, max_iter=2000),
        "dba_d": dict(threshold=0.02, max_iter=500),
    },
    "cifar10": {
        "bim_d": dict(eps=0.03, step=0.00006, max_iter=500),
        "bim2_d": dict(eps=1.66, step=0.00333, max_iter=500),
        "jsma_d": dict(theta=0.1, max_per_pixel=7, max_iter=2000),
        "dba_d": dict(threshold=0.002, max_iter=500),
    },
}


def engine_settings(name: str, dataset: str) -> dict:
    if name not in ENGINE_NAMES:
        raise ToolkitError(f"unknown A2D engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")
    family = preset_family(dataset)
    return dict(PRESETS[family][name])


def build_engine(name: str, **settings):
    """An engine by name; ``settings`` as returned by ``engine_settings`` (or an engine's
    ``config()``, whose ``engine`` key is ignored)."""
    settings = {k: v for k, v in settings.items() if k not in ("engine", "norm")}
    try:
        if name in ("bim_d", "bim2_d"):
            return BIMCost(norm="linf" if name == "bim_d" else "l2", **settings)
        if name == "jsma_d":
            return JSMACost(**settings)
        if name == "dba_d":
            return BoundaryCost(**settings)
    except TypeError as e:
        raise ToolkitError(f"bad settings for engine {name!r}: {e}") from e
    raise ToolkitError(f"unknown A2D engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")


def make_engine(name: str, dataset: str = "mnist", **overrides):
    """The engine with the data set's preset, overridden by ``overrides``."""
    return build_engine(name, **{**engine_settings(name, dataset), **overrides})
