"""The public face: every attack, its settings and the harness from ``adaptive`` and
``adaptive.attacks``, every detector and ``Defense`` from ``defenses``, typed results."""

import importlib

import pytest

import adaptive
import adaptive.attacks as attacks
import defenses


def test_every_exported_name_resolves():
    for name in adaptive.__all__:
        assert getattr(adaptive, name) is not None, name
    for package in (attacks, defenses):
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name}"
    with pytest.raises(AttributeError):
        adaptive.NoSuchThing  # noqa: B018


def test_every_registered_attack_and_its_settings_are_exported():
    for spec in attacks.ATTACK_SPECS.values():
        for obj in (spec.cls, spec.settings):
            assert obj.__name__ in attacks.__all__, obj.__name__
            assert getattr(adaptive, obj.__name__) is obj


def test_every_detector_type_and_the_defense_are_exported_by_defenses():
    exported = [getattr(defenses, n) for n in defenses.__all__]
    # the registered detector kinds of the package's own modules
    for kind, cls in defenses.DETECTOR_TYPES.items():
        if cls.__module__.startswith("defenses.") and not cls.__name__.startswith("_"):
            assert cls in exported, f"{cls.__name__} ({kind}) is not exported by defenses"
    assert defenses.Defense is adaptive.Defense


def test_a_sweep_returns_a_typed_result():
    from adaptive.sweep.run import SweepResult

    fields = set(SweepResult.__dataclass_fields__)
    assert {"config", "rows", "sanity_checks", "out"} <= fields
    assert importlib.import_module("adaptive.sweep.run").run_sweep.__annotations__[
        "return"] in ("SweepResult", SweepResult)


def test_records_have_one_typed_shape():
    from adaptive.core.errors import ToolkitError
    from adaptive.sweep.records import SweepRecord

    old = {"kappa": 0.0, "index": 3, "label": 1, "target": None, "cw_success": True,
           "cw_steps": 12, "cw_confidence": 2.5, "l2": 1.0, "linf": 0.1, "ssim": 0.9,
           "pred_bare": 2, "bim_d_cost": 4, "clever": None, "flags": {"a2d": False},
           "defenses": {"none": {"success": True, "pred": 2, "reasons": []}},
           "future_field": 7}
    rec = SweepRecord.from_json(old)
    assert rec.attack_success is True and rec.attack_steps == 12  # old names upgraded
    out = rec.to_json()
    assert "cw_success" not in out and out["future_field"] == 7  # nothing lost
    assert list(out)[:4] == ["kappa", "index", "label", "target"] and "transfer" not in out
    assert SweepRecord.from_json(out) == rec
    with pytest.raises(ToolkitError, match="lacks defenses"):
        SweepRecord.from_json({k: v for k, v in old.items() if k != "defenses"})
