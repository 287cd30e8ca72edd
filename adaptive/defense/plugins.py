"""A user's own defense, loaded from a factory ``pkg.module:function`` (``--defense-module``):
importing it, calling it, checking what it returns, and hashing its source for a run's
identity."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

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
    check_plugin_names(made)
    bare = kwargs.get("model")
    guards: dict[int, GuardedClassifier] = {}  # (a classifier shared by defenses: one guard)
    for d in made.values():
        for part in ("classifier", "surrogate"):
            fn = getattr(d, part)
            if fn is None or fn is bare:  # (the toolkit's own model needs no guard)
                continue
            key = id(fn)
            if key not in guards:
                guards[key] = GuardedClassifier(d.name, part, fn)
            setattr(d, part, guards[key])
    return made


class GuardedClassifier(nn.Module):
    """A plug-in's classifier (or surrogate; an ``nn.Module`` or a plain function) whose
    exceptions become one line naming the defense, the part and the call; every other
    attribute (``penultimate``, ``head``, ...) is the wrapped one's."""

    def __init__(self, defense: str, part: str, fn):
        super().__init__()
        self.defense, self.part = defense, part
        self.inner = fn  # (registered as a submodule when it is one: .to(), .eval() reach it)

    def forward(self, x):
        try:
            return self.inner(x)
        except ToolkitError:
            raise
        except Exception as e:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ToolkitError(f"defense {self.defense!r}: its {self.part} raised "
                               f"{type(e).__name__} on inputs of shape {shape}: {e}") from e

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self._modules.get("inner", self.__dict__.get("inner"))
            if inner is None:
                raise
            return getattr(inner, name)


def check_plugin_names(plugins: dict[str, Defense]) -> None:
    """Refuse, in one line, plug-in names that would silently replace or merge with another
    part of a run: a defense named as a built-in composition (``none``, ``a2d+magnet``), or a
    detector named as a built-in one (``a2d``, ``magnet:...``, a zoo detector) or as another
    plug-in's different detector (a run keeps one detector per name)."""
    from adaptive.defense.compositions import PARTS, is_composition

    seen: dict[str, tuple[str, object]] = {}
    for name, defense in plugins.items():
        if not isinstance(name, str) or not name:
            raise ToolkitError(f"a plug-in defense needs a non-empty name, got {name!r}")
        if is_composition(name):
            raise ToolkitError(f"the plug-in defense {name!r} has the name of a built-in "
                               "composition of the zoo's parts; give it another name")
        for dname, det in defense.detectors.items():
            if dname in PARTS or dname.startswith("magnet:"):
                raise ToolkitError(f"detector {dname!r} of the plug-in defense {name!r} has "
                                   "the name of a built-in detector; give it another name")
            other = seen.setdefault(dname, (name, det))
            if other[1] is not det:
                raise ToolkitError(f"the plug-in defenses {other[0]!r} and {name!r} both have "
                                   f"a detector named {dname!r} but not the same one; a run "
                                   "keeps one detector per name, so rename one")


def module_sha256(spec: str) -> str:
    """sha256 of the source file of the module of ``pkg.module:factory`` ('' if it has none),
    so that a resumed run notices a changed plug-in."""
    module = sys.modules.get(spec.split(":", 1)[0])
    source = getattr(module, "__file__", None)
    if not source or not os.path.isfile(source):
        return ""
    return sha256_file(Path(source))
