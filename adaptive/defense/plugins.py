"""A user's own defense, loaded from a factory ``pkg.module:function`` (``--defense-module``):
importing it, calling it, checking what it returns, and hashing its source for a run's
identity."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from adaptive.core.checkpoint import sha256_file
from adaptive.core.errors import ToolkitError
from adaptive.defense.system import Defense


def load_factory(spec: str) -> Callable:
    """``pkg.module:function`` -> the function (a user's defense factory). The module is looked
    up on the import path and in the current folder; importing it runs its code."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ToolkitError(f"--defense-module needs the form pkg.module:factory, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # after installed packages, so it shadows none of them
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise ToolkitError(f"cannot import {mod_name!r} for --defense-module: {e} (looked on "
                           "the Python path and in the current folder)") from e
    except Exception as e:  # the user's code failed while importing: say where, in one line
        raise ToolkitError(f"importing {mod_name!r} for --defense-module raised "
                           f"{type(e).__name__}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ToolkitError(f"{mod_name!r} has no callable {fn_name!r}")
    return fn


def make_plugin_defenses(spec: str, **kwargs) -> dict[str, Defense]:
    """Call the factory of ``--defense-module`` with ``kwargs``: its Defense (or dict of them),
    checked; an exception in the user's factory becomes a one-line error."""
    factory = load_factory(spec)
    try:
        made = factory(**kwargs)
    except ToolkitError:
        raise
    except Exception as e:
        raise ToolkitError(f"the --defense-module factory {spec} raised "
                           f"{type(e).__name__}: {e}") from e
    made = {made.name: made} if isinstance(made, Defense) else made
    if (not isinstance(made, dict) or not made
            or not all(isinstance(d, Defense) for d in made.values())):
        raise ToolkitError(f"the --defense-module factory {spec} must return a Defense or a "
                           f"non-empty dict of them, got {type(made).__name__}")
    return made


def module_sha256(spec: str) -> str:
    """sha256 of the source file of the module of ``pkg.module:factory`` ('' if it has none),
    so that a resumed run notices a changed plug-in."""
    module = sys.modules.get(spec.split(":", 1)[0])
    source = getattr(module, "__file__", None)
    if not source or not os.path.isfile(source):
        return ""
    return sha256_file(Path(source))
