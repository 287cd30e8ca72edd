"""Input diversity (adaptive.attacks.input_diversity) as the stand-in gradient of a defense that
hides its own: the module's draws are a function of each image alone, shrink to nothing when
asked, and give a usable gradient; ``auto``'s ``apgd-di`` member aims it at the hidden defenses
only, on the images they still withstand, and breaks there exactly what the same attack alone
(``--stand-in diverse``) breaks; where a defense's own gradient misleads (first order wrong)
``apgd-di`` breaks what that gradient cannot."""

from dataclasses import replace

import pytest
import torch

from adaptive.attacks.input_diversity import InputDiversity
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.defense import Defense
from adaptive.sweep import SweepConfig, read_records, run_sweep, validate_config
from adaptive.sweep.config import member_config
from tests.test_square import Rounded


@pytest.fixture(scope="module")
def mnist():
    model, meta = load_model("mnist-cnn")
    return model, meta, load_dataset("mnist-bundled")


def test_draws_depend_on_each_image_alone_and_vanish_at_full_size(mnist):
    model, _, data = mnist
    x = data.x()[:6]
    diverse = InputDiversity(model)
    whole = diverse(x)
    some = torch.tensor([1, 4])
    assert torch.allclose(whole[some], diverse(x[some]), atol=1e-5)  # not the batch's
    assert torch.allclose(whole, diverse(x), atol=1e-6)  # the same image, the same draws
    # draws differ from the plain model (the images were moved and shrunk) ...
    plain = model(x).log_softmax(1)
    assert not torch.allclose(whole, plain, atol=1e-3)
    # ... and at full size with no room to move they are the model itself
    assert torch.allclose(InputDiversity(model, smallest=1.0)(x), plain, atol=1e-5)
    # a finite, non-zero gradient
    x = x.clone().requires_grad_(True)
    diverse(x).gather(1, data.labels[:6, None]).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.flatten(1).abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="draws"):
        InputDiversity(model, draws=0)


def test_an_unknown_stand_in_is_refused(mnist):
    _, meta, _ = mnist
    with pytest.raises(ToolkitError, match="unknown stand-in 'smooth'"):
        validate_config(SweepConfig(model_sha256=meta["sha256"], stand_in="smooth"))


def _broken(folder, name):
    return {r["index"] for r in read_records(folder / "records.jsonl")
            if r["defenses"][name]["success"]}


def test_auto_aims_the_diverse_stand_in_at_hidden_defenses_only(mnist, tmp_path, monkeypatch):
    import adaptive.sweep.auto as auto_module
    from adaptive.sweep.config import AUTO_ENSEMBLE

    model, meta, data = mnist
    # a rounding the bare classifier does not have (hidden gradient) and the bare classifier
    # (a plug-in with a gradient: no stand-in)
    plugins = {"rounded": Defense("rounded", Rounded(model, levels=8)),
               "plain": Defense("plain", model)}
    kept = [m for m in AUTO_ENSEMBLE if m.label in ("cw", "apgd-ce", "apgd-di")]
    monkeypatch.setattr(auto_module, "AUTO_ENSEMBLE", tuple(kept))
    cfg = SweepConfig(model_sha256=meta["sha256"], n=12, n_cal=10, kappas=[0.0], batch=6,
                      defenses=["none"], attack="auto", norm="linf", max_linf=0.15,
                      cw=dict(steps=10, binary_search_steps=1), apgd=dict(steps=8),
                      transfer_check=False, image_seeds=True)

    def sweep(one, folder):
        run_sweep(one, model, data, tmp_path / folder, "cpu", extra_defenses=plugins,
                  progress=False, log=lambda *_: None)
        return tmp_path / folder

    auto = sweep(cfg, "auto")
    members = {r["index"]: r["auto"]["members"] for r in read_records(auto / "records.jsonl")}
    ran = set().union(*members.values())
    assert "apgd-di@rounded" in ran, ran  # the hidden defense, on the images it withstood
    assert not any(m.startswith("apgd-di") and m != "apgd-di@rounded" for m in ran), ran
    alone = {label: sweep(member_config(cfg, label), label)
             for label in ("cw", "apgd-ce", "apgd-di")}
    assert member_config(cfg, "apgd-di").stand_in == "diverse"
    for name in ("rounded", "plain"):
        union = set().union(*(_broken(f, name) for f in alone.values()))
        for label, folder in alone.items():  # auto breaks what each member alone does
            assert _broken(folder, name) <= _broken(auto, name), (name, label)
        assert _broken(auto, name) <= union, name  # and invents nothing
    by = {r["defenses"]["rounded"]["by"] for r in read_records(auto / "records.jsonl")}
    assert by & {"apgd-ce@rounded", "apgd-di@rounded"}, by
    # a run whose own stand-in is already the diverse one has no separate member for it
    diverse = sweep(replace(cfg, stand_in="diverse"), "diverse-run")
    ran = set().union(*(r["auto"]["members"] for r in read_records(diverse / "records.jsonl")))
    assert not any(m.startswith("apgd-di") for m in ran), ran


class Misleading(torch.nn.Module):
    """A defense's forward (MagNet's reformer behind input rounding) with the gradient of an
    unrelated untrained network: finite and non-zero, but first-order wrong."""

    def __init__(self, reformed):
        super().__init__()
        torch.manual_seed(0)
        self.other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        self.forward_fn = Rounded(reformed)

    def forward(self, x):
        from defenses import BPDA

        return BPDA(self.forward_fn, self.other)(x)


def test_auto_follows_the_diverse_stand_in_where_a_defense_s_gradient_misleads(
        mnist, tmp_path, monkeypatch):
    import adaptive.sweep.auto as auto_module
    from adaptive.sweep.config import AUTO_ENSEMBLE
    from defenses.magnet.defense import MagNet

    model, meta, data = mnist
    misleading = Misleading(MagNet.load("mnist", model).defended_classifier())
    plugins = {"misleading": Defense("misleading", misleading)}
    monkeypatch.setattr(auto_module, "AUTO_ENSEMBLE", tuple(
        m for m in AUTO_ENSEMBLE if m.label in ("cw", "apgd-ce", "apgd-di")))
    cfg = SweepConfig(model_sha256=meta["sha256"], n=8, n_cal=10, kappas=[0.0], batch=8,
                      defenses=["none"], attack="auto", norm="linf", max_linf=0.2,
                      cw=dict(steps=30, binary_search_steps=2), apgd=dict(steps=20),
                      transfer_check=False, image_seeds=True)
    logs: list[str] = []
    res = run_sweep(cfg, model, data, tmp_path / "auto", "cpu", extra_defenses=plugins,
                    progress=False, log=logs.append)
    assert res.diagnostics["probes"]["misleading"]["gradient"] == "first_order_mismatch"
    row = next(r for r in res.rows if r["defense"] == "misleading")
    # its own gradient breaks nothing that transfer did not; the diverse stand-in does
    assert row["broken_by"].get("apgd-ce@misleading", 0) == 0, row["broken_by"]
    assert row["broken_by"].get("apgd-di@misleading", 0) >= 2, row["broken_by"]
    assert any("apgd-di also follows" in line for line in logs)
    flag = next(f for f in res.diagnostics["red_flags"] if f["flag"] == "masked_gradients")
    assert flag["applied"] and "apgd-di" in flag["cure"]
