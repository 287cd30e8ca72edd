"""Entry point of the ``adaptive`` console script."""

from __future__ import annotations

import argparse
import shlex
import sys

from adaptive import __version__
from adaptive.cli import (a2d_cmd, clever_cmd, costs_cmd, data_cmd, evaluate_cmd, magnet_cmd,
                          report_cmd,
                          sweep_cmd, train_cmd, zoo_cmd)
from core.errors import ToolkitError

COMMAND_GROUPS = (sweep_cmd, zoo_cmd, data_cmd, train_cmd, evaluate_cmd, a2d_cmd, magnet_cmd,
                  clever_cmd, costs_cmd, report_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive",
        description="Adaptive-attack evaluation of adversarial-example defenses "
                    "(Attack as Defense, MagNet, adversarial training).",
        epilog="Run 'adaptive COMMAND --help' for the options of each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "adaptive " + shlex.join(argv)  # recorded in results for reruns
    try:
        return int(args.run(args) or 0)
    except ToolkitError as e:
        print(f"adaptive: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adaptive: interrupted (training and sweeps keep finished epochs and records; "
              "rerun with --resume to continue)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
