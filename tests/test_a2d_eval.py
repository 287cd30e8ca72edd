import json

import pytest

import adaptive.evaluations.a2d as a2d_eval
from adaptive.cli.main import main
from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.evaluations.a2d import A2DEvalConfig, run_a2d_evaluation, split_images

FAST_ENGINES = {"bim_d": dict(eps=0.3, step=0.006, max_iter=60),
                "jsma_d": dict(theta=0.1, max_per_pixel=7, max_iter=60),
                "dba_d": dict(threshold=0.06, max_iter=60, directions=2)}
FAST_ATTACKS = {"fgsm": dict(eps=0.3), "bim": dict(eps=0.3, step=0.01, max_iter=100),
                "cw": dict(steps=40, binary_search_steps=4, stepsize=0.05, initial_const=0.1)}


def _cfg(**kw):
    args = dict(dataset="mnist-bundled", model="mnist-cnn", model_sha256="x", n=8, n_cal=8,
                engines=list(FAST_ENGINES), attacks=list(FAST_ATTACKS),
                engine_settings=dict(FAST_ENGINES), attack_settings=dict(FAST_ATTACKS),
                knn_k=5, chunk=5)
    args.update(kw)
    return A2DEvalConfig(**args)


@pytest.fixture(scope="module")
def mnist():
    model, _ = load_model("mnist-cnn")
    return model, load_dataset("mnist-bundled").subset(slice(0, 60))


def test_calibration_and_evaluation_images_are_disjoint(mnist):
    model, data = mnist
    cal, ev = split_images(model, data, 20, 20, 0, "cpu")
    assert len(set(cal.tolist()) & set(ev.tolist())) == 0 and len(cal) == len(ev) == 20
    pred = model(data.x()).argmax(1)
    assert (pred[cal] == data.labels[cal]).all() and (pred[ev] == data.labels[ev]).all()
    with pytest.raises(ToolkitError, match="correctly classified"):
        split_images(model, data, 50, 50, 0, "cpu")


def test_evaluation_writes_every_result_and_resumes_to_the_same(mnist, tmp_path, monkeypatch):
    model, data = mnist
    quiet = dict(progress=False, log=lambda s: None)
    full = run_a2d_evaluation(_cfg(), model, data, tmp_path / "full", "cpu", **quiet)
    for engine in FAST_ENGINES:
        assert set(full["auroc"][engine]) == set(FAST_ATTACKS)
        assert all(0 <= v <= 1 for v in full["auroc"][engine].values())
        assert set(full["zscore"][engine]["detection_rate"]) == set(FAST_ATTACKS)
    assert set(full["knn"]) == set(FAST_ENGINES) | {"END"}
    assert full["zscore_ensemble"]["k"] == 2
    saved = json.loads((tmp_path / "full" / "a2d_eval.json").read_text())
    assert saved["auroc"] == full["auroc"]
    # BIM_d separates C&W examples from benign images even on 8 + 8 images.
    assert full["auroc"]["bim_d"]["cw"] >= 0.9

    # Kill the run during the costs, then resume: the same results as the uninterrupted run.
    calls = {"n": 0}
    real = a2d_eval._cost_unit

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(a2d_eval, "_cost_unit", dying)
    with pytest.raises(KeyboardInterrupt):
        run_a2d_evaluation(_cfg(), model, data, tmp_path / "cut", "cpu", **quiet)
    monkeypatch.setattr(a2d_eval, "_cost_unit", real)
    assert not (tmp_path / "cut" / "a2d_eval.json").exists()
    resumed = run_a2d_evaluation(_cfg(), model, data, tmp_path / "cut", "cpu", resume=True,
                                 **quiet)
    for key in ("auroc", "zscore", "zscore_ensemble", "knn", "costs", "attacks"):
        assert resumed[key] == full[key], key

    with pytest.raises(ToolkitError, match="--resume"):
        run_a2d_evaluation(_cfg(), model, data, tmp_path / "full", "cpu", **quiet)
    with pytest.raises(ToolkitError, match="different configuration"):
        run_a2d_evaluation(_cfg(h=-2.0), model, data, tmp_path / "full", "cpu", resume=True,
                           **quiet)


@pytest.mark.parametrize("argv, message", [
    (["--engines", "bim_d,foo"], "unknown engine foo"),
    (["--attacks", "pgd"], "unknown attack pgd"),
    (["--dataset", "cifar10"], "trained on mnist"),
    (["--n", "1500", "--n-cal", "1500"], "correctly classified"),
])
def test_cli_bad_input(capsys, tmp_path, argv, message):
    code = main(["a2d", "evaluate", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    assert code == 2 and message in capsys.readouterr().err
