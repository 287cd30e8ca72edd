"""The suite of defenses of known fate (defenses.suite): each is probed as what it is, and the
cheap ones fall to the default attack through the plug-in route a researcher would use."""

import pytest
import torch

from adaptive.core.data import load_dataset
from adaptive.core.zoo import load_model
from adaptive.defense.probes import check_surrogate, probe_all
from adaptive.sweep import SweepConfig, run_sweep
from defenses.suite import make_bpda_twins, make_suite, make_trained_suite

QUIET = dict(progress=False, log=lambda s: None)
# the least ASR the default auto must reach on each suite defense in the slow test below
# (measured: 100 % on every one of them, 10 images; one image of slack)
SUITE_FLOORS = {name: 0.9 for name in ("blur", "temperature", "discretised", "random-shift",
                                        "random-neurons", "majority-vote", "knn")}


@pytest.fixture(scope="module")
def mnist(data_root):
    import os

    os.environ.setdefault("ADAPTIVE_DATA", str(data_root))
    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    return model, meta, data, {**make_suite(model, "mnist-bundled", "cpu"),
                               **make_bpda_twins(model, "mnist-bundled", "cpu"),
                               **make_trained_suite(model, "mnist-bundled", "cpu")}


def test_each_suite_defense_is_probed_as_what_it_is(mnist):
    model, _, data, suite = mnist
    x, y = data.x()[:64], data.labels[:64]
    found = probe_all(suite, x, y, log=lambda s: None)
    kinds = {k: (p.random, p.gradient) for k, p in found.items()}
    assert kinds == {"blur": (False, "ok"), "temperature": (False, "ok"),
                     "discretised": (False, "zero"), "discretised-bpda": (False, "zero"),
                     "random-shift": (True, "not_checked"),
                     "random-neurons": (True, "not_checked"),
                     "majority-vote": (False, "zero"), "majority-vote-bpda": (False, "zero"),
                     "knn": (False, "zero"), "knn-bpda": (False, "zero"),
                     # (another network, bundled for MNIST: its own gradient is fine)
                     "ensemble-adversarial": (False, "ok")}
    assert not any(d.surrogate for d in make_suite(model, "mnist-bundled", "cpu").values())
    assert not any(d.surrogate for d in make_trained_suite(model, "mnist", "cpu").values())
    # the declared surrogates pass the fidelity test; every defense still classifies well
    for name in ("discretised-bpda", "majority-vote-bpda", "knn-bpda"):
        assert check_surrogate(suite[name], x) >= 0.99, name
        twin, plain = suite[name].classifier, suite[name.removesuffix("-bpda")].classifier
        with torch.no_grad():
            assert torch.equal(twin(x), plain(x)), name
    for name, d in suite.items():
        with torch.no_grad():
            acc = (d.classifier(x).argmax(1) == y).float().mean().item()
        assert acc >= 0.85, name  # a random shift costs a few images


@pytest.mark.parametrize("name,floor", [("blur", 0.9), ("temperature", 0.9),
                                        ("discretised-bpda", 0.9), ("knn-bpda", 0.9)])
def test_white_box_suite_defenses_fall_to_the_default_attack(mnist, tmp_path, name, floor):
    model, meta, data, suite = mnist
    cfg = SweepConfig(model="mnist-cnn", model_sha256=meta["sha256"], defenses=["none"],
                      kappas=[0.0], n=10, n_cal=10, batch=10, norm="linf", max_linf=0.3,
                      attack="apgd", transfer_check=False)
    res = run_sweep(cfg, model, data, tmp_path / name, "cpu",
                    extra_defenses={name: suite[name]}, **QUIET)
    row = next(r for r in res.rows if r["defense"] == name)
    assert row["attack_success_rate"] >= floor


@pytest.mark.slow
def test_auto_breaks_every_suite_defense_on_cifar10(data_root, tmp_path):
    """The regression test of the suite: the default ``--attack auto`` (no per-defense option)
    on ``cifar-cnn`` at L-inf 8/255, every suite defense in one run. A change that weakens an
    attack on any of them fails here."""
    import os

    os.environ.setdefault("ADAPTIVE_DATA", str(data_root))
    model, meta = load_model("cifar-cnn")
    data = load_dataset("cifar10")
    suite = make_suite(model, "cifar10", "cpu")
    cfg = SweepConfig(model="cifar-cnn", model_sha256=meta["sha256"], dataset="cifar10",
                      defenses=["none"], kappas=[0.0], n=10, n_cal=20, batch=10, norm="linf",
                      max_linf=8 / 255, attack="auto")
    res = run_sweep(cfg, model, data, tmp_path / "suite", "cpu", extra_defenses=suite, **QUIET)
    asr = {r["defense"]: r["attack_success_rate"] for r in res.rows}
    for name, floor in SUITE_FLOORS.items():
        assert asr[name] >= floor, (name, asr[name])
