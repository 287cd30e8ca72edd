"""Randomised MagNet's pool (``adaptive train magnet-pool``): the diversity regulariser, a tiny
pool trained, saved and loaded, rmagnet drawing its reformer from it, the run's identity
holding its hashes, and clear errors for what is not a pool."""

import json

import pytest
import torch

from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.defense.compositions import build_defenses
from adaptive.sweep import SweepConfig
from adaptive.sweep.run import run_identity
from defenses.magnet.defense import MagNet, bundled_pool, load_pool
from defenses.magnet.training import PoolTrainConfig, pool_loss, train_pool


def test_pool_loss_rewards_members_that_differ():
    clean = torch.rand(4, 1, 5, 5)
    same = clean.unsqueeze(0).repeat(3, 1, 1, 1, 1) + 0.1
    loss, recon, spread = pool_loss(same, clean, diversity=0.5)
    assert float(spread) < 1e-12 and torch.isclose(loss, recon) and float(recon) > 0
    apart = same.clone()
    apart[0] += 0.1
    apart[1] -= 0.1  # the same mean error per member, now spread around the pool's mean
    loss2, _, spread2 = pool_loss(apart, clean, diversity=0.5)
    assert float(spread2) > 0 and float(loss2) < float(pool_loss(apart, clean, 0.0)[0])


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool")
    x = load_dataset("mnist-bundled").x()[:400]
    cfg = PoolTrainConfig(dataset="mnist", arch="magnet-mnist-I", noise=0.1, k=3,
                          diversity=0.1, train_n=200, epochs=1, batch_size=100, val_n=100)
    spec = train_pool(cfg, x, out, "cpu", command="test", progress=False,
                      log=lambda *a: None)
    return out, spec


def test_a_trained_pool_loads_and_rmagnet_draws_from_it(tiny_pool):
    out, spec = tiny_pool
    assert spec["type"] == "magnet-pool" and len(spec["autoencoders"]) == 3
    aes, sha = load_pool(str(out / "pool.json"))
    assert len(aes) == 3 and len(set(sha.values())) == 3
    model, meta = load_model("mnist-cnn")
    magnet = MagNet.load("mnist", model).attach_pool(str(out / "pool.json"))
    rnd = build_defenses(["rmagnet"], model, magnet=magnet)["rmagnet"]
    assert [id(a) for a in rnd.classifier.aes] == [id(a) for a in magnet.pool]
    assert set(rnd.detectors) == {f"magnet:{d.name}" for d in magnet.detectors}
    # MagNet itself keeps its own reformer; the run's identity holds the pool's hashes
    assert magnet.defended_classifier().ae is magnet.autoencoders[magnet.reformer]
    data = load_dataset("mnist-bundled")
    cfg = SweepConfig(model_sha256=meta["sha256"], defenses=["none", "rmagnet"],
                      magnet_pool=str(out / "pool.json"))
    identity = run_identity(cfg, data, magnet)
    assert {identity[f"model:magnet-pool:P{i}"] for i in range(3)} == set(sha.values())
    x = data.x()[:30]
    torch.manual_seed(0)
    with torch.no_grad():
        out_x = rnd.classifier.reform(x)
        each = torch.stack([ae(x) for ae in aes])
    which = {int(((each[:, i] - out_x[i]).flatten(1).abs().amax(1) == 0).nonzero()[0])
             for i in range(len(x))}
    assert which == {0, 1, 2}  # every member answers for some input


def test_what_is_not_a_pool_is_refused(tmp_path, tiny_pool):
    with pytest.raises(ToolkitError, match="no MagNet pool"):
        load_pool(str(tmp_path / "missing.json"))
    magnet_spec = tmp_path / "m.json"
    magnet_spec.write_text(json.dumps({"type": "magnet", "autoencoders": {}}))
    with pytest.raises(ToolkitError, match="not a MagNet pool"):
        load_pool(str(magnet_spec))
    out, spec = tiny_pool
    one = json.loads((out / "pool.json").read_text())
    one["autoencoders"] = {"P0": str(out / "pool-0" / "model")}
    (tmp_path / "one.json").write_text(json.dumps(one))
    with pytest.raises(ToolkitError, match="2 or more"):
        load_pool(str(tmp_path / "one.json"))
    assert bundled_pool(None) is None and bundled_pool("no-such-magnet") is None
    with pytest.raises(ToolkitError, match="k >= 2"):
        train_pool(PoolTrainConfig(dataset="mnist", arch="magnet-mnist-I", noise=0.1, k=1),
                   torch.zeros(10, 1, 28, 28), tmp_path / "p", "cpu")


def test_the_sweep_draws_rmagnet_from_the_bundled_pool_by_default(tmp_path):
    from adaptive.cli.main import main

    base = ["sweep", "--n", "2", "--n-cal", "10", "--kappa", "0", "--attack", "pgd-full",
            "--pgd-steps", "3", "--pgd-restarts", "1", "--pgd-targets", "0", "--no-progress"]
    assert main(base + ["--defenses", "rmagnet", "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["config"]["magnet_pool"] == bundled_pool("mnist") == "mnist-pool"
    assert sum(k.startswith("model:magnet-pool:") for k in saved["identity"]) == 8
    assert main(base + ["--defenses", "magnet", "--out", str(tmp_path / "m")]) == 0
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["config"]["magnet_pool"] is None
    assert not any(k.startswith("model:magnet-pool:") for k in saved["identity"])
    assert main(base + ["--defenses", "rmagnet", "--magnet-pool", str(tmp_path / "no.json"),
                        "--out", str(tmp_path / "x")]) == 2
