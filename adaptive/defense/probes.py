"""Probes of a defense before any attack (the staged checks of AutoAdvExBench, Carlini et al.
2025, and AutoAttack's): what kind of forward the attacks face, so that they attack it the way
that works and judge it honestly.

On a few benign images, per defense:

* the forward gives finite logits, one row per image (else a one-line error naming the defense);
  each detector gives one True/False flag and one score (not NaN) per image
  (:func:`check_detectors`);
* two passes over the same images agree, the classifier's logits and (for a plug-in) each
  detector's scores or flags (else the defense is **random**: the attacks average their
  gradients over draws, EOT, and every example is judged on fresh draws of its classifier and
  detectors);
* the gradient of the classification margin is finite and non-zero, and a small step along it
  changes the margin as first order predicts (else the gradient is **masked**: quantised,
  thresholded, or computed by an inner optimisation; attacks follow the defense's declared
  ``surrogate`` through BPDA where it has one, and its gradient-free members otherwise).

A surrogate is used only after :func:`check_surrogate` found it labelling benign images as the
real classifier does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from defenses.defense import Defense, detector_flags, detector_scores

PROBE_IMAGES = 32  # benign images the probes run on
FIDELITY_IMAGES = 200  # ... and the surrogate's fidelity test
FIDELITY = 0.99  # share of benign images on which a surrogate must give the real label
RANDOM_CHANGE = 1e-5  # largest change between two passes (relative to the logits' scale)
STEP = 1e-2  # L2 length of the first-order probe's step, in pixel units
FIRST_ORDER_TOLERANCE = 0.5  # relative error of the first-order prediction still accepted
MOST = 0.5  # "most benign images": more than this share

# what a probe found about the gradient -> what it means
GRADIENTS = {
    "ok": "finite, non-zero and first-order accurate",
    "zero": "zero on most benign images (quantised or thresholded forward)",
    "non_finite": "not finite on most benign images",
    "first_order_mismatch": "a small step along it does not change the margin as it "
                            "predicts (a discontinuous or shattered forward)",
    "not_checked": "first order not checked (the forward is random)",
}


@dataclass
class Probe:
    """What the probes found of one defense: ``random`` (two passes differ: the classifier's
    logits by up to ``largest_change``, or the detectors named in ``random_detectors``),
    ``gradient`` (a key of :data:`GRADIENTS`) with the shares of benign
    images whose gradient was zero, not finite or first-order wrong, and ``surrogate`` (None:
    none declared; else the share of benign images it labels as the classifier does)."""

    defense: str
    random: bool
    largest_change: float
    gradient: str
    zero_share: float
    non_finite_share: float
    mismatch_share: float
    images: int
    surrogate: float | None = None
    random_detectors: list[str] = field(default_factory=list)

    @property
    def masked(self) -> bool:
        return self.gradient not in ("ok", "not_checked")

    @property
    def hidden(self) -> bool:
        """No gradient to follow at all (zero or not finite): white-box attacks through the
        real forward are pointless, only a surrogate or the gradient-free attacks can work."""
        return self.gradient in ("zero", "non_finite")

    def randomness(self) -> str:
        """What two passes over the same benign images showed, in words."""
        if not self.random:
            return "deterministic forward"
        words = f"random forward (two passes differ by up to {self.largest_change:.3g}"
        if self.random_detectors:
            words += f"; detectors {', '.join(self.random_detectors)} differ between passes"
        return words + ")"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Probe:
        return cls(**d)

    def describe(self) -> str:
        parts = [self.randomness(), f"gradient {GRADIENTS[self.gradient]}"]
        if self.surrogate is not None:
            parts.append(f"surrogate agrees on {self.surrogate:.1%} of benign images")
        return f"{self.defense}: " + "; ".join(parts)


def _logits(defense: Defense, model: nn.Module, x: torch.Tensor, part: str) -> torch.Tensor:
    """``model(x)`` checked: a tensor of finite logits, one row per image; anything else (or an
    exception in the user's code) is one line naming the defense and the part."""
    try:
        out = model(x)
    except ToolkitError:
        raise
    except Exception as e:
        raise ToolkitError(f"defense {defense.name!r}: its {part} raised {type(e).__name__}: "
                           f"{e} on {len(x)} benign images of shape {tuple(x.shape[1:])}") from e
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ToolkitError(f"defense {defense.name!r}: its {part} must return logits of shape "
                           f"(images, classes), got {shape} for {len(x)} images")
    if out.shape[1] < 2:
        raise ToolkitError(f"defense {defense.name!r}: its {part} returns {out.shape[1]} "
                           "logit per image; a classifier needs one per class (at least 2)")
    if not bool(torch.isfinite(out).all()):
        raise ToolkitError(f"defense {defense.name!r}: its {part} returns logits that are not "
                           "finite on benign images")
    return out


def _margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, labels[:, None], -torch.inf)
    return true - other.amax(1)


def _margin_gradient(defense: Defense, model: nn.Module, x: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(margins, their gradients) at ``x``; zero gradients where the output does not depend
    on the input through autograd (a forward under no_grad, or through NumPy)."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        m = _margins(_logits(defense, model, xg, "classifier"), labels)
        if not m.requires_grad:
            return m.detach(), torch.zeros_like(x)
        try:
            (g,) = torch.autograd.grad(m.sum(), xg, allow_unused=True)
        except RuntimeError as e:
            raise ToolkitError(f"defense {defense.name!r}: differentiating its classifier "
                               f"raised {e}") from e
    return m.detach(), torch.zeros_like(x) if g is None else g


@torch.no_grad()
def _first_order_mismatch(defense: Defense, model: nn.Module, x: torch.Tensor,
                          labels: torch.Tensor, m: torch.Tensor,
                          g: torch.Tensor) -> torch.Tensor:
    """Per image with a usable gradient: whether a step of L2 length :data:`STEP` down the
    margin (clipped to [0, 1]) changes it by other than first order predicts."""
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * (x.ndim - 1))
    stepped = (x - STEP * g / norm).clamp(0, 1)
    predicted = (g * (stepped - x)).flatten(1).sum(1)
    actual = _margins(_logits(defense, model, stepped, "classifier"), labels) - m
    return (actual - predicted).abs() > FIRST_ORDER_TOLERANCE * predicted.abs() + 1e-6


def probe_defense(defense: Defense, x: torch.Tensor, labels: torch.Tensor) -> Probe:
    """Probe ``defense``'s classifier on the benign images ``x`` (labels ``labels``, on the
    classifier's device); see the module docstring."""
    model = defense.classifier
    x, labels = x[:PROBE_IMAGES], labels[:PROBE_IMAGES].long()
    with torch.no_grad():
        first = _logits(defense, model, x, "classifier")
        again = _logits(defense, model, x, "classifier")
    change = float((first - again).abs().max())
    random = change > RANDOM_CHANGE * max(1.0, float(first.abs().max()))
    m, g = _margin_gradient(defense, model, x, labels)
    norms = g.flatten(1).norm(dim=1)
    non_finite = ~torch.isfinite(norms)
    zero = norms == 0
    usable = ~(zero | non_finite)
    mismatch = torch.zeros_like(usable)
    if not random and usable.any():
        mismatch[usable] = _first_order_mismatch(defense, model, x[usable], labels[usable],
                                                 m[usable], g[usable])
    n = len(x)
    shares = {k: float(v.float().mean()) for k, v in
              {"zero": zero, "non_finite": non_finite, "mismatch": mismatch}.items()}
    if shares["zero"] + shares["non_finite"] > MOST:
        gradient = "zero" if shares["zero"] >= shares["non_finite"] else "non_finite"
    elif random:
        gradient = "not_checked"
    elif shares["mismatch"] > MOST:
        gradient = "first_order_mismatch"
    else:
        gradient = "ok"
    return Probe(defense.name, random, change, gradient, shares["zero"],
                 shares["non_finite"], shares["mismatch"], n)


@torch.no_grad()
def check_surrogate(defense: Defense, x: torch.Tensor) -> float | None:
    """The fidelity test of ``defense``'s surrogate (None: it declares none): the share of the
    benign images ``x`` it labels as the real classifier does; below :data:`FIDELITY` it is
    refused in one line (attacks would follow a model that is not the defense)."""
    if defense.surrogate is None:
        return None
    x = x[:FIDELITY_IMAGES]
    real = _logits(defense, defense.classifier, x, "classifier").argmax(1)
    mine = _logits(defense, defense.surrogate, x, "surrogate").argmax(1)
    agree = float((real == mine).float().mean())
    if agree < FIDELITY:
        raise ToolkitError(f"defense {defense.name!r}: its surrogate labels {agree:.1%} of "
                           f"{len(x)} benign images as its classifier does (BPDA needs >= "
                           f"{FIDELITY:.0%}); fix the surrogate or leave it out")
    return agree


def check_detectors(defense: Defense, x: torch.Tensor) -> None:
    """Run each of ``defense``'s detectors once on the benign images ``x``: ``detect`` must
    give one True/False flag per image and ``score`` (where it has one) one number, none NaN
    (:func:`defenses.defense.detector_flags`, ``detector_scores``); anything else, or an
    exception in the user's code, is one line naming the defense, the detector and the
    call."""
    x = x[:PROBE_IMAGES]
    for name, det in defense.detectors.items():
        try:
            detector_flags(name, det, x)
            detector_scores(name, det, x)
        except ToolkitError as e:
            raise ToolkitError(f"defense {defense.name!r}: {e} (benign images of shape "
                               f"{tuple(x.shape[1:])})") from e


def random_detectors(defense: Defense, x: torch.Tensor) -> list[str]:
    """The detectors of ``defense`` whose two passes over the benign images ``x`` differ
    (their scores where they have one, else their flags)."""
    x = x[:PROBE_IMAGES]
    out = []
    for name, det in defense.detectors.items():
        first, again = detector_scores(name, det, x), detector_scores(name, det, x)
        if first is None or again is None:
            differ = not torch.equal(detector_flags(name, det, x), detector_flags(name, det, x))
        else:
            scale = max(1.0, float(first.abs().max()))
            differ = float((first - again).abs().max()) > RANDOM_CHANGE * scale
        if differ:
            out.append(name)
    return out


def probe_all(defenses: dict[str, Defense], x: torch.Tensor, labels: torch.Tensor,
              log=print, detectors: bool = False) -> dict[str, Probe]:
    """Probe every defense (classifiers shared by several are probed once) and test every
    surrogate; with ``detectors`` (plug-ins: the toolkit knows which of its own detectors
    draw randomness) also whether each detector is random (:func:`random_detectors`); each
    finding is printed."""
    found: dict[str, Probe] = {}
    seen: dict[int, Probe] = {}
    for name, d in defenses.items():
        key = id(d.classifier)
        probe = seen.get(key)
        if probe is None:
            probe = seen[key] = probe_defense(d, x, labels)
        drawn = random_detectors(d, x) if detectors else []
        probe = Probe(**{**probe.to_json(), "defense": name,
                         "surrogate": check_surrogate(d, x), "random_detectors": drawn,
                         "random": probe.random or bool(drawn)})
        found[name] = probe
        if probe.random or probe.masked or probe.surrogate is not None:
            log(f"probe: {probe.describe()}")
    return found
