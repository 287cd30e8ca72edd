"""The detector contract from a user's side: a third-party detector (tests/plugin_defense.py)
fits, saves and loads like the built-in ones, and the -full attacks aim at it through
--defense-module."""

import json

import pytest
import torch

from adaptive.cli.main import main
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from defenses import Detector, NotFittedError, is_differentiable
from defenses.a2d.detector import A2DDetector, A2DKNNDetector
from defenses.a2d.presets import make_engine
from defenses.magnet.defense import MagNet
from tests.plugin_defense import LowConfidenceDetector


@pytest.fixture(scope="module")
def mnist():
    model, _ = load_model("mnist-cnn")
    return model, load_dataset("mnist-bundled").x()


def test_a_third_party_detector_follows_the_contract(mnist, tmp_path):
    model, x = mnist
    det = LowConfidenceDetector(model)
    with pytest.raises(NotFittedError):
        det.detect(x[:2])
    assert det.fit(x[:100]) is det and det.fitted
    flags = det.detect(x[100:120])
    assert flags.dtype == torch.bool and flags.shape == (20,)
    assert torch.equal(flags, det.score(x[100:120]) > det.threshold)
    det.save(tmp_path / "d.json")
    back = Detector.load(tmp_path / "d.json", model=model)
    assert isinstance(back, LowConfidenceDetector) and back.threshold == det.threshold
    assert is_differentiable(det)


def test_every_built_in_detector_implements_the_contract(mnist, tmp_path):
    model, x = mnist
    engines = {"bim_d": make_engine("bim_d", "mnist")}
    magnet = MagNet.load("mnist", model)
    a2d = A2DDetector(model, engines).fit(x[:20])
    knn = A2DKNNDetector(model, engines, k=5).fit(x[:10], x[10:20].flip(3))
    built_in = [a2d, knn, *magnet.detectors]
    for det in built_in:
        assert isinstance(det, Detector) and det.fitted
        s, flags = det.score(x[30:36]), det.detect(x[30:36])
        assert s.shape == flags.shape == (6,) and flags.dtype == torch.bool
        assert torch.equal(flags, s > det.threshold), det.name
        det.save(tmp_path / "d.json")
        context = {"model": model, "ae": getattr(det, "ae", None),
                   "classifier": getattr(det, "classifier", None)}
        back = Detector.load(tmp_path / "d.json", **context)
        assert type(back) is type(det) and torch.equal(back.detect(x[30:36]), flags)
    assert [is_differentiable(d) for d in built_in] == [False, False, True, True]
    with pytest.raises(NotFittedError):
        A2DKNNDetector(model, engines).detect(x[:2])


def test_full_attacks_aim_at_a_plugged_in_detector(capsys, tmp_path):
    rates = {}
    for attack in ("pgd", "pgd-full"):
        argv = ["sweep", "--defense-module", "tests.plugin_defense:make_defense", "--attack",
                attack, "--kappa", "0", "--n", "4", "--n-cal", "4", "--max-l2", "3",
                "--pgd-steps", "30", "--pgd-restarts", "1", "--pgd-targets", "0",
                "--no-transfer-check", "--no-progress", "--device", "cpu",
                "--out", str(tmp_path / attack)]
        assert main(argv) == 0
        out = capsys.readouterr().out
        summary = json.loads((tmp_path / attack / "summary.json").read_text())
        row = next(r for r in summary["rows"] if r["defense"] == "mine")
        rates[attack] = row["detection_rate:unsure"]
        if attack == "pgd-full":
            assert "aims at the plug-in detectors unsure" in out
    assert rates["pgd"] > 0 and rates["pgd-full"] < rates["pgd"], rates
