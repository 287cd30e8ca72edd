import json

import pytest
import torch

from adaptive.core.errors import ToolkitError
from adaptive.core.store import RunStore


def test_resume_needs_the_same_configuration(tmp_path):
    store = RunStore(tmp_path / "run", {"n": 4, "kappa": 1}, resume=False)
    store.write_config({"command": "x"})
    store.put("part0", {"x": torch.ones(2)})
    store.close()  # the folder is locked while a run holds it
    with pytest.raises(ToolkitError, match="already holds a run"):
        RunStore(tmp_path / "run", {"n": 4, "kappa": 1}, resume=False)
    with pytest.raises(ToolkitError, match="differs in: kappa"):
        RunStore(tmp_path / "run", {"n": 4, "kappa": 2}, resume=True)
    again = RunStore(tmp_path / "run", {"n": 4, "kappa": 1}, resume=True)
    assert again.get("part0")["x"].tolist() == [1.0, 1.0]


def test_a_run_from_before_a_new_setting_resumes_at_its_default(tmp_path):
    """A run made before a setting existed behaved as its default: it may be resumed with the
    default, not with another value."""
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {"n": 4}}))
    defaults = {"n": 100, "pairs": False}
    RunStore(out, {"n": 4, "pairs": False}, resume=True, defaults=defaults)
    with pytest.raises(ToolkitError, match="differs in: pairs"):
        RunStore(out, {"n": 4, "pairs": True}, resume=True, defaults=defaults)
    with pytest.raises(ToolkitError, match="differs in: pairs"):
        RunStore(out, {"n": 4, "pairs": False}, resume=True)  # without defaults: refused
