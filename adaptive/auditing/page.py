"""The audit's report: one self-contained HTML page (styles and figures inline, nothing fetched
over the network), rendered with Jinja2 from ``templates/report.html.j2``. Figures: ASR against
the bound, which attack broke how many images, and a gallery of original, adversarial and
difference images."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from adaptive.core.data import load_dataset  # noqa: E402
from adaptive.sweep.folder import read_cached_examples  # noqa: E402

GALLERY = 6  # images in each threat model's gallery


def _png(fig) -> str:
    """The figure as a data URI (the page needs no file beside it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def asr_figure(section: dict) -> str | None:
    rows = section["asr_by_bound"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for row in rows:
        bounds = [b for b in row["asr"] if b != "inf"]
        ax.plot([float(b) for b in bounds], [100 * row["asr"][b] for b in bounds], marker="o",
                label=row["defense"])
    ax.set_xlabel(f"{section['norm_label']} bound")
    ax.set_ylabel("attack success (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"ASR against the bound ({section['threat']['label']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def broken_by_figure(section: dict) -> str | None:
    defenses = [d for d in section["defenses"] if d["broken_by"]]
    if not defenses:
        return None
    members = list(dict.fromkeys(m for d in defenses for m in d["broken_by"]))
    fig, ax = plt.subplots(figsize=(5.2, 0.5 + 0.45 * len(defenses)))
    left = [0] * len(defenses)
    cmap = plt.get_cmap("tab20")
    for k, m in enumerate(members):
        counts = [d["broken_by"].get(m, 0) for d in defenses]
        ax.barh([d["name"] for d in defenses], counts, left=left, label=m, color=cmap(k % 20))
        left = [a + b for a, b in zip(left, counts)]
    ax.set_xlabel(f"images broken (of {section['images']})")
    ax.set_title("which attack broke them")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.invert_yaxis()
    return _png(fig)


def gallery_figure(section: dict, data_root=None) -> str | None:
    """Original, adversarial and amplified difference for a few attacked images (those broken
    against the last defense first), with what each defense made of them."""
    cached = read_cached_examples(section["folder"])
    if not cached:
        return None
    examples = {}
    for _, part in cached:
        for i, x in zip(part["index"].tolist(), part["x"]):
            examples[i] = x
    last = section["defenses"][-1]["name"]
    rows = sorted(section["per_image"], key=lambda r: (not r["broken"][last], r["index"]))
    rows = [r for r in rows if r["index"] in examples][:GALLERY]
    if not rows:
        return None
    data = load_dataset(section["dataset"], "test", data_root)
    fig, axes = plt.subplots(3, len(rows), figsize=(1.6 * len(rows), 5.4), squeeze=False)
    for j, r in enumerate(rows):
        x = data.x()[r["index"]]
        adv = examples[r["index"]].float()
        diff = (adv - x).abs()
        scale = float(diff.max()) or 1.0
        for k, (img, title) in enumerate(((x, f"#{r['index']} label {r['label']}"),
                                          (adv, "broken: " + (", ".join(
                                              n for n, b in r["broken"].items() if b) or "-")),
                                          (diff / scale, f"|diff| x{1 / scale:.1f}"))):
            ax = axes[k][j]
            shown = img.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(title, fontsize=6.5)
            ax.axis("off")
    fig.suptitle("original / adversarial / difference", fontsize=9)
    return _png(fig)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("adaptive.auditing", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.0f} %"
    return env


def write_page(result, path: Path, data_root=None) -> Path:
    """Render ``result`` (an :class:`~adaptive.auditing.result.AuditResult`) to ``path``."""
    figures = [{"asr": asr_figure(s), "broken_by": broken_by_figure(s),
                "gallery": gallery_figure(s, data_root)} for s in result.sections]
    page = _environment().get_template("report.html.j2").render(
        result=result, sections=result.sections, figures=figures,
        verdict=result.verdict_line(), flags=result.flags(), failed=result.failed_checks())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # never a half-written page
    return path
