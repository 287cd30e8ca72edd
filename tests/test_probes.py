"""The probes that run before any attack (adaptive.defense.probes), BPDA through a declared
surrogate, random defenses judged over draws, and the red flags of a run."""

import pytest
import torch
from torch import nn

import adaptive.sweep.run as sweep_run
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import ThreatModel
from adaptive.core.zoo import load_model
from adaptive.defense import judge_over_draws
from adaptive.defense.probes import check_surrogate, probe_all, probe_defense
from adaptive.sweep import SweepConfig, run_sweep
from adaptive.sweep.records import read_records
from adaptive.sweep.red_flags import red_flags
from defenses import BPDA, Defense

QUIET = dict(progress=False, log=lambda s: None)


class Rounded(nn.Module):
    """Each pixel rounded to one of ``levels`` grey levels: no gradient anywhere."""

    def __init__(self, levels: int = 4):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class Blurred(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(nn.functional.avg_pool2d(x, 3, 1, 1))


class Shifted(nn.Module):
    """The classifier behind a random shift of up to 2 pixels, drawn per call."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        dx, dy = torch.randint(-2, 3, (2,)).tolist()
        return self.model(torch.roll(x, (dx, dy), (2, 3)))


class Relabelled(nn.Module):
    """The classifier with its labels rotated by one: a surrogate that is not the defense."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).roll(1, dims=1)


@pytest.fixture(scope="module")
def setup():
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    return model, meta, data, data.x()[:64], data.labels[:64]


def _cfg(meta, **kw):
    args = dict(model="mnist-cnn", model_sha256=meta["sha256"], defenses=["none"], kappas=[0.0],
                n=16, n_cal=10, batch=16, norm="linf", max_linf=0.2, attack="pgd",
                pgd=dict(steps=20, restarts=1, target_classes=0),
                cw=dict(steps=30, binary_search_steps=2), transfer_check=False)
    args.update(kw)
    return SweepConfig(**args)


def _row(result, defense):
    return next(r for r in result.rows if r["defense"] == defense)


def test_probes_tell_the_kinds_of_forward_apart(setup):
    model, _, _, x, y = setup
    found = probe_all({"none": Defense("none", model),
                       "blur": Defense("blur", Blurred(model)),
                       "rounded": Defense("rounded", nn.Sequential(Rounded(), model)),
                       # BPDA inside the forward: a gradient, but not the forward's
                       "shattered": Defense("shattered", nn.Sequential(BPDA(Rounded()), model)),
                       "shifted": Defense("shifted", Shifted(model))}, x, y, log=lambda s: None)
    kinds = {k: (p.random, p.gradient) for k, p in found.items()}
    assert kinds == {"none": (False, "ok"), "blur": (False, "ok"), "rounded": (False, "zero"),
                     "shattered": (False, "first_order_mismatch"),
                     "shifted": (True, "not_checked")}
    assert found["rounded"].hidden and not found["shattered"].hidden
    assert not found["none"].masked and found["shattered"].masked


def test_a_forward_that_is_not_a_classifier_is_one_clear_error(setup):
    model, _, _, x, y = setup
    with pytest.raises(ToolkitError, match="'flat'.*logits of shape"):
        probe_defense(Defense("flat", nn.Sequential(model, nn.Flatten(0))), x, y)
    with pytest.raises(ToolkitError, match="'nan'.*not finite"):
        probe_defense(Defense("nan", nn.Sequential(model, nn.Threshold(1e9, float("nan")))),
                      x, y)

    def boom(x):
        raise ValueError("bad weights")

    with pytest.raises(ToolkitError, match="'boom'.*classifier raised ValueError: bad weights"):
        probe_defense(Defense("boom", boom), x, y)


def test_a_wrong_surrogate_is_refused_by_the_fidelity_test(setup, tmp_path):
    model, meta, data, x, _ = setup
    real = nn.Sequential(Rounded(), model)
    good = Defense("rounded", real, surrogate=nn.Sequential(BPDA(Rounded()), model))
    assert check_surrogate(good, x) == 1.0
    wrong = Defense("rounded", real, surrogate=Relabelled(model))
    with pytest.raises(ToolkitError, match=r"surrogate labels .* \(BPDA needs >= 99%\)"):
        check_surrogate(wrong, x)
    with pytest.raises(ToolkitError, match="surrogate"):  # before the run folder is made
        run_sweep(_cfg(meta), model, data, tmp_path / "run", "cpu",
                  extra_defenses={"rounded": wrong}, **QUIET)
    assert not (tmp_path / "run").exists()


def test_a_rounding_defense_is_probed_masked_and_broken_through_bpda(setup, tmp_path):
    model, meta, data, _, _ = setup
    real = nn.Sequential(Rounded(), model)
    plain = run_sweep(_cfg(meta), model, data, tmp_path / "plain", "cpu",
                      extra_defenses={"rounded": Defense("rounded", real)}, **QUIET)
    probe = plain.diagnostics["probes"]["rounded"]
    assert probe["gradient"] == "zero"
    [flag] = plain.diagnostics["red_flags"]
    assert flag["flag"] == "masked_gradients" and "bare classifier" in flag["cure"]
    bpda = Defense("rounded", real, surrogate=nn.Sequential(BPDA(Rounded()), model))
    through = run_sweep(_cfg(meta), model, data, tmp_path / "bpda", "cpu",
                        extra_defenses={"rounded": bpda}, **QUIET)
    assert through.diagnostics["red_flags"][0]["applied"]
    assert "declared surrogate" in through.diagnostics["red_flags"][0]["cure"]
    # without a stand-in for the hidden gradient (--no-bare-gradient, the old behaviour) the
    # bare model's examples
    # transfer to some images only; BPDA through the rounding (declared, or with the bare
    # classifier's gradient when none is) breaks all
    old = run_sweep(_cfg(meta, bare_gradient=False), model, data, tmp_path / "old", "cpu",
                    extra_defenses={"rounded": Defense("rounded", real)}, **QUIET)
    assert _row(old, "rounded")["attack_success_rate"] <= 0.75
    for run, folder in ((through, "bpda"), (plain, "plain")):
        assert _row(run, "rounded")["attack_success_rate"] >= 0.95
        recs = read_records(tmp_path / folder / "records.jsonl")
        assert any(r["defenses"]["rounded"].get("by") == "pgd@rounded" for r in recs)
        # judged by the real forward: every example counted broken is misclassified through it
        for r in recs:
            if r["defenses"]["rounded"]["success"]:
                assert r["defenses"]["rounded"]["pred"] != r["label"]


def test_a_random_defense_gets_eot_and_draws_without_being_asked(setup, tmp_path,
                                                                 monkeypatch):
    model, meta, data, _, _ = setup
    eots = []
    real_make = sweep_run.make_attack

    def recording(cfg, attack, *a, **k):
        eots.append(cfg.pgd.eot)
        return real_make(cfg, attack, *a, **k)

    monkeypatch.setattr(sweep_run, "make_attack", recording)
    cfg = _cfg(meta, n=4, batch=4, random_eot=3, draws=5, pgd=dict(steps=5, restarts=1,
                                                                   target_classes=0))
    res = run_sweep(cfg, model, data, tmp_path / "shift", "cpu",
                    extra_defenses={"shifted": Defense("shifted", Shifted(model))}, **QUIET)
    assert res.diagnostics["probes"]["shifted"]["random"]
    assert not res.diagnostics["probes"]["none"]["random"]
    assert 3 in eots and 1 in eots  # EOT through the shift, none through the bare model
    row = _row(res, "shifted")
    assert row["draws"] == 5
    assert row["asr_every_draw"] <= row["attack_success_rate"] <= row["asr_single_draw"]
    assert "draws" not in _row(res, "none")
    recs = read_records(tmp_path / "shift/records.jsonl")
    assert all(0 <= r["defenses"]["shifted"]["fooled_draws"] <= 1 for r in recs)
    assert "fooled_draws" not in recs[0]["defenses"]["none"]
    assert any(f["flag"] == "random_forward" and f["applied"]
               for f in res.diagnostics["red_flags"])


class OneDrawIn(nn.Module):
    """Answers the true label plus one on one call in ``every`` (a counter, so the test is
    exact), the true label otherwise."""

    def __init__(self, labels: torch.Tensor, every: int):
        super().__init__()
        self.labels, self.every, self.calls = labels, every, 0

    def forward(self, x):
        self.calls += 1
        shown = (self.labels + 1) % 10 if (self.calls - 1) % self.every == 0 else self.labels
        return nn.functional.one_hot(shown, 10).float()


def test_one_draw_in_twenty_breaks_a_single_draw_not_the_majority():
    labels = torch.arange(6)
    x = torch.rand(6, 1, 28, 28)
    defense = Defense("lucky", OneDrawIn(labels, 20))
    v = judge_over_draws(defense, x, x, labels, torch.ones(6, dtype=torch.bool),
                         ThreatModel("linf", 0.1), draws=20)
    assert torch.allclose(v.fooled_draws, torch.full((6,), 1 / 20))
    assert not v.success.any() and all(r == ["not_misclassified"] for r in v.reasons)
    often = judge_over_draws(Defense("often", OneDrawIn(labels, 1)), x, x, labels,
                             torch.ones(6, dtype=torch.bool), ThreatModel("linf", 0.1), 20)
    assert often.success.all() and (often.fooled_draws == 1).all()


def test_summary_reports_single_majority_and_every_draw():
    from adaptive.sweep.summary import summarize

    cfg = SweepConfig(defenses=["none"], kappas=[0.0], draws=20)
    base = dict(kappa=0.0, attack_success=True, l2=1.0, linf=0.1, ssim=0.9, bim_d_cost=3,
                flags={})
    shares = [1 / 20, 0.6, 1.0, 0.0]
    recs = [{**base, "index": i, "defenses": {"lucky": {
        "success": f > 0.5, "pred": 1, "reasons": [] if f > 0.5 else ["not_misclassified"],
        "fooled_draws": f}}} for i, f in enumerate(shares)]
    row = summarize(recs, cfg, {"lucky": Defense("lucky", nn.Identity())})[0]
    assert (row["asr_single_draw"], row["attack_success_rate"], row["asr_every_draw"]) == \
        (0.75, 0.5, 0.25)


def test_each_red_flag_fires_on_its_case_and_none_on_honest_ones(setup):
    model, _, _, x, y = setup
    cfg = SweepConfig(defenses=["none"], kappas=[0.0])
    probes = probe_all({"none": Defense("none", model), "blur": Defense("blur", Blurred(model)),
                        "rounded": Defense("rounded", nn.Sequential(Rounded(), model)),
                        "shifted": Defense("shifted", Shifted(model))}, x, y,
                       log=lambda s: None)
    honest = {"kappa": 0.0, "n": 10, "attack_success_rate": 0.9,
              "transfer_success_rate": 0.5, "broken_by": {"apgd-ce": 9},
              "gradient_free_only": 0}
    rows = [{**honest, "defense": "none"}, {**honest, "defense": "blur"},
            {**honest, "defense": "masked", "broken_by": {"apgd-ce": 2, "square@masked": 3},
             "gradient_free_only": 3, "attack_success_rate": 0.5},
            {**honest, "defense": "weak", "attack_success_rate": 0.2}]
    found = {(f["flag"], f["defense"]) for f in red_flags(cfg, probes, set(), rows)}
    assert found == {("masked_gradients", "rounded"), ("random_forward", "shifted"),
                     ("gradient_free_beats_white_box", "masked"),
                     ("transfer_beats_white_box", "weak")}
    honest_only = {k: probes[k] for k in ("none", "blur")}
    assert red_flags(cfg, honest_only, set(), rows[:2]) == []


class CoinDetector:
    """A plug-in detector that flags each input on a fresh coin toss (one in ``odds``): the
    classifier is deterministic, the defense is not."""

    def __init__(self, odds: int = 4):
        self.odds = odds

    def score(self, x):
        return torch.rand(len(x))

    def detect(self, x):
        return torch.rand(len(x)) < 1 / self.odds


class SteadyDetector(CoinDetector):
    def score(self, x):
        return x.flatten(1).mean(1)

    def detect(self, x):
        return self.score(x) > 0.9


def test_a_defense_with_a_random_detector_is_probed_random_and_judged_over_draws(setup,
                                                                                tmp_path):
    model, meta, data, x, y = setup
    coin = Defense("coin", model, {"coin": CoinDetector(), "steady": SteadyDetector()})
    steady = Defense("steady", model, {"steady": SteadyDetector()})
    found = probe_all({"coin": coin, "steady": steady}, x, y, log=lambda s: None,
                      detectors=True)
    assert found["coin"].random and found["coin"].random_detectors == ["coin"]
    assert found["coin"].gradient == "ok"  # the classifier is deterministic: first order checked
    assert not found["steady"].random and found["steady"].random_detectors == []
    assert "detectors coin differ" in found["coin"].describe()
    # without detectors=True (the built-in compositions: the toolkit knows its own) not probed
    assert not probe_all({"coin": coin}, x, y, log=lambda s: None)["coin"].random
    cfg = _cfg(meta, n=4, batch=4, random_eot=2, draws=5,
               pgd=dict(steps=3, restarts=1, target_classes=0))
    logs: list[str] = []
    res = run_sweep(cfg, model, data, tmp_path / "coin", "cpu", extra_defenses={"coin": coin},
                    progress=False, log=logs.append)
    assert res.diagnostics["probes"]["coin"]["random_detectors"] == ["coin"]
    assert _row(res, "coin")["draws"] == 5
    assert any("coin is random" in line for line in logs)
    recs = read_records(tmp_path / "coin/records.jsonl")
    assert all(0 <= r["defenses"]["coin"]["fooled_draws"] <= 1 for r in recs)
