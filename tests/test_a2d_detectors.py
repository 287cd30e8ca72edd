import numpy as np
import pytest
import torch

from adaptive.core.errors import ToolkitError
from defenses.a2d.knn import KNNDetector
from defenses.a2d.zscore import DEFAULT_H, ZScoreDetector, ZScoreEnsemble

rng = np.random.default_rng(0)
BENIGN_NORMAL = np.round(rng.normal(300, 40, 1000))
BENIGN_SKEWED = np.round(rng.lognormal(5, 0.6, 1000))  # rejected by the normality test
ADVERSARIAL = rng.integers(0, 5, 300).astype(float)


def test_normal_costs_are_used_as_they_are():
    det = ZScoreDetector().fit(BENIGN_NORMAL)
    assert det.boxcox_lambda is None and det.normality_p >= 0.05
    assert det.mean == pytest.approx(BENIGN_NORMAL.mean())
    # h = -1.28 flags about 10% of benign inputs, and every cheap adversarial one.
    assert 0.07 < det.predict(BENIGN_NORMAL).mean() < 0.13
    assert det.predict(ADVERSARIAL).all()


def test_skewed_costs_get_box_cox_and_zero_costs_work():
    det = ZScoreDetector().fit(np.r_[BENIGN_SKEWED, 0.0])
    assert det.boxcox_lambda is not None and det.normality_p < 0.05
    fpr = det.predict(BENIGN_SKEWED).mean()
    assert 0.07 < fpr < 0.13  # without Box-Cox the skew would distort this
    assert np.isfinite(det.zscores([0, 1, 2])).all()
    assert det.predict([0]).all()


@pytest.mark.parametrize("benign", [BENIGN_NORMAL, BENIGN_SKEWED])
def test_cost_threshold_separates_decisions_exactly(benign):
    det = ZScoreDetector().fit(benign)
    c = det.cost_threshold()
    assert det.predict([c - 1])[0] and not det.predict([c])[0]
    costs = np.arange(0, 2000)
    assert np.array_equal(det.predict(costs), costs < c)
    # Detection mode: capping costs at the threshold gives the same decisions.
    assert np.array_equal(det.predict(np.minimum(costs, c)), det.predict(costs))


def test_h_controls_the_false_positive_rate():
    fprs = [ZScoreDetector(h).fit(BENIGN_NORMAL).predict(BENIGN_NORMAL).mean()
            for h in (-1.0, DEFAULT_H, -1.644854, -2.0)]
    assert fprs == sorted(fprs, reverse=True)


@pytest.mark.parametrize("costs, message", [
    ([], "empty"), ([1.0, np.nan, 3.0, 4.0], "NaN"), ([5, 5, 5, 5, 5], "all 5 benign costs"),
    ([[1, 2], [3, 4]], "1-D"), ([1, -2, 3], ">= 0"), ([1, 2], "at least 3"),
])
def test_bad_calibration_costs(costs, message):
    with pytest.raises(ToolkitError, match=message):
        ZScoreDetector().fit(costs)


def test_unfitted_detector():
    with pytest.raises(ToolkitError, match="not calibrated"):
        ZScoreDetector().predict([1, 2])


def test_zscore_round_trip(tmp_path):
    det = ZScoreDetector(-1.5).fit(torch.tensor(BENIGN_SKEWED))  # tensors accepted
    det.save(tmp_path / "z.json")
    back = ZScoreDetector.load(tmp_path / "z.json")
    costs = np.arange(0, 1500)
    assert np.array_equal(back.zscores(costs), det.zscores(costs))
    assert back.cost_threshold() == det.cost_threshold()
    (tmp_path / "bad.json").write_text('{"type": "knn"}')
    with pytest.raises(ToolkitError, match="not a saved Z-score"):
        ZScoreDetector.load(tmp_path / "bad.json")
    with pytest.raises(ToolkitError, match="no saved detector"):
        ZScoreDetector.load(tmp_path / "absent.json")


def test_ensemble_needs_k_benign_votes(tmp_path):
    benign = {"a": BENIGN_NORMAL, "b": BENIGN_SKEWED, "c": BENIGN_NORMAL[::-1].copy()}
    ens = ZScoreEnsemble(["a", "b", "c"], k=2).fit(benign)
    cheap = {"a": [0.0], "b": [0.0], "c": [0.0]}
    mixed = {"a": [0.0], "b": [1000.0], "c": [400.0]}  # two benign votes
    one = {"a": [0.0], "b": [0.0], "c": [400.0]}  # one benign vote
    assert ens.predict(cheap)[0] and not ens.predict(mixed)[0] and ens.predict(one)[0]
    assert ens.votes(mixed)[0] == 2
    # The score crosses -h exactly where the decision flips.
    for costs in (cheap, mixed, one):
        assert (ens.score(costs)[0] > -DEFAULT_H) == ens.predict(costs)[0]
    ens.save(tmp_path / "e.json")
    back = ZScoreEnsemble.load(tmp_path / "e.json")
    assert np.array_equal(back.predict(one), ens.predict(one)) and back.k == 2
    with pytest.raises(ToolkitError, match="missing"):
        ens.predict({"a": [1.0]})
    with pytest.raises(ToolkitError, match="k must be"):
        ZScoreEnsemble(["a", "b"], k=3)


def test_knn_single_and_ensemble(tmp_path):
    knn = KNNDetector(k=25).fit(BENIGN_NORMAL[:200], ADVERSARIAL[:200])
    assert not knn.predict(BENIGN_NORMAL[200:400]).mean() > 0.05
    assert knn.predict(ADVERSARIAL[200:]).mean() > 0.95
    two = KNNDetector(k=25).fit(np.c_[BENIGN_NORMAL[:200], BENIGN_SKEWED[:200]],
                                np.c_[ADVERSARIAL[:200], ADVERSARIAL[:200]])
    assert two.predict([[0, 0]])[0] and not two.predict([[300, 150]])[0]
    two.save(tmp_path / "k.json")
    back = KNNDetector.load(tmp_path / "k.json")
    probe = np.c_[BENIGN_NORMAL[500:600], ADVERSARIAL[:100]]
    assert np.array_equal(back.score(probe), two.score(probe))
    with pytest.raises(ToolkitError, match="2 engines"):
        two.score([1.0, 2.0])
    with pytest.raises(ToolkitError, match="needs at least"):
        KNNDetector(k=100).fit([1, 2], [3])
    with pytest.raises(ToolkitError, match="NaN"):
        KNNDetector(k=2).fit([1, np.nan, 3], [3])


def test_knn_standardised_costs_let_every_engine_count(tmp_path):
    # Engine 1 counts in the thousands and says nothing; engine 2 counts tens and separates.
    r = np.random.default_rng(1)
    benign = np.c_[r.normal(5000, 1000, 400), r.normal(50, 5, 400)]
    adversarial = np.c_[r.normal(5000, 1000, 400), r.uniform(0, 4, 400)]
    raw = KNNDetector(k=50).fit(benign[:200], adversarial[:200])
    scaled = KNNDetector(k=50, scale="standard").fit(benign[:200], adversarial[:200])
    def accuracy(det):
        return (1 - det.predict(benign[200:]).mean() + det.predict(adversarial[200:]).mean()) / 2
    assert accuracy(raw) < 0.7 and accuracy(scaled) > 0.99
    scaled.save(tmp_path / "s.json")
    back = KNNDetector.load(tmp_path / "s.json")
    assert back.scale == "standard"
    assert np.array_equal(back.score(adversarial[200:]), scaled.score(adversarial[200:]))
    old = raw.to_dict()
    del old["scale"]  # saved before scaling existed: raw costs
    assert KNNDetector.from_dict(old).scale == "none"
    with pytest.raises(ToolkitError, match="scaling"):
        KNNDetector(k=5, scale="minmax")


def test_knn_tie_is_benign():
    knn = KNNDetector(k=2).fit([5.0], [5.0])
    assert knn.score([5.0])[0] == 0.5 and not knn.predict([5.0])[0]
