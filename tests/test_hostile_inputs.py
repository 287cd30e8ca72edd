"""A new user's hostile inputs (issue [5/5]): every failure is one ``adaptive: error:`` line
and exit code 2 with no run folder left behind, or, for damage a resume can repair, a printed
note and a finished run that counts what it skipped. Tiny settings, the bundled MNIST."""

import json

import pytest

from adaptive.cli.main import main
from tests.test_bad_input import QUICK_SWEEP, one_error_line

HOSTILE = '''
import torch
from adaptive.defense import Defense

class Fine:
    def detect(self, x):
        return x.mean((1, 2, 3)) > 0.99

class DetectRaises:
    def detect(self, x):
        raise ValueError("threshold not set")

class ScoreRaises(Fine):
    def score(self, x):
        raise RuntimeError("out of memory")

class NanScores(Fine):
    def score(self, x):
        return torch.full((len(x),), float("nan"))

class FloatFlags:
    def detect(self, x):
        return x.mean((1, 2, 3))

class WrongCount:
    def detect(self, x):
        return torch.zeros(1, dtype=torch.bool)

class RaisesLater(Fine):
    """Passes the checks on benign images, then fails on the attack's examples."""
    calls = 0

    def detect(self, x):
        RaisesLater.calls += 1
        if RaisesLater.calls > 1:
            raise IndexError("index 7 is out of bounds")
        return super().detect(x)

    def score(self, x):
        return x.mean((1, 2, 3))

def raises_later(model, dataset, device):
    return Defense("mine", model, {"d": RaisesLater()})

class ClassifierRaisesLater(torch.nn.Module):
    """Answers the probes (4 calls), then fails inside the attack."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 4:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.model(x)

def classifier_raises_later(model, dataset, device):
    return Defense("mine", ClassifierRaisesLater(model))

def detect_raises(model, dataset, device):
    return Defense("mine", model, {"d": DetectRaises()})

def score_raises(model, dataset, device):
    return Defense("mine", model, {"d": ScoreRaises()})

def nan_scores(model, dataset, device):
    return Defense("mine", model, {"d": NanScores()})

def float_flags(model, dataset, device):
    return Defense("mine", model, {"d": FloatFlags()})

def wrong_count(model, dataset, device):
    return Defense("mine", model, {"d": WrongCount()})

def named_none(model, dataset, device):
    return Defense("none", model, {"d": Fine()})

def named_composition(model, dataset, device):
    return Defense("a2d+magnet", model)

def detector_named_a2d(model, dataset, device):
    return Defense("mine", model, {"a2d": Fine()})

def same_detector_name(model, dataset, device):
    return {"one": Defense("one", model, {"d": Fine()}),
            "two": Defense("two", model, {"d": Fine()})}

def function_classifier(model, dataset, device):
    return Defense("mine", lambda x: model(x), {"d": Fine()})
'''


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    (tmp_path / "hostile_plugin.py").write_text(HOSTILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _sweep(tmp_path, *extra, out="run"):
    return QUICK_SWEEP + ["--defenses", "none", "--out", str(tmp_path / out), *extra]


@pytest.mark.parametrize("option, value, message", [
    ("--kappa", "1000000", "at most 1000"),
    ("--kappa", "1e308", "at most 1000"),
    ("--kappa", "0,0", "0 given more than once"),
    ("--kappa", "0,5,0,5", "0, 5 given more than once"),
    ("--seed", "99999999999999999999999", "--seed: must be from 0 to 4294967295"),
    ("--seed", "-1", "--seed: must be from 0 to"),
])
def test_kappa_and_seed_beyond_what_the_run_can_use_are_refused(capsys, tmp_path, option,
                                                               value, message):
    err = one_error_line(capsys, _sweep(tmp_path, option, value))
    assert message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("factory, message", [
    ("detect_raises", "defense 'mine': detector 'd' raised ValueError in detect(x) on "),
    ("raises_later", "detector 'd' raised IndexError in detect(x) on 2 inputs: index 7"),
    ("classifier_raises_later", "defense 'mine': its classifier raised RuntimeError on inputs "
                                "of shape (2, 1, 28, 28): CUDA error"),
    ("score_raises", "detector 'd' raised RuntimeError in score(x)"),
    ("nan_scores", "score(x) returned NaN for "),
    ("float_flags", "detect(x) must return one True/False flag per input"),
    ("wrong_count", "returned 1 flags for "),
    ("named_none", "the plug-in defense 'none' has the name of a built-in composition"),
    ("named_composition", "'a2d+magnet' has the name of a built-in composition"),
    ("detector_named_a2d", "detector 'a2d' of the plug-in defense 'mine' has the name of a "
                           "built-in detector"),
    ("same_detector_name", "'one' and 'two' both have a detector named 'd'"),
])
def test_a_plugin_that_fails_is_one_line_before_any_folder(capsys, hostile, factory, message):
    err = one_error_line(capsys, _sweep(hostile, "--defense-module",
                                        f"hostile_plugin:{factory}"))
    assert message in err, err
    assert not (hostile / "run").exists()


def test_a_plugin_classifier_may_be_a_plain_function(capsys, hostile):
    assert main(_sweep(hostile, "--defense-module", "hostile_plugin:function_classifier")) == 0
    summary = json.loads((hostile / "run/summary.json").read_text())
    assert {r["defense"] for r in summary["rows"]} == {"none", "mine"}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_that_are_not_whole_are_recomputed_and_counted(capsys, tmp_path):
    argv = _sweep(tmp_path, "--n", "4")
    assert main(argv) == 0
    path = tmp_path / "run/records.jsonl"
    whole = _lines(path)
    first = json.loads((tmp_path / "run/summary.json").read_text())
    # one record reduced to its key fields (it used to count as finished, and every resume
    # died on it), one of a kappa the run does not have, one with a verdict missing
    stub = {k: whole[0][k] for k in ("kappa", "index", "target")}
    foreign = {**whole[1], "kappa": 7.0}
    no_verdict = {**whole[2], "defenses": {"none": {"pred": 1}}}
    path.write_text("".join(json.dumps(r) + "\n"
                            for r in [stub, foreign, no_verdict, whole[1], whole[3]]))
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "3 invalid record(s) skipped (no 'label': not a finished result)" in out
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["rows"] == first["rows"]  # the foreign kappa counted nowhere
    assert summary["record_integrity"]["invalid_records_skipped"] == 3
    assert summary["record_integrity"]["duplicates_ignored"] == 0  # only the missing appended
    again = [r for r in _lines(path) if "label" in r and r["kappa"] == 0.0
             and isinstance(r["defenses"]["none"].get("success"), bool)]
    assert sorted(r["index"] for r in again) == sorted(r["index"] for r in whole)


def test_an_unreadable_cache_file_is_said_and_counted(capsys, tmp_path):
    argv = _sweep(tmp_path)
    assert main(argv) == 0
    cached = sorted((tmp_path / "run/cache").glob("adv_*.pt"))[0]
    cached.write_bytes(b"not a tensor file")
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    assert f"note: {cached} could not be read" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["record_integrity"]["unreadable_cache_removed"] == 1


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny sweep, copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    assert main(QUICK_SWEEP + ["--defenses", "none", "--out", str(folder)]) == 0
    return folder


def _damaged(finished, tmp_path, name, content):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    target = run / name if name != "cache" else sorted((run / "cache").glob("adv_*.pt"))[0]
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return run


DAMAGE = [
    ("summary.json", '{"rows": 5}', "'config' is NoneType, not the sweep's settings"),
    ("summary.json", "[1, 2]", "is a JSON list, not the object a sweep writes"),
    ("summary.json", "{not json", "cannot be read"),
    ("config.json", '{"config": {"model": 3}}', "the setting 'model' is missing or not a str"),
    ("config.json", '"a string"', "is a JSON str, not the object"),
    ("cache", bytes(range(256)) * 4, "cannot be read (UnpicklingError)"),
    ("records.jsonl", '{"kappa": 0.0, "index": 1, "target": null}\n',
     "1 invalid record(s) (no 'label')"),
]


@pytest.mark.parametrize("name, content, message", DAMAGE)
def test_report_refuses_a_damaged_folder_before_writing_anything(capsys, finished, tmp_path,
                                                                 name, content, message):
    run = _damaged(finished, tmp_path, name, content)
    err = one_error_line(capsys, ["report", run, "--out", tmp_path / "report"])
    assert message in err, err
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("name, content, message",
                         [d for d in DAMAGE if d[0] != "cache"])
def test_checks_refuse_a_damaged_folder_before_any_work(capsys, finished, tmp_path, name,
                                                        content, message):
    import time

    run = _damaged(finished, tmp_path, name, content)
    started = time.perf_counter()
    err = one_error_line(capsys, ["check", "binarization", run, "--n", "1"])
    assert message in err, err
    assert time.perf_counter() - started < 20  # refused at once, not after the work
    assert not (run / "diagnostics").exists()


def test_fuzz_plugin_detectors_are_accepted_or_refused_in_one_line():
    """A few hundred generated detectors (seeded), each returning or raising something a
    plug-in might: every one either passes the checks or is one ToolkitError naming the
    defense and detector, never another exception."""
    import random

    import numpy as np
    import torch

    from adaptive.core.errors import ToolkitError
    from adaptive.defense import Defense
    from adaptive.defense.probes import check_detectors

    x = torch.rand(6, 1, 8, 8)
    outputs = [
        lambda x: torch.zeros(len(x), dtype=torch.bool), lambda x: torch.ones(len(x)),
        lambda x: torch.zeros(len(x), dtype=torch.long), lambda x: np.zeros(len(x), bool),
        lambda x: [True] * len(x), lambda x: torch.zeros(1, dtype=torch.bool),
        lambda x: torch.zeros(len(x) + 1), lambda x: None, lambda x: "flagged",
        lambda x: torch.full((len(x),), float("nan")), lambda x: torch.rand(len(x), 2),
        lambda x: torch.rand(len(x)), lambda x: {"a": 1}, lambda x: 3,
        lambda x: torch.full((len(x),), 2, dtype=torch.long),
        lambda x: torch.full((len(x),), float("inf")),
    ]

    def raises(kind):
        def f(x):
            raise kind("the plug-in's own bug")
        return f

    outputs += [raises(k) for k in (ValueError, RuntimeError, KeyError, IndexError,
                                    ZeroDivisionError, AttributeError)]
    rng = random.Random(36)
    passed = refused = 0
    for i in range(300):
        det = type("Generated", (), {})()
        det.detect = rng.choice(outputs)
        if rng.random() < 0.6:
            det.score = rng.choice(outputs)
        try:
            check_detectors(Defense(f"mine{i}", lambda x: x.flatten(1)[:, :3], {"d": det}), x)
            passed += 1
        except ToolkitError as e:
            assert f"defense 'mine{i}': detector 'd'" in str(e) and "\n" not in str(e), e
            refused += 1
    assert passed and refused > passed  # both kinds generated


@pytest.mark.parametrize("argv", [
    ["a2d", "evaluate", "--n", "2", "--n-cal", "2", "--no-progress"],
    QUICK_SWEEP + ["--defenses", "a2d", "--n-cal", "2"],
])
def test_too_few_calibration_images_for_a2d_are_refused_before_starting(capsys, tmp_path,
                                                                       argv):
    err = one_error_line(capsys, argv + ["--out", tmp_path / "run"])
    assert "calibrates on at least 3 benign images" in err
    assert not (tmp_path / "run").exists()


def test_fuzz_damaged_npz_data_sets_are_one_line_or_run(capsys, tmp_path):
    """Sixty generated .npz data sets (seeded), each a valid MNIST subset with 1-3 damaging
    changes (shapes, dtypes, ranges, NaN, labels, keys, lengths): every one is either read and
    evaluated (exit 0) or refused in one error line, never a traceback."""
    import random

    import numpy as np

    from adaptive.core.data import load_dataset

    data = load_dataset("mnist-bundled").subset(slice(0, 12))
    x0 = data.images.numpy().transpose(0, 2, 3, 1)
    y0 = data.labels.numpy()
    changes = {
        "x_nan": lambda d: d.update(x=np.where(np.arange(d["x"].size).reshape(d["x"].shape)
                                               == 5, np.nan, d["x"].astype(np.float32))),
        "x_range": lambda d: d.update(x=d["x"].astype(np.float32) * 300),
        "x_negative": lambda d: d.update(x=d["x"].astype(np.float32) - 2),
        "x_flat": lambda d: d.update(x=d["x"].reshape(len(d["x"]), -1)),
        "x_5d": lambda d: d.update(x=d["x"][:, None]),
        "x_channels": lambda d: d.update(x=np.repeat(d["x"], 2, axis=3)),
        "x_strings": lambda d: d.update(x=np.array(["a"] * len(d["x"]))),
        "x_empty": lambda d: d.update(x=d["x"][:0], y=d["y"][:0]),
        "y_float": lambda d: d.update(y=d["y"].astype(np.float32) + 0.5),
        "y_negative": lambda d: d.update(y=d["y"] - 20),
        "y_big": lambda d: d.update(y=d["y"] + 10),
        "y_2d": lambda d: d.update(y=d["y"][:, None].repeat(2, 1)),
        "y_short": lambda d: d.update(y=d["y"][:-3]),
        "no_y": lambda d: d.pop("y"),
        "no_x": lambda d: d.pop("x"),
        "renamed": lambda d: d.update(images=d.pop("x")),
        "bool_x": lambda d: d.update(x=d["x"] > 0.5),
        # not damage: another dtype of the same values, an extra array
        "x_float": lambda d: d.update(x=d["x"].astype(np.float64)),
        "y_int8": lambda d: d.update(y=d["y"].astype(np.int8)),
        "extra_key": lambda d: d.update(notes=np.arange(3)),
    }
    rng = random.Random(3636)
    ran = refused = 0
    seen = set()
    for i in range(60):
        d = {"x": x0.copy(), "y": y0.copy()}
        for name in rng.sample(sorted(changes), rng.randint(1, 3)):
            try:
                changes[name](d)
            except (KeyError, ValueError, IndexError):  # (an earlier change made it moot)
                pass
        path = tmp_path / f"d{i}.npz"
        np.savez(path, **d)
        code = main(["evaluate", "clean", "--dataset", str(path), "--n", "5", "--device",
                     "cpu"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        if code == 0:
            ran += 1
        else:
            assert code == 2 and err.startswith("adaptive: error: ") and err.count("\n") == 1, \
                (i, d.keys(), err)
            refused += 1
            seen.add(err[len("adaptive: error: "):].replace(str(path), "F")[:60])
    assert refused > ran > 0, (refused, ran)  # nearly every change is damage
    assert len(seen) > 5, seen  # ... each told apart, not one catch-all message
