import math

import numpy as np
import pytest
import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.evaluations.clever import clever, fit_lipschitz, fit_lipschitz_batch


class Linear(nn.Module):
    """A linear classifier on 1x4x4 images: its minimal adversarial distances are known."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.input_shape = (1, 4, 4)
        self.lin = nn.Linear(16, 4)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(4, 16, generator=g))
            self.lin.bias.copy_(torch.randn(4, generator=g) * 0.5)

    def forward(self, x):
        return self.lin(x.flatten(1))


@torch.no_grad()
def exact_distance(model, x, norm):
    """min_j (Z_c - Z_j) / ||w_c - w_j||_dual for a linear model (no box constraints)."""
    z = model(x)[0]
    c = int(z.argmax())
    w = model.lin.weight
    dists = []
    for j in range(len(z)):
        if j != c:
            diff = w[c] - w[j]
            dual = diff.norm() if norm == "l2" else diff.abs().sum()
            dists.append(float((z[c] - z[j]) / dual))
    return min(dists)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_clever_matches_the_exact_distance_of_a_linear_model(norm):
    model = Linear()
    x = torch.full((3, 1, 4, 4), 0.5)
    x[1] += 0.1
    x[2] -= 0.05
    scores = clever(model, x, norm=norm, radius=2.0, n_batches=20, n_samples=32)
    for i, s in enumerate(scores):
        exact = exact_distance(model, x[i:i + 1], norm)
        assert exact < 2.0
        assert abs(s.score - exact) <= 0.05 * exact, (s.score, exact)
        assert s.fit == "constant" and not s.flags


def test_weibull_fit_recovers_a_known_location():
    rng = np.random.default_rng(0)
    sample = 3.0 - rng.weibull(2.0, size=(400, 64)) * 0.5  # maxima of batches below 3.0
    lip, how, params = fit_lipschitz(sample.max(1))
    assert how in ("weibull", "sample-max")
    assert lip >= sample.max() - 1e-9 and abs(lip - 3.0) < 0.05


def test_degenerate_fits_fall_back_to_the_sample_maximum():
    rng = np.random.default_rng(1)
    maxima = 10 + rng.gumbel(0, 0.3, 50)  # no finite upper end: the fit tends to degenerate
    lip, how, params = fit_lipschitz(maxima)
    assert lip <= maxima.max() + 5 * (maxima.max() - maxima.min())
    if how == "sample-max":
        assert lip == maxima.max()


def test_batched_fits_agree_with_scipy_row_by_row():
    from scipy import stats

    rng = np.random.default_rng(2)
    rows = [(3.0 - rng.weibull(shape, size=(60, 64)) * 0.5).max(1)  # maxima below 3.0
            for shape in (0.7, 1.5, 2.0, 3.0, 4.0)]
    rows += [10 + rng.gumbel(0, 0.3, 60),  # no finite upper end
             np.full(60, 2.5),  # constant: a locally linear model
             np.r_[np.full(59, 1.0), np.nan]]  # a NaN gradient norm
    lip, how, params = fit_lipschitz_batch(np.array(rows))

    def loglik(row, p):
        return stats.weibull_max.logpdf(row, p["c"], p["loc"], p["scale"]).sum()

    for t, row in enumerate(rows):
        ref_lip, ref_how, ref_params = fit_lipschitz(row)
        if t < 5:  # Weibull data: at least scipy's likelihood, the true end point
            assert how[t] == "weibull" and abs(lip[t] - 3.0) < 0.05, (t, lip[t])
            if ref_how == "weibull":
                assert loglik(row, params[t]) >= loglik(row, ref_params) - 1e-3
                assert lip[t] == pytest.approx(ref_lip, rel=0.05)
        else:
            assert how[t] == ref_how and (lip[t] == ref_lip or np.isnan(ref_lip)), t
    with pytest.raises(ToolkitError, match="rows, n >= 2"):
        fit_lipschitz_batch(np.ones(5))


def test_benign_scores_exceed_adversarial_on_a_small_cnn():
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from defenses.a2d.bim import BIMCost

    model, _ = load_model("mnist-cnn")
    x = load_dataset("mnist-bundled").x()[:4]
    adv = BIMCost(0.3, 0.01, 100).run(model, x).adversarial  # stops at the first flip
    kw = dict(norm="l2", radius=2.0, n_batches=8, n_samples=16)
    benign = [s.score for s in clever(model, x, **kw)]
    adversarial = [s.score for s in clever(model, adv, **kw)]
    assert np.median(benign) > 10 * np.median(adversarial)


def test_guards_and_bad_input():
    model = Linear()
    x = torch.full((1, 1, 4, 4), 0.5)
    s = clever(model, x, radius=2.0, n_batches=4, n_samples=8,
               labels=torch.tensor([(int(model(x).argmax()) + 1) % 4]))[0]
    assert "misclassified" in s.flags
    assert math.isfinite(s.flip_distance_bound) or s.flip_distance_bound == math.inf
    model.train()
    clever(model, x, radius=2.0, n_batches=2, n_samples=4)
    assert model.training  # the caller's mode is restored
    with pytest.raises(ToolkitError, match="norm"):
        clever(model, x, norm="l1")
    with pytest.raises(ToolkitError, match="target"):
        clever(model, x, target="top3")
    with pytest.raises(ToolkitError, match="NaN"):
        clever(model, torch.full((1, 1, 4, 4), float("nan")))


def test_clever_command_writes_scores_and_diagnostics(tmp_path, capsys):
    import json

    from adaptive.cli.main import main

    assert main(["clever", "--n", "2", "--batches", "3", "--samples", "8", "--target", "top2",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "clever.json").read_text())
    kinds = [im["kind"] for im in result["images"]]
    assert kinds.count("benign") == 2 and "cw" in kinds
    for im in result["images"]:
        assert {"score", "fit", "weibull", "lipschitz", "flags", "flip_distance_bound"} <= set(im)
    assert result["settings"]["n_batches"] == 3 and "ratio_benign_to_cw" in result["summary"]


@pytest.mark.parametrize("norm,target", [("l2", "untargeted"), ("linf", "top2"),
                                         ("l2", "llc")])
def test_batched_clever_equals_the_per_image_per_target_reference(norm, target):
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from tests.clever_reference import clever_reference

    model, _ = load_model("mnist-cnn")
    x = load_dataset("mnist-bundled").x()[:3]
    radius = 2.0 if norm == "l2" else 0.1
    kw = dict(norm=norm, target=target, radius=radius, n_batches=12, n_samples=16, seed=4)
    # chunk_points 32: two images per forward pass, so chunking is exercised too. The
    # reference fits with scipy row by row; the batched fit is checked against scipy above.
    batched = clever(model, x, chunk_points=32, fit="scipy", **kw)
    for i, s in enumerate(batched):
        score, j = clever_reference(model, x[i], i, **kw)
        assert s.target == j
        assert s.score == pytest.approx(score, rel=1e-4), (i, s.score, score)
    alone = clever(model, x[2:3], **kw)[0]  # image 2 alone draws other points (index 0) ...
    # ... but chunking changes nothing
    again = clever(model, x, chunk_points=4096, fit="scipy", **kw)[2]
    assert again.score == pytest.approx(batched[2].score, rel=1e-5) and alone.score > 0
    # A sample batch split over several passes (chunks of 12 and 4 of 16 samples) is the same.
    split = clever(model, x, chunk_points=12, fit="scipy", **kw)
    for a, b in zip(split, batched):
        assert a.target == b.target and a.score == pytest.approx(b.score, rel=1e-5)
        assert a.flip_distance_bound == b.flip_distance_bound


def test_all_target_kinds_at_once_equal_each_kind_alone():
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.evaluations.clever import TARGETS, clever_targets

    model, _ = load_model("mnist-cnn")
    x = load_dataset("mnist-bundled").x()[:2]
    kw = dict(norm="l2", radius=2.0, n_batches=6, n_samples=8, seed=1)
    together = clever_targets(model, x, targets=TARGETS, **kw)
    assert list(together) == list(TARGETS)
    for target in TARGETS:
        alone = clever(model, x, target=target, **kw)
        for a, b in zip(alone, together[target]):
            assert a.target == b.target and a.score == pytest.approx(b.score, rel=1e-6)
    # the untargeted score is the smallest over all classes, so never above the others
    for i in range(2):
        assert together["untargeted"][i].score <= min(together[t][i].score for t in TARGETS)
    with pytest.raises(ToolkitError, match="target"):
        clever_targets(model, x, targets=("untargeted", "top3"), **kw)


def test_clever_command_scores_all_targets_and_attack_costs(tmp_path):
    import json

    from adaptive.cli.main import main

    assert main(["clever", "--n", "2", "--batches", "3", "--samples", "8", "--target", "all",
                 "--compare", "fgsm,bim", "--cost", "bim_d", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "clever.json").read_text())
    kinds = {im["kind"] for im in result["images"]}
    assert kinds == {"benign", "fgsm", "bim"}
    for im in result["images"]:
        assert set(im["targets"]) == {"untargeted", "top2", "top5", "llc"}
        assert im["score"] == im["targets"]["untargeted"]["score"]
        assert im["cost"]["engine"] == "bim_d" and im["cost"]["seconds"] > 0
        assert (im["l2"] > 0) == (im["kind"] != "benign")
    assert "median_bim_llc" in result["summary"]
    # argparse: unknown attack name, one error line and exit code 2
    assert main(["clever", "--compare", "pgd", "--out", str(tmp_path)]) == 2
