"""A sweep's own figures, written next to its results: ASR, detection rate and L2 against
kappa (the sanity checks' outcome under the ASR figure) and a grid of examples."""

from __future__ import annotations

import textwrap
from pathlib import Path

from adaptive.core.plotting import plt
from adaptive.core.plotting import save_figure as _save
from adaptive.sweep.config import bound_of, norm_label


def _series(rows, key, group="defense"):
    out = {}
    for r in rows:
        if r.get(key) is not None:
            out.setdefault(r[group], []).append((r["kappa"], r[key]))
    return out


def sanity_footer(fig, checks: list[dict] | None) -> None:
    """The sweep's sanity checks under a figure: failures named, never hidden."""
    if not checks:
        return
    failed = [c["name"] for c in checks if not c["passed"]]
    text = ("sanity checks: all passed" if not failed else
            "\n".join(textwrap.wrap("sanity checks FAILED: " + "; ".join(failed), 95)))
    fig.text(0.01, 0.005, text, fontsize=5.5, color="red" if failed else "gray", va="bottom")
    fig.subplots_adjust(bottom=0.2 + 0.03 * text.count("\n"))


def sweep_figures(out: Path, rows: list[dict], store, cfg, data,
                  checks: list[dict] | None = None) -> list[Path]:
    out = Path(out)
    written = []
    # ASR per defense vs kappa (Figure 7 style), with the sanity checks' outcome.
    fig, ax = plt.subplots(figsize=(5, 3.9))
    for name, pts in _series(rows, "attack_success_rate").items():
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xlabel="confidence $\\kappa$", ylabel="attack success rate",
           title=f"{cfg.attack} vs defenses ({norm_label(cfg)} $\\leq$ {bound_of(cfg):g})",
           ylim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    sanity_footer(fig, checks)
    written.append(_save(fig, out / "asr_vs_kappa.png", tight=False))
    # Detection rate per detector vs kappa.
    detectors = sorted({k.split(":", 1)[1] for r in rows for k in r
                        if k.startswith("detection_rate:")})
    if detectors:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for det in detectors:
            pts = {}
            for r in rows:
                v = r.get(f"detection_rate:{det}")
                if v is not None:
                    pts[r["kappa"]] = v
            ax.plot(list(pts), list(pts.values()), marker="o", label=det)
        ax.set(xlabel="confidence $\\kappa$", ylabel="detection rate",
               title="Detection of C&W-$\\kappa$ examples", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, out / "detection_vs_kappa.png"))
    # L2 vs kappa (one value per kappa: the attack does not depend on the defense).
    base = [r for r in rows if r["defense"] == "none" and r["mean_l2"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([r["kappa"] for r in base], [r["mean_l2"] for r in base], marker="o",
            label="mean L2 of C&W-$\\kappa$ examples")
    if cfg.norm == "l2":
        ax.axhline(cfg.max_l2, color="gray", ls="--", label=f"bound {cfg.max_l2:g}")
    ax.set(xlabel="confidence $\\kappa$", ylabel="L2 distortion", title="Distortion vs $\\kappa$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "l2_vs_kappa.png"))
    # Image grid: originals, then the adversarial examples of each kappa (Figure 8 style).
    first = [store.get(f"adv_k{k:g}_b0") for k in cfg.kappas]
    first = [(k, f) for k, f in zip(cfg.kappas, first) if f is not None]
    if first:
        cols = min(8, len(first[0][1]["x"]))
        idx = first[0][1]["index"][:cols]
        originals = data.x()[idx]
        grid = [("original", originals)] + [(f"$\\kappa$={k:g}", f["x"][:cols]) for k, f in first]
        fig, axes = plt.subplots(len(grid), cols, figsize=(1.1 * cols, 1.15 * len(grid)),
                                 squeeze=False)
        for r, (label, imgs) in enumerate(grid):
            for c in range(cols):
                img = imgs[c].permute(1, 2, 0).clamp(0, 1).numpy()
                axes[r, c].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img,
                                  cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
            axes[r, 0].set_ylabel(label, fontsize=8)
        fig.suptitle("C&W-$\\kappa$ adversarial examples", fontsize=9)
        written.append(_save(fig, out / "examples.png"))
    return written
