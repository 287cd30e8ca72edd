"""Issue items 4-8 and a fuzz test: every bad input is one ``adaptive: error:`` line and exit
code 2, found before any work, with no run folder left behind. Tiny data, no training."""

import errno
import gzip
import io
import json
import math
import random
import shutil

import numpy as np
import pytest
import torch

from adaptive.cli.main import main
from adaptive.core.checkpoint import sha256_file
from adaptive.core.data import load_dataset
from adaptive.core.zoo import WEIGHTS_DIR, load_model
from defenses.magnet.defense import BUNDLED

QUICK_SWEEP = ["sweep", "--n", "2", "--n-cal", "3", "--kappa", "0", "--cw-steps", "5",
               "--cw-binary-steps", "1", "--batch", "2", "--no-progress", "--device", "cpu",
               "--no-transfer-check"]


def one_error_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, out[-500:], err[-2000:])
    assert "Traceback" not in err and err.startswith("adaptive: error: "), err
    assert err.count("\n") == 1, err
    return err


# -- 4. NaN, infinity, zero and absurd ranges -------------------------------------------------

@pytest.mark.parametrize("option, value, message", [
    ("--max-l2", "nan", "--max-l2: must be a number > 0"),
    ("--max-l2", "0", "--max-l2: must be a number > 0"),
    ("--max-l2", "-3", "--max-l2: must be a number > 0"),  # 6: refused at once, not after
    ("--kappa", "nan", "bad --kappa"),
    ("--kappa", "0:5:inf", "bad --kappa"),
    ("--kappa", "inf", "bad --kappa"),
    ("--kappa", "0:1e12:1", "at most 1000"),
    ("--cw-lr", "nan", "--cw-lr: must be a finite number"),
    ("--cw-lr", "0", "--cw-lr: must be > 0"),
    ("--a2d-factor", "inf", "--a2d-factor: must be a finite number"),
    ("--pgd-targets", "-1", "--pgd-targets: must be at least 0"),
])
def test_non_finite_and_out_of_range_numbers_are_refused_before_any_work(
        capsys, tmp_path, option, value, message):
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run", option, value])
    assert message in err
    assert not (tmp_path / "run").exists()


def _magnet_spec(tmp_path, **change) -> str:
    spec = json.loads((BUNDLED / "mnist.json").read_text())
    for d in spec["detectors"]:
        d.update(change)
    for k, ref in spec["autoencoders"].items():  # absolute references, from anywhere
        spec["autoencoders"][k] = str(WEIGHTS_DIR / ref)
    path = tmp_path / "magnet.json"
    path.write_text(json.dumps(spec))
    return str(path)


@pytest.mark.parametrize("threshold", [float("nan"), -0.01, 0.0, float("inf"), "0.1", None])
def test_magnet_thresholds_that_never_or_always_fire_are_refused(capsys, tmp_path, threshold):
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run", "--magnet",
                                                _magnet_spec(tmp_path, threshold=threshold)])
    assert "'threshold' must be a finite number > 0" in err
    assert not (tmp_path / "run").exists()


def test_magnet_spec_fitted_for_another_classifier_is_refused(capsys, tmp_path):
    path = _magnet_spec(tmp_path)
    spec = json.loads(open(path).read())
    spec["classifier_sha256"] = "0" * 64
    open(path, "w").write(json.dumps(spec))
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run", "--magnet", path])
    assert "was fitted with the classifier" in err


def _copy_model(tmp_path, name="mnist-cnn", state=None):
    """A copy of a zoo checkpoint (optionally with other weights, its hash updated)."""
    meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    if state is None:
        shutil.copyfile(WEIGHTS_DIR / f"{name}.pt", tmp_path / "m.pt")
    else:
        torch.save(state, tmp_path / "m.pt")
    meta.update(weights="m.pt", sha256=sha256_file(tmp_path / "m.pt"))
    (tmp_path / "m.json").write_text(json.dumps(meta))
    return tmp_path / "m"


def test_nan_weights_with_a_valid_hash_are_refused(capsys, tmp_path):
    model, _ = load_model("mnist-cnn")
    state = model.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    path = _copy_model(tmp_path, state=state)
    err = one_error_line(capsys, ["evaluate", "clean", "--model", path, "--n", "10"])
    assert "NaN or infinite" in err


def test_labels_beyond_the_models_classes_are_refused(capsys, tmp_path):
    data = load_dataset("mnist-bundled").subset(slice(0, 20))
    y = data.labels.numpy().copy()
    y[3] = 12
    np.savez(tmp_path / "d.npz", x=data.images.numpy().transpose(0, 2, 3, 1), y=y)
    err = one_error_line(capsys, ["evaluate", "clean", "--dataset", tmp_path / "d.npz"])
    assert "label 12 but the model has 10 classes" in err


# -- 5. files, disks and plug-ins: one line, never a traceback -------------------------------

def test_a_corrupted_mnist_gzip(capsys, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    good = gzip.compress(b"\x00" * 2000)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{stem}.gz").write_bytes(good[:20] + b"\xff" * 50 + good[70:])  # bad deflate
    err = one_error_line(capsys, ["evaluate", "clean", "--dataset", "mnist",
                                  "--data-root", tmp_path])
    assert "looks damaged" in err


def test_a_garbled_jpeg_in_the_cifar10_archive(capsys, tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, format="JPEG")
    good = np.frombuffer(buf.getvalue(), np.uint8)
    bad = np.frombuffer(b"\xff\xd8 this is no jpeg", np.uint8)
    data = np.concatenate([good, bad])
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10/jpeg.npz", test_bytes=data,
             test_offsets=np.array([0, len(good), len(data)]), test_y=np.array([1, 2]))
    err = one_error_line(capsys, ["evaluate", "clean", "--model", "cifar-cnn", "--dataset",
                                  "cifar10", "--data-root", tmp_path])
    assert "image 1 is not a readable JPEG" in err


def test_out_that_is_a_file_or_on_a_read_only_or_full_disk(capsys, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    err = one_error_line(capsys, QUICK_SWEEP + ["--defenses", "none", "--out",
                                                tmp_path / "file"])
    assert "is a file" in err
    err = one_error_line(capsys, QUICK_SWEEP + ["--defenses", "none", "--out",
                                                tmp_path / "file" / "run"])
    assert "Not a directory" in err or "File exists" in err

    from adaptive.core import store as store_module

    def refuse(code):
        def fail(*args, **kwargs):
            raise OSError(code, __import__("os").strerror(code), str(tmp_path / "run"))
        return fail

    for code, words in ((errno.EROFS, "Read-only file system"),
                        (errno.ENOSPC, "No space left on device")):
        monkeypatch.setattr(store_module, "write_json", refuse(code))
        err = one_error_line(capsys, QUICK_SWEEP + ["--defenses", "none", "--out",
                                                    tmp_path / "run"])
        assert words in err and str(tmp_path / "run") in err
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("dataset"), "lacks the field 'dataset'"),
    (lambda m: m.update(arch_kwargs=[1]), "'arch_kwargs' must be an object"),
    (lambda m: m.update(arch_kwargs={"bogus": 1}), "bad arguments for architecture"),
    (lambda m: m.update(sha256=5), "'sha256' must be a hex digest"),
    (lambda m: m.update(weights=["m.pt"]), "'weights' must be a file name"),
    (lambda m: m.update(weights="../../etc/m.pt"), "must be a file name beside"),
])
def test_malformed_checkpoint_metadata(capsys, tmp_path, change, message):
    path = _copy_model(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    change(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert message in one_error_line(capsys, ["evaluate", "clean", "--model", path])


def test_magnet_spec_with_missing_keys(capsys, tmp_path):
    spec = json.loads((BUNDLED / "mnist.json").read_text())
    del spec["detectors"][0]["ae"]
    (tmp_path / "m.json").write_text(json.dumps(spec))
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run", "--magnet",
                                                tmp_path / "m.json"])
    assert "'ae' must be one of" in err


@pytest.mark.parametrize("content", ["[1, 2]", '{"config": 3}', "{", ""])
def test_a_run_config_that_is_not_an_object(capsys, tmp_path, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.json").write_text(content)
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run", "--resume"])
    assert "config.json" in err
    assert (tmp_path / "run/config.json").read_text() == content  # never touched


def test_train_resume_with_a_damaged_state_or_history(tmp_path):
    from adaptive.core.data import ImageSet
    from adaptive.core.errors import ToolkitError
    from adaptive.core.training import TrainConfig, train_classifier

    g = torch.Generator().manual_seed(0)
    data = ImageSet("toy", "train", torch.randint(0, 256, (32, 1, 8, 8), generator=g,
                                                  dtype=torch.uint8), torch.arange(32) % 2, 2)
    cfg = TrainConfig(dataset="toy", arch="tiny-cnn", epochs=2, batch_size=16,
                      arch_kwargs={"input_shape": [1, 8, 8], "num_classes": 2, "width": 4})
    quiet = dict(progress=False, log=lambda s: None)
    train_classifier(cfg, data, data, tmp_path / "run", "cpu", **quiet)
    state = (tmp_path / "run/state.pt").read_bytes()
    history = (tmp_path / "run/history.jsonl").read_text()
    (tmp_path / "run/model.json").unlink()  # as if killed before the end
    for name, damaged, message in (("state.pt", state[:len(state) // 2], "cannot read"),
                                   ("state.pt", b"garbage", "cannot read"),
                                   ("history.jsonl", "{bad\n" + history, "history is damaged"),
                                   ("history.jsonl", "", "history is damaged")):
        (tmp_path / "run/state.pt").write_bytes(state)
        (tmp_path / "run/history.jsonl").write_text(history)
        target = tmp_path / "run" / name
        target.write_bytes(damaged) if isinstance(damaged, bytes) else target.write_text(damaged)
        with pytest.raises(ToolkitError, match=message):
            train_classifier(cfg, data, data, tmp_path / "run", "cpu", resume=True, **quiet)


PLUGINS = {
    "plug_syntax": ("def make(:\n", "SyntaxError"),
    "plug_raises_on_import": ("raise RuntimeError('no GPU here')\n",
                              "RuntimeError: no GPU here"),
    "plug_factory_raises": ("def make(**kw):\n    raise ValueError('bad threshold')\n",
                            "factory plug_factory_raises:make raised ValueError: bad threshold"),
    "plug_wrong_type": ("def make(**kw):\n    return 42\n", "must return a Defense"),
    "plug_wrong_flags": (
        "import torch\nfrom adaptive.defense import Defense\n"
        "class D:\n    def detect(self, x):\n        return torch.zeros(1, dtype=torch.bool)\n"
        "def make(model, dataset, device):\n    return Defense('mine', model, {'d': D()})\n",
        "returned 1 flags for "),
}


@pytest.mark.parametrize("module", sorted(PLUGINS))
def test_defense_modules_that_fail(capsys, tmp_path, monkeypatch, module):
    source, message = PLUGINS[module]
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)  # 7: found in the working folder
    monkeypatch.syspath_prepend(str(tmp_path))  # (for pytest's own import machinery)
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", tmp_path / "run",
                                                "--defense-module", f"{module}:make"])
    assert message in err
    assert not (tmp_path / "run").exists()  # found before the run folder is made


# -- 6. late validation; resume into nothing --------------------------------------------------

def test_an_error_leaves_no_config_so_the_corrected_command_runs(capsys, tmp_path):
    out = tmp_path / "run"
    one_error_line(capsys, QUICK_SWEEP + ["--out", out, "--defenses", "a2d",
                                          "--attack", "cw-magnet"])  # needs MagNet
    assert not out.exists()
    err = one_error_line(capsys, QUICK_SWEEP + ["--out", out, "--resume"])
    assert "holds no run to continue" in err and not out.exists()
    assert main([str(a) for a in QUICK_SWEEP + ["--out", out, "--defenses", "none"]]) == 0
    assert (out / "summary.json").is_file()


# -- 7. --defense-module beside the user's files ----------------------------------------------

def test_defense_module_in_the_working_folder_as_readme_shows(capsys, tmp_path, monkeypatch):
    (tmp_path / "mydefense_cwd.py").write_text(
        "import torch\nfrom adaptive.defense import Defense\n"
        "class Bright:\n    def detect(self, x):\n        return x.mean((1, 2, 3)) > 0.9\n"
        "def make_defense(model, dataset, device):\n"
        "    return Defense('bright', model, {'bright': Bright()})\n")
    monkeypatch.chdir(tmp_path)
    assert main(QUICK_SWEEP + ["--out", "run", "--defense-module",
                               "mydefense_cwd:make_defense"]) == 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert {r["defense"] for r in summary["rows"]} == {"none", "bright"}


# -- 8. a text file named .npz ------------------------------------------------------------------

def test_a_text_file_named_npz(capsys, tmp_path):
    (tmp_path / "d.npz").write_text("x,y\n1,2\n")
    err = one_error_line(capsys, ["evaluate", "clean", "--dataset", tmp_path / "d.npz"])
    assert "is not an .npz archive" in err and "pickled" not in err


# -- fuzz: a few hundred malformed command lines and files ------------------------------------

BAD_SWEEP = [("--n", ["0", "-1", "x", "1.5"]), ("--n-cal", ["0", "two"]),
             ("--kappa", ["nan", "inf", "0:5:inf", "0:1e12:1", "-1", "5:0:1", "a", "0:10:0",
                          "", ",", "1e400", "0:nan:1", "1000000", "1e308", "0,0",
                          "0:2000:500"]),
             ("--max-l2", ["nan", "0", "-3", "x", "-inf", "1/0"]),
             ("--cw-lr", ["nan", "inf", "0", "-1"]), ("--cw-steps", ["0", "-5"]),
             ("--cw-binary-steps", ["0"]), ("--batch", ["0", "1e3"]),
             ("--a2d-factor", ["nan", "-2", "0"]), ("--pgd-targets", ["-1", "x"]),
             ("--pgd-steps", ["0"]), ("--pgd-restarts", ["-1"]),
             ("--attack", ["bogus", "cw-"]), ("--defenses", ["a2d,foo", ",", "magnet+"]),
             ("--model", ["no-such-model", "/nonexistent/m"]),
             ("--dataset", ["imagenet", "cifar10", "npz:/nonexistent.npz"]),
             ("--device", ["tpu", "cuda:x"]), ("--magnet", ["nope", "/nonexistent.json"]),
             ("--images-from", ["/nonexistent-run"]), ("--clever", ["huge"]),
             ("--defense-module", ["nocolon", "no_such_module_xyz:f", ":f", "a:", "a:b:c"]),
             ("--seed", ["x", "1.5", "99999999999999999999999", "-1", "4294967296"]),
             ("--bogus-flag", ["1"])]
BAD_COMMON = [("--n", ["0", "-2", "x"]), ("--device", ["tpu"]), ("--seed", ["nan"]),
              ("--model", ["no-such-model"]), ("--dataset", ["imagenet", "cifar10"]),
              ("--bogus", ["1"])]
COMMANDS = {
    "sweep": (QUICK_SWEEP, BAD_SWEEP),
    "evaluate robust": (["evaluate", "robust", "--model", "mnist-cnn", "--eps", "0.1",
                         "--n", "2", "--foolbox-n", "0", "--no-progress"],
                        BAD_COMMON + [("--eps", ["nan", "0", "-1", "inf", "x"]),
                                      ("--steps", ["0"]), ("--norm", ["l3"]),
                                      ("--restarts", ["0"]), ("--step-size", ["nan"])]),
    "clever": (["clever", "--n", "1", "--no-progress"],
               BAD_COMMON + [("--radius", ["nan", "0", "-1"]), ("--compare", ["pgd", ""]),
                             ("--target", ["bogus"]), ("--batches", ["0"])]),
    "costs": (["costs", "--n", "1", "--no-progress"],
              BAD_COMMON + [("--engines", ["bogus", ""]), ("--compare", ["bogus"]),
                            ("--resume", None)]),
    "a2d evaluate": (["a2d", "evaluate", "--n", "2", "--n-cal", "2", "--no-progress"],
                     BAD_COMMON + [("--engines", ["bogus"]), ("--attacks", ["nope"]),
                                   ("--h", ["nan", "inf"]), ("--k", ["0"]),
                                   ("--knn-scale", ["odd"]), ("--resume", None)]),
    "train classifier": (["train", "classifier", "--dataset", "mnist", "--epochs", "1"],
                         [("--epochs", ["0"]), ("--lr", ["nan", "-1", "0"]),
                          ("--weight-decay", ["nan", "-1"]), ("--eps", ["nan", "0"]),
                          ("--adversarial", ["pgd-99"]), ("--arch", ["resnet-1000"]),
                          ("--batch-size", ["0"]), ("--step-size", ["-1"])]),
}


def _fuzz_command_lines(seed: int, count: int):
    rng = random.Random(seed)
    names = sorted(COMMANDS)
    for i in range(count):
        name = names[i % len(names)]
        base, bad = COMMANDS[name]
        argv = list(base)
        for option, values in rng.sample(bad, rng.randint(1, min(3, len(bad)))):
            argv += [option] if values is None else [option, rng.choice(values)]
        yield name, argv


def test_fuzz_malformed_command_lines(capsys, tmp_path, data_root):
    """A few hundred command lines, each with 1-3 bad options (seeded): every one is exit 2
    with one error line, never a traceback, and leaves no run folder."""
    for i, (name, argv) in enumerate(_fuzz_command_lines(seed=16, count=240)):
        out = tmp_path / f"run{i}"
        one_error_line(capsys, argv + ["--out", out, "--data-root", data_root])
        assert not out.exists(), (name, argv)


def _mutations(rng: random.Random, meta: dict) -> dict:
    """1-3 damaging changes to checkpoint metadata (every one must be refused)."""
    meta = json.loads(json.dumps(meta))
    bad_values = {
        "format": [None, 1, "other/classifier-v1", "adaptive-toolkit/autoencoder-v1"],
        "architecture": [None, 1, [], "bogus-net"],
        "arch_kwargs": [None, [], "x", 1, {"bogus": 1}, {"num_classes": "ten"},
                        {"num_classes": -1}, {"num_classes": 3}],
        "dataset": [None, 1, [], "imagenet"],
        "weights": [None, 1, "", "../m.pt", "/etc/passwd", "sub/m.pt", "missing.pt", ".."],
        "sha256": [None, 1, "abc", "0" * 64, "g" * 64, []],
    }
    for key in rng.sample(sorted(bad_values), rng.randint(1, 3)):
        if rng.random() < 0.2:
            meta.pop(key)
        else:
            meta[key] = rng.choice(bad_values[key])
    return meta


def test_fuzz_malformed_checkpoint_metadata_and_magnet_specs(capsys, tmp_path):
    rng = random.Random(17)
    path = _copy_model(tmp_path)
    good = json.loads(path.with_suffix(".json").read_text())
    broken_files = ["", "[]", "null", "{", "not json", "\x00\x01\x02", '"a string"']
    for i in range(120):
        meta_file = path.with_suffix(".json")
        if i < len(broken_files):
            meta_file.write_text(broken_files[i])
        else:
            meta_file.write_text(json.dumps(_mutations(rng, good)))
        one_error_line(capsys, ["evaluate", "clean", "--model", path, "--n", "5",
                                "--device", "cpu"])
    spec = json.loads(_magnet_spec(tmp_path) and (tmp_path / "magnet.json").read_text())
    det_bad = {"threshold": [math.nan, -1, 0, "x", None, math.inf], "p": [3, "2", None, 0],
               "type": ["bogus", None, 1], "ae": ["III", None, 0], "name": [None, 1],
               "temperature": [math.nan]}
    top_bad = {"detectors": [[], {}, "x", None, [1]], "autoencoders": [{}, [], None,
                                                                       {"I": 1}],
               "reformer": ["III", 1, []], "type": ["other", None],
               "classifier_sha256": ["0" * 64, 1]}
    for i in range(80):
        s = json.loads(json.dumps(spec))
        if i % 2:
            key = rng.choice(sorted(top_bad))
            s[key] = rng.choice(top_bad[key])
        else:
            key = rng.choice(sorted(det_bad))
            d = s["detectors"][rng.randrange(len(s["detectors"]))]
            if key == "temperature":
                d.update(type="divergence", temperature=math.nan)
            else:
                d[key] = rng.choice(det_bad[key])
        (tmp_path / "fuzz.json").write_text(json.dumps(s))
        out = tmp_path / f"run{i}"
        one_error_line(capsys, QUICK_SWEEP + ["--magnet", tmp_path / "fuzz.json", "--out", out])
        assert not out.exists(), s
