"""The documentation: README is a user's guide of at most ~250 lines whose links resolve, the
command reference in docs/ is what the parser prints, and the MkDocs site builds with
``--strict`` (CI builds it too, in .ci/run)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def test_readme_is_a_short_guide_with_links_that_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    # exactly the two set-up commands and the main job, as the guide says
    assert "pip install -e \".[test]\"     # install" in text
    assert "python -m pytest -q          # test" in text


def test_command_reference_is_current():
    from command_docs import PAGE, render

    assert PAGE.read_text() == render(), "run: python scripts/command_docs.py"


def test_every_docs_page_is_in_the_site_nav():
    nav = (REPO / "mkdocs.yml").read_text()
    for page in (REPO / "docs").glob("*.md"):
        assert f" {page.name}" in nav, page.name


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_docs_site_builds_strictly(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "audit" / "index.html").is_file()
