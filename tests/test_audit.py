"""``adaptive audit`` and ``adaptive.audit``: README's five-minute example run as written (a
blurred classifier, broken), the report page opened in a real headless browser, a resumed audit
that recomputes nothing, the Python entry point on a Defense object, ``adaptive report --html``
on sweep folders, and the parts: threat texts, Tramèr's reduction and its published table."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from adaptive.auditing import AuditResult, audit, parse_threat
from adaptive.auditing.reduction import published, reduction, reference_at
from adaptive.cli.main import main
from adaptive.core.errors import ToolkitError
from defenses import Defense

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- five-minute-example -->\s*```bash\n(.*?)```", re.S)


def readme_example() -> str:
    found = EXAMPLE.search((REPO / "README.md").read_text())
    assert found, "README.md has no <!-- five-minute-example --> block"
    return found.group(1)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory, data_root):
    """README's five-minute example, run by bash as written, in a fresh folder."""
    where = tmp_path_factory.mktemp("readme-example")
    env = {**os.environ, "ADAPTIVE_DATA": str(data_root), "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_example()], cwd=where,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outs = sorted(where.glob("runs/*/report.html"))
    assert len(outs) == 1, sorted(str(p) for p in where.rglob("*.html"))
    return outs[0].parent, done.stdout


def test_readme_example_audits_and_breaks_the_blurred_classifier(example_run):
    folder, stdout = example_run
    result = AuditResult.load(folder)
    mine = [d for d in result.defenses() if d != "none"]
    assert mine, result.defenses()
    for name in mine:  # a blur hides nothing: auto breaks nearly every image
        assert result.robust_accuracy(name) <= 0.2, result.outcome(name)
        lo, hi = result.outcome(name)["interval"]
        assert lo <= result.robust_accuracy(name) <= hi
    assert result.robust_accuracy("none") == 0.0
    kinds = {c["kind"] for c in result.sections[0]["checks"]}
    assert {"sanity check", "checklist", "binarization test"} <= kinds
    assert "robust accuracy" in stdout
    per_image = result.per_image()
    assert len(per_image) == result.outcome("none")["images"]
    assert all(set(r["broken"]) == set(result.defenses()) for r in per_image)


def test_report_page_is_self_contained_and_has_the_verdict_and_every_figure(example_run):
    page = (example_run[0] / "report.html").read_text()
    assert "Verdict" in page and "robust accuracy" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page fetches from the network"
    images = re.findall(r'<img src="data:image/png;base64,', page)
    assert len(images) == 3, len(images)  # ASR by bound, broken by, gallery


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_page_loads_in_a_headless_browser_without_console_errors(example_run, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium not installed")
    page = example_run[0] / "report.html"
    shot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--enable-logging=stderr", "--v=0"]
    done = subprocess.run(common + ["--window-size=1200,2400", f"--screenshot={shot}",
                                    page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert shot.is_file() and shot.stat().st_size > 10_000
    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'id="verdict"' in dom and dom.count("<img") == 3
    keep = REPO / ".cache" / "screenshots"  # kept for a person to look at
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "audit-readme-example.png")


def test_a_resumed_audit_recomputes_nothing(example_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(example_run[0].parents[1])  # where README's plug-in module is
    folder = tmp_path / "again"
    shutil.copytree(example_run[0], folder)
    before = (folder / "audit.json").read_text()
    config = json.loads(next(folder.glob("*/config.json")).read_text())
    argv = config["command"].split()[1:]
    argv[argv.index("--out") + 1] = str(folder)
    records = next(folder.glob("*/records.jsonl")).read_text()
    try:
        assert main(argv + ["--resume", "--no-progress"]) == 0
    finally:
        sys.modules.pop("mydefense", None)  # README's module, imported here, not kept
    assert next(folder.glob("*/records.jsonl")).read_text() == records
    assert json.loads((folder / "audit.json").read_text())["sections"][0]["defenses"] == \
        json.loads(before)["sections"][0]["defenses"]
    assert "binarization test of" not in capsys.readouterr().out  # stored, not rerun


def test_an_audit_into_a_used_folder_without_resume_is_refused(example_run, capsys):
    assert main(["audit", "magnet", "--out", str(example_run[0]), "--n", "2"]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mnist_cnn():
    from adaptive.core.zoo import load_model

    return load_model("mnist-cnn")[0].eval()


class Rounded(nn.Module):
    """A defense that hides its gradient: the bare classifier behind 4-bit rounding."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 15) / 15)


def test_python_entry_point_audits_a_defense_object(tmp_path, data_root, mnist_cnn):
    defense = Defense("rounded", Rounded(mnist_cnn))
    result = audit(defense, model="mnist-cnn", threats=["linf:0.3"], n=6, n_cal=3,
                   out=tmp_path / "audit", binarization_images=0, progress=False,
                   log=lambda *_: None)
    assert result.defenses() == ["none", "rounded"]
    assert result.robust_accuracy("rounded") <= 0.2, result.outcome("rounded")
    assert any(f["flag"] == "masked_gradients" for f in result.flags())
    assert (tmp_path / "audit" / "report.html").is_file()
    copy = result.to_html(tmp_path / "elsewhere.html")
    assert "rounded" in copy.read_text()
    with pytest.raises(ToolkitError, match="no threat"):
        result.outcome("rounded", "l2:1")


def test_report_html_from_sweep_folders(example_run, tmp_path, capsys, data_root):
    sweep = next(example_run[0].glob("*/summary.json")).parent
    assert main(["report", str(sweep), "--out", str(tmp_path / "r"), "--html"]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert 'id="verdict"' in page and page.count('<img src="data:image/png') == 3


@pytest.mark.parametrize("text, norm, eps", [("linf:8/255", "linf", 8 / 255),
                                             ("L2:0.5", "l2", 0.5), ("linf: 0.3", "linf", 0.3)])
def test_threat_texts(text, norm, eps):
    t = parse_threat(text)
    assert (t.norm, t.eps) == (norm, pytest.approx(eps))


@pytest.mark.parametrize("text", ["linf", "l1:0.3", "linf:abc", "linf:0", "linf:1",
                                  "l2:-1", "l2:1/0", "l2:inf"])
def test_bad_threat_texts_are_one_line_errors(text, capsys):
    with pytest.raises(ToolkitError):
        parse_threat(text)
    assert main(["audit", "magnet", "--threat", text, "--n", "2", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "threat" in err


def test_published_table_names_a_source_for_every_entry():
    for entry in published():
        assert entry["source"] and 0 < entry["robust_accuracy"] < 1
        assert reference_at(entry["dataset"], entry["norm"], entry["eps"]) is entry


def test_tramer_reduction_flags_a_detector_beyond_the_published_state_of_the_art():
    # a CIFAR-10 detector claimed at 16/255 implies a classifier at 8/255
    strong = reduction("cifar10", "linf", 16 / 255, kept=95, images=100, lower=0.88,
                       bare_accuracy=0.95)
    assert strong["reference"]["eps_text"] == "8/255" and strong["exceeds"] is True
    honest = reduction("cifar10", "linf", 16 / 255, kept=30, images=100, lower=0.21,
                       bare_accuracy=0.95)
    assert honest["exceeds"] is False
    unknown = reduction("cifar10", "linf", 4 / 255, kept=30, images=100, lower=0.21,
                        bare_accuracy=0.95)
    assert unknown["reference"] is None and unknown["exceeds"] is None
    assert "no published result" in unknown["detail"]
