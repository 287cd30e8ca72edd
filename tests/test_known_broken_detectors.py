"""Detectors of known fate (feature squeezing, Mahalanobis, kernel density, Bayesian
uncertainty, LID): each checked against an independent implementation (SciPy's median filter,
Mahalanobis distance and Gaussian KDE, NumPy), saved and loaded, refused for a foreign model,
composed by name in a sweep and aimed at by -full attacks."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import mahalanobis
from torch import nn

from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.models import ImageClassifier
from adaptive.core.zoo import load_model
from adaptive.defense.compositions import build_defenses, is_composition, parse_defenses, zoo_parts
from adaptive.sweep import SweepConfig, run_sweep
from defenses.detector import Detector
from defenses.detector_zoo import load_detector, save_detector
from defenses.feature_squeezing import FeatureSqueezingDetector, bit_depth, median_filter
from defenses.kd_bu import BayesianUncertaintyDetector, KernelDensityDetector
from defenses.lid import LIDDetector
from defenses.mahalanobis import MahalanobisDetector


class TinyNet(ImageClassifier):
    """A 1x6x6 -> 5 features -> 3 classes network with the features hook."""

    def __init__(self):
        super().__init__((1, 6, 6), 3, (0.5,), (0.5,))
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.Tanh(), nn.Dropout(0.5))
        self.last = nn.Linear(5, 3)

    def embed(self, z):
        return self.body(z)

    @property
    def head(self):
        return self.last


def test_squeezers_match_scipy_and_numpy():
    x = torch.rand(4, 2, 7, 9, generator=torch.Generator().manual_seed(1))
    for size in (2, 3, 4):
        ref = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
        assert np.array_equal(median_filter(x, size).numpy(), ref), size
    for bits in (1, 3):
        ref = np.rint(x.numpy() * (2 ** bits - 1)) / (2 ** bits - 1)
        assert np.allclose(bit_depth(x, bits).numpy(), ref, atol=1e-7)
    # the straight-through version has the identity's gradient
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bit_depth(xg, 1, straight_through=True).sum(), xg)
    assert torch.equal(g, torch.ones_like(x))


def test_feature_squeezing_score_threshold_and_gradient():
    model = TinyNet().eval()
    x = torch.rand(200, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    det = FeatureSqueezingDetector(model, bits=1, median=2).fit(x[:100], fpr=0.05)
    with torch.no_grad():  # independently: softmax L1 changes, the larger of the two
        p = torch.softmax(model(x), 1).numpy()
        p1 = torch.softmax(model(torch.from_numpy(np.rint(x.numpy()))), 1).numpy()
        pm = torch.softmax(model(torch.from_numpy(ndimage.median_filter(
            x.numpy(), size=(1, 1, 2, 2), mode="reflect"))), 1).numpy()
    ref = np.maximum(np.abs(p - p1).sum(1), np.abs(p - pm).sum(1))
    assert np.allclose(det.score(x).numpy(), ref, atol=1e-6)
    assert abs(float(det.detect(x[:100]).float().mean()) - 0.05) <= 0.011
    xg = x[:8].clone().requires_grad_(True)
    r = det.relative_score(xg)
    d = 0.01 * det.threshold
    assert torch.allclose(r.detach(), 1 + torch.log((det.score(x[:8]) + d) / (det.threshold + d)),
                          atol=1e-5)
    assert torch.equal(r.detach() > 1, det.detect(x[:8]))
    (g,) = torch.autograd.grad(r.sum(), xg)
    assert g.abs().sum() > 0  # the attack sees through the rounding
    with pytest.raises(ToolkitError):
        FeatureSqueezingDetector(model, bits=None, median=None)
    with pytest.raises(ToolkitError):
        FeatureSqueezingDetector(model, bits=0)


def test_mahalanobis_matches_scipy_and_round_trips(tmp_path):
    model = TinyNet().eval()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(300, 1, 6, 6, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    det = MahalanobisDetector(model).fit(x[:200], y[:200], x[200:], fpr=0.1)
    with torch.no_grad():
        f = model.penultimate(x).double().numpy()
    means = np.stack([f[:200][y[:200].numpy() == c].mean(0) for c in range(3)])
    centred = f[:200] - means[y[:200].numpy()]
    precision = np.linalg.pinv(centred.T @ centred / len(centred))
    ref = np.array([min(mahalanobis(v, m, precision) ** 2 for m in means) for v in f[200:]])
    assert np.allclose(det.score(x[200:]).double().numpy(), ref, rtol=1e-3)
    assert abs(float(det.detect(x[200:]).float().mean()) - 0.1) <= 0.011
    xg = x[:4].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(det.relative_score(xg).sum(), xg)
    assert g.abs().sum() > 0
    # saved with meta, loaded for the same model only
    path = tmp_path / "maha.json"
    save_detector(det, path, {"model_sha256": "a" * 64})
    again = load_detector("maha", model, "tiny", "a" * 64, path=path)
    assert torch.allclose(again.score(x), det.score(x)) and again.threshold == det.threshold
    with pytest.raises(ToolkitError, match="another model"):
        load_detector("maha", model, "tiny", "b" * 64, path=path)
    with pytest.raises(ToolkitError, match="no bundled fs detector"):
        load_detector("fs", model, "no-such-model")
    broken = json.loads(path.read_text())
    broken["precision"] = [[1.0]]
    path.write_text(json.dumps(broken))
    with pytest.raises(ToolkitError, match="damaged"):
        Detector.load(path, model=model)
    with pytest.raises(ToolkitError, match="every class"):
        MahalanobisDetector(model).fit(x[:20], torch.zeros(20, dtype=torch.long))


def _data(seed, n=300):
    model = TinyNet().eval()
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for _ in range(3):  # centre the logits: every class predicted for some images
            model.last.bias -= model(x).mean(0)
        y = model(x).argmax(1)
    return model, x, y


def test_kernel_density_matches_a_direct_sum_and_round_trips(tmp_path):
    model, x, y = _data(4, 400)
    det = KernelDensityDetector(model, sigma=0.7).fit(x[:300], y[:300], x[300:], fpr=0.1,
                                                      per_class=10)
    with torch.no_grad():
        f = model.penultimate(x).double().numpy()
        pred = model(x).argmax(1).numpy()
    ref_idx = {c: np.flatnonzero(y[:300].numpy() == c)[:10] for c in range(3)}
    expected = []
    for v, c in zip(f[300:], pred[300:]):  # mean Gaussian kernel over the predicted class
        kd = np.mean(np.exp(-((f[ref_idx[c]] - v) ** 2).sum(1) / (2 * 0.7 ** 2)))
        expected.append(-np.log(kd))
    assert np.allclose(det.score(x[300:]).double().numpy(), expected, rtol=1e-4)
    assert abs(float(det.detect(x[300:]).float().mean()) - 0.1) <= 0.011
    r = det.relative_score(x[300:])
    assert torch.equal(r > 1, det.detect(x[300:]))
    path = tmp_path / "kd.json"
    save_detector(det, path, {})
    assert torch.allclose(load_detector("kd", model, "tiny", path=path).score(x), det.score(x))
    with pytest.raises(ToolkitError, match="correctly classified"):
        KernelDensityDetector(model).fit(x[:30], y[:30], x[30:], per_class=50)


def test_bayesian_uncertainty_is_the_mc_dropout_variance():
    model, x, _ = _data(5)
    det = BayesianUncertaintyDetector(model, passes=40).fit(x[:200], fpr=0.05)
    assert not model.body[3].training  # dropout back to eval mode after scoring
    torch.manual_seed(7)
    got = det.score(x[200:210])
    torch.manual_seed(7)
    model.body[3].train()
    with torch.no_grad():
        p = torch.stack([torch.softmax(model(x[200:210]), 1) for _ in range(40)]).numpy()
    model.body[3].eval()
    expected = (p ** 2).sum(-1).mean(0) - (p.mean(0) ** 2).sum(-1)
    assert np.allclose(got.numpy(), expected, atol=1e-6)
    with torch.no_grad():  # without dropout there is no variance at all
        assert (got > 0).all()
    xg = x[:4].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(det.relative_score(xg).sum(), xg)
    assert g.abs().sum() > 0
    with pytest.raises(ToolkitError, match="dropout"):
        BayesianUncertaintyDetector(nn.Sequential(nn.Flatten(), nn.Linear(36, 3)))


def test_lid_is_the_mle_of_the_nearest_reference_distances():
    model, x, _ = _data(6)
    det = LIDDetector(model, k=5).fit(x[:50], x[50:200], fpr=0.05)
    with torch.no_grad():
        f = model.penultimate(x).double().numpy()
    expected = []
    for v in f[200:]:
        r = np.sort(np.sqrt(((f[:50] - v) ** 2).sum(1)))[:5]
        expected.append(-1 / np.mean(np.log(r / r[-1])))
    assert np.allclose(det.score(x[200:]).double().numpy(), expected, rtol=1e-3)
    assert torch.equal(det.relative_score(x[200:]).detach() > 1, det.detect(x[200:]))
    with pytest.raises(ToolkitError, match="more than k"):
        LIDDetector(model, k=5).fit(x[:5], x[5:20])


def test_compositions_by_name():
    assert parse_defenses("fs,a2d+maha,magnet+fs") == ["none", "fs", "a2d+maha", "magnet+fs"]
    for bad in ("magnet+at", "fs+fs", "ddn", "none+fs"):
        assert not is_composition(bad)
        with pytest.raises(ToolkitError, match="unknown defense"):
            parse_defenses(bad)
    assert zoo_parts(["none", "a2d+maha", "fs", "maha", "kd+bu"]) == ["maha", "fs", "kd", "bu"]
    model, _ = load_model("mnist-cnn")
    with pytest.raises(ToolkitError, match="needs the fs detector"):
        build_defenses(["fs"], model)


def test_bundled_detectors_in_a_sweep_are_aimed_at_by_full_attacks(tmp_path):
    """The bundled MNIST detectors judge a sweep's examples; pgd-full aims at them (its
    examples are flagged less often than plain pgd's)."""
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled").subset(slice(0, 60))
    said, rows = [], {}
    for attack in ("pgd", "pgd-full"):
        cfg = SweepConfig(n=6, n_cal=20, kappas=[0.0], batch=6, defenses=["none", "fs", "maha"],
                          attack=attack, max_l2=3.0, transfer_check=False,
                          model_sha256=meta["sha256"],
                          pgd=dict(steps=30, restarts=1, target_classes=0))
        res = run_sweep(cfg, model, data, tmp_path / attack, "cpu", progress=False,
                        log=said.append)
        rows[attack] = {r["defense"]: r for r in res["rows"]}
    flagged = {a: rows[a]["fs"]["detection_rate:fs"] + rows[a]["maha"]["detection_rate:maha"]
               for a in rows}
    assert flagged["pgd-full"] < flagged["pgd"], flagged
    assert any("fs" in s and "maha" in s and "aims at" in s for s in said), said


def test_distillation_masks_the_cross_entropy_and_falls_to_cw():
    """The bundled distilled model (T = 100): its softmax is saturated, so PGD on the
    cross-entropy barely moves it (Papernot et al.'s robustness), while C&W on the logits
    margin fools every image (Carlini & Wagner 2017)."""
    from adaptive.attacks.cw import CarliniWagnerL2
    from adaptive.core.attacks.pgd import pgd

    data = load_dataset("mnist-bundled").subset(slice(0, 10))
    x, y = data.x(), data.labels
    distilled, meta = load_model("mnist-cnn-distilled")
    assert meta["training"]["config"]["temperature"] == 100.0
    assert meta["training"]["config"]["distill_from"]["sha256"]
    plain, _ = load_model("mnist-cnn")
    fooled = {}
    for name, model in (("plain", plain), ("distilled", distilled)):
        adv = pgd(model, x, y, eps=0.1, norm="linf", steps=20, step_size=0.025,
                  generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            fooled[name] = int((model(adv).argmax(1) != y).sum())
    assert fooled["distilled"] < fooled["plain"], fooled
    r = CarliniWagnerL2(kappa=0, steps=100, binary_search_steps=3, lr=0.05,
                        initial_const=0.1).run(distilled, x, y)
    assert r.success.all() and float(r.l2.mean()) < 3.0


def test_safetynet_is_sklearns_rbf_svm_on_relu_codes(tmp_path):
    from sklearn.svm import SVC

    from defenses.safetynet import SafetyNetDetector

    model, x, _ = _data(8, 400)
    # "adversarial" stand-ins: other images, brighter (the SVM only needs two classes of codes)
    adv = (x[200:300] * 0.5 + 0.5).clamp(0, 1)
    det = SafetyNetDetector(model).fit(x[:100], adv, x[300:], fpr=0.1)
    with torch.no_grad():
        codes = lambda v: (model.penultimate(v) > 0).double().numpy()  # noqa: E731
    svm = SVC(kernel="rbf", gamma="scale", C=1.0).fit(
        np.r_[codes(x[:100]), codes(adv)], np.r_[np.zeros(100), np.ones(100)])
    assert np.allclose(det.score(x[300:]).double().numpy(),
                       svm.decision_function(codes(x[300:])), atol=1e-4)
    assert abs(float(det.detect(x[300:]).float().mean()) - 0.1) <= 0.011
    xg = x[:4].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(det.relative_score(xg).sum(), xg)
    assert g.abs().sum() > 0  # the smoothed codes carry a gradient; the step codes none
    assert torch.allclose(det.relative_score(x[300:]).detach(),
                          1 + det.score(x[300:]) - det.threshold, atol=1e-5)
    path = tmp_path / "sn.json"
    save_detector(det, path, {})
    again = load_detector("safetynet", model, "tiny", path=path)
    assert torch.allclose(again.score(x), det.score(x), atol=1e-5)


def test_randomized_magnet_draws_a_reformer_per_input_and_eot_averages_it(tmp_path):
    """rmagnet: MagNet's detectors and a reformer drawn per input from its autoencoders
    (random per call, seeded by torch's generator); a sweep on it with EOT runs and judges."""
    from defenses.magnet.defense import MagNet

    model, meta = load_model("mnist-cnn")
    magnet = MagNet.load("mnist", model)
    data = load_dataset("mnist-bundled").subset(slice(0, 60))
    x = data.x()[:16]
    rnd = build_defenses(["rmagnet"], model, magnet=magnet)["rmagnet"]
    assert set(rnd.detectors) == {f"magnet:{d.name}" for d in magnet.detectors}
    reformed = torch.stack([ae(x) for ae in magnet.autoencoders.values()])
    torch.manual_seed(0)
    with torch.no_grad():
        out = rnd.classifier.reform(x)
    # every input reformed by one of the pool, and not all by the same one
    which = [int(((reformed[:, i] - out[i]).flatten(1).abs().amax(1) == 0).nonzero()[0])
             for i in range(len(x))]
    assert len(set(which)) == 2
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.equal(rnd.classifier.reform(x), out)  # seeded: the same draws
    assert is_composition("a2d+rmagnet") and not is_composition("magnet+rmagnet")
    cfg = SweepConfig(n=4, n_cal=20, kappas=[0.0], batch=4, defenses=["none", "rmagnet"],
                      attack="pgd-full", max_l2=3.0, transfer_check=False,
                      model_sha256=meta["sha256"],
                      pgd=dict(steps=10, restarts=1, target_classes=0, eot=3))
    said = []
    res = run_sweep(cfg, model, data, tmp_path / "r", "cpu", magnet=magnet, progress=False,
                    log=said.append)
    row = next(r for r in res["rows"] if r["defense"] == "rmagnet")
    assert row["n"] == 4 and "detection_rate:magnet:I_l2" in row
    flags = res["diagnostics"]["model_flags"]["rmagnet"]  # AutoAttack's flag: random outputs
    assert any(v["fired"] for k, v in flags.items() if "random" in k), flags
