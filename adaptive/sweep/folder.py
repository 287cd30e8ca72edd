"""A sweep run folder read back, checked, for everything that reads one after the run (``adaptive
report``, ``adaptive check``): its ``config.json``, ``summary.json``, records and cached
examples, each of the shape the run writes. A damaged or foreign folder is refused in one line
naming the file and what is wrong, before the reader writes anything."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from adaptive.core.errors import ToolkitError
from adaptive.sweep.records import RECORDS, read_records

CONFIG_FIELDS = {"model": str, "dataset": str, "kappas": list, "defenses": list}
ROW_FIELDS = ("kappa", "defense")


def _json_object(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolkitError(f"{path.parent} is not a sweep run (no {path.name})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ToolkitError(f"{path} cannot be read ({e}); the run folder is damaged") from e
    if not isinstance(found, dict):
        raise ToolkitError(f"{path} is a JSON {type(found).__name__}, not the object a sweep "
                           "writes; the folder is damaged or not a sweep run")
    return found


def _run_config(where: Path, config) -> dict:
    if not isinstance(config, dict):
        raise ToolkitError(f"{where}: 'config' is {type(config).__name__}, not the sweep's "
                           "settings; the folder is damaged or not a sweep run")
    for name, kind in CONFIG_FIELDS.items():
        if not isinstance(config.get(name), kind):
            raise ToolkitError(f"{where}: the setting {name!r} is missing or not a "
                               f"{kind.__name__}; the folder is damaged or not a sweep run")
    return config


def read_config(folder: str | Path, settings: bool = True) -> dict:
    """``config.json`` of a sweep run (started or finished): the object with its settings
    (``config``), checked; ``settings=False``: the settings may be left out (a finished run's
    reader takes them from ``summary.json``), but where they are given they are checked."""
    path = Path(folder) / "config.json"
    found = _json_object(path)
    if settings or "config" in found:
        _run_config(path, found.get("config"))
    return found


def read_summary(folder: str | Path) -> dict:
    """``summary.json`` of a finished sweep run, checked: its settings and one row per kappa
    and defense with the fields every reader uses."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise ToolkitError(f"{folder} is not a finished sweep run (no summary.json)")
    summary = _json_object(path)
    _run_config(path, summary.get("config"))
    rows = summary.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ToolkitError(f"{path}: 'rows' is {type(rows).__name__}, not a list of rows; the "
                           "folder is damaged or not a sweep run")
    for r in rows:
        missing = [k for k in ROW_FIELDS if k not in r]
        if missing:
            raise ToolkitError(f"{path}: a row has no {', '.join(missing)}; the folder is "
                               "damaged or not a sweep run")
    return summary


def read_cached_examples(folder: str | Path) -> list[tuple[Path, dict]]:
    """Every cached batch of adversarial examples (``cache/adv_k*_b*.pt``), checked: each a
    dict holding the images ``x`` and their data-set ``index``."""
    out = []
    for path in sorted(Path(folder, "cache").glob("adv_k*_b*.pt")):
        try:
            part = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ToolkitError(f"{path} cannot be read ({type(e).__name__}); the run folder "
                               "is damaged (a --resume of the sweep computes it again)") from e
        if (not isinstance(part, dict) or not isinstance(part.get("x"), torch.Tensor)
                or not isinstance(part.get("index"), torch.Tensor)
                or len(part["x"]) != len(part["index"])):
            raise ToolkitError(f"{path} is not a batch of adversarial examples (x, index); "
                               "the run folder is damaged")
        out.append((path, part))
    return out


def check_sweep_folder(folder: str | Path) -> dict:
    """The checks of a sweep folder that may still be running (``adaptive check``): its
    ``config.json``, its ``summary.json`` where there is one, its records; returns the
    config.json object."""
    folder = Path(folder)
    config = read_config(folder)
    if (folder / "summary.json").exists():
        read_summary(folder)
    read_records(folder / RECORDS, refuse_damage=True)
    return config


def read_sweep_folder(folder: str | Path) -> dict:
    """A finished sweep run, every part checked (see the module docstring): ``config`` (from
    ``config.json``), ``summary``, ``records`` (each kappa, image and target once; a line that
    is not a whole record refused) and ``examples`` (the cached batches)."""
    folder = Path(folder)
    summary = read_summary(folder)
    config = read_config(folder, settings=False)
    records = read_records(folder / RECORDS, refuse_damage=True)
    return {"config": config, "summary": summary, "records": records,
            "examples": read_cached_examples(folder)}
