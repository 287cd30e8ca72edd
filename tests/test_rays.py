"""RayS, the hard-label L-inf attack: its batched search equals an independent one-image-at-a-
time implementation of the same algorithm on the same draws (every image's radius and query
count), every example it returns is accepted by the oracle within the radius it reports, and
with a bound it stops each image as soon as the image is broken within it."""

import math

import torch

from adaptive.attacks import DecisionOracle, RayS
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.defense import Defense


def rays_one_image(accepts, x, seed, queries, tolerance, eps=None):
    """RayS on one image, written plainly: ``accepts(point) -> bool``. (radius, queries)."""
    dim = x.numel()
    g = torch.Generator().manual_seed(int(seed))
    d = torch.randint(0, 2, (1, dim), generator=g)[0].float() * 2 - 1
    flat, asked = x.flatten(), [0]
    inner = None if eps is None else eps * (1 - 1e-5)

    def ask(r, direction):
        asked[0] += 1
        return accepts((flat + r * direction).clamp(0, 1).view_as(x))

    def improve(direction, radius):
        hi = min(radius, 1.0)
        if not ask(hi, direction):
            return radius
        lo = 0.0
        if inner is not None and hi > inner:
            if ask(inner, direction):
                hi = inner
            else:
                lo = inner
        while hi - lo > tolerance and asked[0] < queries and not (inner and hi <= inner):
            mid = (lo + hi) / 2
            if ask(mid, direction):
                hi = mid
            else:
                lo = mid
        return min(radius, hi)

    radius, level, block = improve(d, math.inf), 0, 0
    while asked[0] < queries and not (inner is not None and radius <= inner):
        size = math.ceil(dim / 2 ** level)
        trial = d.clone()
        trial[block * size:(block + 1) * size] *= -1
        new = improve(trial, radius)
        if new < radius:
            d, radius = trial, new
        block += 1
        if block * size >= dim:
            level, block = (0 if size == 1 else level + 1), 0
    return radius, asked[0]


def _setup(n=6):
    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    return model, data.x()[:n], data.labels[:n]


def test_rays_equals_a_one_image_reference_on_the_same_draws():
    model, x, y = _setup()
    oracle = DecisionOracle(Defense("none", model))
    seeds = torch.arange(len(x)) * 13 + 1
    for eps in (None, 0.15):
        r = RayS(queries=120, tolerance=1e-3, eps=eps).run(oracle, x, y, seeds=seeds)
        linf = (r.adversarial - x).flatten(1).abs().amax(1)
        for i in range(len(x)):
            def accepts(p, i=i):
                with torch.no_grad():
                    return bool(model(p[None]).argmax(1) != y[i])

            radius, asked = rays_one_image(accepts, x[i], seeds[i], 120, 1e-3, eps)
            assert int(r.gradient_steps[i]) == asked, (eps, i)
            assert bool(r.success[i]) == math.isfinite(radius)
            if math.isfinite(radius):
                assert float(linf[i]) <= radius + 1e-6


def test_every_returned_example_is_accepted_within_its_radius_and_stops_at_the_bound():
    model, x, y = _setup(10)
    oracle = DecisionOracle(Defense("none", model))
    free = RayS(queries=300).run(oracle, x, y)
    bounded = RayS(queries=300, eps=0.3).run(oracle, x, y)
    for r in (free, bounded):
        with torch.no_grad():
            assert bool((model(r.adversarial[r.success]).argmax(1) != y[r.success]).all())
    linf = (bounded.adversarial - x).flatten(1).abs().amax(1)
    within = bounded.success & (linf <= 0.3)
    assert int(within.sum()) >= 5
    # an image broken within the bound stops there: fewer queries than the free search
    assert bool((bounded.gradient_steps[within] < 300).all())
    assert bool((free.gradient_steps >= 300).all())  # the free search spends every query
