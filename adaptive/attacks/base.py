"""The attack contract: every attack of ``adaptive.attacks`` is an :class:`Attack` with one
``run`` method, as in Foolbox 3, and returns an :class:`AttackResult`.

``run(model, x, labels, targeted=False, penalty=None, seeds=None)``: ``x`` float images in
[0, 1], NCHW;
``labels`` the true labels (untargeted) or the targets (targeted); ``model`` returns logits
(it may be a defended model, e.g. MagNet's reformer in front of the classifier); ``penalty``
an extra differentiable per-sample term >= 0 that must reach 0 for success (the detectors of an
adaptive attack; see :mod:`adaptive.attacks.objective`); ``seeds`` optional per-sample seeds:
each sample's random draws then come from its own generator, so its result does not depend on
which other samples share its batch (what a per-image worst case over attacks needs, each
attack run only on the images still robust). Inputs are checked, the batch is cut
into ``batch_size`` pieces and the pieces' results are joined here, once for every attack.

Two kinds, as Foolbox 3 splits them: a :class:`MinimumDistanceAttack` looks for the smallest
perturbation that meets its objective (its result's ``l2`` is what it needed; success under a
bound is decided afterwards), a :class:`FixedBudgetAttack` spends a fixed budget ``eps`` and
reports success within it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import attack_batch_size, model_device
from adaptive.core.validation import check_images, check_labels

# penalty(adv, labels, targeted) -> per-sample term >= 0 that must be 0 for success.
Penalty = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


@dataclass
class Trace:
    """What an attack's iterations did, per sample (for the indicators of attack failure,
    :mod:`adaptive.diagnostics.indicators`): ``loss`` (T, n), the objective the attack
    descended at each evaluation of the sample's last run (its last round or constant; NaN
    where it did not run that long); ``ever_met``, whether any iterate met the attack's whole
    objective (its margin and every penalty term); ``first_grad_norm``, the norm of the
    sample's first gradient (-1: it took no step); ``returned_met``, whether the returned
    example meets the whole objective (None: as ``AttackResult.success``; the bounded attacks
    count a reached margin as success and leave the detectors to the judge)."""

    loss: torch.Tensor
    ever_met: torch.Tensor
    first_grad_norm: torch.Tensor
    returned_met: torch.Tensor | None = None

    @classmethod
    def start(cls, evaluations: int, n: int) -> Trace:
        return cls(torch.full((evaluations, n), float("nan")),
                   torch.zeros(n, dtype=torch.bool), torch.full((n,), -1.0))

    def restart(self, idx: torch.Tensor) -> None:
        """The samples ``idx`` begin a new run: their loss history starts afresh."""
        self.loss[:, idx.cpu()] = float("nan")

    def step(self, t: int, idx: torch.Tensor, loss: torch.Tensor,
             grad: torch.Tensor | None) -> None:
        """Evaluation ``t`` of the samples ``idx``: their ``loss`` and (when they step) their
        gradient, whose norm is kept for each sample's first step."""
        idx = idx.cpu()
        if t < len(self.loss):
            self.loss[t, idx] = loss.detach().float().cpu()
        if grad is not None:
            first = self.first_grad_norm[idx] < 0
            if first.any():
                norms = grad.detach().flatten(1).norm(dim=1).float().cpu()
                self.first_grad_norm[idx[first]] = norms[first]

    @classmethod
    def cat(cls, parts: list[Trace]) -> Trace:
        length = max(len(p.loss) for p in parts)
        pad = [torch.cat([p.loss, torch.full((length - len(p.loss), p.loss.shape[1]),
                                             float("nan"))]) for p in parts]
        met = [p.returned_met for p in parts]
        return cls(torch.cat(pad, 1), torch.cat([p.ever_met for p in parts]),
                   torch.cat([p.first_grad_norm for p in parts]),
                   None if any(m is None for m in met) else torch.cat(met))


@dataclass
class AttackResult:
    """Per sample (tensors of length n, on the CPU)."""

    adversarial: torch.Tensor  # the returned example, or the input where none was found
    l2: torch.Tensor  # its L2 distance to the input (0 where unsuccessful)
    success: torch.Tensor  # bool: the attack's objective met (kappa margin, penalties at 0)
    margin: torch.Tensor  # the returned example's margin (<= -kappa); NaN where unsuccessful
    gradient_steps: torch.Tensor  # gradient steps spent (a cost measure)
    # The highest confidence (-margin) any iterate reached, successful or not: tells an attack
    # that ran out of budget from a margin the model cannot reach at all.
    confidence_reached: torch.Tensor | None = None
    trace: Trace | None = None  # the iterations, for the indicators of attack failure

    @classmethod
    def cat(cls, parts: list[AttackResult]) -> AttackResult:
        """The results of consecutive batches as one."""
        def joined(name):
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                return None
            return Trace.cat(values) if name == "trace" else torch.cat(values)

        return cls(*(joined(f.name) for f in dataclasses.fields(cls)))


def kappa_margins(logits: torch.Tensor, classes: torch.Tensor, targeted: bool) -> torch.Tensor:
    """How far each sample is from success; <= -kappa means success at confidence kappa:
    ``max_{i != t} Z_i - Z_t`` (targeted at ``t``) or ``Z_y - max_{i != y} Z_i``."""
    own = logits.gather(1, classes[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, classes[:, None], float("-inf"))
    best_other = others.amax(1)
    return best_other - own if targeted else own - best_other


class Draws:
    """Where an attack's random numbers come from: one generator shared by the whole run (the
    draws of a sample depend on its batch) or one generator per sample (they depend on its own
    seed only). ``sample(rows, draw)`` returns ``draw(shape, generator)`` for the samples at
    positions ``rows`` of the batch, ``shape`` being ``(len(rows), *rest)`` or ``(1, *rest)``."""

    def __init__(self, shared: torch.Generator | None = None,
                 per_sample: list[torch.Generator] | None = None):
        self.shared, self.per_sample = shared, per_sample

    @classmethod
    def seeded(cls, seed: int) -> Draws:
        return cls(shared=torch.Generator().manual_seed(int(seed)))

    @classmethod
    def for_samples(cls, seeds) -> Draws:
        return cls(per_sample=[torch.Generator().manual_seed(int(s)) for s in seeds])

    def sample(self, rows: torch.Tensor, rest: tuple, draw: Callable) -> torch.Tensor:
        """``draw((n, *rest), generator)`` for the ``n`` samples at batch positions ``rows``."""
        if self.per_sample is None:
            return draw((len(rows), *rest), self.shared)
        return torch.cat([draw((1, *rest), self.per_sample[int(i)]) for i in rows])


def check_seeds(seeds, n: int) -> torch.Tensor | None:
    """Per-sample seeds as a 1-D integer tensor of length ``n`` (or None)."""
    if seeds is None:
        return None
    seeds = torch.as_tensor(seeds)
    if seeds.shape != (n,) or seeds.dtype.is_floating_point or seeds.dtype == torch.bool:
        raise ToolkitError(f"seeds must be {n} integers (one per sample), got shape "
                           f"{tuple(seeds.shape)} of {seeds.dtype}")
    return seeds


class Attack:
    """Base of every attack (see the module docstring). Subclasses set ``name`` and
    ``batch_size`` and implement ``_run_batch(model, x, labels, targeted, penalty, state)``
    (``state``: what ``_start()`` returned for this run, e.g. a seeded generator, or with
    per-sample ``seeds`` what ``_start_samples(seeds)`` returned for the batch) and
    ``config()``."""

    name: str = "attack"
    # None: what suits the model's device (adaptive.core.runtime.attack_batch_size)
    batch_size: int | None = 256

    def run(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
            targeted: bool = False, penalty: Penalty | None = None,
            seeds=None) -> AttackResult:
        """Attack ``x``; ``labels`` are targets (targeted) or true labels (untargeted);
        ``seeds``: optional per-sample seeds (see the module docstring)."""
        check_images(x, getattr(model, "input_shape", None), what=f"inputs to {self.name}")
        n_classes = getattr(model, "num_classes", None)
        check_labels(labels, len(x), n_classes or int(labels.max()) + 1, f"{self.name} labels")
        seeds = check_seeds(seeds, len(x))
        state = self._start() if seeds is None else None
        size = self.batch_size
        if size is None:  # the device's batch, in equal pieces (no small remainder)
            cap = attack_batch_size(model_device(model))
            size = max(1, math.ceil(len(x) / max(1, math.ceil(len(x) / cap))))
        return AttackResult.cat([
            self._run_batch(model, x[i:i + size], labels[i:i + size], targeted, penalty,
                            state if seeds is None else self._start_samples(seeds[i:i + size]))
            for i in range(0, len(x), size)])

    def _start(self) -> Any:
        return None

    def _start_samples(self, seeds: torch.Tensor) -> Any:
        """The state of one batch whose samples draw from their own ``seeds``."""
        return self._start()

    def _run_batch(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                   targeted: bool, penalty: Penalty | None, state: Any) -> AttackResult:
        raise NotImplementedError

    def config(self) -> dict:
        """The attack's settings, as recorded beside results."""
        raise NotImplementedError


class RandomAttack(Attack):
    """An attack that draws random numbers: from one generator seeded by its ``seed`` per run,
    or with per-sample ``seeds`` one generator per sample (:class:`Draws`)."""

    seed: int = 0

    def _start(self) -> Draws:
        return Draws.seeded(self.seed)

    def _start_samples(self, seeds) -> Draws:
        return Draws.for_samples(seeds)


class MinimumDistanceAttack(Attack):
    """An attack that looks for the smallest perturbation meeting its objective."""


class FixedBudgetAttack(Attack):
    """An attack that spends a fixed budget ``eps`` (a norm ball around each input)."""

    eps: float
