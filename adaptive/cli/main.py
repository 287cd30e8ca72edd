"""Entry point of the ``adaptive`` console script."""

from __future__ import annotations

import argparse
import json
import pickle
import shlex
import sys
import zlib

from adaptive import __version__
from adaptive.cli import (
    a2d_cmd,
    audit_cmd,
    check_cmd,
    clever_cmd,
    costs_cmd,
    data_cmd,
    evaluate_cmd,
    magnet_cmd,
    report_cmd,
    sweep_cmd,
    train_cmd,
    zoo_cmd,
)
from adaptive.cli.common import positive_int
from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import set_threads, tune_cpu_allocator

COMMAND_GROUPS = (sweep_cmd, audit_cmd, zoo_cmd, data_cmd, train_cmd, evaluate_cmd, a2d_cmd,
                  magnet_cmd, clever_cmd, costs_cmd, check_cmd, report_cmd)


class UsageError(Exception):
    """A command line argparse rejects (printed as one line by ``main``)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``adaptive: error:`` line and exit code 2, like
    every other bad input (argparse's default prints the whole usage first)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="adaptive",
        description="Adaptive-attack evaluation of adversarial-example defenses "
                    "(Attack as Defense, MagNet, adversarial training).",
        epilog="Run 'adaptive COMMAND --help' for the options of each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for torch (default: $ADAPTIVE_THREADS, else "
                             "PyTorch's choice capped at the CPUs this process may use, "
                             "container quotas included); 1 per job when several share a "
                             "machine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=ArgumentParser)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def describe_failure(e: BaseException) -> str | None:
    """The one-line message for the kinds of failure that are the user's input, files or
    machine rather than a bug in the toolkit; None for anything else (shown with its
    traceback). The one place where such exceptions become ``adaptive: error:`` lines."""
    if isinstance(e, (ToolkitError, UsageError)):
        return str(e)
    if isinstance(e, OSError):  # read-only or full disk, a file where a folder should be, ...
        what = e.strerror or str(e) or type(e).__name__
        files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
        return f"{what}: {files}" if files else f"{what} ({type(e).__name__})"
    if isinstance(e, (zlib.error, EOFError, UnicodeDecodeError, json.JSONDecodeError,
                      pickle.UnpicklingError)):  # damaged compressed, text or binary files
        return f"a file could not be decoded ({type(e).__name__}: {e}); it is damaged"
    if isinstance(e, MemoryError):
        return "out of memory; use smaller settings (--n, --batch)"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        args.command_line = "adaptive " + shlex.join(argv)  # recorded in results for reruns
        set_threads(args.threads)
        tune_cpu_allocator()
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("adaptive: interrupted (training and sweeps keep finished epochs and records; "
              "rerun with --resume to continue)",
              file=sys.stderr)
        return 130
    except Exception as e:
        message = describe_failure(e)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"adaptive: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
