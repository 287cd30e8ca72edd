"""A sweep's settings: one typed dataclass per part, the one source of every default (the
command line derives its defaults from these), validated in one place before any work.

``asdict(SweepConfig(...))`` is what a run folder's ``config.json`` records and what a resumed
run must match; the nested settings serialise to the same dicts earlier versions wrote, so old
run folders still resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from adaptive.attacks import (
    ATTACK_SPECS,
    Attack,
    AttackSpec,
    CWSettings,
    HardLabelSettings,
    PGDSettings,
    attack_spec,
)
from adaptive.attacks.apgd import LOSSES, APGDSettings
from adaptive.attacks.bounded_pgd import SCHEDULES
from adaptive.attacks.rays import RaySSettings
from adaptive.attacks.registry import Access, AttackSetup
from adaptive.attacks.square import SquareSettings
from adaptive.core.defaults import FAMILY_DEFAULTS, family_defaults, model_family, preset_family
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import MAX_SEED
from adaptive.core.threat import Norm, ThreatModel
from defenses.a2d.zscore import DEFAULT_H, MIN_CALIBRATION

# A sweep's attack is a registered attack (adaptive.attacks.registry) and, for those that aim at
# the detectors a run names, what they aim at besides the classifier: -magnet, -a2d or -full for
# the penalties against those defenses' detectors (cw-full, pgd-a2d). Attacks registered with
# aims="all" (spgd, opgd: every detector they can; hsj: the whole defense's verdict) take no
# suffix and aim as -full does.
ATTACKED_PARTS = {"": set(), "-magnet": {"magnet", "rmagnet"}, "-a2d": {"a2d"},
                  "-full": {"a2d", "magnet", "rmagnet"}}
# auto: the per-image worst case over a fixed ensemble, as AutoAttack: each member in turn, only
# on the images some defense still withstands (the hard-label members: each defense's verdict,
# on the images it still withstands); records say which member broke each image against each
# defense (adaptive.sweep.auto).
AUTO = "auto"


# The gradient a white-box attack follows through a defense that hides its own (and declares
# no surrogate): the bare classifier's, or its input-diversity average
# (adaptive.attacks.input_diversity).
STAND_INS = ("bare", "diverse")


@dataclass(frozen=True)
class AutoMember:
    """A member of ``auto``: its ``label`` in records (``by``, ``broken_by``), the sweep
    ``attack`` it runs and the ``overrides`` of that attack's settings (APGD-T is ``apgd-full``
    on the DLR loss with target rounds); :func:`member_config` is the sweep that runs it
    alone. ``config``: changes to the sweep's own settings (``apgd-di`` follows the diverse
    stand-in); ``guided_only``: it aims only at the defenses whose gradient is hidden or
    first-order wrong (``_Judges.guided``, through its stand-in), not at the shared
    objective."""

    label: str
    attack: str
    overrides: tuple = ()
    config: tuple = ()
    guided_only: bool = False

    @property
    def gradient_free(self) -> bool:
        return parse_attack(self.attack).spec.access is not Access.GRADIENTS


AUTO_ENSEMBLE = (
    AutoMember("cw", "cw"),  # the paper's C&W-kappa, transferred from the bare classifier
    AutoMember("apgd-ce", "apgd-full", (("loss", "ce"), ("target_classes", 0))),
    AutoMember("apgd-t", "apgd-full", (("loss", "dlr"), ("target_classes", 3))),
    # APGD-CE again at each defense that hides its gradient (or whose gradient misleads),
    # following the input-diversity average of the bare gradient (a vote of several networks
    # moves when the bare one's does not)
    AutoMember("apgd-di", "apgd-full", (("loss", "ce"), ("target_classes", 0)),
               (("stand_in", "diverse"),), guided_only=True),
    AutoMember("spgd", "spgd"),  # the detector-aware PGDs, where there are detectors
    AutoMember("opgd", "opgd"),
    AutoMember("square", "square-full"),  # score-based: no gradients
    AutoMember("hsj", "hsj"),  # hard-label, L2
    AutoMember("rays", "rays"),  # hard-label, L-inf
)
AUTO_MEMBERS = tuple(m.label for m in AUTO_ENSEMBLE)


def auto_member(label: str) -> AutoMember:
    """The member of ``auto`` labelled ``label`` (``apgd-t``; ``apgd-t@mine`` aims at one
    defense)."""
    base = label.split("@")[0]
    for m in AUTO_ENSEMBLE:
        if m.label == base:
            return m
    raise ToolkitError(f"auto has no member {label!r}; members: {', '.join(AUTO_MEMBERS)}")


def member_config(cfg: SweepConfig, member: AutoMember | str) -> SweepConfig:
    """The sweep that runs the ``member`` of ``cfg``'s auto (or the one of that label) alone:
    its attack, with its settings' overrides."""
    m = member if isinstance(member, AutoMember) else auto_member(member)
    changed: dict[str, Any] = {"attack": m.attack, **dict(m.config)}
    if m.overrides:
        key = parse_attack(m.attack).spec.settings_key
        changed[key] = replace(getattr(cfg, key), **dict(m.overrides))
    return replace(cfg, **changed)


MAX_KAPPAS = 1000  # values in one --kappa range: more is a typo, not a sweep
MAX_KAPPA = 1000.0  # a logit margin; the paper sweeps 0-20, larger is a typo

# What a sweep defends and bounds by default, per data-set family (adaptive.core.defaults), in
# the shape of SweepConfig's fields.
DATASET_DEFAULTS = {family: dict(dataset=d.dataset, max_l2=d.max_l2, max_linf=d.max_linf,
                                 defenses=",".join(d.defenses), magnet=d.magnet)
                    for family, d in FAMILY_DEFAULTS.items()}
# A SweepConfig field left at this value takes its family's default (SweepConfig.__post_init__).
FAMILY_DEFAULT = "family-default"


@dataclass(frozen=True)
class AttackChoice:
    """A sweep's ``--attack`` parsed once: the registered attack (``method``; None for the
    ``auto`` ensemble) and the suffix naming what else it aims at."""

    name: str
    method: str | None
    suffix: str = ""

    @property
    def spec(self) -> AttackSpec:
        if self.method is None:
            raise ToolkitError("auto is an ensemble of attacks, not one registered attack")
        return attack_spec(self.method)

    @property
    def ensemble(self) -> bool:
        return self.method is None

    @property
    def aims_at_all(self) -> bool:
        return self.ensemble or self.spec.aims == "all"

    @property
    def hard_label(self) -> bool:
        return not self.ensemble and self.spec.access is Access.LABELS

    @property
    def bounded(self) -> bool:
        """Whether it runs at exactly the bound (auto does: its members include such)."""
        return self.ensemble or self.spec.fixed_budget

    @property
    def aims_at_plugins(self) -> bool:
        """Whether it also aims at the plug-in defenses' differentiable detectors."""
        return self.suffix == "-full" or self.ensemble or (
            self.spec.aims == "all" and self.spec.access is Access.GRADIENTS)

    def parts(self, defenses: list[str] | None = None) -> set[str]:
        """The defenses whose detectors it penalises (``cw-full`` -> a2d and magnet). The
        attacks that aim at whatever the run defends with (-full, spgd, opgd, hsj, auto) aim,
        given the run's ``defenses``, only at the parts among them: an A2D term in an attack
        on feature squeezing alone would only weaken it."""
        parts = ATTACKED_PARTS["-full"] if self.aims_at_all else ATTACKED_PARTS[self.suffix]
        if defenses is not None and (self.aims_at_plugins or self.hard_label):
            parts = parts & {p for d in defenses for p in d.split("+")}
        return set(parts)


def attack_names() -> tuple[str, ...]:
    """Every name a sweep's ``--attack`` takes, in the registry's order, then ``auto``."""
    names = []
    # the paper's attack first, then the registry's order
    for name, spec in sorted(ATTACK_SPECS.items(), key=lambda item: item[0] != "cw"):
        names += [name + suffix for suffix in ATTACKED_PARTS] if spec.aims == "chosen" \
            else [name]
    return tuple(names) + (AUTO,)


ATTACKS = attack_names()


def parse_attack(name: str) -> AttackChoice:
    """``pgd-full`` -> AttackChoice(method="pgd", suffix="-full"); unknown names refused."""
    if name == AUTO:
        return AttackChoice(name, None)
    method, dash, rest = str(name).partition("-")
    suffix = dash + rest
    spec = ATTACK_SPECS.get(method)
    if spec is None or suffix not in ATTACKED_PARTS or (suffix and spec.aims != "chosen"):
        raise ToolkitError(f"unknown attack {name!r}; choose from {', '.join(attack_names())}")
    return AttackChoice(name, method, suffix)


def attacked_parts(attack: str, defenses: list[str] | None = None) -> set[str]:
    """The defenses whose detectors ``attack`` penalises (see :meth:`AttackChoice.parts`)."""
    return parse_attack(attack).parts(defenses)


def aims_at_plugins(attack: str) -> bool:
    """Whether ``attack`` also aims at the plug-in defenses' differentiable detectors."""
    return parse_attack(attack).aims_at_plugins


def is_bounded(attack: str) -> bool:
    """Whether ``attack`` runs at exactly the bound (PGD and its detector-aware variants, and
    auto, whose members include them)."""
    return parse_attack(attack).bounded


def make_attack(cfg: SweepConfig, attack: str, kappa: float, start_pool=None,
                **overrides) -> Attack:
    """The registered attack of ``attack`` (a sweep attack name; its suffix does not change
    the attack, only its objective) with ``cfg``'s threat model, seed and settings, at
    ``kappa``; ``overrides``: single settings changed (the checklist's variants)."""
    spec = parse_attack(attack).spec
    return spec.make(AttackSetup(cfg.threat, kappa, cfg.seed, getattr(cfg, spec.settings_key),
                                 start_pool, overrides))


def with_eot(cfg: SweepConfig, eot: int) -> SweepConfig:
    """``cfg`` with at least ``eot`` gradient samples per step in its gradient attacks (an
    objective through a random forward)."""
    return replace(cfg, pgd=replace(cfg.pgd, eot=max(cfg.pgd.eot, eot)),
                   apgd=replace(cfg.apgd, eot=max(cfg.apgd.eot, eot)))


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
class CleverSettings:
    """CLEVER (untargeted, L2) of each adversarial example: ``n_batches`` x ``n_samples``
    gradient samples in the ball of ``radius``."""

    n_batches: int = 50
    n_samples: int = 64
    radius: float = 5.0


@dataclass
class SweepConfig:
    """Everything that defines a sweep's results (see ``adaptive sweep --help``)."""

    # dataset, defenses, max_l2 and magnet: when not given, the defaults of the family of the
    # data set or else of the model (adaptive.core.defaults): SweepConfig(model="cifar-cnn")
    # attacks CIFAR-10 at L2 1.6 against at, a2d+at
    dataset: str = FAMILY_DEFAULT
    model: str = "mnist-cnn"
    model_sha256: str = ""
    defenses: list | None = None  # "none" first, then the family's compositions
    kappas: list = field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0, 20.0])
    n: int = 100
    n_cal: int = 200
    max_l2: float | None = None  # L2 runs: the family's; L-inf runs: inf (unused)
    targeted: bool = False
    seed: int = 0
    batch: int = 50
    cw: CWSettings = field(default_factory=CWSettings)
    a2d_engines: list = field(default_factory=lambda: ["bim_d"])
    h: float = DEFAULT_H
    magnet: str | None = FAMILY_DEFAULT
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
    max_linf: float | None = None  # L-inf runs: the family's when not given
    hsj: HardLabelSettings = field(default_factory=HardLabelSettings)
    apgd: APGDSettings = field(default_factory=APGDSettings)
    square: SquareSettings = field(default_factory=SquareSettings)
    rays: RaySSettings = field(default_factory=RaySSettings)
    # Each attacked image draws its random numbers (restarts, probes) from its own seed, so its
    # result does not depend on its batch; auto always does. Runs made before it: per batch.
    image_seeds: bool = False
    # "cheap": the indicators of attack failure (every sweep); "full": also the checklist
    # (adaptive.sweep.checklist), which attacks the smallest kappa's images again.
    checks: str = "cheap"
    # Against a defense whose forward the probes found random (adaptive.defense.probes): the
    # gradient samples per step of the attacks aimed at it (EOT; at least --eot), and the fresh
    # draws each example is judged on (ASR: fooling a majority of them)
    random_eot: int = 10
    draws: int = 20
    # Against a defense whose gradient the probes found hidden and that declares no surrogate:
    # the white-box attacks aimed at it follow the bare classifier's gradient through its
    # forward (BPDA with the bare model); False: only transfer and the gradient-free attacks
    bare_gradient: bool = True
    # that stand-in gradient (STAND_INS): the bare model's own, or its average over random
    # resize-and-pad draws of the input (input diversity; auto's apgd-di member follows it)
    stand_in: str = "bare"

    def __post_init__(self):
        self._family_defaults()
        self.cw = _from_dict(CWSettings, self.cw, "cw")
        self.pgd = _from_dict(PGDSettings, self.pgd, "pgd")
        self.clever = _from_dict(CleverSettings, self.clever, "clever")
        self.hsj = _from_dict(HardLabelSettings, self.hsj, "hsj")
        self.apgd = _from_dict(APGDSettings, self.apgd, "apgd")
        self.square = _from_dict(SquareSettings, self.square, "square")
        self.rays = _from_dict(RaySSettings, self.rays, "rays")

    def _family_defaults(self) -> None:
        """Settings left unset take the defaults of the data set's family, else the model's."""
        family: str | None
        if self.dataset != FAMILY_DEFAULT:
            family = preset_family(self.dataset)
        else:
            family = model_family(self.model) if isinstance(self.model, str) else None
        d = family_defaults(family or "mnist")
        if self.dataset == FAMILY_DEFAULT:
            self.dataset = d.dataset
        if self.defenses is None:
            self.defenses = ["none", *d.defenses]
        if self.magnet == FAMILY_DEFAULT:
            self.magnet = d.magnet
        if self.max_l2 is None:
            self.max_l2 = float("inf") if self.norm == "linf" else d.max_l2
        if self.norm == "linf" and self.max_linf is None:
            self.max_linf = d.max_linf

    @property
    def threat(self) -> ThreatModel:
        """The run's threat model: its norm and bound."""
        return threat_of(self)

    @property
    def attack_choice(self) -> AttackChoice:
        """``attack`` parsed (see :func:`parse_attack`)."""
        return parse_attack(self.attack)


def threat_of(cfg) -> ThreatModel:
    """The threat model of a sweep (``cfg``: a SweepConfig or the dict a run folder's
    config.json holds; runs made before L-inf sweeps existed are L2)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    norm = Norm.of(get("norm", "l2") or "l2")
    eps = get("max_linf") if norm is Norm.LINF else get("max_l2")
    return ThreatModel(norm, float("nan") if eps is None else eps)  # None: refused as NaN


def bound_of(cfg) -> float:
    """The sweep's distortion bound in its own norm (``cfg``: a SweepConfig or its dict)."""
    return threat_of(cfg).eps


def distance_key(cfg) -> str:
    """The record field holding each example's distance in the sweep's norm (l2 or linf)."""
    return threat_of(cfg).norm.value


def norm_label(cfg) -> str:
    """"L2" or "L∞", for titles and check names."""
    return threat_of(cfg).norm.label


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
    choice = parse_attack(cfg.attack)
    if not isinstance(cfg.kappas, list) or not cfg.kappas:
        raise ToolkitError("kappa: give at least one value")
    if len(cfg.kappas) > MAX_KAPPAS:
        raise ToolkitError(f"kappa: {len(cfg.kappas)} values; at most {MAX_KAPPAS}")
    for k in cfg.kappas:
        _finite(k, "kappa", 0.0, strict=False)
        if k > MAX_KAPPA:
            raise ToolkitError(f"kappa is a margin in logits (the paper sweeps 0-20): at most "
                               f"{MAX_KAPPA:g}, got {k:g}")
    twice = sorted({k for k in cfg.kappas if cfg.kappas.count(k) > 1})
    if twice:
        raise ToolkitError(f"kappa: {', '.join(f'{k:g}' for k in twice)} given more than once")
    _count(cfg.seed, "seed", 0)
    if cfg.seed > MAX_SEED:
        raise ToolkitError(f"seed must be from 0 to {MAX_SEED}, got {cfg.seed}")
    for name in ("n", "n_cal", "batch"):
        _count(getattr(cfg, name), name)
    if (any("a2d" in d.split("+") for d in cfg.defenses or [])
            or "a2d" in attacked_parts(cfg.attack, cfg.defenses)) and cfg.n_cal < MIN_CALIBRATION:
        raise ToolkitError(f"n_cal {cfg.n_cal}: A2D's Z-score calibrates on at least "
                           f"{MIN_CALIBRATION} benign images")
    if not isinstance(cfg.max_l2, (int, float)) or math.isnan(cfg.max_l2) or cfg.max_l2 <= 0:
        raise ToolkitError(f"max_l2 (the L2 bound) must be a number > 0 (inf: no bound), got "
                           f"{cfg.max_l2!r}")
    Norm.of(cfg.norm)
    if cfg.norm == "linf":
        _finite(cfg.max_linf, "max_linf (the L-inf bound, e.g. 8/255)")
        if cfg.max_linf is not None and cfg.max_linf > 1:
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
    _count(cfg.random_eot, "random-eot")
    _count(cfg.draws, "draws")
    if cfg.stand_in not in STAND_INS:
        raise ToolkitError(f"unknown stand-in {cfg.stand_in!r}; choose from "
                           f"{', '.join(STAND_INS)}")
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
    _validate_attack_settings(cfg)
    if choice.hard_label:
        if cfg.kappas != [0.0]:
            raise ToolkitError(f"--attack {cfg.attack} sees only the defense's verdict, no "
                               "logits: a confidence margin means nothing to it; use --kappa 0")
        norms = choice.spec.threat_models
        if cfg.threat.norm not in norms or not math.isfinite(bound_of(cfg)):
            flags = " or ".join(f"--max-{n.value}" for n in norms)
            raise ToolkitError(f"--attack {cfg.attack} is an {'/'.join(n.label for n in norms)} "
                               f"attack; give --norm {norms[0].value} and a finite {flags}")
    if cfg.checks not in ("cheap", "full"):
        raise ToolkitError(f"checks must be cheap or full, got {cfg.checks!r}")
    if cfg.pairs and not cfg.targeted:
        raise ToolkitError("a --pairs sweep is targeted (set targeted=True)")
    if choice.suffix == "-magnet" and magnet is None:
        raise ToolkitError(f"--attack {cfg.attack} needs a MagNet defense in the run")
    if choice.bounded and not math.isfinite(bound_of(cfg)):
        raise ToolkitError(f"--attack {cfg.attack} attacks at the bound; give a finite "
                           "--max-l2")


def _validate_attack_settings(cfg: SweepConfig) -> None:
    """The settings of apgd, square, rays and hsj."""
    _count(cfg.apgd.steps, "apgd steps")
    _count(cfg.apgd.restarts, "apgd restarts")
    _count(cfg.apgd.target_classes, "apgd target classes", 0)
    _count(cfg.apgd.eot, "apgd eot")
    if cfg.apgd.loss not in LOSSES:
        raise ToolkitError(f"unknown apgd loss {cfg.apgd.loss!r}; choose from "
                           f"{', '.join(LOSSES)}")
    _finite(cfg.apgd.rho, "apgd rho")
    if cfg.apgd.rho >= 1:
        raise ToolkitError(f"apgd rho must be < 1, got {cfg.apgd.rho!r}")
    _count(cfg.square.queries, "square queries", 2)
    _count(cfg.square.restarts, "square restarts")
    _finite(cfg.square.p_init, "square p_init")
    if cfg.square.p_init > 1:
        raise ToolkitError(f"square p_init must be at most 1, got {cfg.square.p_init!r}")
    _count(cfg.rays.queries, "rays queries", 2)
    _finite(cfg.rays.tolerance, "rays tolerance")
    if cfg.rays.tolerance >= 1:
        raise ToolkitError(f"rays tolerance must be < 1, got {cfg.rays.tolerance!r}")
    _count(cfg.hsj.iterations, "hsj iterations")
    _count(cfg.hsj.evals, "hsj evals", 2)
    _count(cfg.hsj.max_evals, "hsj max evals", cfg.hsj.evals)


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
