import json

import pytest
import torch

from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.training import TrainConfig, augment_crop_flip, train_classifier


def _toy_data(n=96, seed=0):
    """Two classes separable by mean brightness, as uint8 images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.where(y[:, None, None, None] == 1, 170.0, 80.0)
    x = (base + 30 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 255).to(torch.uint8)
    return ImageSet("toy", "train", x, y, 2)


def _cfg(**kw):
    args = dict(dataset="toy", arch="tiny-cnn",
                arch_kwargs={"input_shape": [1, 8, 8], "num_classes": 2, "width": 4},
                epochs=2, batch_size=16, lr=1e-2, seed=3)
    args.update(kw)
    return TrainConfig(**args)


def test_training_learns_and_writes_a_checkpoint(tmp_path):
    data = _toy_data()
    meta = train_classifier(_cfg(epochs=4), data, data, tmp_path / "run", torch.device("cpu"),
                            progress=False, log=lambda s: None)
    history = [json.loads(x) for x in (tmp_path / "run/history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert meta["accuracy"]["clean"] >= 0.9
    assert (tmp_path / "run/model.pt").is_file() and (tmp_path / "run/model.json").is_file()


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    import adaptive.core.training as training

    data = _toy_data()
    quiet = dict(progress=False, log=lambda s: None)
    train_classifier(_cfg(), data, data, tmp_path / "full", torch.device("cpu"), **quiet)

    class Killed(Exception):
        pass

    saved = training.atomic_torch_save

    def save_then_die(obj, path):  # the process dies right after the first epoch's checkpoint
        saved(obj, path)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(training, "atomic_torch_save", save_then_die)
        with pytest.raises(Killed):
            train_classifier(_cfg(), data, data, tmp_path / "cut", torch.device("cpu"), **quiet)
    assert not (tmp_path / "cut/model.pt").exists()
    train_classifier(_cfg(), data, data, tmp_path / "cut", torch.device("cpu"), resume=True,
                     **quiet)
    a = torch.load(tmp_path / "full/model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "cut/history.jsonl").read_text().count("\n") == 2


def test_existing_run_and_mismatched_resume_are_refused(tmp_path):
    data = _toy_data(32)
    quiet = dict(progress=False, log=lambda s: None)
    train_classifier(_cfg(epochs=1), data, data, tmp_path / "r", torch.device("cpu"), **quiet)
    with pytest.raises(ToolkitError, match="already holds a finished model"):
        train_classifier(_cfg(epochs=1), data, data, tmp_path / "r", torch.device("cpu"),
                         **quiet)
    (tmp_path / "r" / "model.json").unlink()  # an unfinished run: resume is the way on
    with pytest.raises(ToolkitError, match="pass --resume"):
        train_classifier(_cfg(epochs=1), data, data, tmp_path / "r", torch.device("cpu"),
                         **quiet)
    with pytest.raises(ToolkitError, match="different configuration"):
        train_classifier(_cfg(epochs=1, lr=0.5), data, data, tmp_path / "r",
                         torch.device("cpu"), resume=True, **quiet)
    with pytest.raises(ToolkitError, match="does not exist"):
        train_classifier(_cfg(), data, data, tmp_path / "new", torch.device("cpu"),
                         resume=True, **quiet)


def test_bad_config_and_shape_mismatch(tmp_path):
    data = _toy_data(32)
    with pytest.raises(ToolkitError, match="--epochs"):
        train_classifier(_cfg(epochs=0), data, data, tmp_path / "a", torch.device("cpu"))
    with pytest.raises(ToolkitError, match="takes images of shape"):
        train_classifier(_cfg(arch="mnist-cnn", arch_kwargs={}), data, data, tmp_path / "b",
                         torch.device("cpu"), progress=False, log=lambda s: None)


def test_crop_flip_keeps_shape_and_content():
    x = torch.rand(6, 3, 8, 8)
    out = augment_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    # Every output is a shifted (and maybe flipped) window of the zero-padded input.
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def test_defensive_distillation_trains_on_the_teachers_soft_labels(tmp_path):
    """Papernot et al.'s recipe on toy data: a teacher at temperature 5, a student on its
    softmax at 5; used at temperature 1 the student's logits are large (saturated softmax,
    the gradient masking the paper mistook for robustness), its accuracy intact."""
    from adaptive.core.checkpoint import load_checkpoint

    data, quiet = _toy_data(), dict(progress=False, log=lambda s: None)
    train_classifier(_cfg(epochs=8, temperature=5.0), data, data, tmp_path / "teacher",
                     torch.device("cpu"), **quiet)
    teacher, _ = load_checkpoint(tmp_path / "teacher/model.pt")
    plain = train_classifier(_cfg(epochs=4), data, data, tmp_path / "plain",
                             torch.device("cpu"), **quiet)
    cfg = _cfg(epochs=8, temperature=5.0, distill_from={"model": "teacher", "sha256": "x"})
    meta = train_classifier(cfg, data, data, tmp_path / "student", torch.device("cpu"),
                            teacher=teacher, **quiet)
    assert meta["accuracy"]["clean"] >= 0.9
    assert meta["training"]["config"]["distill_from"] == {"model": "teacher", "sha256": "x"}
    student, _ = load_checkpoint(tmp_path / "student/model.pt")
    base, _ = load_checkpoint(tmp_path / "plain/model.pt")
    x = data.x()

    def spread(m):  # the mean gap between the largest and smallest logit
        with torch.no_grad():
            z = m(x)
        return float((z.amax(1) - z.amin(1)).mean())

    assert spread(student) > 3 * spread(base), (spread(student), spread(base))
    assert plain["accuracy"]["clean"] >= 0.9
    with pytest.raises(ToolkitError, match="teacher"):
        train_classifier(cfg, data, data, tmp_path / "no-teacher", torch.device("cpu"), **quiet)
    with pytest.raises(ToolkitError, match="temperature"):
        train_classifier(_cfg(temperature=0.0), data, data, tmp_path / "t0",
                         torch.device("cpu"), **quiet)
