"""``--attack auto``, the per-image worst case over its ensemble (cw, APGD-CE, APGD-T, SPGD, OPGD,
Square, a hard-label attack on each defense's verdict): it never reports fewer broken images
than any member alone on the same images, and says which member broke each. That rests on
per-image seeds: an image's result must not depend on its batch. A defense whose gradients are
masked falls to its members aimed through its forward (the bare classifier's gradient, and the
gradient-free ones), where the old ensemble missed it, and the run warns."""

from dataclasses import replace

import torch

from adaptive.attacks.bounded_pgd import BoundedPGD, OrthogonalPGD
from adaptive.attacks.hard_label import DecisionOracle, HopSkipJump
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.defense import Defense
from adaptive.sweep import SweepConfig, read_records, run_sweep
from adaptive.sweep.config import AUTO_MEMBERS, member_config
from defenses.magnet.defense import MagNet
from tests.test_hard_label import RoundedGapDetector


def _images(n=6):
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    return model, meta, data, data.x()[:n], data.labels[:n]


def test_image_seeds_make_each_result_independent_of_its_batch():
    model, _, _, x, y = _images()
    seeds = torch.arange(len(x)) * 7 + 3
    some = torch.tensor([1, 4, 5])
    for attack in (BoundedPGD(2.0, steps=8, restarts=3, seed=1),
                   OrthogonalPGD(0.1, steps=8, restarts=3, seed=1, norm="linf")):
        whole = attack.run(model, x, y, seeds=seeds)
        part = attack.run(model, x[some], y[some], seeds=seeds[some])
        # (the model's float sums may differ in the last bits with the batch's size)
        assert torch.allclose(whole.adversarial[some], part.adversarial, atol=1e-5)
        assert torch.equal(whole.success[some], part.success)
        assert torch.allclose(whole.confidence_reached[some], part.confidence_reached,
                              atol=1e-4)
    # without seeds the random restarts are drawn per batch (what the test would catch)
    attack = BoundedPGD(2.0, steps=8, restarts=3, seed=1)
    shared = attack.run(model, x[some], y[some])
    assert not torch.allclose(shared.confidence_reached,
                              attack.run(model, x[some], y[some], seeds=seeds[some])
                              .confidence_reached, atol=1e-4)
    oracle = DecisionOracle(Defense("gapped", model, {"gap": RoundedGapDetector(model).fit(
        None)}))
    hsj = HopSkipJump(iterations=3, evals=10, max_evals=20, eps=1.0, seed=2)
    whole = hsj.run(oracle, x, y, seeds=seeds, starts=x)
    part = hsj.run(oracle, x[some], y[some], seeds=seeds[some], starts=x)
    assert torch.equal(whole.adversarial[some], part.adversarial)
    assert torch.equal(whole.gradient_steps[some], part.gradient_steps)


def _broken(path) -> dict:
    out = {}
    for r in read_records(path / "records.jsonl"):
        for name, v in r["defenses"].items():
            out.setdefault(name, set())
            if v["success"]:
                out[name].add(r["index"])
    return out


def test_auto_breaks_every_image_any_member_breaks_and_says_which(tmp_path):
    model, meta, data, _, _ = _images()
    data = data.subset(slice(0, 80))
    magnet = MagNet.load("mnist", model)
    gap = RoundedGapDetector(model).fit(None)  # no gradient: only hsj can aim at it
    cfg = SweepConfig(model_sha256=meta["sha256"], n=4, n_cal=20, kappas=[0.0], batch=4,
                      defenses=["none", "magnet", "gapped"], attack="auto", max_l2=3.0,
                      cw=dict(steps=40, binary_search_steps=3),
                      pgd=dict(steps=12, restarts=2, target_classes=1),
                      apgd=dict(steps=12), square=dict(queries=60),
                      hsj=dict(iterations=4, evals=20, max_evals=40),
                      transfer_check=False, image_seeds=True)

    def sweep(one, folder):
        res = run_sweep(one, model, data, tmp_path / folder, "cpu", magnet=magnet,
                        extra_defenses={"gapped": Defense("gapped", model, {"gap": gap})},
                        progress=False, log=lambda *_: None)
        return res, _broken(tmp_path / folder)

    res, auto = sweep(cfg, "auto")
    # each member alone (hsj alone attacks the last defense's verdict, gapped)
    # (apgd-di aims only at defenses that hide their gradient: none here; tests/
    # test_input_diversity.py runs it alone)
    members = {m: sweep(member_config(cfg, m), m)[1] for m in AUTO_MEMBERS
               if m not in ("rays", "apgd-di")}
    records = read_records(tmp_path / "auto" / "records.jsonl")
    for name in auto:
        for m, broken in members.items():
            if m != "hsj" or name == "gapped":
                assert broken[name] <= auto[name], (name, m, broken[name], auto[name])
        # ... and by no more than their union: auto invents nothing (hsj on another
        # defense's verdict has no single run here; its claims are checked below)
        hsj_here = {r["index"] for r in records if r["defenses"][name]["by"] == f"hsj@{name}"}
        union = set().union(*(b[name] for m, b in members.items()
                              if m != "hsj" or name == "gapped"))
        assert auto[name] <= union | hsj_here, (name, auto[name], union, hsj_here)
    for r in records:
        # members aimed at one defense are named MEMBER@DEFENSE
        assert r["auto"]["members"][0] == "cw"
        assert r["auto"]["primary"].split("@")[0] in AUTO_MEMBERS
        for name, v in r["defenses"].items():
            assert v["success"] == (v["by"] is not None)
            if v["by"] and not (v["by"].startswith("hsj@") and name != "gapped"):
                # the member that broke it broke it alone too
                assert r["index"] in members[v["by"].split("@")[0]][name], (name, v["by"])
    for row in res["rows"]:
        assert sum(row.get("broken_by", {}).values()) == round(row["attack_success_rate"]
                                                               * row["n"])
    assert any(r["defenses"]["gapped"]["success"] for r in records)
    # the report sets auto beside its members: no image a member broke alone is missing
    import csv

    from adaptive.cli.main import main
    # (one run per attack: apgd-t runs apgd-full as apgd-ce does)
    folders = [str(tmp_path / a) for a in ("auto", *members) if a != "apgd-t"]
    assert main(["report", *folders, "--out", str(tmp_path / "report")]) == 0
    table = list(csv.DictReader(open(tmp_path / "report" / "mnist_mnist-cnn_auto.csv")))
    assert len(table) == 3 and all(row["broken alone, not by auto"] == "0" for row in table)
    assert all(float(row["ASR auto"]) >= float(row["ASR best single"]) for row in table)


def test_a_masked_defense_falls_to_the_members_aimed_through_it_and_the_run_warns(tmp_path,
                                                                                monkeypatch):
    import adaptive.sweep.auto as auto_module
    from adaptive.sweep.config import AutoMember
    from tests.test_square import Rounded

    model, meta, data, _, _ = _images()
    # MagNet's reformer behind input rounding: no gradient, and little transfer from the bare
    # classifier at this bound
    rounded = Rounded(MagNet.load("mnist", model).defended_classifier())
    plugins = {"rounded": Defense("rounded", rounded)}
    cfg = SweepConfig(model_sha256=meta["sha256"], n=8, n_cal=10, kappas=[0.0], batch=8,
                      defenses=["none"], attack="auto", norm="linf", max_linf=0.2,
                      cw=dict(steps=30, binary_search_steps=2), apgd=dict(steps=20),
                      pgd=dict(steps=20, restarts=1, target_classes=0),
                      square=dict(queries=500), rays=dict(queries=300),
                      transfer_check=False, image_seeds=True)
    logs: list[str] = []

    def asr(folder, log=lambda *_: None):
        res = run_sweep(cfg, model, data, tmp_path / folder, "cpu", extra_defenses=plugins,
                        progress=False, log=log)
        return next(r for r in res.rows if r["defense"] == "rounded")

    new = asr("new", logs.append)
    # the white-box members follow the bare classifier's gradient through its forward (BPDA),
    # plain and averaged over resize-and-pad draws (apgd-di) ...
    assert any(m in new["broken_by"] for m in ("apgd-ce@rounded", "apgd-t@rounded"))
    assert any("red flag: masked_gradients (rounded)" in line for line in logs)
    # ... and without apgd-di the gradient-free ones break images the plain one misses
    with monkeypatch.context() as m:
        m.setattr(auto_module, "AUTO_ENSEMBLE", tuple(
            a for a in auto_module.AUTO_ENSEMBLE if a.label != "apgd-di"))
        logs.clear()
        plain = asr("without-apgd-di", logs.append)
    assert plain["gradient_free_only"] >= 1, plain["broken_by"]
    assert any("red flag: gradient_free_beats_white_box (rounded)" in line for line in logs)
    assert plain["attack_success_rate"] <= new["attack_success_rate"]
    # the ensemble before Square and RayS: transfer and zero gradients only
    old = tuple(AutoMember(m, m) for m in ("cw", "pgd-full", "spgd", "opgd", "hsj"))
    monkeypatch.setattr(auto_module, "AUTO_ENSEMBLE", old)
    # ... which aimed no white-box attack through a forward without a gradient
    cfg = replace(cfg, bare_gradient=False)
    before = asr("old")
    assert before["attack_success_rate"] + 0.25 <= new["attack_success_rate"], (before, new)
