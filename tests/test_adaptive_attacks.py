import pytest
import torch

from adaptive.attacks.cw import CarliniWagnerL2
from adaptive.attacks.magnet_aware import detector_penalty, magnet_aware_cw
from adaptive.core.errors import ToolkitError
from adaptive.core.threat import ThreatModel
from adaptive.defense import judge
from adaptive.defense.compositions import build_defenses


class BrightnessDetector:
    """Flags images brighter than a threshold; differentiable relative score."""

    name = "bright"

    def __init__(self, threshold):
        self.threshold = threshold

    def relative_score(self, x):
        return x.flatten(1).mean(1) / self.threshold

    def detect(self, x):
        return x.flatten(1).mean(1) > self.threshold


def test_detector_penalty_is_minimised_with_the_classification_loss():
    torch.manual_seed(0)
    from adaptive.core.models import build_model

    model = build_model("tiny-cnn", input_shape=[1, 8, 8], num_classes=3, width=4).eval()
    x = torch.rand(6, 1, 8, 8) * 0.5 + 0.3  # mean ~0.55
    y = model(x).argmax(1)
    det = BrightnessDetector(threshold=0.5)
    penalty = detector_penalty([det])
    attack = CarliniWagnerL2(kappa=0.05, steps=150, binary_search_steps=4, lr=0.05,
                             initial_const=1.0)
    plain = attack.run(model, x, y)
    aware = attack.run(model, x, y, penalty=penalty)
    assert aware.success.sum() >= 4
    adv = aware.adversarial[aware.success]
    # Every success passes the detector with the slack, and misclassifies with the margin.
    assert (penalty(adv, y[aware.success], False) == 0).all() and not det.detect(adv).any()
    assert (model(adv).argmax(1) != y[aware.success]).all()
    # The plain attack ignores the detector: most of its examples stay detected.
    assert det.detect(plain.adversarial[plain.success]).float().mean() > 0.5
    with pytest.raises(ToolkitError, match="no differentiable"):
        detector_penalty([object()])


def test_magnet_aware_cw_beats_plain_cw_against_magnet():
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from defenses.magnet.defense import MagNet

    model, _ = load_model("mnist-cnn")
    magnet = MagNet.load("mnist", model)
    data = load_dataset("mnist-bundled").subset(slice(0, 10))
    x, y = data.x(), data.labels
    defense = build_defenses(["magnet"], model, magnet=magnet)["magnet"]
    attack = CarliniWagnerL2(kappa=20, steps=200, binary_search_steps=5, lr=0.05,
                             initial_const=0.1)  # the sweep's defaults
    torch.manual_seed(0)
    plain = attack.run(model, x, y)
    aware = magnet_aware_cw(attack, magnet, x, y)
    v_plain = judge(defense, plain.adversarial, x, y, plain.success, ThreatModel("l2", 8.4))
    v_aware = judge(defense, aware.adversarial, x, y, aware.success, ThreatModel("l2", 8.4))
    assert int(v_aware.success.sum()) > int(v_plain.success.sum())
    assert int(v_aware.success.sum()) >= 9  # measured: 10 of 10 (plain C&W: 6)


def test_first_order_cost_tracks_the_bim_cost_of_benign_images():
    from adaptive.attacks.a2d_aware import first_order_cost
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from defenses.a2d.presets import make_engine

    model, _ = load_model("mnist-cnn")
    x = load_dataset("mnist-bundled").x()[:30]
    true = make_engine("bim_d", "mnist").run(model, x).costs.float()
    est = first_order_cost(model, x, step=0.0006)
    ratio = float(est.median() / true.median())
    assert 0.7 < ratio < 1.4, ratio


def test_cost_penalty_pushes_examples_past_the_target_cost():
    from adaptive.attacks.a2d_aware import cost_penalty, first_order_cost
    from adaptive.core.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny-cnn", input_shape=[1, 8, 8], num_classes=3, width=4).eval()
    x = torch.rand(6, 1, 8, 8)
    y = model(x).argmax(1)
    attack = CarliniWagnerL2(kappa=0.0, steps=150, binary_search_steps=5, lr=0.05,
                             initial_const=1.0)
    plain = attack.run(model, x, y)
    target = 3 * float(first_order_cost(model, plain.adversarial[plain.success], 0.01).median())
    penalty = cost_penalty(model, step=0.01, target_cost=target)
    aware = attack.run(model, x, y, penalty=penalty)
    assert aware.success.sum() >= 4
    adv = aware.adversarial[aware.success]
    assert (first_order_cost(model, adv, 0.01) >= target * 0.999).all()
    assert (model(adv).argmax(1) != y[aware.success]).all()
    plain_cost = first_order_cost(model, plain.adversarial[plain.success], 0.01)
    assert float((plain_cost >= target).float().mean()) < 0.5  # plain C&W stops short
    with pytest.raises(ToolkitError, match="step > 0"):
        cost_penalty(model, step=0, target_cost=1)


def test_a2d_cost_penalty_judges_an_input_that_needs_no_gradient():
    """APGD judges its last iterate without a gradient; the A2D penalty must still answer (it
    once raised 'does not require grad' there, in every L-inf auto run against A2D)."""
    from adaptive.attacks.a2d_aware import cost_penalty

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x = torch.rand(3, 1, 2, 6)
    labels = torch.tensor([0, 1, 2])
    penalty = cost_penalty(model, step=0.01, target_cost=50.0)
    plain = penalty(x, labels, False)
    tracked = penalty(x.clone().requires_grad_(True), labels, False)
    assert torch.allclose(plain, tracked.detach())
