import json

import pytest
import torch

import adaptive.core.zoo as zoo
from adaptive.core.checkpoint import save_checkpoint
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import accuracy
from adaptive.core.models import build_model


def test_bundled_mnist_classifier_reaches_99_percent(data_root):
    model, meta = zoo.load_model("mnist-cnn")
    test = load_dataset("mnist", "test", data_root, download=False)
    acc = accuracy(model, test.x(), test.labels)
    assert acc >= 0.99
    assert abs(acc - meta["accuracy"]["clean"]) < 1e-6  # the recorded figure is reproducible
    assert meta["training"]["command"].startswith("adaptive train classifier --dataset mnist")


@pytest.mark.parametrize("name", ["cifar-cnn", "cifar-cnn-at"])
def test_bundled_cifar_classifiers_on_the_genuine_subset(data_root, name):
    """The genuine-pixel accuracy in reports/zoo is reproducible (1,017 test images)."""
    from pathlib import Path

    if name not in zoo.zoo_names():
        pytest.skip(f"{name} is not bundled yet")
    report = Path(__file__).resolve().parents[1] / f"reports/zoo/{name}-clean-genuine.json"
    recorded = json.loads(report.read_text())
    model, meta = zoo.load_model(name)
    assert recorded["model_sha256"] == meta["sha256"]
    test = load_dataset("cifar10-genuine", "test", data_root)
    acc = accuracy(model, test.x(), test.labels)
    assert abs(acc - recorded["accuracy"]) < 1e-6
    assert acc >= (0.80 if name == "cifar-cnn" else 0.65)


def test_zoo_add_and_record(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv("ADAPTIVE_CACHE", str(tmp_path / "cache"))  # the user's zoo
    model = build_model("tiny-cnn")
    save_checkpoint(model, tmp_path / "run" / "model", architecture="tiny-cnn", arch_kwargs={},
                    dataset="mnist")
    zoo.add_to_zoo(tmp_path / "run" / "model", "toy")
    assert zoo.zoo_names() == ["toy"]
    loaded, meta = zoo.load_model("toy")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    zoo.record_measurement("toy", "accuracy", {"clean": 0.5, "command": "x"})
    assert json.loads(zoo.entry_path("toy").with_suffix(".json").read_text()
                      )["accuracy"]["clean"] == 0.5
    zoo.load_model("toy")  # the weights' hash still matches
    with pytest.raises(ToolkitError, match="bad zoo name"):
        zoo.add_to_zoo(tmp_path / "run" / "model", "../escape")
    with pytest.raises(ToolkitError, match="not one"):
        zoo.record_measurement("absent", "accuracy", {})


def test_zoo_list_labels_clean_and_robust_accuracy(tmp_path, monkeypatch, capsys):
    from adaptive.cli.main import main

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv("ADAPTIVE_CACHE", str(tmp_path / "cache"))  # the user's zoo
    save_checkpoint(build_model("tiny-cnn"), tmp_path / "run" / "model",
                    architecture="tiny-cnn", arch_kwargs={}, dataset="mnist")
    zoo.add_to_zoo(tmp_path / "run" / "model", "toy")
    zoo.record_measurement("toy", "accuracy", {"clean": 0.5, "split": "mnist:test", "n": 10})
    assert main(["evaluate", "robust", "--model", "toy", "--dataset", "mnist-bundled", "--n",
                 "20", "--eps", "8/255", "--foolbox-n", "0", "--record", "--no-progress"]) == 0
    capsys.readouterr()
    main(["zoo", "list"])
    out = capsys.readouterr().out
    assert "clean 50.00% (mnist:test, n=10)" in out
    assert "robust " in out and "(linf eps=8/255, PGD-20 x 1 restart(s), mnist-bundled:test" \
        in out
    assert "measured: adaptive evaluate robust --model toy" in out


def test_zoo_add_writes_to_the_users_zoo_never_into_the_package(tmp_path, monkeypatch, capsys):
    from adaptive.cli.main import main

    monkeypatch.setenv("ADAPTIVE_CACHE", str(tmp_path / "cache"))
    bundled = sorted(p.name for p in zoo.WEIGHTS_DIR.iterdir())
    save_checkpoint(build_model("tiny-cnn"), tmp_path / "run" / "model",
                    architecture="tiny-cnn", arch_kwargs={}, dataset="mnist")
    assert main(["zoo", "add", str(tmp_path / "run" / "model"), "--name", "my-toy"]) == 0
    assert (tmp_path / "cache/zoo/my-toy.json").is_file()
    assert sorted(p.name for p in zoo.WEIGHTS_DIR.iterdir()) == bundled
    assert "my-toy" in zoo.zoo_names() and "mnist-cnn" in zoo.zoo_names()
    zoo.load_model("my-toy")
    assert main(["zoo", "add", str(tmp_path / "run" / "model"), "--name", "mnist-cnn"]) == 2
    assert "is a bundled model" in capsys.readouterr().err
