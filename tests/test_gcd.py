"""GCD's detector: the input-sensitivity map is the cross-entropy gradient at the model's own
prediction (checked against the closed form of a linear model), the ensemble picks the net of
lower binary entropy (eqs. 10-11, checked against the entropies), the white-box gradient
through DET_IS is second order (checked against finite differences), and a fitted detector
separates what it was trained on, saves, loads and refuses a foreign model."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from adaptive.core.errors import ToolkitError
from defenses.detector import Detector
from defenses.gcd import GCDDetector, input_sensitivity
from tests.test_known_broken_detectors import TinyNet


class Linear(nn.Module):
    input_shape = (1, 4, 4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_input_sensitivity_is_the_cross_entropy_gradient_at_the_prediction():
    model, x = Linear(), torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    g = input_sensitivity(model, x)
    w, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    for i in range(5):  # d CE / dx = W^T (softmax - onehot(argmax))
        z = w @ x[i].flatten().numpy() + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        p[z.argmax()] -= 1
        assert np.allclose(g[i].flatten().numpy(), w.T @ p, atol=1e-6)


def test_the_more_confident_net_decides():
    m_org = torch.tensor([3.0, -0.2, 0.5, -4.0, 1.0])
    m_is = torch.tensor([-1.0, 2.0, -0.7, 0.1, 1.0])  # (the last: a tie, to DET_IS)

    def entropy(m):  # of p = (p+, p-) with p- = sigmoid(margin)
        p = torch.sigmoid(m)
        return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    expected = torch.where(entropy(m_org) < entropy(m_is), m_org, m_is)
    assert torch.equal(GCDDetector.decide(m_org, m_is), expected)


def _separable(n=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    benign = 0.3 * torch.rand(n, 1, 6, 6, generator=gen)
    adversarial = 0.6 + 0.4 * torch.rand(n, 1, 6, 6, generator=gen)
    return benign, adversarial


def test_fit_separates_saves_loads_and_refuses_a_foreign_model(tmp_path):
    model = TinyNet().eval()
    benign, adversarial = _separable()
    det = GCDDetector(model).fit(benign[:80], adversarial[:80], benign[80:], epochs=30)
    assert det.threshold == 0.0 and det.fpr is not None and det.fpr <= 0.1
    held_b, held_a = _separable(40, seed=1)
    scores = torch.cat([det.score(held_b), det.score(held_a)])
    assert roc_auc_score(np.r_[np.zeros(40), np.ones(40)], scores.numpy()) > 0.95
    assert det.detect(held_a).float().mean() > 0.9
    det.save(tmp_path / "gcd.json")
    back = Detector.load(tmp_path / "gcd.json", model=model)
    assert isinstance(back, GCDDetector) and torch.allclose(back.score(held_a),
                                                            det.score(held_a), atol=1e-5)
    with pytest.raises(ToolkitError, match="damaged"):  # another model's input shape
        Detector.load(tmp_path / "gcd.json", model=Linear())
    with pytest.raises(ToolkitError, match="benign and adversarial"):
        GCDDetector(model).fit(benign, adversarial[:0], benign)


def test_the_white_box_gradient_through_det_is_is_second_order():
    """d margin_IS / dx needs d G / dx: autograd (create_graph) against finite differences,
    in double precision on a smooth model."""
    model = TinyNet().double().eval()
    det = GCDDetector(model)
    det.scale, det.threshold = 1.0, 0.0
    det.det_is.double().eval()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def m_is(v):
        return det.det_is(det.sensitivity_map(v, create_graph=True)).diff(dim=1).sum()
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m_is(xg), xg)
    assert grad.abs().sum() > 0
    h = 1e-6
    for idx in [(0, 0, 2, 3), (1, 0, 4, 1), (0, 0, 0, 5)]:
        e = torch.zeros_like(x)
        e[idx] = h
        fd = (m_is(x + e) - m_is(x - e)).item() / (2 * h)
        assert abs(fd - grad[idx].item()) <= 1e-4 * max(1.0, abs(fd)), idx


def test_the_bundled_detector_loads_for_its_model_and_gives_a_white_box_gradient():
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from defenses.detector_zoo import load_detector

    model, meta = load_model("mnist-cnn")
    det = load_detector("gcd", model, "mnist-cnn", meta["sha256"])
    x = load_dataset("mnist-bundled").x()[:20]
    assert det.detect(x).sum() <= 1  # 0.26 % false positives on held-out training images
    xg = x[:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(det.relative_score(xg).sum(), xg)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ToolkitError, match="another model"):
        load_detector("gcd", model, "mnist-cnn", "0" * 64)


def test_rectifier_suppresses_suspect_pixels_and_classifies_flagged_inputs():
    from defenses.gcd import GCDClassifier, fine_tune_rectifier, suppress, suspect_pixels

    model = TinyNet().eval()
    benign, adversarial = _separable()
    det = GCDDetector(model).fit(benign[:80], adversarial[:80], benign[80:], epochs=30)
    x = adversarial[:10]
    few, many = suspect_pixels(det, x, 0.9), suspect_pixels(det, x, 0.1)
    assert few.shape == x.shape and (few <= many).all() and few.sum() < many.sum()
    assert few.flatten(1).any(1).all()  # the largest gradient is always a suspect
    gen = torch.Generator().manual_seed(0)
    out = suppress(x, many, gen)
    changed = out != x
    assert not (changed & ~many).any() and changed.any()  # only suspects, about half of them
    assert 0.2 < changed.sum() / many.sum() < 0.8
    assert torch.equal(out[changed], (out[changed] * 255).round() / 255)  # on the 8-bit grid
    with pytest.raises(ToolkitError, match="alpha"):
        suspect_pixels(det, x, 1.5)
    labels = torch.zeros(len(adversarial), dtype=torch.long)
    rec = fine_tune_rectifier(model, det, adversarial, labels, 0.5, epochs=20, lr=1e-2)
    assert rec is not model and (rec(adversarial).argmax(1) == 0).float().mean() > 0.9
    gcd = GCDClassifier(model, det, rec, 0.5)
    both = torch.cat([benign[80:90], adversarial[:10]])
    flagged = det.detect(both)
    assert flagged[10:].all() and not flagged[:10].any()
    with torch.no_grad():
        # passed inputs: the model's (batches of other sizes may differ in the last bits)
        assert torch.allclose(gcd(both)[:10], model(both[:10]), rtol=0, atol=1e-6)
        assert (gcd(both)[10:].argmax(1) == 0).float().mean() > 0.8  # flagged: the rectifier's


def test_the_white_box_script_breaks_gcd_with_its_rectifier_only_with_room(tmp_path):
    """scripts/gcd_whitebox.py on 3 images: nothing at L2 0.01 (the images GCD gets right in
    every draw stay right), everything at 6 (a bound where the rectifier has failed), each
    example inside its ball (the script checks that)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "gcd_whitebox.py"
    spec = importlib.util.spec_from_file_location("gcd_whitebox", path)
    gcd_whitebox = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gcd_whitebox)

    out = tmp_path / "gw"
    assert gcd_whitebox.main(["--n", "3", "--eps", "0.01,6", "--steps", "10", "--eot", "2",
                              "--draws", "4", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["eps"] for r in rows] == [0.01, 6.0]
    assert rows[0]["best_per_image"] == 0.0 and rows[1]["best_per_image"] == 1.0
    assert all(rows[1][k]["flagged"] == 1.0 for k in ("system", "rectifier", "both paths"))
    assert "| 6 |" in out.with_suffix(".md").read_text()
