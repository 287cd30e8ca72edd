import pytest
import torch

from adaptive.core.errors import ToolkitError
from defenses.a2d.detector import A2DDetector
from defenses.a2d.presets import ENGINE_NAMES, build_engine, make_engine
from tests.test_a2d_engines import images, tiny_model


def engines():
    return {"bim_d": build_engine("bim_d", eps=0.3, step=0.005, max_iter=80),
            "bim2_d": build_engine("bim2_d", eps=1.0, step=0.02, max_iter=80),
            "jsma_d": build_engine("jsma_d", theta=0.1, max_per_pixel=3, max_iter=40)}


def test_detection_mode_gives_the_same_decisions_with_fewer_queries():
    model = tiny_model()
    det = A2DDetector(model, engines(), k=2).fit(images(40, seed=2))
    x = torch.cat([images(30, seed=3), images(30, seed=4) * 0.5])
    full = det.costs(x, detection_mode=False)
    fast = det.costs(x, detection_mode=True)
    assert torch.equal(det.decide(full), det.decide(fast))
    assert torch.equal(det.detect(x), det.decide(full))
    q_full = sum(int(c.queries.sum()) for c in full.values())
    q_fast = sum(int(c.queries.sum()) for c in fast.values())
    assert q_fast < q_full
    # Per engine as well: every single detector's decision is unchanged.
    for name, zd in det.zscore.detectors.items():
        assert (zd.predict(full[name].costs) == zd.predict(fast[name].costs)).all()
    # Scores agree with decisions.
    assert torch.equal(det.score(x) > 1.281552, det.detect(x))


def test_single_engine_and_round_trip(tmp_path):
    model = tiny_model()
    det = A2DDetector(model, {"bim_d": engines()["bim_d"]}).fit(images(40, seed=2))
    assert det.k == 1
    det.save(tmp_path / "a2d.json")
    back = A2DDetector.load(tmp_path / "a2d.json", model)
    x = images(20, seed=5)
    assert torch.equal(back.detect(x), det.detect(x))
    assert back.engines["bim_d"].config() == det.engines["bim_d"].config()


def test_uncalibrated_and_bad_arguments(tmp_path):
    model = tiny_model()
    with pytest.raises(ToolkitError, match="not calibrated"):
        A2DDetector(model, engines()).detect(images(3))
    with pytest.raises(ToolkitError, match="at least one"):
        A2DDetector(model, {})
    with pytest.raises(ToolkitError, match="unknown A2D engine"):
        make_engine("fgsm_d")
    with pytest.raises(ToolkitError, match="bad settings"):
        make_engine("bim_d", theta=3)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ToolkitError, match="not a saved A2D detector"):
        A2DDetector.load(tmp_path / "x.json", model)


def test_presets_exist_for_both_data_sets():
    for dataset in ("mnist", "cifar10", "cifar10-genuine", "mnist-bundled"):
        for name in ENGINE_NAMES:
            assert make_engine(name, dataset).name == name
    assert make_engine("bim2_d", "mnist").eps == pytest.approx(8.4)
