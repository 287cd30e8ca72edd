import json
import pickle

import pytest
import torch

from adaptive.core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from adaptive.core.errors import ToolkitError
from adaptive.core.models import build_model


def _save(tmp_path, arch="tiny-cnn"):
    model = build_model(arch).eval()
    meta = save_checkpoint(model, tmp_path / "m", architecture=arch, arch_kwargs={},
                           dataset="mnist", accuracy={"clean": 0.5})
    return model, meta


def test_round_trip_gives_identical_outputs(tmp_path):
    model, meta = _save(tmp_path)
    loaded, meta2 = load_checkpoint(tmp_path / "m.json")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert meta2["sha256"] == meta["sha256"] and meta2["accuracy"]["clean"] == 0.5
    # Any of NAME, NAME.pt, NAME.json names the checkpoint.
    for name in ("m", "m.pt"):
        load_checkpoint(tmp_path / name)


def test_hash_mismatch(tmp_path):
    _save(tmp_path)
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    state["net.0.bias"] += 1
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(ToolkitError, match="does not match the sha256"):
        load_checkpoint(tmp_path / "m")


def test_truncated_weights(tmp_path):
    _save(tmp_path)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    meta = json.loads((tmp_path / "m.json").read_text())
    from adaptive.core.checkpoint import sha256_file
    meta["sha256"] = sha256_file(tmp_path / "m.pt")  # even with a matching hash it must fail
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ToolkitError, match="cannot load"):
        load_checkpoint(tmp_path / "m")


def test_missing_checkpoint_and_missing_weights(tmp_path):
    with pytest.raises(ToolkitError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    _save(tmp_path)
    (tmp_path / "m.pt").unlink()
    with pytest.raises(ToolkitError, match="missing"):
        load_checkpoint(tmp_path / "m")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_foreign_checkpoints_are_refused(tmp_path):
    # A bare .pt without our metadata.
    torch.save(build_model("tiny-cnn").state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ToolkitError, match="no metadata file"):
        load_checkpoint(tmp_path / "bare.pt")
    # Someone else's JSON.
    (tmp_path / "other.json").write_text('{"model": "resnet50"}')
    with pytest.raises(ToolkitError, match="not a toolkit checkpoint"):
        read_metadata(tmp_path / "other.json")
    # A pickle with code in it is refused by weights_only loading.
    _save(tmp_path)
    with open(tmp_path / "m.pt", "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["sha256"] = None  # skip the hash so the loader itself is exercised
    (tmp_path / "m.json").write_text(json.dumps(meta))
    from adaptive.core.checkpoint import load_state_dict
    with pytest.raises(ToolkitError, match="tensors-only"):
        load_state_dict(tmp_path / "m.pt", None)


def test_weights_of_another_architecture(tmp_path):
    _save(tmp_path, "tiny-cnn")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["architecture"] = "mnist-cnn"
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ToolkitError, match="does not fit architecture 'mnist-cnn'"):
        load_checkpoint(tmp_path / "m")
