import json

import pytest
import torch
from torch import nn

from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from defenses.magnet import (
    DivergenceDetector,
    MagNet,
    MagNetAutoencoder,
    ReconstructionDetector,
    build_autoencoder,
)
from defenses.magnet.detectors import jensen_shannon
from defenses.magnet.training import AETrainConfig, train_autoencoder


def test_autoencoder_architectures():
    ae = build_autoencoder("magnet-mnist-I")
    kinds = [type(m).__name__ for m in ae.net]
    assert kinds == ["Conv2d", "Sigmoid", "AvgPool2d", "Conv2d", "Sigmoid", "Conv2d", "Sigmoid",
                     "Upsample", "Conv2d", "Sigmoid", "Conv2d", "Sigmoid"]
    assert [m.out_channels for m in ae.net if isinstance(m, nn.Conv2d)] == [3, 3, 3, 3, 1]
    two = build_autoencoder("magnet-mnist-II")
    assert [m.out_channels for m in two.net if isinstance(m, nn.Conv2d)] == [3, 3, 1]
    cifar = build_autoencoder("magnet-cifar")
    x = torch.rand(2, 3, 32, 32)
    y = cifar(x).detach()
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ToolkitError, match="expects images of shape"):
        ae(torch.rand(2, 3, 28, 28))
    with pytest.raises(ToolkitError, match="unknown autoencoder"):
        build_autoencoder("vae")
    with pytest.raises(ToolkitError, match="unknown autoencoder layer"):
        MagNetAutoencoder([3, "median"])


def test_thresholds_hit_the_requested_rate_on_calibration_data():
    ae = build_autoencoder("magnet-mnist-II").eval()
    x = torch.rand(2000, 1, 28, 28)
    for rate in (0.001, 0.01, 0.1):
        det = ReconstructionDetector(ae, p=1).fit(x, rate)
        flagged = float(det.detect(x).float().mean())
        assert rate - 1 / len(x) - 1e-6 <= flagged <= rate + 1e-6


def test_jensen_shannon_properties():
    p = torch.softmax(torch.randn(5, 10, dtype=torch.float64), 1)
    q = torch.softmax(torch.randn(5, 10, dtype=torch.float64), 1)
    assert torch.allclose(jensen_shannon(p, p), torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(jensen_shannon(p, q), jensen_shannon(q, p))
    assert (jensen_shannon(p, q) <= torch.log(torch.tensor(2.0, dtype=torch.float64))).all()
    one_hot = torch.eye(10, dtype=torch.float64)[:2]
    assert torch.allclose(jensen_shannon(one_hot, one_hot.flip(0)),
                          torch.log(torch.tensor([2.0, 2.0], dtype=torch.float64)))


def test_detector_errors():
    ae = build_autoencoder("magnet-mnist-II")
    det = ReconstructionDetector(ae, p=2)
    with pytest.raises(ToolkitError, match="no threshold"):
        det.detect(torch.rand(2, 1, 28, 28))
    with pytest.raises(ToolkitError, match="drop rate"):
        det.fit(torch.rand(4, 1, 28, 28), 1.5)
    with pytest.raises(ToolkitError, match="NaN"):
        det.score(torch.full((2, 1, 28, 28), float("nan")))
    with pytest.raises(ToolkitError, match=r"\[0, 1\]"):
        det.score(torch.rand(2, 1, 28, 28) * 255)
    with pytest.raises(ToolkitError, match="p must be 1 or 2"):
        ReconstructionDetector(ae, p=3)


def test_autoencoder_training_lowers_the_loss(tmp_path):
    x = load_dataset("mnist-bundled").x()[:512]
    cfg = AETrainConfig(dataset="mnist", arch="magnet-mnist-II", noise=0.1, epochs=3,
                        batch_size=64, lr=3e-3)
    ae, meta = train_autoencoder(cfg, x[:448], x[448:], tmp_path / "ae", "cpu", progress=False,
                                 log=lambda s: None)
    lines = (tmp_path / "ae/history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert history[-1]["val_mse"] < history[0]["val_mse"]
    assert meta["format"] == "adaptive-toolkit/autoencoder-v1"


@pytest.fixture(scope="module")
def bundled_magnet():
    classifier, _ = load_model("mnist-cnn")
    return MagNet.load("mnist", classifier)


def test_bundled_magnet_passes_clean_images_and_flags_heavy_noise(bundled_magnet):
    x = load_dataset("mnist-bundled").x()[:500]
    assert float(bundled_magnet.detect(x).float().mean()) <= 0.01
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(bundled_magnet.detect(noisy).float().mean()) >= 0.99
    # The score crosses 1 exactly where detect fires.
    assert torch.equal(bundled_magnet.score(noisy[:50]) > 1, bundled_magnet.detect(noisy[:50]))


def test_magnet_spec_round_trip(bundled_magnet, tmp_path):
    classifier = bundled_magnet.classifier
    refs = {k: f"magnet-mnist-{k}" for k in bundled_magnet.autoencoders}
    bundled_magnet.save(tmp_path / "m.json", refs)
    back = MagNet.load(str(tmp_path / "m.json"), classifier)
    x = load_dataset("mnist-bundled").x()[:100]
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert [d.threshold for d in back.detectors] == [d.threshold for d in bundled_magnet.detectors]
    assert torch.equal(back.detect(noisy), bundled_magnet.detect(noisy))
    assert torch.equal(back.defended_classifier()(x), bundled_magnet.defended_classifier()(x))
    (tmp_path / "bad.json").write_text('{"type": "a2d"}')
    with pytest.raises(ToolkitError, match="not a MagNet spec"):
        MagNet.load(str(tmp_path / "bad.json"), classifier)
    with pytest.raises(ToolkitError, match="no MagNet defense"):
        MagNet.load("imagenet", classifier)


def test_divergence_detector_is_zero_for_a_perfect_autoencoder():
    classifier, _ = load_model("mnist-cnn")
    det = DivergenceDetector(nn.Identity(), classifier, 10)
    det.ae.input_shape = (1, 28, 28)
    det.ae.register_parameter("dummy", nn.Parameter(torch.zeros(1)))
    x = load_dataset("mnist-bundled").x()[:8]
    assert torch.allclose(det.score(x), torch.zeros(8), atol=1e-7)
