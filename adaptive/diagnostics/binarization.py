"""The binarization test (Zimmermann, Brendel, Tramèr, Carlini, "Increasing Confidence in
Adversarial Robustness Evaluations", NeurIPS 2022): is the attack strong enough to find an
adversarial example where one provably exists?

Per test image ``x`` (classified correctly and accepted by every detector of the defense):

1. sample ``n_inner`` inner points in the ball of radius 0.95 eps around ``x`` (``x`` is one)
   and one boundary point at distance eps (the L2 sphere, or a corner of the L-inf box),
   resampling any point a detector rejects (the boundary point must be accepted, else the
   image is skipped; the inner points may be left unjudged, ``check_inner``);
2. fit a new linear readout (logistic regression) on the defended classifier's penultimate
   features (the model's ``penultimate(x)`` hook) that tells the boundary point from the
   inner points; the image is skipped unless it separates them perfectly;
3. the binarised classifier (logits ``[0, readout(features)]``, scaled so its margin at the
   image is the model's own margin there: the detector penalties an attack adds keep the
   weight they have in the real task) then has an adversarial
   example within eps that every detector accepts: the boundary point. Run the *unchanged*
   attack (same steps, same detector penalty) on it, labels 0, and count a success when its
   example is classified 1, within the bound, and accepted by every detector.

An attack that fails on the binarised task where it has a guaranteed solution is too weak to
trust as an upper bound on robustness; the paper asks for at least 95 %. The control: random
points in the ball (``n_random``) solving the same task, so a test that random search passes
is too easy to say anything.

The images run one at a time (each has its own readout), so the attack sees a model whose
batch is one image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from adaptive.core import metrics
from adaptive.core.attacks.lp import along_rays, check_norm, random_in_ball
from adaptive.core.errors import ToolkitError
from adaptive.defense import Defense

PASS_RATE = 0.95  # the paper's bar for an attack that passes the test


class BinarizedClassifier(nn.Module):
    """Two logits, ``[0, w . phi(x) + b]``, on the penultimate features ``phi`` of
    ``model``: class 1 is the boundary point's side."""

    def __init__(self, model: nn.Module, w: torch.Tensor, b: float):
        super().__init__()
        self.model = model
        self.register_buffer("w", w.float())
        self.b = float(b)
        self.input_shape = getattr(model, "input_shape", None)
        self.num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.model.penultimate(x) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def features_hook(model: nn.Module) -> Callable:
    """The model's ``penultimate(x)`` hook, or a clear error when it has none."""
    hook = getattr(model, "penultimate", None)
    if not callable(hook):
        raise ToolkitError(f"the binarization test needs the model's features: "
                           f"{type(model).__name__} has no penultimate(x) method (the input "
                           "of its last linear layer; see adaptive.core.models.ImageClassifier)")
    return hook


@dataclass
class ImageOutcome:
    """One image of the test: ``skipped`` (why, or None), ``attack_success``,
    ``random_success``, the attack's ``steps`` and the distance of its example."""

    index: int
    skipped: str | None = None
    directions: str | None = None  # noise or images: how this image's points were drawn
    inner_points: int | None = None  # the image and the inner points the detectors accepted
    attack_success: bool | None = None
    random_success: bool | None = None
    steps: int | None = None
    distance: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _accepted(defense: Defense, x: torch.Tensor) -> torch.Tensor:
    flags = list(defense.flags(x).values())
    if not flags:
        return torch.ones(len(x), dtype=torch.bool)
    return ~torch.stack(flags).any(0)


def _any_accepted(accepted: Callable, points: torch.Tensor, chunk: int = 16) -> bool:
    """Whether the detectors accept any of ``points``, judged ``chunk`` at a time and stopping
    at the first accepted one (a detector that attacks each input, as A2D does, makes every
    judgement count)."""
    return any(bool(accepted(points[i:i + chunk]).any()) for i in range(0, len(points), chunk))


def _distance(a: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    return (metrics.linf if norm == "linf" else metrics.l2)(a, x)


def _directions(x: torch.Tensor, n: int, pool: torch.Tensor | None, gen) -> torch.Tensor:
    """``n`` unit directions from ``x``: Gaussian noise, or (with a ``pool`` of other images)
    towards random images of the pool, so the points along them look like images (blends)."""
    if pool is None:
        g = torch.randn((n, *x.shape[1:]), generator=gen).to(x)
    else:
        pick = torch.randint(0, len(pool), (n,), generator=gen)
        g = pool[pick].to(x) - x
    return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))


def _inner(x: torch.Tensor, n: int, radius: float, norm: str, gen,
           pool: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` inner points: uniform in the L-inf box of ``radius`` (towards pool images: their
    difference clipped to the box and shrunk by a uniform factor), or for L2 on the sphere of
    ``radius`` after clipping to [0, 1] (as the boundary points: else the clipped inner points
    would lie much closer to the image than the boundary point, and a readout could tell them
    apart by their distance alone)."""
    if norm == "linf":
        if pool is None:
            return (x + random_in_ball((n, *x.shape[1:]), radius, norm, gen, x.device,
                                       x.dtype)).clamp(0, 1)
        pick = torch.randint(0, len(pool), (n,), generator=gen)
        u = torch.rand((n, *[1] * (x.ndim - 1)), generator=gen).to(x)
        return (x + u * (pool[pick].to(x) - x).clamp(-radius, radius)).clamp(0, 1)
    return _on_sphere(x, _directions(x, n, pool, gen), radius)


def _boundary(x: torch.Tensor, n: int, eps: float, norm: str, gen,
              pool: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` candidate boundary points in [0, 1] at distance eps: for L-inf corners of the box
    (towards pool images: their difference clipped to the box), for L2 on the sphere after
    clipping (points that cannot get that far are dropped)."""
    if norm == "linf":
        if pool is None:
            sign = torch.randint(0, 2, (n, *x.shape[1:]), generator=gen).to(x) * 2 - 1
            return (x + eps * sign).clamp(0, 1)
        pick = torch.randint(0, len(pool), (n,), generator=gen)
        out = (x + (pool[pick].to(x) - x).clamp(-eps, eps)).clamp(0, 1)
        return out[_distance(out, x, "linf") >= eps * (1 - 1e-6)]
    return _on_sphere(x, _directions(x, n, pool, gen), eps)


def _on_sphere(x: torch.Tensor, g: torch.Tensor, radius: float) -> torch.Tensor:
    """Along each unit direction ``g`` from ``x``, clipped to the pixel range, the point at
    L2 distance ``radius``; directions whose clipped ray never gets that far are dropped."""
    points, far = along_rays(x.expand(len(g), *x.shape[1:]), g, radius)
    return points[far]


def _readout(inner: torch.Tensor, boundary: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """A linear readout on features that puts ``boundary`` (1, d) strictly on side 1 and every
    row of ``inner`` strictly on side 0, or None when logistic regression finds none."""
    feats = torch.cat([inner, boundary]).double().numpy()
    labels = np.r_[np.zeros(len(inner)), np.ones(1)]
    mean, scale = feats.mean(0), feats.std(0) + 1e-8
    clf = LogisticRegression(C=1e4, class_weight="balanced", max_iter=5000)
    clf.fit((feats - mean) / scale, labels)
    w = clf.coef_[0] / scale
    b = float(clf.intercept_[0] - (clf.coef_[0] * mean / scale).sum())
    s = feats @ w + b
    if not (s[-1] > 0 and (s[:-1] < 0).all()):
        return None
    # the boundary point at logit 1 (binarization_test rescales to the task's own scale)
    return torch.from_numpy(w / s[-1]).float(), b / float(s[-1])


def _task_scale(model: nn.Module, x: torch.Tensor, label: int, s_x: float) -> float:
    """The factor that gives the binarised logit at the image the size of the model's own
    margin there: an attack that adds detector penalties to the margin weighs them against
    a margin of the size it was tuned for (a readout scaled to 1 at the boundary point would
    be swamped by the penalties and fail for a reason that is not the attack's)."""
    z = model(x)[0]
    others = torch.cat([z[:label], z[label + 1:]])
    margin = float(z[label] - others.max())
    return max(margin, 1.0) / max(abs(s_x), 1e-12)


def _find_boundary(defense: Defense, xi: torch.Tensor, modes: list[str], pool, tries: int,
                   eps: float, norm: str, gen: torch.Generator):
    """(a boundary point the detectors accept, the mode that drew it, its pool or None):
    noise first, towards other images when the detectors reject it; (None, ...) if none."""
    mode, src = None, None
    for mode in modes:
        src = None if mode == "noise" else pool
        for _ in range(tries):
            cand = _boundary(xi, 8, eps, norm, gen, src)
            ok = _accepted(defense, cand) if len(cand) else torch.zeros(0, dtype=torch.bool)
            if ok.any():
                return cand[ok.nonzero()[0]], mode, src
    return None, mode, src


def _inner_points(defense: Defense, xi: torch.Tensor, n: int, eps: float, norm: str,
                  gen: torch.Generator, src, tries: int | None) -> torch.Tensor:
    """``n`` inner points at 0.95 eps; with ``tries`` (None: unjudged), only those the
    detectors accept, the rejected ones redrawn up to ``tries`` times."""
    inner = _inner(xi, n, 0.95 * eps, norm, gen, src)
    if tries is None:
        return inner
    inner = inner[_accepted(defense, inner)]
    for _ in range(tries):
        missing = n - len(inner)
        if missing <= 0:
            break
        new = _inner(xi, missing, 0.95 * eps, norm, gen, src)
        inner = torch.cat([inner, new[_accepted(defense, new)]])
    return inner


def _attack_task(out: ImageOutcome, binarized: nn.Module, attack, xi: torch.Tensor,
                 penalty, accepted: Callable, eps: float, norm: str) -> None:
    """The unchanged attack on the binarised task of image ``xi``: solved when its example
    flips the readout, lies within the bound and is accepted; into ``out``."""
    r = attack.run(binarized, xi, torch.zeros(1, dtype=torch.long), penalty=penalty)
    adv = r.adversarial.to(xi.device)
    with torch.no_grad():
        hit = int(binarized(adv).argmax(1)[0]) == 1
    dist = float(_distance(adv, xi, norm)[0])
    out.attack_success = bool(hit and dist <= eps * (1 + 1e-5) and bool(accepted(adv)[0]))
    out.steps, out.distance = int(r.gradient_steps[0]), dist


def binarization_test(defense: Defense, attack_model: nn.Module, make_attack: Callable,
                      x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "l2",
                      penalty=None, index: list[int] | None = None, n_inner: int = 255,
                      n_random: int = 1000, tries: int = 20, inner_tries: int = 3,
                      seed: int = 0,
                      pool: torch.Tensor | None = None, directions: str = "auto",
                      task_only: bool = False, check_inner: bool = True,
                      log=print) -> dict:
    """Run the test on images ``x`` (labels ``y``) against ``defense``. ``attack_model``: the
    classifier the attack differentiates (the defense's, e.g. MagNet's reformed one), which
    must have the ``penultimate`` hook; ``make_attack()``: a fresh attack (``run(model, x,
    labels, penalty=...)`` at bound ``eps`` in ``norm``); ``penalty``: the attack's detector
    penalty, unchanged (it is called with no labels: a detector judges the input, whatever the
    task). ``directions``: how the points are drawn: ``noise`` (the paper's), ``images``
    (towards images of ``pool``, other images of the data set: detectors that reject noise at
    this bound may accept such blends), or ``auto`` (noise, else images, per image).
    ``task_only``: the same binarised tasks (points drawn and checked as usual), attacked with
    no detector term and solved when the readout flips, whatever the detectors say: a failure
    that persists there is the task's optimisation, not the detectors' terms. Rejected
    boundary candidates are redrawn up to ``tries`` times (8 at a time), rejected inner points
    ``inner_tries`` times; inner points still rejected are left out. ``check_inner=False``
    keeps the inner points unjudged: the guarantee rests on the boundary point alone (it is
    always judged), and a detector that attacks every input (A2D on a robust model: up to its
    cap of steps per point) makes judging a thousand inner points per image the test's main
    cost. Returns ``{"images": [...], "summary": {...}}``."""
    norm = check_norm(norm)
    hook = features_hook(attack_model)
    if not eps > 0:
        raise ToolkitError(f"the binarization test needs a bound eps > 0, got {eps!r}")
    modes = {"noise": ["noise"], "images": ["images"],
             "auto": ["noise", "images"]}.get(directions)
    if modes is None:
        raise ToolkitError(f"directions must be noise, images or auto, got {directions!r}")
    if pool is None:
        modes = [m for m in modes if m == "noise"]
        if not modes:
            raise ToolkitError("directions=images needs a pool of other images")
    gen = torch.Generator().manual_seed(seed)
    index = list(range(len(x))) if index is None else list(index)
    task_penalty = None if penalty is None or task_only else (
        lambda adv, labels, targeted: penalty(adv, None, False))

    def accepted(points: torch.Tensor) -> torch.Tensor:  # by the detectors, unless task_only
        return (torch.ones(len(points), dtype=torch.bool) if task_only
                else _accepted(defense, points))
    outcomes = []
    for i in range(len(x)):
        xi, out = x[i:i + 1], ImageOutcome(int(index[i]))
        outcomes.append(out)
        if int(defense.predict(xi)[0]) != int(y[i]) or not bool(_accepted(defense, xi)[0]):
            out.skipped = "misclassified or rejected"
            continue
        boundary, mode, src = _find_boundary(defense, xi, modes, pool, tries, eps, norm, gen)
        if boundary is None:
            out.skipped = "no boundary point the detectors accept"
            continue
        out.directions = mode
        inner = torch.cat([xi, _inner_points(defense, xi, n_inner - 1, eps, norm, gen, src,
                                             inner_tries if check_inner else None)])
        out.inner_points = len(inner)
        with torch.no_grad():
            found = _readout(hook(inner), hook(boundary))
        if found is None:
            out.skipped = "no linear readout separates the boundary point"
            continue
        w, b = found
        with torch.no_grad():  # the scale of the task it replaces (see _task_scale)
            k = _task_scale(attack_model, xi, int(y[i]), float(hook(xi)[0] @ w + b))
        binarized = BinarizedClassifier(attack_model, w * k, b * k).eval()
        _attack_task(out, binarized, make_attack(), xi, task_penalty, accepted, eps, norm)
        rand = _boundary(xi, n_random, eps, norm, gen, src)  # the control: drawn as the boundary
        with torch.no_grad():
            side = binarized(rand).argmax(1) == 1
        out.random_success = _any_accepted(accepted, rand[side])
        log(f"binarization: image {out.index}: attack "
            f"{'succeeded' if out.attack_success else 'FAILED'}, random "
            f"{'succeeded' if out.random_success else 'failed'}")
    return {"images": [o.as_dict() for o in outcomes], "summary": summarize(outcomes)}


def summarize(outcomes: list[ImageOutcome]) -> dict:
    """The test's result: images used and skipped (by reason), the attack's success rate on
    the binarised task, the random control's (points drawn as the boundary point was), and
    whether the attack passed (>= 95 %)."""
    used = [o for o in outcomes if o.skipped is None]
    skipped: dict[str, int] = {}
    for o in outcomes:
        if o.skipped:
            skipped[o.skipped] = skipped.get(o.skipped, 0) + 1
    asr = float(np.mean([o.attack_success for o in used])) if used else None
    drawn = [o.directions for o in used]
    return {"images": len(outcomes), "used": len(used), "skipped": skipped,
            "directions": {m: drawn.count(m) for m in ("noise", "images") if m in drawn},
            "attack_success_rate": asr,
            "random_success_rate": float(np.mean([o.random_success for o in used]))
            if used else None,
            "pass_rate": PASS_RATE,
            "passed": None if asr is None else asr >= PASS_RATE}
