"""DBA_d: the cost of a decision-based boundary attack (Brendel et al., 2018), labels only.

The attack needs nothing but ``predict_labels(x) -> int labels``. Per input ``x`` with label
``c = predict_labels(x)``:

1. Start: uniform noise images until one is not labelled ``c`` (at most ``init_tries``), then
   ``init_search_steps`` of binary search on the blend ``(1 - a) x + a u`` towards ``x``.
2. Iteration ``i`` (0-based): if the mean squared distance ``mean((x_adv - x)^2)`` is below
   ``threshold``, stop: the cost is ``i``. Otherwise draw ``directions`` random steps
   orthogonal to ``x - x_adv`` of relative size ``spherical_step``, kept on the sphere around
   ``x`` (the spherical points), and from each a step of relative size ``source_step`` towards
   ``x`` (the candidates); both are queried. The first candidate (in draw order) still not
   labelled ``c`` becomes ``x_adv``. Every ``adapt_every`` iterations the step sizes adapt as
   in the original attack: both are multiplied by ``step_adaptation`` when more than half of
   the spherical points were adversarial and divided by it when fewer than a fifth were; the
   source step alone likewise by the candidates' success rate.
3. A sample that never gets below the threshold within ``max_iter`` iterations (or finds no
   adversarial start) costs ``max_iter``.

Queries count every call on every image: 1 for ``c``, the start-up, then ``2 * directions``
per iteration. Each sample draws its random numbers from its own generator, seeded by the engine's
seed and the sample's index, so results do not depend on how samples are batched.

Setting: MNIST threshold 0.02 (the A2D authors'); other data sets need their own (see presets).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from adaptive.core.runtime import model_device
from defenses.a2d.batching import RunningBatch
from defenses.a2d.cost import AttackCost, CostEngine, check_cap

LabelFn = Callable[[torch.Tensor], torch.Tensor]


def labels_of(model: nn.Module | LabelFn) -> LabelFn:
    """A label-only view of a model (argmax of its logits); functions pass through."""
    if isinstance(model, nn.Module):
        @torch.no_grad()
        def predict_labels(x):
            return model(x).argmax(1)
        return predict_labels
    return model


class BoundaryCost(CostEngine):
    """Attack-cost engine: iterations of a label-only boundary attack (``dba_d``)."""

    name = "dba_d"

    def __init__(self, threshold: float = 0.02, max_iter: int = 500, directions: int = 4,
                 spherical_step: float = 0.05, source_step: float = 0.05,
                 step_adaptation: float = 1.5, adapt_every: int = 5, init_tries: int = 50,
                 init_search_steps: int = 10, seed: int = 0, batch_size: int = 256):
        self.threshold, self.max_iter = float(threshold), check_cap(max_iter)
        self.directions, self.seed, self.batch_size = int(directions), int(seed), int(batch_size)
        self.spherical_step, self.source_step = float(spherical_step), float(source_step)
        self.step_adaptation, self.adapt_every = float(step_adaptation), int(adapt_every)
        self.init_tries, self.init_search_steps = int(init_tries), int(init_search_steps)

    def config(self) -> dict:
        return {"engine": self.name, "threshold": self.threshold, "max_iter": self.max_iter,
                "directions": self.directions, "spherical_step": self.spherical_step,
                "source_step": self.source_step, "step_adaptation": self.step_adaptation,
                "adapt_every": self.adapt_every,
                "init_tries": self.init_tries, "init_search_steps": self.init_search_steps,
                "seed": self.seed}

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + index)

    @torch.no_grad()
    def _run(self, model: nn.Module | LabelFn, x: torch.Tensor, cap: int) -> AttackCost:
        predict = labels_of(model)
        device = model_device(model)
        n = len(x)
        result = AttackCost.empty(x, cap)
        gens: dict[int, torch.Generator] = {}

        def new_rows(a, b):
            src = x[a:b].to(device)
            for i in range(a, b):
                gens[i] = self._generator(i)
            label = predict(src)
            start, used, found = self._start(predict, src, label, range(a, b), gens, device)
            return {"src": src, "adv": start, "label": label, "found": found,
                    "queries": used + 1, "it": torch.zeros(b - a, dtype=torch.long),
                    "sph": torch.full((b - a,), self.spherical_step, device=device,
                                      dtype=x.dtype),
                    "srcstep": torch.full((b - a,), self.source_step, device=device,
                                          dtype=x.dtype),
                    "sph_hits": torch.zeros(b - a, device=device, dtype=x.dtype),
                    "cand_hits": torch.zeros(b - a, device=device, dtype=x.dtype)}

        batch = RunningBatch(n, self.batch_size, new_rows)
        while batch.pending():
            batch.refill()
            mse = (batch.adv - batch.src).flatten(1).pow(2).mean(1)
            close = batch.found & (mse < self.threshold)
            done = (close | ~batch.found | (batch.it.to(device) >= cap)
                    | (batch.srcstep < 1e-7)).cpu()
            if done.any():
                d_idx, d_close = batch.idx[done], close.cpu()[done]
                result.record(d_idx, torch.where(d_close, batch.it[done],
                                                 torch.full_like(batch.it[done], cap)),
                              batch.queries[done].cpu(), d_close, batch.adv[done.to(device)])
                for i in d_idx.tolist():
                    gens.pop(i, None)
            batch.keep(~done)
            if len(batch) == 0:
                continue
            self._step(predict, batch, gens, device)
        return result

    def _start(self, predict, src, label, indices, gens, device):
        """Adversarial starting points: blended uniform noise, then a binary search."""
        m = len(src)
        noise = torch.empty_like(src)
        found = torch.zeros(m, dtype=torch.bool, device=device)
        used = torch.zeros(m, dtype=torch.long, device=device)
        for _ in range(self.init_tries):
            todo = (~found).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            # float32 draws cast to the input's dtype: the same numbers for any dtype
            draws = torch.stack([torch.rand(src.shape[1:], generator=gens[indices[j]])
                                 for j in todo.tolist()]).to(device, src.dtype)
            ok = predict(draws) != label[todo]
            used[todo] += 1
            noise[todo[ok]] = draws[ok]
            found[todo[ok]] = True
        start = src.clone()
        have = found.nonzero().squeeze(1)  # only samples with an adversarial start are searched
        if len(have):
            s, u, lab = src[have], noise[have], label[have]
            lo = torch.zeros(len(have), device=device, dtype=src.dtype)
            hi = torch.ones(len(have), device=device, dtype=src.dtype)
            shape = (-1,) + (1,) * (src.ndim - 1)
            for _ in range(self.init_search_steps):
                mid = (lo + hi) / 2
                adv = predict((1 - mid.view(shape)) * s + mid.view(shape) * u) != lab
                hi = torch.where(adv, mid, hi)
                lo = torch.where(adv, lo, mid)
            start[have] = (1 - hi.view(shape)) * s + hi.view(shape) * u
            used[have] += self.init_search_steps
        return start, used, found

    def _step(self, predict, batch: RunningBatch, gens, device) -> None:
        k = self.directions
        src, adv = batch.src, batch.adv
        shape = (-1,) + (1,) * (src.ndim - 1)
        eta = torch.stack([torch.randn((k,) + tuple(src.shape[1:]), generator=gens[i])
                           for i in batch.idx.tolist()]).to(device, src.dtype)  # m,k,C,H,W
        diff = (src - adv).unsqueeze(1)  # towards the source
        dist = diff.flatten(2).norm(dim=2).clamp_min(1e-12)  # m, 1
        unit = diff / dist.view(-1, 1, *([1] * (src.ndim - 1)))
        ones = [1] * (src.ndim - 1)
        eta = eta - (eta * unit).flatten(2).sum(2).view(*eta.shape[:2], *ones) * unit
        eta_norm = eta.flatten(2).norm(dim=2).clamp_min(1e-12)
        scale = (batch.sph.view(-1, 1) * dist / eta_norm).view(*eta.shape[:2], *ones)
        sph = adv.unsqueeze(1) + eta * scale
        # Back onto the sphere of radius dist around the source, then towards the source.
        to_src = src.unsqueeze(1) - sph
        to_src_norm = to_src.flatten(2).norm(dim=2).clamp_min(1e-12)
        sph = src.unsqueeze(1) - to_src * (dist / to_src_norm).view(*eta.shape[:2],
                                                                    *([1] * (src.ndim - 1)))
        sph = sph.clamp(0, 1)
        cand = sph + batch.srcstep.view(-1, 1, *([1] * (src.ndim - 1))) * (src.unsqueeze(1) - sph)
        cand = cand.clamp(0, 1)
        m = len(src)
        both = predict(torch.cat([sph.flatten(0, 1), cand.flatten(0, 1)])).view(2, m, k)
        sph_ok = both[0] != batch.label.view(-1, 1)
        success = both[1] != batch.label.view(-1, 1)
        any_ok = success.any(1)
        first = success.float().argmax(1)  # first successful candidate in draw order
        chosen = cand[torch.arange(m, device=device), first]
        sph_hits = batch.sph_hits + sph_ok.float().sum(1)
        cand_hits = batch.cand_hits + success.float().sum(1)
        it = batch.it + 1
        sph_step, src_step = batch.sph, batch.srcstep
        adapt = (it % self.adapt_every == 0).to(device)
        if adapt.any():
            a, window = self.step_adaptation, k * self.adapt_every
            p_sph, p_cand = sph_hits / window, cand_hits / window
            f_both = torch.where(p_sph > 0.5, a, torch.where(p_sph < 0.2, 1 / a, 1.0))
            f_src = torch.where(p_cand > 0.5, a, torch.where(p_cand < 0.2, 1 / a, 1.0))
            one = torch.ones_like(f_both)
            f_both, f_src = torch.where(adapt, f_both, one), torch.where(adapt, f_src, one)
            sph_step = sph_step * f_both
            src_step = (src_step * f_both * f_src).clamp(max=0.5)
            sph_hits = torch.where(adapt, torch.zeros_like(sph_hits), sph_hits)
            cand_hits = torch.where(adapt, torch.zeros_like(cand_hits), cand_hits)
        batch.set(adv=torch.where(any_ok.view(shape), chosen, adv),
                  queries=batch.queries + 2 * k, it=it, sph=sph_step, srcstep=src_step,
                  sph_hits=sph_hits, cand_hits=cand_hits)
