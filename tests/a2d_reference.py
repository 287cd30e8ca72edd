"""Slow, straightforward per-sample implementations of the A2D engines, written independently
of the batched code (no shared helpers), to check it against."""

import torch
import torch.nn.functional as F


def bim_cost_one(model, x, eps, step, cap, norm):
    """(cost, queries) of one image x (1, C, H, W) under BIM_d / BIM2_d as documented."""
    label = model(x).argmax(1)
    queries = 1
    xi = x.clone()
    for i in range(cap):
        xi.requires_grad_(True)
        loss = F.cross_entropy(model(xi), label, reduction="sum")
        g, = torch.autograd.grad(loss, xi)
        with torch.no_grad():
            if norm == "linf":
                xi = xi + step * g.sign()
                xi = torch.min(torch.max(xi, x - eps), x + eps)
            else:
                gn = g.flatten().norm()
                xi = xi + step * g / max(float(gn), 1e-12)
                d = xi - x
                dn = float(d.flatten().norm())
                if dn > eps:
                    d = d * (eps / dn)
                xi = x + d
            xi = xi.clamp(0, 1)
            queries += 1
            if model(xi).argmax(1) != label:
                return i, queries
    return cap, queries


def jsma_cost_one(model, x, theta, max_per_pixel, cap):
    """(cost, queries) of one image under JSMA_d as documented, one feature at a time."""
    logits = model(x)
    target = int(logits[0].argsort(descending=True)[1])
    xi = x.clone().flatten()
    changes = [0] * xi.numel()
    queries = 1
    for step in range(cap):
        xr = xi.clone().view_as(x).requires_grad_(True)
        loss = F.cross_entropy(model(xr), torch.tensor([target]), reduction="sum")
        g, = torch.autograd.grad(loss, xr)
        g = g.flatten()
        best, best_j = -1.0, None
        for j in range(xi.numel()):
            room = xi[j] < 1 if g[j] < 0 else xi[j] > 0
            if room and g[j] != 0 and changes[j] < max_per_pixel and abs(float(g[j])) > best:
                best, best_j = abs(float(g[j])), j
        if best_j is None:
            return cap, queries
        xi[best_j] = (xi[best_j] - theta * torch.sign(g[best_j])).clamp(0, 1)
        changes[best_j] += 1
        queries += 1
        if int(model(xi.view_as(x)).argmax(1)) == target:
            return step + 1, queries
    return cap, queries


def dba_cost_one(predict, x, index, threshold, cap, directions, sph_step, src_step, adapt,
                 adapt_every, init_tries, search_steps, seed):
    """(cost, queries) of one image under DBA_d as documented, drawing random numbers from the
    sample's own generator in the documented order."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    label = int(predict(x)[0])
    queries = 1
    noise = None
    for _ in range(init_tries):
        u = torch.rand(x.shape[1:], generator=gen).to(x.dtype).unsqueeze(0)
        queries += 1
        if int(predict(u)[0]) != label:
            noise = u
            break
    if noise is None:
        return cap, queries
    lo, hi = 0.0, 1.0
    for _ in range(search_steps):
        mid = (lo + hi) / 2
        queries += 1
        if int(predict((1 - mid) * x + mid * noise)[0]) != label:
            hi = mid
        else:
            lo = mid
    adv = (1 - hi) * x + hi * noise
    sph_hits = cand_hits = 0
    for it in range(cap):
        if float(((adv - x) ** 2).mean()) < threshold:
            return it, queries
        if src_step < 1e-7:
            return cap, queries
        etas = torch.randn((directions,) + tuple(x.shape[1:]), generator=gen).to(x.dtype)
        diff = (x - adv)[0]
        dist = max(float(diff.norm()), 1e-12)
        unit = diff / dist
        chosen = None
        for eta in etas:
            eta = eta - (eta * unit).sum() * unit
            eta = eta * (sph_step * dist / max(float(eta.norm()), 1e-12))
            sph = adv[0] + eta
            back = x[0] - sph
            sph = (x[0] - back * (dist / max(float(back.norm()), 1e-12))).clamp(0, 1)
            cand = (sph + src_step * (x[0] - sph)).clamp(0, 1)
            queries += 2
            sph_hits += int(predict(sph.unsqueeze(0))[0]) != label
            if int(predict(cand.unsqueeze(0))[0]) != label:
                cand_hits += 1
                if chosen is None:
                    chosen = cand.unsqueeze(0)
        if chosen is not None:
            adv = chosen
        if (it + 1) % adapt_every == 0:
            p_sph = sph_hits / (directions * adapt_every)
            p_cand = cand_hits / (directions * adapt_every)
            f = adapt if p_sph > 0.5 else (1 / adapt if p_sph < 0.2 else 1.0)
            g = adapt if p_cand > 0.5 else (1 / adapt if p_cand < 0.2 else 1.0)
            sph_step, src_step = sph_step * f, min(src_step * f * g, 0.5)
            sph_hits = cand_hits = 0
    return cap, queries
