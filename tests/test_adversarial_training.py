import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adaptive.cli.main import main
from adaptive.core.attacks import pgd
from adaptive.core.errors import ToolkitError
from adaptive.core.evaluation import accuracy, robust_correct
from adaptive.core.training import train_classifier
from defenses.adversarial_training import (
    AdversarialConfig,
    frozen_batchnorm_stats,
    make_perturbation,
    robustness_monitor,
)
from tests.test_training import _cfg, _toy_data

QUIET = dict(progress=False, log=lambda s: None)
FGSM = AdversarialConfig(method="fgsm-rs", eps=0.1, steps=1)
PGD3 = AdversarialConfig(method="pgd", eps=0.1, steps=3)


def _adv_loss(model, x, y, cfg):
    model.eval()
    adv = pgd(model, x, y, cfg.eps, steps=10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float(F.cross_entropy(model(adv), y))


def test_config_defaults_and_validation():
    assert PGD3.alpha == pytest.approx(0.025)  # eps / 4, i.e. Madry's 2/255 at 8/255
    assert FGSM.alpha == pytest.approx(0.125)  # 1.25 eps (Wong et al.)
    assert AdversarialConfig(eps=8 / 255).describe() == "pgd linf eps=8/255, 7 step(s) of 2/255"
    with pytest.raises(ToolkitError, match="write 8/255, not 8"):
        AdversarialConfig(eps=8)
    with pytest.raises(ToolkitError, match="unknown adversarial training method"):
        AdversarialConfig(method="trades")
    with pytest.raises(ToolkitError, match="exactly one step"):
        AdversarialConfig(method="fgsm-rs", steps=7)
    with pytest.raises(ToolkitError, match="unknown norm"):
        AdversarialConfig(norm="l1")


@pytest.mark.parametrize("cfg", [FGSM, PGD3], ids=["fgsm-rs", "pgd"])
def test_adversarial_steps_lower_the_adversarial_loss(cfg):
    data = _toy_data(64)
    x, y = data.x(), data.labels
    torch.manual_seed(0)
    from adaptive.core.models import build_model

    model = build_model("tiny-cnn", input_shape=[1, 8, 8], num_classes=2, width=4)
    before = _adv_loss(model, x, y, cfg)
    perturb = make_perturbation(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train()
        xa = perturb(model, x, y, gen)
        assert (xa - x).abs().max() <= cfg.eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1
        loss = F.cross_entropy(model(xa), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _adv_loss(model, x, y, cfg) < 0.8 * before


def test_attack_iterations_leave_batchnorm_statistics_alone():
    bn_model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                             nn.LazyLinear(2))
    x = torch.rand(8, 1, 6, 6)
    bn_model(x)  # materialise the lazy layer
    bn = bn_model[1]
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    bn_model.train()
    make_perturbation(PGD3)(bn_model, x, torch.zeros(8, dtype=torch.long),
                            torch.Generator().manual_seed(0))
    assert torch.equal(bn.running_mean, mean0) and torch.equal(bn.running_var, var0)
    assert bn.momentum == 0.1  # restored afterwards
    with frozen_batchnorm_stats(bn_model):
        assert bn.momentum == 0.0


def test_adversarial_training_resumes_exactly_and_records_its_recipe(tmp_path, monkeypatch):
    import adaptive.core.training as training

    data = _toy_data(48)
    cfg = _cfg(adversarial=PGD3.to_dict())
    monitor = robustness_monitor(data.x()[:16], data.labels[:16], PGD3, steps=3)
    kw = dict(perturb=make_perturbation(PGD3), extra_eval=monitor, **QUIET)
    meta = train_classifier(cfg, data, data, tmp_path / "full", torch.device("cpu"), **kw)
    assert meta["training"]["config"]["adversarial"]["method"] == "pgd"
    history = [json.loads(x) for x in (tmp_path / "full/history.jsonl").read_text().splitlines()]
    assert all(0 <= row["test_robust_pgd3"] <= row["test_acc"] for row in history)

    class Killed(Exception):
        pass

    saved = training.atomic_torch_save

    def save_then_die(obj, path):
        saved(obj, path)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(training, "atomic_torch_save", save_then_die)
        with pytest.raises(Killed):
            train_classifier(cfg, data, data, tmp_path / "cut", torch.device("cpu"), **kw)
    with pytest.raises(ToolkitError, match="different configuration"):
        train_classifier(_cfg(adversarial=FGSM.to_dict()), data, data, tmp_path / "cut",
                         torch.device("cpu"), resume=True, **kw)
    train_classifier(cfg, data, data, tmp_path / "cut", torch.device("cpu"), resume=True, **kw)
    a = torch.load(tmp_path / "full/model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_robust_accuracy_is_below_clean_accuracy_on_own_pgd_examples():
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model

    model, _ = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 100))
    x, y = data.x(), data.labels
    clean = accuracy(model, x, y)
    ok = robust_correct(model, x, y, eps=0.15, steps=20, step_size=0.02)
    assert float(ok.float().mean()) < clean - 0.2
    # Robust implies clean-correct, and the evaluation is repeatable.
    assert torch.equal(ok, robust_correct(model, x, y, eps=0.15, steps=20, step_size=0.02))
    pred = model(x).argmax(1)
    assert not (ok & (pred != y)).any()


def test_evaluate_robust_cli_agrees_with_foolbox(tmp_path, capsys):
    out = tmp_path / "robust.json"
    main(["evaluate", "robust", "--model", "mnist-cnn", "--dataset", "mnist-bundled", "--n",
          "60", "--eps", "0.15", "--steps", "20", "--step-size", "0.02", "--restarts", "2",
          "--foolbox-n", "60", "--out", str(out), "--no-progress"])
    res = json.loads(out.read_text())
    assert res["threat"] == "linf eps=0.15" and res["attack"]["restarts"] == 2
    assert 0 <= res["robust_accuracy"] < res["clean_accuracy"]
    check = res["foolbox_check"]
    # Same attack, independent code: close, and ours (with a restart) no weaker.
    assert check["ours_robust_accuracy"] <= check["foolbox_robust_accuracy"] + 0.05
    assert check["robust_for_ours_not_foolbox"] <= 3
    assert main(["evaluate", "robust", "--model", "mnist-cnn", "--eps", "8"]) == 2
    assert "write 8/255, not 8" in capsys.readouterr().err


def test_train_cli_rejects_attack_flags_without_adversarial(capsys):
    assert main(["train", "classifier", "--dataset", "mnist", "--eps", "0.3"]) == 2
    assert "--eps needs --adversarial" in capsys.readouterr().err


def test_ensemble_adversarial_training_learns_examples_of_itself_and_its_static_models():
    """Tramèr et al.'s recipe: half of each batch R+FGSM examples, their source drawn per batch
    among the model being trained and the static ones; the static models are never trained."""
    from adaptive.core.models import build_model
    from defenses.adversarial_training import r_fgsm

    with pytest.raises(ToolkitError, match="needs --static"):
        AdversarialConfig(method="ensemble", eps=0.3, steps=1)
    with pytest.raises(ToolkitError, match="only it takes them"):
        AdversarialConfig(method="pgd", eps=0.3, static=("mnist-cnn",))
    with pytest.raises(ToolkitError, match="must be below --eps"):
        AdversarialConfig(method="ensemble", eps=0.3, steps=1, step_size=0.3,
                          static=("mnist-cnn",))
    cfg = AdversarialConfig(method="ensemble", eps=0.3, steps=1, static=("a", "b"))
    assert cfg.alpha == pytest.approx(0.15) and cfg.to_dict()["static"] == ["a", "b"]
    data = _toy_data(32)
    x, y = data.x(), data.labels
    torch.manual_seed(0)
    model = build_model("tiny-cnn", input_shape=list(x.shape[1:]), num_classes=10)
    statics = [build_model("tiny-cnn", input_shape=list(x.shape[1:]), num_classes=10)
               for _ in range(2)]
    before = [{k: v.clone() for k, v in s.state_dict().items()} for s in statics]
    perturb = make_perturbation(cfg, statics)
    gen = torch.Generator().manual_seed(0)
    picked = set()
    for _ in range(12):
        replay = torch.Generator()
        replay.set_state(gen.get_state())
        out = perturb(model, x, y, gen)
        assert out.shape == x.shape and torch.equal(out[:16], x[:16])  # the clean half
        moved = (out[16:] - x[16:]).abs().flatten(1).amax(1)
        assert bool((moved <= 0.3 + 1e-6).all()) and bool((moved > 0).all())
        # the other half: R+FGSM of the model drawn for this batch, from the same noise
        pick = int(torch.randint(3, (1,), generator=replay))
        made = r_fgsm([model, *statics][pick], x[16:], y[16:], 0.3, 0.15, "linf", replay)
        assert torch.allclose(out[16:], made, atol=1e-6)
        picked.add(pick)
    assert picked == {0, 1, 2}  # over the batches every source is drawn
    for s, saved in zip(statics, before):
        assert all(torch.equal(v, saved[k]) for k, v in s.state_dict().items())
    # R+FGSM on a model raises its loss more than the random step alone
    noise_only = r_fgsm(statics[0], x, y, 0.15, 0.15 - 1e-9, "linf",
                        torch.Generator().manual_seed(3))
    full = r_fgsm(statics[0], x, y, 0.3, 0.15, "linf", torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert F.cross_entropy(statics[0](full), y) > F.cross_entropy(statics[0](noise_only), y)
    with pytest.raises(ToolkitError, match="static models loaded"):
        make_perturbation(cfg, statics[:1])


def test_train_cli_refuses_static_without_ensemble_and_foreign_static(capsys):
    assert main(["train", "classifier", "--dataset", "mnist", "--static", "mnist-cnn"]) == 2
    assert "--static needs --adversarial" in capsys.readouterr().err
    assert main(["train", "classifier", "--dataset", "cifar10", "--adversarial", "ensemble",
                 "--static", "mnist-cnn"]) == 2
    assert "was trained on mnist, not cifar10" in capsys.readouterr().err
