import json

import pytest
import torch
from torch import nn

import adaptive.sweep as sweep
from adaptive.cli.main import main
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import ThreatModel
from adaptive.core.zoo import load_model
from adaptive.defense import Defense, judge
from adaptive.sweep import SweepConfig, parse_kappas, run_sweep
from adaptive.sweep import run as sweep_run
from defenses.magnet.defense import MagNet


class FixedClassifier(nn.Module):
    """Predicts the class stored in the first pixel (times 10)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        cls = (x[:, 0, 0, 0] * 10).round().long().clamp(0, 9)
        return nn.functional.one_hot(cls, 10).float() * 5


class FlagList:
    def __init__(self, flags):
        self.flags = torch.tensor(flags)

    def detect(self, x):
        return self.flags[:len(x)]


def test_success_accounting_on_hand_made_cases():
    x = torch.zeros(5, 1, 4, 4)  # class 0 everywhere
    adv = x.clone()
    adv[:, 0, 0, 0] = 0.3  # now class 3...
    adv[2, 0, 0, 0] = 0.0  # ...except sample 2: still class 0
    adv[3, 0, 1:, :] = 1.0  # sample 3: a huge distortion
    labels = torch.zeros(5, dtype=torch.long)
    attack_ok = torch.tensor([True, False, True, True, True])
    d = Defense("toy", FixedClassifier(), {"det": FlagList([False, False, False, False, True])})
    v = judge(d, adv, x, labels, attack_ok, ThreatModel("l2", 2.0))
    assert v.success.tolist() == [True, False, False, False, False]
    assert v.reasons == [[], ["attack_failed"], ["not_misclassified"], ["bound_exceeded"],
                         ["detected:det"]]
    targets = torch.tensor([3, 3, 3, 3, 4])
    vt = judge(Defense("none", FixedClassifier()), adv, x, labels, attack_ok,
               ThreatModel("l2", 2.0), targets)
    assert vt.reasons[4] == ["not_target"] and vt.success.tolist()[0]
    with pytest.raises(ToolkitError, match="no detect"):
        Defense("bad", FixedClassifier(), {"x": object()})


def test_parse_kappas():
    assert parse_kappas("0:20:5") == [0, 5, 10, 15, 20]
    assert parse_kappas("0,2.5") == [0, 2.5]
    for bad in ("5:0:1", "a", "0:10:0", "-1"):
        with pytest.raises(ToolkitError):
            parse_kappas(bad)


@pytest.fixture(scope="module")
def setup():
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 80))
    return model, meta, data, MagNet.load("mnist", model)


def _cfg(**kw):
    args = dict(n=4, n_cal=30, kappas=[0.0, 5.0], batch=2,
                cw=dict(steps=40, binary_search_steps=2, lr=0.05, initial_const=1.0))
    args.update(kw)
    return SweepConfig(**args)


def test_kill_and_resume_equals_an_uninterrupted_run(setup, tmp_path, monkeypatch):
    model, meta, data, magnet = setup
    quiet = dict(progress=False, log=lambda s: None)
    full = run_sweep(_cfg(), model, data, tmp_path / "full", "cpu", magnet=magnet, **quiet)
    rows = {(r["kappa"], r["defense"]): r for r in full["rows"]}
    assert set(d for _, d in rows) == {"none", "a2d", "magnet", "a2d+magnet"}
    assert rows[(0.0, "none")]["n"] == 4
    assert "detection_rate:a2d" in rows[(0.0, "a2d+magnet")]
    for f in ("summary.json", "summary.csv", "config.json", "records.jsonl",
              "asr_vs_kappa.png", "detection_vs_kappa.png", "l2_vs_kappa.png", "examples.png"):
        assert (tmp_path / "full" / f).is_file(), f
    config = json.loads((tmp_path / "full/config.json").read_text())
    assert set(config["model_sha256"]) == {"mnist-cnn", "magnet:I", "magnet:II"}
    assert "torch" in config["environment"]["versions"]
    records = [json.loads(x) for x in (tmp_path / "full/records.jsonl").read_text().splitlines()]
    assert len(records) == 8
    # Die after the second batch has been recorded, then resume.
    real, calls = sweep_run._append, {"n": 0}

    def dying(path, rows):
        real(path, rows)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "_append", dying)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_cfg(), model, data, tmp_path / "cut", "cpu", magnet=magnet, **quiet)
    monkeypatch.setattr(sweep_run, "_append", real)
    assert not (tmp_path / "cut/summary.json").exists()
    resumed = run_sweep(_cfg(), model, data, tmp_path / "cut", "cpu", magnet=magnet,
                        resume=True, **quiet)
    assert resumed["rows"] == full["rows"]
    with pytest.raises(ToolkitError, match="different configuration"):
        run_sweep(_cfg(max_l2=1.0), model, data, tmp_path / "cut", "cpu", magnet=magnet,
                  resume=True, **quiet)
    with pytest.raises(ToolkitError, match="--resume"):
        run_sweep(_cfg(), model, data, tmp_path / "cut", "cpu", magnet=magnet, **quiet)


@pytest.mark.parametrize("argv, message", [
    (["--defenses", "a2d,foo"], "unknown defense foo"),
    (["--kappa", "20:0:5"], "bad --kappa"),
    (["--resume"], "--resume needs --out"),
    (["--defense-module", "nomodule"], "pkg.module:factory"),
    (["--defense-module", "no.such.module:f"], "cannot import"),
    (["--dataset", "cifar10"], "trained on mnist"),
])
def test_bad_flags(capsys, argv, message):
    code = main(["sweep", "--no-progress", *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_docs_plug_in_example_runs(capsys, tmp_path, monkeypatch):
    """The plug-in contract's own-defense example, taken from docs/plugins.md, through
    --defense-module."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = readme.split("# mydefense.py\n", 1)[1].split("```", 1)[0]
    # (a module name of its own: README's five-minute example imports another mydefense)
    (tmp_path / "docs_plugin_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["sweep", "--no-progress", "--defense-module", "docs_plugin_example:make_defense",
               "--n", "2", "--n-cal", "10", "--kappa", "0", "--cw-steps", "30",
               "--cw-binary-steps", "2", "--clever", "--out", str(tmp_path / "plug")])
    assert rc == 0
    summary = json.loads((tmp_path / "plug/summary.json").read_text())
    assert {r["defense"] for r in summary["rows"]} == {"none", "mine"}
    assert "detection_rate:norm" in summary["rows"][1]
    # --clever: each adversarial example's CLEVER score, averaged per row.
    assert summary["config"]["clever"] == {"n_batches": 50, "n_samples": 64, "radius": 5.0}
    records = [json.loads(x) for x in (tmp_path / "plug/records.jsonl").read_text().split("\n")
               if x]
    made = [r["clever"] for r in records if r["attack_success"]]
    assert made and all(0 <= c < 1 for c in made)
    assert summary["rows"][0]["mean_clever"] == pytest.approx(sum(made) / len(made))


class LowConfidenceDetector:
    """Flags inputs whose top two logits lie within 2 of each other: examples of an attack
    that stops at the decision boundary."""

    def __init__(self, model):
        self.model = model

    def relative_score(self, x):
        top = self.model(x).topk(2, dim=1).values
        return 2 - (top[:, 0] - top[:, 1]) / 2

    def detect(self, x):
        with torch.no_grad():
            return self.relative_score(x) > 1


def test_full_attacks_aim_at_plug_in_detectors_with_a_relative_score(setup, tmp_path):
    model, meta, data, magnet = setup
    said = []
    plugin = {"mine": Defense("mine", model, {"unsure": LowConfidenceDetector(model),
                                              "blind": FlagList([False] * 64)})}
    rates = {}
    for attack in ("pgd", "pgd-full"):
        res = run_sweep(_cfg(n=4, kappas=[0.0], defenses=["none"], attack=attack, max_l2=3.0,
                             pgd=dict(steps=30, restarts=1, target_classes=0),
                             transfer_check=False),
                        model, data, tmp_path / attack, "cpu", extra_defenses=plugin,
                        progress=False, log=said.append)
        row = [r for r in res["rows"] if r["defense"] == "mine"][0]
        rates[attack] = (row["detection_rate:unsure"], row["attack_success_rate"])
    assert rates["pgd"][0] >= 0.25 and rates["pgd-full"][0] == 0, rates  # measured 0.25, 0
    assert rates["pgd-full"][1] > rates["pgd"][1]
    assert any("aims at the plug-in detectors unsure; blind (no relative_score) only judge"
               in s for s in said)


def test_adaptive_attacks_run_through_the_sweep(setup, tmp_path):
    model, meta, data, magnet = setup
    quiet = dict(progress=False, log=lambda s: None)
    cfg = _cfg(n=2, kappas=[0.0], defenses=["a2d+magnet"], attack="cw-full")
    res = run_sweep(cfg, model, data, tmp_path / "full", "cpu", magnet=magnet, **quiet)
    assert res["config"]["attack"] == "cw-full" and res["rows"][0]["n"] == 2
    records = sweep.read_records(tmp_path / "full" / sweep.RECORDS)
    assert all(set(r["transfer"]) == {"a2d+magnet"} for r in records)
    assert res["rows"][0]["transfer_success_rate"] is not None
    assert any(c["name"].startswith("white-box cw-full at least as strong")
               for c in res["sanity_checks"])
    with pytest.raises(ToolkitError, match="needs a MagNet defense"):
        run_sweep(_cfg(n=2, kappas=[0.0], defenses=["a2d"], attack="cw-magnet"), model, data,
                  tmp_path / "bad", "cpu", **quiet)
    with pytest.raises(ToolkitError, match="unknown attack"):
        run_sweep(_cfg(attack="fgsm"), model, data, tmp_path / "bad2", "cpu", **quiet)


def test_pgd_attacks_spend_the_bound_and_are_judged_like_cw(setup, tmp_path):
    model, meta, data, magnet = setup
    quiet = dict(progress=False, log=lambda s: None)
    cfg = _cfg(n=2, kappas=[0.0], defenses=["a2d+magnet"], attack="pgd-full", max_l2=3.0,
               pgd=dict(steps=20, restarts=2, target_classes=0))
    res = run_sweep(cfg, model, data, tmp_path / "pgd", "cpu", magnet=magnet, **quiet)
    records = sweep.read_records(tmp_path / "pgd" / sweep.RECORDS)
    assert len(records) == 2 and all(r["l2"] <= 3.0 for r in records)
    assert all(r["attack_steps"] <= 40 for r in records)  # 2 restarts of 20 steps at most
    assert all(set(r["transfer"]) == {"a2d+magnet"} for r in records)
    assert any(c["name"].startswith("white-box pgd-full at least as strong")
               for c in res["sanity_checks"])
    assert sweep.attacked_parts("pgd-full") == {"a2d", "magnet", "rmagnet"} == \
        sweep.attacked_parts("cw-full") and sweep.attacked_parts("pgd") == set()
    # the attacks on whatever the run defends with aim only at its parts
    assert sweep.attacked_parts("pgd-full", ["none", "fs"]) == set()
    assert sweep.attacked_parts("auto", ["none", "rmagnet"]) == {"rmagnet"}
    assert sweep.attacked_parts("cw-a2d", ["none", "fs"]) == {"a2d"}  # named: as asked
    assert sweep.white_box_against("pgd-a2d", "a2d+at")
    assert not sweep.white_box_against("pgd-a2d", "a2d+magnet")
    with pytest.raises(ToolkitError, match="finite"):
        run_sweep(_cfg(attack="pgd-a2d", max_l2=float("inf")), model, data, tmp_path / "inf",
                  "cpu", **quiet)


def test_sanity_checks_fire_on_a_broken_attack(setup, tmp_path, monkeypatch):
    """An 'attack' that claims success but returns the clean images must be caught."""
    from adaptive.attacks import cw

    model, meta, data, magnet = setup
    quiet = dict(progress=False, log=lambda s: None)
    cfg = _cfg(n=2, kappas=[0.0], defenses=["none"],
               cw=dict(steps=100, binary_search_steps=3, lr=0.05, initial_const=1.0))
    good = run_sweep(cfg, model, data, tmp_path / "good", "cpu", **quiet)
    assert all(c["passed"] for c in good["sanity_checks"]), good["sanity_checks"]
    names = [c["name"] for c in good["sanity_checks"]]
    assert any("unbounded" in n for n in names) and "ASR grows with the L2 bound" in names
    asr = good["asr_by_l2_bound"][0]["asr"]
    assert list(asr) == ["1.05", "2.1", "4.2", "6.3", "8.4", "inf"]
    assert asr["inf"] == 1.0 and list(asr.values()) == sorted(asr.values())

    def broken(self, model, x, labels, targeted=False, penalty=None):
        n = len(x)
        return cw.CWResult(x.clone(), torch.zeros(n), torch.ones(n, dtype=torch.bool),
                           torch.zeros(n), torch.zeros(n, dtype=torch.long))

    monkeypatch.setattr(cw.CarliniWagnerL2, "run", broken)
    logs = []
    bad = run_sweep(cfg, model, data, tmp_path / "bad", "cpu", progress=False,
                    log=logs.append)
    failed = [c for c in bad["sanity_checks"] if not c["passed"]]
    assert failed and "unbounded attack fools the bare classifier" in failed[0]["name"]
    assert any(line.startswith("WARNING: sanity check failed") for line in logs)
    saved = json.loads((tmp_path / "bad/summary.json").read_text())
    assert saved["sanity_checks"] == bad["sanity_checks"]


def test_label_pairs_attack_every_ordered_pair_once():
    from adaptive.sweep import label_pairs

    labels = torch.tensor([2, 0, 1, 0, 2, 1])
    index, target = label_pairs(torch.tensor([0, 1, 2, 3, 4, 5]), labels, 3)
    pairs = {(int(labels[i]), int(t)) for i, t in zip(index, target)}
    assert len(index) == 6 and pairs == {(a, b) for a in range(3) for b in range(3) if a != b}
    assert set(index.tolist()) == {0, 1, 2}  # the first image of each class
    with pytest.raises(ToolkitError, match="raise --n"):
        label_pairs(torch.tensor([0, 1]), labels, 3)


def test_white_box_weaker_than_transfer_is_flagged():
    """Against the defenses it attacks, an adaptive attack that does worse than the plain
    transferred C&W is broken, and the sanity check must say so; defenses it does not attack
    (cw-magnet goes through the reformer, so 'none' is not its target) are not judged."""
    from adaptive.sweep import sanity_checks

    def rec(i, white, moved):
        return {"kappa": 0.0, "index": i, "label": 1, "target": None, "attack_success": True,
                "pred_bare": 2, "l2": 1.0,
                "defenses": {d: {"success": white[d], "reasons": []} for d in white},
                "transfer": moved}

    records = [rec(0, {"none": False, "magnet": False}, {"none": True, "magnet": True}),
               rec(1, {"none": False, "magnet": True}, {"none": True, "magnet": False})]
    cfg = SweepConfig(kappas=[0.0], attack="cw-magnet")
    check, = [c for c in sanity_checks(records, cfg, []) if c["name"].startswith("white-box")]
    assert check["passed"] and check["detail"].endswith("magnet 50% vs 50%")  # 'none' unjudged
    records[1]["defenses"]["magnet"]["success"] = False
    check, = [c for c in sanity_checks(records, cfg, []) if c["name"].startswith("white-box")]
    assert not check["passed"] and "magnet 0% vs 50%" in check["detail"]


def test_an_attack_weaker_than_pgd_at_the_bound_is_flagged(tmp_path):
    """A minimum-distance attack that stops short of the bound understates the ASR there;
    PGD at the bound on the same images exposes it, on classifier-only defenses at kappa 0."""
    from adaptive.core.store import RunStore
    from adaptive.sweep import bounded_attack_check

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(6, 1, 4, 4)
    y = model(x).argmax(1)  # every image correctly classified; a bound of 5 reaches any class
    class Never:
        def detect(self, x):
            return torch.zeros(len(x), dtype=torch.bool)

    # a defense with a detector is not the bare classifier: not compared with PGD
    defenses = {"none": Defense("none", model), "det": Defense("det", model, {"d": Never()})}

    def records(success):
        return [{"kappa": 0.0, "index": i, "label": int(y[i]),
                 "defenses": {"none": {"success": success}, "det": {"success": False}}}
                for i in range(6)]

    cfg = SweepConfig(kappas=[0.0], max_l2=5.0, attack="cw")
    store = RunStore(tmp_path / "run", {"a": 1}, resume=False)
    check, = bounded_attack_check(records(False), cfg, model, defenses, x, y, store, "cpu",
                                  log=lambda *a: None)
    assert not check["passed"] and "fools the bare classifier on 100%" in check["detail"]
    assert "none 0%" in check["detail"] and "det" not in check["detail"]
    check, = bounded_attack_check(records(True), cfg, model, defenses, x, y, store, "cpu")
    assert check["passed"]  # and PGD's result came from the run's store this time
    no_kappa0 = [dict(r, kappa=5.0) for r in records(True)]
    assert bounded_attack_check(no_kappa0, cfg, model, defenses, x, y, store, "cpu") == []
    for other in (SweepConfig(kappas=[0.0], max_l2=5.0, attack="cw", targeted=True),
                  SweepConfig(kappas=[0.0], max_l2=5.0, attack="cw-a2d")):
        assert bounded_attack_check(records(True), other, model, defenses, x, y, store,
                                    "cpu") == []
