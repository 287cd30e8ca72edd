"""Per-image attack time and iterations of defense attacks (A2D paper, Figures 4, 5 and 10).

A2D's detectors count iterations in batches; the paper's Figures 4 and 10 are about wall time,
which only means something per image. So every image is attacked alone here, timed, and its
iteration count kept. Besides the four A2D engines (``bim_d``, ``bim2_d``, ``jsma_d``,
``dba_d``), two attacks the paper rejects as defenses are measured to show why:

* ``fgsm_d``: one signed-gradient step (no early stop, nothing to count: always 1 iteration);
* ``cw_d``: our C&W-L2 at kappa 0 with per-sample early abort; its iterations are the Adam
  steps it spent, which its binary search makes depend on the search, not on robustness alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from adaptive.attacks.cw import CarliniWagnerL2, CWSettings
from adaptive.core.defaults import preset_family
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import seed_everything
from adaptive.core.zoo import ModelRef
from defenses.a2d.presets import ENGINE_NAMES, make_engine

COST_ENGINES = ENGINE_NAMES + ("fgsm_d", "cw_d")
FGSM_EPS = {"mnist": 0.3, "cifar10": 8 / 255}


def one_image_runner(engine: str, dataset: str):
    """``run(model, x1) -> iterations`` for one image ``x1`` (shape 1xCxHxW)."""
    if engine in ENGINE_NAMES:
        e = make_engine(engine, dataset)
        return lambda model, x1: int(e.run(model, x1).costs[0])
    if engine == "fgsm_d":
        eps = FGSM_EPS[preset_family(dataset)]

        def fgsm(model, x1):
            x1 = x1.clone().requires_grad_(True)
            logits = model(x1)
            loss = nn.functional.cross_entropy(logits, logits.argmax(1))
            (grad,) = torch.autograd.grad(loss, x1)
            with torch.no_grad():
                model((x1 + eps * grad.sign()).clamp(0, 1))
            return 1

        return fgsm
    if engine == "cw_d":
        cw = CarliniWagnerL2(kappa=0, **asdict(CWSettings()))  # the sweep's CPU budget

        def cw_run(model, x1):
            with torch.no_grad():
                label = model(x1).argmax(1)
            return int(cw.run(model, x1, label).gradient_steps[0])

        return cw_run
    raise ToolkitError(f"unknown cost engine {engine!r}; choose from {', '.join(COST_ENGINES)}")


def per_image_costs(engine: str, model: nn.Module, x: torch.Tensor, dataset: str) -> list[dict]:
    """``[{"iterations", "seconds"}]``, one per image of ``x``, each attacked alone."""
    run = one_image_runner(engine, dataset)
    device = next(model.parameters()).device
    out = []
    for i in range(len(x)):
        x1 = x[i:i + 1].to(device)
        t0 = time.perf_counter()
        iterations = run(model, x1)
        out.append({"iterations": iterations, "seconds": time.perf_counter() - t0})
    return out


@dataclass
class CostUnits:
    """What every unit (an engine, an input set) of a per-image cost run needs: the model, the
    input sets by name, the data set and the run's seed."""

    model: ModelRef
    dataset: str
    seed: int
    sets: dict[str, torch.Tensor]


def cost_unit(shared: CostUnits, unit: tuple[str, str]) -> dict[str, torch.Tensor]:
    """Per-image ``iterations`` and ``seconds`` of the engine ``unit[0]`` on the set
    ``unit[1]``, every image attacked alone, from the run's seed."""
    engine, kind = unit
    model = shared.model.get()
    seed_everything(shared.seed)
    rows = per_image_costs(engine, model, shared.sets[kind], shared.dataset)
    return {"iterations": torch.tensor([r["iterations"] for r in rows]),
            "seconds": torch.tensor([r["seconds"] for r in rows], dtype=torch.float64)}
