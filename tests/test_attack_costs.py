import json

import pytest
import torch
from torch import nn

from adaptive.cli.main import main
from adaptive.core.errors import ToolkitError
from adaptive.evaluations.attack_costs import COST_ENGINES, per_image_costs


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    model.input_shape = (1, 6, 6)
    return model


def test_per_image_costs_of_every_engine_on_a_tiny_model():
    model, x = tiny_model(), torch.rand(2, 1, 6, 6)
    for engine in COST_ENGINES:
        rows = per_image_costs(engine, model, x, "mnist")
        assert len(rows) == 2
        for r in rows:
            assert r["seconds"] > 0 and r["iterations"] >= 0
        if engine == "fgsm_d":
            assert [r["iterations"] for r in rows] == [1, 1]
    with pytest.raises(ToolkitError, match="unknown cost engine"):
        per_image_costs("lbfgs_d", model, x, "mnist")


def test_costs_command_resumes_and_writes_costs_json(tmp_path, capsys):
    out = tmp_path / "costs"
    args = ["costs", "--n", "2", "--engines", "bim_d,fgsm_d", "--compare", "fgsm",
            "--no-progress", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "costs.json").read_text())
    kinds = {(r["engine"], r["kind"]) for r in result["images"]}
    assert kinds == {(e, k) for e in ("bim_d", "fgsm_d") for k in ("benign", "fgsm")}
    assert result["summary"]["bim_d:benign"]["n"] == 2
    before = (out / "cache" / "cost_bim_d_benign.pt").stat().st_mtime_ns
    assert main(args + ["--resume"]) == 0  # nothing is measured again
    assert (out / "cache" / "cost_bim_d_benign.pt").stat().st_mtime_ns == before
    assert main(args) == 2  # a finished run is not overwritten without --resume
    assert "already holds a run" in capsys.readouterr().err
