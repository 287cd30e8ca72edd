"""Every attack but the paper's transferred C&W aims at a plug-in defense through that
defense's own forward: a preprocessing the bare model does not have (a 3x3 blur) is broken
white box, where the attack on the bare model, transferred, misses it."""

import pytest
import torch
from torch import nn

import adaptive.sweep.run as sweep_run
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.sweep import SweepConfig, run_sweep
from defenses import Defense


class Blurred(nn.Module):
    """The classifier behind a 3x3 mean blur (the blur is part of the defense's forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("kernel", torch.ones(1, 1, 3, 3) / 9)

    def forward(self, x):
        return self.model(nn.functional.conv2d(x, self.kernel, padding=1))


@pytest.fixture(scope="module")
def setup():
    model, meta = load_model("mnist-cnn")
    return model, meta, load_dataset("mnist-bundled"), {"blur": Defense("blur", Blurred(model))}


def _cfg(meta, **kw):
    args = dict(model="mnist-cnn", model_sha256=meta["sha256"], defenses=["none"], kappas=[0.0],
                n=8, n_cal=10, batch=8, norm="linf", max_linf=0.2, attack="pgd",
                pgd=dict(steps=20, restarts=1, target_classes=0),
                cw=dict(steps=30, binary_search_steps=2), transfer_check=False)
    args.update(kw)
    return SweepConfig(**args)


def _asr(result, defense):
    return next(r["attack_success_rate"] for r in result.rows if r["defense"] == defense)


QUIET = dict(progress=False, log=lambda s: None)


def test_own_objectives_follow_each_plugins_forward(setup):
    model, meta, _, plugins = setup
    cfg = _cfg(meta)
    shared = sweep_run.attack_objective(cfg, model, None, None, {}, lambda s: None)
    own = sweep_run.own_objectives(cfg, plugins, shared, lambda s: None)
    assert set(own) == {"blur"} and own["blur"].model is plugins["blur"].classifier
    # a plug-in that answers with the bare model and has no detectors: the shared objective
    same = {"plain": Defense("plain", model)}
    assert sweep_run.own_objectives(cfg, same, shared, lambda s: None) == {}
    # the paper's attack stays the transferred one
    assert sweep_run.own_objectives(_cfg(meta, attack="cw"), plugins, shared) == {}


def test_a_blurred_classifier_is_broken_through_its_blur(setup, tmp_path, monkeypatch):
    model, meta, data, plugins = setup
    cfg = _cfg(meta)
    res = run_sweep(cfg, model, data, tmp_path / "through", "cpu", extra_defenses=plugins,
                    **QUIET)
    through = _asr(res, "blur")
    assert _asr(res, "none") >= 0.9 and through >= 0.75
    from adaptive.sweep.records import read_records

    recs = read_records(tmp_path / "through/records.jsonl")
    assert any(r["defenses"]["blur"].get("by") == "pgd@blur" for r in recs)
    # the old behaviour: the attack on the bare model, transferred to the blur, misses it
    monkeypatch.setattr(sweep_run, "own_objectives", lambda *a, **k: {})
    old = run_sweep(_cfg(meta), model, data, tmp_path / "transferred", "cpu",
                    extra_defenses=plugins, **QUIET)
    assert _asr(old, "blur") <= 0.25 < through


def test_auto_breaks_the_blur_with_members_aimed_at_it(setup, tmp_path, monkeypatch):
    model, meta, data, plugins = setup
    cfg = _cfg(meta, attack="auto", n=4, batch=4, pgd=dict(steps=20, restarts=1,
                                                           target_classes=0))
    res = run_sweep(cfg, model, data, tmp_path / "auto", "cpu", extra_defenses=plugins,
                    **QUIET)
    row = next(r for r in res.rows if r["defense"] == "blur")
    assert row["attack_success_rate"] >= 0.75
    assert any(m.endswith("@blur") for m in row["broken_by"]), row["broken_by"]
    monkeypatch.setattr(sweep_run, "own_objectives", lambda *a, **k: {})
    old = run_sweep(cfg, model, data, tmp_path / "auto-old", "cpu", extra_defenses=plugins,
                    **QUIET)
    assert _asr(old, "blur") < row["attack_success_rate"]


def test_each_built_in_composition_is_attacked_through_its_own_forward(setup):
    from adaptive.defense.compositions import build_defenses
    from defenses.magnet.defense import MagNet

    model, meta, _, _ = setup
    magnet = MagNet.load("mnist", model)
    defenses = build_defenses(["none", "magnet"], model, magnet=magnet)
    quiet = lambda s: None  # noqa: E731

    def objectives(attack):
        cfg = _cfg(meta, attack=attack, defenses=["none", "magnet"])
        shared = sweep_run.attack_objective(cfg, model, None, magnet, {}, quiet, defenses)
        return shared, sweep_run.own_objectives(cfg, defenses, shared, quiet)

    # plain pgd differentiates the bare model: MagNet is attacked again through its reformer
    shared, own = objectives("pgd")
    assert shared.model is model and set(own) == {"magnet"}
    assert own["magnet"].model is defenses["magnet"].classifier and not own["magnet"].terms
    # pgd-full goes through the reformer with MagNet's detectors: the bare model gets its own
    shared, own = objectives("pgd-full")
    assert shared.model is defenses["magnet"].classifier and shared.terms
    assert set(own) == {"none"} and own["none"].model is model and not own["none"].terms
