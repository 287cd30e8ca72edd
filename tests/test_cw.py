import foolbox as fb
import pytest
import torch

from adaptive.attacks.cw import CarliniWagnerL2, kappa_margins
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model


@pytest.fixture(scope="module")
def mnist():
    model, _ = load_model("mnist-cnn")
    d = load_dataset("mnist-bundled")
    return model, d.x()[:8], d.labels[:8]


def test_margin_definition():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    assert kappa_margins(logits, torch.tensor([0, 1]), targeted=False).tolist() == [2.0, -3.0]
    assert kappa_margins(logits, torch.tensor([1, 2]), targeted=True).tolist() == [2.0, -3.0]


SETTINGS = dict(steps=300, binary_search_steps=4, initial_const=0.1)


def test_l2_within_5_percent_of_foolbox_at_equal_settings(mnist):
    model, x, y = mnist
    ours = CarliniWagnerL2(kappa=0, lr=0.01, **SETTINGS).run(model, x, y)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.L2CarliniWagnerAttack(stepsize=0.01, confidence=0, **SETTINGS)
    theirs = attack(fmodel, x, y, epsilons=None)[1]
    # Foolbox returns an all-zero image where it found nothing; such a blank may well be
    # misclassified, so it is no success.
    their_ok = (model(theirs).argmax(1) != y) & (theirs.flatten(1).abs().sum(1) > 0)
    both = ours.success & their_ok
    assert int(both.sum()) >= 7 and ours.success.sum() >= their_ok.sum()
    their_l2 = (theirs - x).flatten(1).norm(dim=1)
    assert float(ours.l2[both].mean()) <= 1.05 * float(their_l2[both].mean())


@pytest.mark.parametrize("kappa", [0.0, 5.0])
def test_successes_meet_the_kappa_margin_untargeted_and_targeted(mnist, kappa):
    model, x, y = mnist
    attack = CarliniWagnerL2(kappa=kappa, **SETTINGS)
    r = attack.run(model, x, y)
    logits = model(r.adversarial)
    top2 = logits.topk(2, dim=1)
    ok = r.success
    assert int(ok.sum()) >= 7
    assert (top2.indices[ok, 0] != y[ok]).all()
    # untargeted: the best other class beats the true one by kappa
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    assert ((top2.values[ok, 0] - true_logit[ok]) >= kappa - 1e-4).all()
    assert torch.allclose(r.l2[ok], (r.adversarial - x).flatten(1).norm(dim=1)[ok], atol=1e-5)
    target = model(x).topk(2, dim=1).indices[:, 1]  # the runner-up class: reachable in 300 steps
    t = attack.run(model, x, target, targeted=True)
    lt = model(t.adversarial)
    others = lt.clone().scatter_(1, target[:, None], float("-inf")).amax(1)
    own = lt.gather(1, target[:, None]).squeeze(1)
    assert int(t.success.sum()) >= len(x) // 2  # correctness on successes, not strength
    assert ((own - others)[t.success] >= kappa - 1e-4).all()


def test_failure_returns_the_input_not_a_zero_image(mnist):
    model, x, y = mnist
    r = CarliniWagnerL2(kappa=50, steps=3, binary_search_steps=1, initial_const=1e-4).run(
        model, x[:4], y[:4])
    assert not r.success.any()
    assert torch.equal(r.adversarial, x[:4]) and (r.l2 == 0).all() and r.margin.isnan().all()
    # the best confidence any iterate reached is kept: finite, and short of kappa
    assert torch.isfinite(r.confidence_reached).all() and (r.confidence_reached < 50).all()
    with torch.no_grad():  # the clean images' own confidence is negative (they are correct)
        clean = -kappa_margins(model(x[:4]), y[:4], False)
    assert (r.confidence_reached >= clean - 1e-4).all()


def test_early_abort_saves_steps(mnist):
    model, x, y = mnist
    kw = dict(kappa=0, steps=200, binary_search_steps=2, initial_const=1e-2)
    fast = CarliniWagnerL2(abort_early=True, **kw).run(model, x[:6], y[:6])
    slow = CarliniWagnerL2(abort_early=False, **kw).run(model, x[:6], y[:6])
    assert (slow.gradient_steps == 400).all() and (fast.gradient_steps < 400).any()


def test_bad_input(mnist):
    model, x, y = mnist
    with pytest.raises(ToolkitError, match=r"\[0, 1\]"):
        CarliniWagnerL2().run(model, x * 255, y)
    with pytest.raises(ToolkitError, match="labels"):
        CarliniWagnerL2().run(model, x, y[:3])
    with pytest.raises(ToolkitError, match="kappa"):
        CarliniWagnerL2(kappa=-1)


def test_warm_started_constants_find_smaller_examples_on_an_unconverged_budget(mnist):
    """Each constant after the first from the best example so far (off by default): on a budget
    too short for C&W to converge (100 Adam steps of 0.01 per constant) it finds the same
    images with smaller L2 (benchmarks/cw_vs_foolbox.py --warm-start: 0.78 x Foolbox's mean L2
    at 5 x 200 steps of 0.01), and every success is a real misclassification."""
    model, x, y = mnist
    settings = dict(kappa=0, steps=100, binary_search_steps=4, lr=0.01, initial_const=1.0)
    cold = CarliniWagnerL2(**settings).run(model, x, y)
    warm = CarliniWagnerL2(**settings, warm_start=True).run(model, x, y)
    assert "warm_start" not in CarliniWagnerL2(**settings).config()
    assert CarliniWagnerL2(**settings, warm_start=True).config()["warm_start"] is True
    assert bool(cold.success.any()) and bool((warm.success >= cold.success).all())
    both = cold.success & warm.success
    assert float(warm.l2[both].mean()) < 0.9 * float(cold.l2[both].mean())
    with torch.no_grad():
        fooled = model(warm.adversarial).argmax(1) != y
    assert torch.equal(fooled, warm.success)


def test_the_sweep_passes_warm_start_to_its_cw_and_records_it(tmp_path):
    import json

    from adaptive.cli.main import main

    assert main(["sweep", "--n", "2", "--n-cal", "2", "--kappa", "0", "--cw-steps", "5",
                 "--cw-binary-steps", "2", "--defenses", "none", "--no-progress",
                 "--cw-warm-start", "--out", str(tmp_path / "w")]) == 0
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())["config"]
    assert cfg["cw"]["warm_start"] is True


def test_default_batch_is_the_devices_and_splitting_keeps_results(mnist, monkeypatch):
    """batch_size=None takes attack_batch_size(device) in equal pieces; pieces give each image
    its result."""
    from adaptive.core import runtime

    model, x, y = mnist
    monkeypatch.setitem(runtime.ATTACK_BATCH, "cpu", 5)
    attack = CarliniWagnerL2(kappa=0, steps=30, binary_search_steps=2, initial_const=0.1,
                             lr=0.05)
    sizes = []
    original = attack._run_batch
    monkeypatch.setattr(attack, "_run_batch", lambda m, xb, *a: sizes.append(len(xb)) or
                        original(m, xb, *a))
    split = attack.run(model, x, y)
    assert sizes == [4, 4]  # 8 images at most 5 at a time: two equal pieces, not 5 + 3
    whole = CarliniWagnerL2(kappa=0, steps=30, binary_search_steps=2, initial_const=0.1,
                            lr=0.05, batch_size=8).run(model, x, y)
    assert torch.equal(split.success, whole.success)
    assert torch.allclose(split.l2, whole.l2, rtol=1e-4, atol=1e-5)
    with pytest.raises(ToolkitError, match="batch_size"):
        CarliniWagnerL2(batch_size=0)
