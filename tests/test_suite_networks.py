"""The suite's networks trained by our own commands (defenses.suite.TRAINED): the jump
activation, the thermometer code, label smoothing, their training options and the BPDA
surrogates of the jump and thermometer twins."""

import json

import pytest
import torch

from adaptive.cli.main import main
from adaptive.core.data import ImageSet
from adaptive.core.errors import ToolkitError
from adaptive.core.models import CifarCNN, Jump, jump_units, thermometer_encode
from adaptive.core.training import TrainConfig, train_classifier
from adaptive.defense.probes import probe_all
from defenses.defense import Defense
from defenses.suite import SmoothJumps, SoftThermometer


def _grad(f, x):
    x = x.clone().requires_grad_(True)
    out = f(x)
    if not out.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def test_jump_steps_at_zero_and_has_relu_s_gradient_unless_smoothed():
    x = torch.tensor([-1.0, -0.1, 0.1, 2.0])
    unit = Jump(5.0)
    assert torch.equal(unit(x), torch.tensor([0.0, 0.0, 5.1, 7.0]))
    assert torch.equal(_grad(unit, x), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    unit.smooth = 1.0
    assert torch.equal(unit(x), torch.tensor([0.0, 0.0, 5.1, 7.0]))  # the value is kept
    s = torch.sigmoid(x)
    assert torch.allclose(_grad(unit, x), (x > 0).float() + 5 * s * (1 - s))


def test_thermometer_code_counts_the_levels_below_each_pixel():
    x = torch.tensor([0.0, 0.3, 1.0]).view(1, 1, 1, 3)
    code = thermometer_encode(x, 4)  # levels at 0, 1/4, 2/4, 3/4
    assert code.shape == (1, 4, 1, 3)
    assert code[0, :, 0].sum(0).tolist() == [0.0, 2.0, 4.0]
    assert torch.equal(_grad(lambda v: thermometer_encode(v, 4), x), torch.zeros_like(x))
    soft = thermometer_encode(x, 4, soft=True)
    assert soft[0, :, 0, 1].tolist() == pytest.approx([1.0, 0.2, 0.0, 0.0])
    assert _grad(lambda v: thermometer_encode(v, 4, soft=True), x)[0, 0, 0, 1] > 0


def test_twins_keep_the_value_and_give_a_gradient_where_the_network_hides_it():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    thermo = CifarCNN(width=4, thermometer=8).eval()
    soft = SoftThermometer(thermo)
    with torch.no_grad():
        assert torch.equal(soft(x), thermo(x))
    assert _grad(thermo, x).abs().sum() == 0 and _grad(soft, x).abs().sum() > 0
    # the probes find the thermometer's gradient hidden and the surrogate's fine
    found = probe_all({"t": Defense("t", thermo), "s": Defense("s", soft)}, x,
                      thermo(x).argmax(1), log=lambda s: None)
    assert found["t"].hidden and not found["s"].hidden

    jumpy = CifarCNN(width=4, activation="jump").eval()
    smooth = SmoothJumps(jumpy)
    assert len(jump_units(jumpy)) == 7 and all(u.smooth is None for u in jump_units(jumpy))
    with torch.no_grad():
        assert torch.allclose(smooth(x), jumpy(x))
    assert not torch.allclose(_grad(smooth, x), _grad(jumpy, x))
    with pytest.raises(ToolkitError, match="jump activation"):
        SmoothJumps(CifarCNN(width=4))
    with pytest.raises(ToolkitError, match="thermometer"):
        SoftThermometer(CifarCNN(width=4))


def _toy_cifar(n=32):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = ((y[:, None, None, None] * 120 + 60 + 40 * torch.randn(n, 3, 32, 32, generator=g))
         .clamp(0, 255).to(torch.uint8))
    return ImageSet("toy", "train", x, y, 2)


def test_jump_training_ramps_the_step_and_label_smoothing_reaches_the_loss(tmp_path,
                                                                           monkeypatch):
    import adaptive.core.training as training

    data = _toy_cifar()
    heights = []
    real_fit = training.fit

    def watching_fit(*args, epoch_start=None, **kw):
        if epoch_start is None:  # (a network without jumps)
            return real_fit(*args, **kw)

        def start(model, epoch):
            epoch_start(model, epoch)
            heights.append(jump_units(model)[0].height)
        return real_fit(*args, epoch_start=start, **kw)

    monkeypatch.setattr(training, "fit", watching_fit)
    cfg = TrainConfig(dataset="toy", arch="cifar-cnn",
                      arch_kwargs={"num_classes": 2, "width": 4, "activation": "jump"},
                      epochs=2, batch_size=16, lr=1e-2, seed=1)
    train_classifier(cfg, data, data, tmp_path / "jump", torch.device("cpu"), progress=False,
                     log=lambda s: None)
    assert heights == [2.5, 5.0]
    meta = json.loads((tmp_path / "jump/model.json").read_text())
    assert meta["arch_kwargs"]["activation"] == "jump"

    losses = {}
    for smoothing in (0.0, 0.5):
        cfg = TrainConfig(dataset="toy", arch="cifar-cnn", arch_kwargs={"num_classes": 2,
                          "width": 4}, epochs=1, batch_size=32, lr=1e-9, seed=1,
                          label_smoothing=smoothing)
        train_classifier(cfg, data, data, tmp_path / f"ls{smoothing}", torch.device("cpu"),
                         progress=False, log=lambda s: None)
        row = json.loads((tmp_path / f"ls{smoothing}/history.jsonl").read_text().splitlines()[0])
        losses[smoothing] = row["train_loss"]
    assert losses[0.0] != losses[0.5]  # (same weights and batches: only the targets differ)
    with pytest.raises(ToolkitError, match="label-smoothing"):
        TrainConfig(dataset="toy", arch="tiny-cnn", label_smoothing=1.0).validate()


@pytest.mark.parametrize("flags,message", [
    (["--activation", "jump"], "--activation applies to cifar-cnn only"),
    (["--thermometer", "8"], "--thermometer applies to cifar-cnn only"),
    (["--label-smoothing", "1"], "--label-smoothing must be below 1")])
def test_training_flags_that_do_not_apply_are_refused(flags, message, tmp_path, capsys):
    code = main(["train", "classifier", "--dataset", "mnist", "--out", str(tmp_path / "x"),
                 *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
