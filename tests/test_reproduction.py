"""Slower reproduction checks of the docs' headline numbers at reduced scale
(``python -m pytest -m slow``; CI runs them when time allows)."""

import json

import pytest

from adaptive.cli.main import main

pytestmark = pytest.mark.slow


def test_default_sweep_reproduces_the_figure_7a_shape(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--n", "30", "--n-cal", "100", "--kappa", "0,20", "--no-progress",
                 "--out", str(out)]) == 0
    rows = {(r["kappa"], r["defense"]): r
            for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows[(0.0, "none")]["attack_success_rate"] >= 0.95
    assert rows[(20.0, "none")]["mean_l2"] > rows[(0.0, "none")]["mean_l2"]
    assert rows[(0.0, "a2d")]["detection_rate:a2d"] >= 0.9
    assert rows[(20.0, "magnet")]["detection_rate:magnet:II_l1"] >= \
        rows[(0.0, "magnet")]["detection_rate:magnet:II_l1"]


def test_a2d_bim_d_auroc(tmp_path, capsys):
    out = tmp_path / "a2d"
    assert main(["a2d", "evaluate", "--n", "60", "--n-cal", "100", "--engines", "bim_d",
                 "--attacks", "fgsm,bim,deepfool,cw", "--knn-k", "20", "--no-progress",
                 "--out", str(out)]) == 0
    result = json.loads((out / "a2d_eval.json").read_text())
    for attack, auroc in result["auroc"]["bim_d"].items():
        assert auroc >= 0.98, attack
    assert result["zscore"]["bim_d"]["detection_rate"]["cw"] >= 0.95
