"""Sweeps on Ray (``--executor ray``): the same records as a serial run, a worker killed in the
middle of a unit loses nothing, a resume runs only the missing units, bad settings are refused.
Every Ray test shares one local instance with 2 CPUs (``ray_local`` in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adaptive.cli.main import main
from adaptive.core.errors import ToolkitError
from adaptive.core.executor import ExecutorSettings, LocalExecutor, make_executor
from adaptive.sweep import run as sweep_run

TINY = ["--n", "4", "--n-cal", "8", "--kappa", "0,10", "--batch", "2", "--cw-steps", "20",
        "--cw-binary-steps", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    """Serial runs on one torch thread, as every Ray unit here (1 CPU each): then the results
    are equal to the last bit (other thread counts sum in another order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    found = {(r["kappa"], r["index"], r.get("target")): r for r in rows}
    assert len(found) == len(rows)  # one record per key
    return found


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _sweep(out: Path, *extra: str) -> None:
    assert main(["sweep", *TINY, "--out", str(out), *extra]) == 0


def test_a_sweep_on_ray_equals_the_serial_one_record_for_record(ray_local, data_root,
                                                                 tmp_path):
    """A2D's calibration and MagNet's detectors cross to the workers; every record and the
    whole summary (rows, operating points, checks, diagnostics) come out the same."""
    args = ["--defenses", "a2d,a2d+magnet", "--data-root", str(data_root)]
    _sweep(tmp_path / "serial", *args)
    _sweep(tmp_path / "ray", *args, "--executor", "ray")
    serial, on_ray = _records(tmp_path / "serial"), _records(tmp_path / "ray")
    assert len(serial) == 8 and serial == on_ray
    assert _summary(tmp_path / "serial") == _summary(tmp_path / "ray")
    for b in (0, 1):  # the adversarial examples are stored as well
        a = torch.load(tmp_path / f"serial/cache/adv_k10_b{b}.pt", weights_only=True)
        r = torch.load(tmp_path / f"ray/cache/adv_k10_b{b}.pt", weights_only=True)
        assert torch.equal(a["x"], r["x"]) and torch.equal(a["index"], r["index"])


def test_a_worker_killed_mid_unit_is_retried_and_nothing_is_lost(ray_local, data_root,
                                                                 tmp_path):
    """The plug-in's detector SIGKILLs the first worker that scores with it, in the middle of
    a unit; Ray retries the unit elsewhere and the run ends with every record, once."""
    args = ["--defense-module", "tests.plugin_crash:make_defense", "--data-root",
            str(data_root)]
    _sweep(tmp_path / "serial", *args)
    (ray_local / "kill-once").write_text("")
    _sweep(tmp_path / "ray", *args, "--executor", "ray")
    assert (ray_local / "killed").exists(), "no worker was killed: the test tested nothing"
    (ray_local / "killed").unlink()
    assert _records(tmp_path / "serial") == _records(tmp_path / "ray")
    assert _summary(tmp_path / "serial")["rows"] == _summary(tmp_path / "ray")["rows"]


def test_a_resume_on_ray_runs_only_the_missing_units(ray_local, data_root, tmp_path,
                                                     monkeypatch, capsys):
    args = ["--defenses", "none", "--data-root", str(data_root)]
    _sweep(tmp_path / "full", *args)
    real, calls = sweep_run._append, {"n": 0}

    def dying(records, rows):  # the driver dies after storing 3 of the 4 units
        real(records, rows)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "_append", dying)
    assert main(["sweep", *TINY, "--out", str(tmp_path / "cut"), *args]) != 0  # interrupted
    assert len(_records(tmp_path / "cut")) == 6
    monkeypatch.setattr(sweep_run, "_append", real)
    capsys.readouterr()
    _sweep(tmp_path / "cut", *args, "--executor", "ray", "--resume")
    assert "1 units (kappa x batch) on Ray" in capsys.readouterr().out
    assert _records(tmp_path / "full") == _records(tmp_path / "cut")
    assert _summary(tmp_path / "full")["rows"] == _summary(tmp_path / "cut")["rows"]


def test_a_worker_with_other_files_than_the_driver_is_refused(data_root, tmp_path):
    """A cluster node with other weights or data must not mix its results into the run."""
    cfg = sweep_run.SweepConfig(defenses=["none"], n=2, n_cal=2, kappas=[0.0], magnet=None,
                                transfer_check=False)
    from adaptive.core.zoo import load_model

    cfg.model_sha256 = load_model(cfg.model)[1]["sha256"]
    recipe = sweep_run._UnitRecipe(cfg, str(data_root), "cpu", {"model:mnist-cnn": "0" * 64},
                                   {}, torch.tensor([0, 1]), None)
    with pytest.raises(ToolkitError, match="differ from the driver's: .*model:mnist-cnn"):
        sweep_run._run_unit(recipe, (0.0, 0, [0, 1]))
    cfg.model_sha256 = "f" * 64
    with pytest.raises(ToolkitError, match="not the one the run uses"):
        sweep_run._run_unit(recipe, (0.0, 0, [0, 1]))


def test_bad_executor_settings_are_refused_clearly():
    with pytest.raises(ToolkitError, match="unknown executor 'dask'"):
        ExecutorSettings(kind="dask")
    with pytest.raises(ToolkitError, match="need --executor ray"):
        ExecutorSettings(gpus_per_task=0.5)
    with pytest.raises(ToolkitError, match="--cpus-per-task must be > 0"):
        ExecutorSettings(kind="ray", cpus_per_task=0)
    assert isinstance(make_executor(), LocalExecutor)
    assert ExecutorSettings(kind="ray", gpus_per_task=0.25).unit_device == "cuda"
    assert main(["sweep", "--executor", "dask"]) != 0
    assert main(["sweep", "--gpus-per-task", "1"]) != 0  # (needs --executor ray)


def test_costs_on_ray_count_the_same_iterations(ray_local, tmp_path):
    """``adaptive costs --executor ray``: every (engine, input set) a unit; the iterations are
    those of the serial run (the seconds are wall times, measured wherever the unit ran)."""
    args = ["costs", "--n", "3", "--engines", "bim_d,jsma_d", "--compare", "fgsm",
            "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "serial")]) == 0
    assert main(args + ["--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    serial, on_ray = (json.loads((tmp_path / f"{w}/costs.json").read_text())
                      for w in ("serial", "ray"))

    def iterations(result):
        return [(r["engine"], r["kind"], r["index"], r["iterations"]) for r in result["images"]]
    assert len(iterations(serial)) == 12 and iterations(serial) == iterations(on_ray)
    assert all(r["seconds"] > 0 for r in on_ray["images"])


def test_a2d_evaluate_on_ray_gives_the_serial_results(ray_local, tmp_path):
    """Adversarial sets and cost chunks as units: every table of the evaluation the same."""
    from adaptive.core.data import load_dataset
    from adaptive.core.zoo import load_model
    from adaptive.evaluations.a2d import run_a2d_evaluation
    from tests.test_a2d_eval import _cfg

    model, meta = load_model("mnist-cnn")
    data = load_dataset("mnist-bundled")
    quiet = dict(progress=False, log=lambda *_: None)
    serial = run_a2d_evaluation(_cfg(model_sha256=meta["sha256"]), model, data,
                                tmp_path / "serial", "cpu", **quiet)
    on_ray = run_a2d_evaluation(_cfg(model_sha256=meta["sha256"]), model, data,
                                tmp_path / "ray", "cpu", executor=ExecutorSettings(kind="ray"),
                                **quiet)
    for key in ("auroc", "zscore", "zscore_ensemble", "knn", "costs", "attacks"):
        assert on_ray[key] == serial[key], key


def test_clever_on_ray_gives_the_serial_scores(ray_local, tmp_path):
    """Each adversarial set and each input set's scores a unit: the same clever.json."""
    args = ["clever", "--n", "2", "--batches", "4", "--samples", "8", "--target", "all",
            "--compare", "fgsm", "--cost", "bim_d", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "serial")]) == 0
    assert main(args + ["--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    serial, on_ray = (json.loads((tmp_path / f"{w}/clever.json").read_text())
                      for w in ("serial", "ray"))
    for result in (serial, on_ray):
        for image in result["images"]:
            image["cost"].pop("seconds")  # wall time, wherever it ran
    assert len(serial["images"]) >= 3
    assert serial["images"] == on_ray["images"] and serial["summary"] == on_ray["summary"]


def _failing_unit(shared, unit):
    if unit == 2:
        raise ValueError("bad unit 2")
    if unit == 3:
        raise ToolkitError("unit 3 is refused")
    return unit * shared


def test_a_failing_unit_raises_its_own_error_on_ray(ray_local):
    """A unit's exception reaches the caller as it would locally; a clear error stays one."""
    from adaptive.core.executor import RayExecutor

    ex = RayExecutor(ExecutorSettings(kind="ray"))
    assert sorted(r for _, r in ex.map(_failing_unit, 10, [0, 1])) == [0, 10]
    with pytest.raises(ValueError, match="bad unit 2"):
        list(ex.map(_failing_unit, 10, [2]))
    with pytest.raises(ToolkitError, match="unit 3: unit 3 is refused"):
        list(ex.map(_failing_unit, 10, [3]))
    ex.close()  # (the shared instance stays up: this executor did not start it)
