import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive.cli.main import main
from adaptive.core.zoo import zoo_names


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("zoo", "data", "train", "evaluate"):
        assert command in out


def test_zoo_list_shows_the_bundled_mnist_classifier(capsys):
    code, out, _ = run(capsys, "zoo", "list")
    assert code == 0 and "mnist-cnn" in out and "adaptive train classifier" in out
    code, out, _ = run(capsys, "zoo", "list", "--json")
    entry = {e["name"]: e for e in json.loads(out)}["mnist-cnn"]
    assert entry["accuracy"]["clean"] >= 0.99 and entry["accuracy"]["n"] == 10000


def test_evaluate_clean_on_the_bundled_subset(capsys, tmp_path):
    code, out, _ = run(capsys, "evaluate", "clean", "--model", "mnist-cnn", "--dataset",
                       "mnist-bundled", "--out", str(tmp_path / "acc.json"), "--device", "cpu")
    assert code == 0
    result = json.loads((tmp_path / "acc.json").read_text())
    assert result["n"] == 2000 and result["accuracy"] >= 0.98


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "clean", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["evaluate", "clean", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["evaluate", "clean", "--dataset", "cifar10"], "trained on mnist"),
    (["magnet", "evaluate", "--dataset", "cifar10", "--n", "1"], "trained on mnist"),
    (["evaluate", "clean", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "classifier", "--dataset", "mnist", "--data-root", "/nonexistent"],
     "MNIST train files not found"),
])
def test_bad_input_gets_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cuda_request_without_cuda(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(capsys, "evaluate", "clean", "--device", "cuda")
    assert code == 2 and "no CUDA device" in err


def test_console_script_prints_no_traceback(tmp_path):
    script = Path(sys.executable).with_name("adaptive")  # the installed console script
    proc = subprocess.run([str(script), "evaluate", "clean", "--model", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("adaptive: error:") and "Traceback" not in proc.stderr


def test_corrupt_zoo_style_checkpoint_via_cli(capsys, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", "clean", "--model", str(tmp_path / "m.pt"))
    assert code == 2 and "no metadata file" in err


def test_train_tiny_model_from_npz(capsys, tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = np.where(y[:, None, None] == 1, 180, 60)[..., None] + rng.integers(0, 40, (64, 6, 6, 1))
    np.savez(tmp_path / "d.npz", x_train=x.astype(np.uint8), y_train=y,
             x_test=x[:16].astype(np.uint8), y_test=y[:16])
    code, out, _ = run(capsys, "train", "classifier", "--dataset", str(tmp_path / "d.npz"),
                       "--arch", "tiny-cnn", "--epochs", "2", "--width", "4",
                       "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu")
    assert code == 0 and "final test accuracy" in out
    meta = json.loads((tmp_path / "run/model.json").read_text())
    assert meta["training"]["command"].startswith("adaptive train classifier")
    code, out, _ = run(capsys, "evaluate", "clean", "--model", str(tmp_path / "run/model"),
                       "--dataset", str(tmp_path / "d.npz"))
    assert code == 0 and json.loads(out)["n"] == 16


def test_zoo_has_the_mnist_model():
    assert "mnist-cnn" in zoo_names()
