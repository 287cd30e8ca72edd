"""Write docs/commands.md, every command's ``--help``, from the parser itself (so the page is
never out of date: tests/test_docs.py fails when it differs from what this writes).

    python scripts/command_docs.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adaptive.cli.main import build_parser

PAGE = REPO / "docs" / "commands.md"


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _walk(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for sub_name, sub in _subcommands(parser):
        yield from _walk(sub, f"{name} {sub_name}")


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page must not vary
    parser = build_parser()
    lines = ["# Every command", "",
             "Each command's `--help`, as `adaptive` prints it (made by "
             "`python scripts/command_docs.py`).", ""]
    for name, p in _walk(parser, "adaptive"):
        lines += [f"## `{name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
