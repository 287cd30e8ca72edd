"""Auto-PGD against torchattacks' APGD on the same model, images and budget; its schedule;
the DLR loss's scale invariance; and APGD beating fixed-step PGD at equal steps where the fixed
step is too long (the case APGD's step halving is for)."""

import pytest
import torch

from adaptive.attacks import APGD, BoundedPGD
from adaptive.attacks.apgd import checkpoints, dlr_loss
from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model

EPS, STEPS = 8 / 255, 25


def test_checkpoints_follow_the_papers_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_is_invariant_to_the_scale_of_the_logits():
    gen = torch.Generator().manual_seed(0)
    z, y, t = torch.randn(6, 10, generator=gen), torch.arange(6), torch.arange(6) + 1
    for targeted, labels in ((False, y), (True, t)):
        assert torch.allclose(dlr_loss(z, labels, targeted), dlr_loss(7.5 * z, labels, targeted),
                              atol=1e-5)


@pytest.fixture(scope="module")
def robust_setup(data_root):
    torch.manual_seed(0)
    model, _ = load_model("cifar-cnn-at")
    data = load_dataset("cifar10-genuine", root=data_root)
    x, y = data.x()[:64], data.labels[:64]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:40], y[ok][:40]


def _robust(model, adv, y) -> float:
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_is_as_strong_as_torchattacks_apgd(robust_setup, loss):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = robust_setup
    ours = APGD(EPS, steps=STEPS, loss=loss, norm="linf").run(model, x, y)
    theirs = torchattacks.APGD(model, norm="Linf", eps=EPS, steps=STEPS, loss=loss,
                               n_restarts=1, seed=0)(x, y)
    # every success is real and inside the box
    assert bool((ours.adversarial - x).abs().amax() <= EPS + 1e-6)
    with torch.no_grad():
        assert bool((model(ours.adversarial[ours.success]).argmax(1)
                     != y[ours.success]).all())
    # within two images of 40 of the reference (random starts differ)
    assert _robust(model, ours.adversarial, y) <= _robust(model, theirs, y) + 2 / 40


def test_apgd_beats_fixed_step_pgd_at_equal_steps_when_the_step_is_too_long(robust_setup):
    model, x, y = robust_setup
    apgd = APGD(EPS, steps=STEPS, loss="ce", norm="linf").run(model, x, y)
    pgd = BoundedPGD(EPS, steps=STEPS, restarts=1, step_size=2 * EPS, norm="linf").run(
        model, x, y)
    assert _robust(model, apgd.adversarial, y) <= _robust(model, pgd.adversarial, y) - 2 / 40
    # per-sample early stop: the images broken early stop spending steps
    assert float(apgd.gradient_steps.float().mean()) < STEPS


def test_apgd_runs_through_the_sweep(tmp_path):
    from adaptive.sweep import SweepConfig, run_sweep

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    cfg = SweepConfig(model="mnist-cnn", model_sha256=meta["sha256"], defenses=["none"],
                      kappas=[0.0], n=4, n_cal=10, batch=4, norm="linf", max_linf=0.2,
                      attack="apgd", apgd=dict(steps=10, loss="dlr"), transfer_check=False)
    res = run_sweep(cfg, model, data, tmp_path / "run", "cpu", progress=False,
                    log=lambda s: None)
    assert res.config["apgd"]["loss"] == "dlr"
    assert res.rows[0]["attack_success_rate"] >= 0.75


def test_the_checklist_builds_its_variants_of_apgd():
    from adaptive.sweep import SweepConfig
    from adaptive.sweep.checklist import _variants

    cfg = SweepConfig(attack="apgd", norm="linf", apgd=dict(steps=10, restarts=2))
    variants = _variants(cfg, 0.0)
    assert all(isinstance(a, APGD) for a in variants.values())
    assert variants["more steps"].steps == 20 and variants["more restarts"].restarts == 4
    one = variants["iterative beats one step"]
    assert one.steps == 1 and one.initial_step == pytest.approx(0.3)
