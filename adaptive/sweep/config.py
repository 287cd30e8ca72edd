"""A sweep's settings: one typed dataclass per part, the one source of every default (the
command line derives its defaults from these), validated in one place before any work.

``asdict(SweepConfig(...))`` is what a run folder's ``config.json`` records and what a resumed
run must match; the nested settings serialise to the same dicts earlier versions wrote, so old
run folders still resume.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch

from adaptive.attacks.bounded_pgd import SCHEDULES
from adaptive.core.errors import ToolkitError
from defenses.a2d.zscore import DEFAULT_H

# An attack is a method and what it attacks besides the classifier: cw (C&W's minimum-distance
# attack) or pgd (PGD-L2 at exactly the bound, on the same objective), plus -magnet, -a2d or
# -full for the penalties against those defenses' detectors; spgd and opgd (Selective and
# Orthogonal PGD at the bound) always aim at every detector they can, as -full does.
ATTACKED_PARTS = {"": set(), "-magnet": {"magnet", "rmagnet"}, "-a2d": {"a2d"},
                  "-full": {"a2d", "magnet", "rmagnet"}}
DETECTOR_ATTACKS = ("spgd", "opgd")
# hsj: HopSkipJump, a hard-label attack whose only oracle is one defense's verdict (the last of
# the run's defenses): accepted by every detector and misclassified.
HARD_LABEL_ATTACKS = ("hsj",)
# auto: the per-image worst case over a fixed ensemble, as AutoAttack: each member in turn, only
# on the images some defense still withstands (hsj: the last defense); records say which member
# broke each image against each defense (adaptive.sweep.auto).
AUTO = "auto"
AUTO_MEMBERS = ("cw", "pgd-full", "spgd", "opgd", "hsj")
ATTACKS = tuple(method + parts for method in ("cw", "pgd") for parts in ATTACKED_PARTS) \
    + DETECTOR_ATTACKS + HARD_LABEL_ATTACKS + (AUTO,)
BOUNDED = ("pgd", "spgd", "opgd")  # attacks that spend the ball at the bound
MAX_KAPPAS = 1000  # values in one --kappa range: more is a typo, not a sweep

# What a sweep defends and bounds by default, per data-set family of the model.
DATASET_DEFAULTS = {
    "mnist": dict(dataset="mnist-bundled", max_l2=8.4, max_linf=0.3,
                  defenses="a2d,magnet,a2d+magnet", magnet="mnist"),
    "cifar10": dict(dataset="cifar10", max_l2=1.6, max_linf=8 / 255, defenses="at,a2d+at",
                    magnet=None),
}


def attacked_parts(attack: str, defenses: list[str] | None = None) -> set[str]:
    """The defenses whose detectors ``attack`` penalises (``cw-full`` -> a2d and magnet). The
    attacks that aim at whatever the run defends with (-full, spgd, opgd, hsj, auto) aim, given
    the run's ``defenses``, only at the parts among them: an A2D term in an attack on feature
    squeezing alone would only weaken it."""
    if attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    if attack in DETECTOR_ATTACKS or attack in HARD_LABEL_ATTACKS or attack == AUTO:
        parts = ATTACKED_PARTS["-full"]
    else:
        parts = ATTACKED_PARTS[attack[attack.find("-"):] if "-" in attack else ""]
    if defenses is not None and (aims_at_plugins(attack) or attack in HARD_LABEL_ATTACKS):
        parts = parts & {p for d in defenses for p in d.split("+")}
    return set(parts)


def aims_at_plugins(attack: str) -> bool:
    """Whether ``attack`` also aims at the plug-in defenses' differentiable detectors."""
    return attack.endswith("-full") or attack in DETECTOR_ATTACKS or attack == AUTO


def is_bounded(attack: str) -> bool:
    """Whether ``attack`` runs at exactly the bound (PGD and its detector-aware variants, and
    auto, whose members include them)."""
    return attack.split("-")[0] in BOUNDED or attack == AUTO


def _from_dict(cls, value, what: str):
    """A settings dataclass from itself or from a dict of its fields (missing: defaults)."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ToolkitError(f"{what} settings must be a dict or {cls.__name__}, got "
                           f"{type(value).__name__}")
    unknown = set(value) - {f.name for f in fields(cls)}
    if unknown:
        raise ToolkitError(f"unknown {what} setting(s) {', '.join(sorted(unknown))}")
    return cls(**value)


@dataclass
class CWSettings:
    """C&W-L2: Adam ``steps`` per constant, ``binary_search_steps`` over the constant, Adam
    step size ``lr``, first constant ``initial_const``. The defaults are a CPU budget (README,
    The main job, says what they reach)."""

    steps: int = 200
    binary_search_steps: int = 5
    lr: float = 0.05
    initial_const: float = 0.1
    # each constant after the first from the best example so far (not C&W's algorithm; README
    # "Speed": 2.49x Foolbox at these settings, 1.1 % larger L2)
    warm_start: bool = False


@dataclass
class PGDSettings:
    """Bounded PGD (the pgd attacks): ``steps`` per round of 2.5 x bound / steps, ``restarts``
    rounds (the first from the image, the others from random points of the ball), then one
    round towards each of the ``target_classes`` most likely other classes (untargeted); each
    step's gradient averaged over ``eot`` evaluations (Expectation over Transformation); step
    lengths ``constant`` or decaying along a ``cosine`` (same total length)."""

    steps: int = 100
    restarts: int = 3
    target_classes: int = 3
    eot: int = 1  # gradient samples per step (EOT) for defenses that are random per call
    schedule: str = "constant"  # step lengths within a round: constant or cosine (decaying)
    # > 0: each random restart starts at the best of this many points towards other test
    # images (see BoundedPGD), for detectors that reject noise
    start_images: int = 0


@dataclass
class HardLabelSettings:
    """HopSkipJump (``--attack hsj``): ``iterations`` rounds, ``evals`` boundary probes in the
    first (growing as sqrt(round) up to ``max_evals``); each image stops once within the bound."""

    iterations: int = 20
    evals: int = 50
    max_evals: int = 300


@dataclass
class CleverSettings:
    """CLEVER (untargeted, L2) of each adversarial example: ``n_batches`` x ``n_samples``
    gradient samples in the ball of ``radius``."""

    n_batches: int = 50
    n_samples: int = 64
    radius: float = 5.0


@dataclass
class SweepConfig:
    """Everything that defines a sweep's results (see ``adaptive sweep --help``)."""

    dataset: str = "mnist-bundled"
    model: str = "mnist-cnn"
    model_sha256: str = ""
    defenses: list = field(default_factory=lambda: ["none", "a2d", "magnet", "a2d+magnet"])
    kappas: list = field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0, 20.0])
    n: int = 100
    n_cal: int = 200
    max_l2: float = 8.4
    targeted: bool = False
    seed: int = 0
    batch: int = 50
    cw: CWSettings = field(default_factory=CWSettings)
    a2d_engines: list = field(default_factory=lambda: ["bim_d"])
    h: float = DEFAULT_H
    magnet: str | None = "mnist"
    # randomised MagNet's pool of reformers (a bundled name or pool.json); None: rmagnet draws
    # from MagNet's own autoencoders
    magnet_pool: str | None = None
    defense_module: str | None = None
    # CLEVER of every adversarial example the attack made, for mean_clever; None: not measured.
    clever: CleverSettings | None = None
    # The attack: cw (C&W-kappa on the bare classifier, the paper's), cw-magnet (through
    # MagNet's reformer, penalising its detectors), cw-a2d (penalising a low first-order
    # BIM_d cost), cw-full (both, against whatever the run defends with); pgd, pgd-magnet,
    # pgd-a2d, pgd-full: the same objectives by PGD-L2 at exactly max_l2; spgd, opgd: the
    # -full objective by Selective / Orthogonal PGD-L2 at max_l2 (its pgd settings).
    attack: str = "cw"
    pgd: PGDSettings = field(default_factory=PGDSettings)
    a2d_factor: float = 2.0
    # Every label pair (A2D Figures 11-13): one attacked image per class (the first of each
    # class among the n chosen), attacked towards each other class; implies targeted.
    pairs: bool = False
    # The images to attack (e.g. those of another run, --images-from) instead of a random
    # choice of n; kept only where this model classifies them correctly.
    images: list | None = None
    # For an adaptive attack, also run the paper's C&W-kappa on the bare classifier and judge it
    # against every defense: the white-box attack must do at least as well (a sanity check).
    transfer_check: bool = True
    # The threat model: "l2" (the bound is max_l2) or "linf" (the bound is max_linf, and the
    # bounded attacks step and project in the L-inf box). Runs made before it existed are L2.
    norm: str = "l2"
    max_linf: float | None = None
    hsj: HardLabelSettings = field(default_factory=HardLabelSettings)
    # Each attacked image draws its random numbers (restarts, probes) from its own seed, so its
    # result does not depend on its batch; auto always does. Runs made before it: per batch.
    image_seeds: bool = False
    # "cheap": the indicators of attack failure (every sweep); "full": also the checklist
    # (adaptive.sweep.checklist), which attacks the smallest kappa's images again.
    checks: str = "cheap"

    def __post_init__(self):
        self.cw = _from_dict(CWSettings, self.cw, "cw")
        self.pgd = _from_dict(PGDSettings, self.pgd, "pgd")
        self.clever = _from_dict(CleverSettings, self.clever, "clever")
        self.hsj = _from_dict(HardLabelSettings, self.hsj, "hsj")


NORM_LABEL = {"l2": "L2", "linf": "L∞"}


def bound_of(cfg) -> float:
    """The sweep's distortion bound in its own norm (``cfg``: a SweepConfig or its dict)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return get("max_linf") if get("norm", "l2") == "linf" else get("max_l2")


def distance_key(cfg) -> str:
    """The record field holding each example's distance in the sweep's norm (l2 or linf)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return get("norm", "l2") or "l2"


def norm_label(cfg) -> str:
    """"L2" or "L∞", for titles and check names."""
    return NORM_LABEL[distance_key(cfg)]


def parse_kappas(text: str) -> list[float]:
    """``0:20:5`` (start:stop:step, stop included) or ``0,2,4``: finite values >= 0, at most
    ``MAX_KAPPAS`` of them."""
    bad = ToolkitError(f"bad --kappa {text!r}: use start:stop:step (e.g. 0:20:5) or a "
                       "comma-separated list of finite numbers >= 0")
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if (len(parts) != 3 or not all(map(math.isfinite, parts)) or parts[2] <= 0
                    or parts[1] < parts[0]):
                raise ValueError
            start, stop, step = parts
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > MAX_KAPPAS:  # before building the list: 0:1e12:1 is a typo
                raise ToolkitError(f"--kappa {text!r} gives {count:,} values; at most "
                                   f"{MAX_KAPPAS}")
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise bad from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise bad
    if len(values) > MAX_KAPPAS:
        raise ToolkitError(f"--kappa gives {len(values):,} values; at most {MAX_KAPPAS}")
    return values


def _finite(value, name: str, minimum: float | None = 0.0, strict: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        rel = ">" if strict else ">="
        raise ToolkitError(f"{name} must be a finite number"
                           + (f" {rel} {minimum:g}" if minimum is not None else "")
                           + f", got {value!r}")


def _count(value, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ToolkitError(f"{name} must be an integer >= {minimum}, got {value!r}")


def validate_config(cfg: SweepConfig, magnet=None) -> None:
    """Every setting checked at once, before any work or any file: finite numbers where
    numbers must be finite, counts >= 1, a bounded kappa list, and settings that need each
    other (``magnet``: whether the run has a MagNet defense). Raises ``ToolkitError`` naming
    the setting."""
    if cfg.attack not in ATTACKS:
        raise ToolkitError(f"unknown attack {cfg.attack!r}; choose from {', '.join(ATTACKS)}")
    if not isinstance(cfg.kappas, list) or not cfg.kappas:
        raise ToolkitError("kappa: give at least one value")
    if len(cfg.kappas) > MAX_KAPPAS:
        raise ToolkitError(f"kappa: {len(cfg.kappas)} values; at most {MAX_KAPPAS}")
    for k in cfg.kappas:
        _finite(k, "kappa", 0.0, strict=False)
    for name in ("n", "n_cal", "batch"):
        _count(getattr(cfg, name), name)
    if not isinstance(cfg.max_l2, (int, float)) or math.isnan(cfg.max_l2) or cfg.max_l2 <= 0:
        raise ToolkitError(f"max_l2 (the L2 bound) must be a number > 0 (inf: no bound), got "
                           f"{cfg.max_l2!r}")
    if cfg.norm not in NORM_LABEL:
        raise ToolkitError(f"norm must be l2 or linf, got {cfg.norm!r}")
    if cfg.norm == "linf":
        _finite(cfg.max_linf, "max_linf (the L-inf bound, e.g. 8/255)")
        if cfg.max_linf > 1:
            raise ToolkitError(f"max_linf is in the [0, 1] pixel range: {cfg.max_linf:g} > 1 "
                               "(write 8/255, not 8)")
    elif cfg.max_linf is not None:
        raise ToolkitError("max_linf is the bound of --norm linf sweeps; this one is L2")
    _count(cfg.cw.steps, "cw steps")
    _count(cfg.cw.binary_search_steps, "cw binary search steps")
    _finite(cfg.cw.lr, "cw lr")
    _finite(cfg.cw.initial_const, "cw initial constant")
    _count(cfg.pgd.steps, "pgd steps")
    _count(cfg.pgd.restarts, "pgd restarts")
    _count(cfg.pgd.target_classes, "pgd target classes", 0)
    _count(cfg.pgd.eot, "eot")
    _count(cfg.pgd.start_images, "pgd start images", 0)
    if cfg.pgd.schedule not in SCHEDULES:
        raise ToolkitError(f"unknown pgd step schedule {cfg.pgd.schedule!r}; choose from "
                           f"{', '.join(SCHEDULES)}")
    if cfg.clever is not None:
        _count(cfg.clever.n_batches, "clever n_batches")
        _count(cfg.clever.n_samples, "clever n_samples")
        _finite(cfg.clever.radius, "clever radius")
    _finite(cfg.h, "h (A2D's Z-score threshold)", None)
    _finite(cfg.a2d_factor, "a2d_factor")
    _count(cfg.hsj.iterations, "hsj iterations")
    _count(cfg.hsj.evals, "hsj evals", 2)
    _count(cfg.hsj.max_evals, "hsj max evals", cfg.hsj.evals)
    if cfg.attack in HARD_LABEL_ATTACKS:
        if cfg.kappas != [0.0]:
            raise ToolkitError(f"--attack {cfg.attack} sees only the defense's verdict, no "
                               "logits: a confidence margin means nothing to it; use --kappa 0")
        if cfg.norm != "l2" or not math.isfinite(cfg.max_l2):
            raise ToolkitError(f"--attack {cfg.attack} is an L2 attack; give a finite --max-l2")
    if cfg.checks not in ("cheap", "full"):
        raise ToolkitError(f"checks must be cheap or full, got {cfg.checks!r}")
    if cfg.pairs and not cfg.targeted:
        raise ToolkitError("a --pairs sweep is targeted (set targeted=True)")
    if cfg.attack.endswith("-magnet") and magnet is None:
        raise ToolkitError(f"--attack {cfg.attack} needs a MagNet defense in the run")
    if is_bounded(cfg.attack) and not math.isfinite(bound_of(cfg)):
        raise ToolkitError(f"--attack {cfg.attack} attacks at the bound; give a finite "
                           "--max-l2")


START_POOL = 2000  # natural images the pgd attacks' image starts draw from


def images_except(x_all: torch.Tensor, exclude, limit: int = START_POOL) -> torch.Tensor:
    """The first ``limit`` images of ``x_all`` whose positions are not in ``exclude``."""
    others = torch.ones(len(x_all), dtype=torch.bool)
    others[torch.as_tensor(exclude, dtype=torch.long)] = False
    return x_all[others.nonzero().squeeze(1)[:limit]]


def start_pool(cfg: SweepConfig, x_all: torch.Tensor, attacked: torch.Tensor):
    """The images the pgd attacks' restarts start towards (``--pgd-start-images``): the first
    ``START_POOL`` of the data set's images that the run does not attack (the attacker's own
    natural images; none of them is an attacked image), or None when the setting is off."""
    return images_except(x_all, attacked) if cfg.pgd.start_images else None


def pgd_kwargs(cfg: SweepConfig, pool=None) -> dict:
    """The bounded attacks' settings of ``cfg`` as keyword arguments, with ``pool`` (from
    :func:`start_pool`) as ``start_pool`` when image starts are on."""
    out = asdict(cfg.pgd)
    if cfg.pgd.start_images:
        out["start_pool"] = pool
    return out
