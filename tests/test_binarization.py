"""The binarization test (Zimmermann et al. 2022): an attack that finds the guaranteed
adversarial example of a binarised classifier passes, a crippled one fails; points a detector
rejects are redrawn (towards other images when it rejects all noise); a model without the
features hook gets a clear error."""

import pytest
import torch
from torch import nn

from adaptive.attacks.bounded_pgd import BoundedPGD
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.defense import Defense
from adaptive.diagnostics.binarization import BinarizedClassifier, binarization_test
from defenses import Detector


def _setup(n=4):
    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    return model, data, data.x()[:n], data.labels[:n]


def _test(defense, model, make_attack, x, y, eps=2.0, **kw):
    return binarization_test(defense, model, make_attack, x, y, eps, "l2", n_inner=499,
                             n_random=200, log=lambda *_: None, **kw)


def test_a_strong_attack_passes_and_a_crippled_one_fails():
    model, _, x, y = _setup()
    none = Defense("none", model, {})
    strong = _test(none, model, lambda: BoundedPGD(2.0, steps=50, restarts=2), x, y)
    assert strong["summary"]["used"] == 4 and strong["summary"]["passed"] is True
    # the binarised classifier really has its adversarial example: the boundary point
    one = strong["images"][0]
    assert one["attack_success"] and one["distance"] <= 2.0 * (1 + 1e-5)
    # one step of a tenth of the bound cannot reach it
    weak = _test(none, model, lambda: BoundedPGD(2.0, steps=1, step_size=0.2), x, y)
    assert weak["summary"]["passed"] is False and weak["summary"]["attack_success_rate"] == 0
    assert weak["summary"]["random_success_rate"] is not None


class RejectsNoise(Detector):
    """Flags inputs with many mid-grey pixels: noise at L2 2 on MNIST has them, digits and
    blends of digits far fewer."""

    name, threshold = "noise", 240.0

    def score(self, x):
        return ((x > 0.05) & (x < 0.95)).flatten(1).sum(1).float()

    def fit(self, benign):
        return self


def test_points_a_detector_rejects_are_redrawn_towards_other_images():
    model, data, x, y = _setup(3)
    det = RejectsNoise()
    assert not det.detect(x).any() and det.detect((x + 0.1 * torch.randn_like(x)).clamp(0, 1)
                                                  ).all()
    guarded = Defense("guarded", model, {"noise": det})
    pool = data.x()[100:300]
    noise_only = _test(guarded, model, lambda: BoundedPGD(2.0, steps=30), x, y,
                       directions="noise")
    assert noise_only["summary"]["skipped"]["no boundary point the detectors accept"] >= 2
    found = _test(guarded, model, lambda: BoundedPGD(2.0, steps=30), x, y, pool=pool)
    assert found["summary"]["directions"].get("images", 0) >= 1
    assert found["summary"]["used"] > noise_only["summary"]["used"]
    for image in found["images"]:  # the inner points the detector kept, and the image
        assert image["skipped"] or 1 < image["inner_points"] <= 499


class Counting(Detector):
    """Accepts everything and counts the points it judged."""

    name, threshold = "counting", 0.5

    def __init__(self):
        self.judged = 0

    def score(self, x):
        self.judged += len(x)
        return torch.zeros(len(x))

    def fit(self, benign):
        return self


def test_unchecked_inner_points_are_not_judged_and_the_control_stops_at_its_first_hit():
    model, _, x, y = _setup(1)
    runs = {}
    for check in (True, False):
        det = Counting()
        runs[check] = (_test(Defense("counted", model, {"counting": det}), model,
                             lambda: BoundedPGD(2.0, steps=30), x, y, check_inner=check),
                       det.judged)
    (checked, n_checked), (unchecked, n_unchecked) = runs[True], runs[False]
    assert checked["images"][0]["inner_points"] == unchecked["images"][0]["inner_points"] == 499
    assert n_checked - n_unchecked == 498  # the drawn inner points, the image aside
    # image, 8 boundary candidates, the attack's example, the control's first chunk at most
    assert n_unchecked <= 1 + 8 + 1 + 16
    assert checked["summary"] == unchecked["summary"]


class ArmedDetector(Detector):
    """Accepts everything until armed, then rejects everything: a detector the attack's
    examples (made after arming) never get past."""

    name, threshold, armed = "armed", 0.5, False

    def score(self, x):
        return torch.full((len(x),), float(self.armed))

    def fit(self, benign):
        return self


class ArmingAttack:
    """PGD that arms the detector first and records the penalty it was given."""

    def __init__(self, det, seen):
        self.det, self.seen = det, seen

    def run(self, model, x, labels, penalty=None, **kw):
        self.det.armed = True
        self.seen.append(penalty)
        return BoundedPGD(2.0, steps=50, restarts=2).run(model, x, labels, **kw)


def test_task_only_attacks_the_same_tasks_without_the_detectors():
    """The diagnosis --task-only: no detector term in the attack, success when the readout
    flips; with the detectors a rejected example is a failure."""
    model, _, x, y = _setup(1)  # (once armed, the detector would reject a next image)
    det = ArmedDetector()
    guarded = Defense("guarded", model, {"armed": det})

    def penalty(adv, labels, targeted):
        return torch.zeros(len(adv))

    results = {}
    for task_only in (False, True):
        seen = []

        def make_attack():
            return ArmingAttack(det, seen)

        det.armed = False  # disarmed while the points are drawn
        results[task_only] = _test(guarded, model, make_attack, x, y, penalty=penalty,
                                   task_only=task_only)
        assert len(seen) == 1 and (seen[0] is None) == task_only
    with_detectors, task = results[False]["summary"], results[True]["summary"]
    assert with_detectors["used"] == task["used"] == 1
    assert with_detectors["attack_success_rate"] == 0  # every example rejected
    assert task["attack_success_rate"] == 1 and task["passed"] is True


def test_the_features_hook_is_part_of_the_model_contract():
    model, _, x, y = _setup(1)
    phi = model.penultimate(x)
    assert torch.allclose(model.head(phi), model(x), atol=1e-5)
    b = BinarizedClassifier(model, torch.zeros(phi.shape[1]), -1.0)
    assert b(x).shape == (1, 2) and int(b(x).argmax(1)) == 0
    bare = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ToolkitError, match="penultimate"):
        _test(Defense("bare", bare, {}), bare, lambda: BoundedPGD(2.0), x, y)


def test_check_binarization_on_a_sweep_folder_and_in_its_report(tmp_path, capsys):
    import json

    from adaptive.cli.main import main

    run = tmp_path / "run"
    assert main(["sweep", "--attack", "pgd", "--defenses", "none", "--n", "2", "--n-cal", "10",
                 "--kappa", "0", "--max-l2", "2", "--pgd-steps", "20", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["check", "binarization", str(run), "--n-inner", "299",
                 "--n-random", "50"]) == 0
    said = capsys.readouterr().out
    assert "PASSED" in said
    found = json.loads((run / "diagnostics" / "binarization_pgd_s20_in299.json").read_text())
    assert found["config"]["defense"] == "none" and found["summary"]["used"] == 2
    assert main(["check", "binarization", str(run), "--steps", "1", "--restarts", "1",
                 "--defense", "nope"]) == 2
    # other restarts than the run's get their own file (not overwriting the run's setting's)
    assert main(["check", "binarization", str(run), "--n-inner", "299", "--n-random", "50",
                 "--steps", "20", "--restarts", "1"]) == 0
    assert (run / "diagnostics" / "binarization_pgd_s20_r1_in299.json").is_file()
    again = run / "diagnostics" / "binarization_pgd_s20_in299.json"
    assert json.loads(again.read_text()) == found
    # truncated: 2 steps of a tenth of the run's step length cannot reach the bound
    assert main(["check", "binarization", str(run), "--n-inner", "299", "--n-random", "50",
                 "--steps", "2", "--restarts", "1", "--step-size", "0.025"]) == 0
    assert "FAILED" in capsys.readouterr().out
    cut = run / "diagnostics" / "binarization_pgd_s2_r1_ss0.025_in299.json"
    cut = json.loads(cut.read_text())
    assert cut["config"]["settings"]["step_size"] == 0.025
    assert cut["summary"]["attack_success_rate"] == 0.0
    assert main(["check", "binarization", str(run), "--step-size", "0"]) == 2
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    table = (tmp_path / "rep" / "mnist_mnist-cnn_binarization.md").read_text()
    assert "| pgd | none | pgd | 20 x 3 | 299 | 2 | 0 | 100.0 %" in table
    assert "| pgd | none | pgd | 2 x 1, step 0.025 | 299 | 2 | 0 | 0.0 %" in table
