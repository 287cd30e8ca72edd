import json

import pytest

from adaptive.cli.main import main
from adaptive.core.errors import ToolkitError
from adaptive.report.tables import make_report


def _fake_sweep(folder, attack, success_l2, model="mnist-cnn", pairs=False):
    """A finished sweep folder with two images at kappa 0 and 20 (no attacking needed), with
    cached adversarial images so that the image figures can be drawn; ``pairs``: every label
    pair of two classes."""
    import torch

    folder.mkdir(parents=True)
    (folder / "cache").mkdir()
    cfg = {"dataset": "mnist-bundled", "model": model, "defenses": ["none", "a2d+magnet"],
           "kappas": [0.0, 20.0], "max_l2": 8.4, "attack": attack, "n": len(success_l2),
           "pairs": pairs}
    records, rows = [], []
    for kappa in cfg["kappas"]:
        index, targets = [], []
        for i, l2 in enumerate(success_l2):
            ok = l2 is not None
            target = (1 - i) if pairs else None
            reasons = ["detected:a2d"] if i == 0 else (["bound_exceeded"] if l2 and l2 > 8.4
                                                       else [])
            records.append({"kappa": kappa, "index": i, "label": i if pairs else 1,
                            "target": target, "attack_success": ok, "l2": l2 or 0.0,
                            "pred_bare": 2 if ok else 1, "defenses": {
                                "none": {"reasons": [] if ok else ["attack_failed"],
                                         "success": ok},
                                "a2d+magnet": {"reasons": reasons,
                                               "success": ok and not reasons}}})
            index.append(i)
            targets.append(target)
        cache = {"x": torch.rand(len(index), 1, 28, 28), "index": torch.tensor(index)}
        if pairs:
            cache["target"] = torch.tensor(targets)
        torch.save(cache, folder / "cache" / f"adv_k{kappa:g}_b0.pt")
        for d in cfg["defenses"]:
            rows.append({"kappa": kappa, "defense": d, "attack_success_rate": 0.5,
                         "mean_l2": 2.0})
    (folder / "summary.json").write_text(json.dumps({"config": cfg, "rows": rows}))
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "config.json").write_text(json.dumps({"command": f"adaptive sweep --attack "
                                                               f"{attack}"}))


def test_report_tables_from_sweep_folders(tmp_path, capsys):
    _fake_sweep(tmp_path / "cw", "cw", [1.0, 3.0])
    _fake_sweep(tmp_path / "full", "cw-full", [2.0, 9.0])
    assert main(["report", str(tmp_path / "cw"), str(tmp_path / "full"), "--out",
                 str(tmp_path / "rep")]) == 0
    files = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert files == ["mnist_examples_across_runs.png",
                     "mnist_mnist-cnn_asr_vs_bound.csv", "mnist_mnist-cnn_asr_vs_bound.md",
                     "mnist_mnist-cnn_asr_vs_bound.png",
                     "mnist_mnist-cnn_asr_vs_kappa.csv", "mnist_mnist-cnn_asr_vs_kappa.md",
                     "mnist_mnist-cnn_asr_vs_kappa.png", "mnist_mnist-cnn_cw-full_examples.png",
                     "mnist_mnist-cnn_cw_examples.png", "mnist_plausibility.csv",
                     "mnist_plausibility.md", "report_index.json"]
    kappa_md = (tmp_path / "rep/mnist_mnist-cnn_asr_vs_kappa.md").read_text()
    assert "| defense | kappa | ASR cw | L2 cw | ASR cw-full | L2 cw-full | paper |" in kappa_md
    assert "`adaptive sweep --attack cw-full`" in kappa_md
    bound_md = (tmp_path / "rep/mnist_mnist-cnn_asr_vs_bound.md").read_text()
    # cw-full against a2d+magnet: image 0 detected, image 1 at L2 9.0 (over 8.4, under inf).
    assert "| cw-full | a2d+magnet | 20 | 0.0 % | 0.0 % | 0.0 % | 0.0 % | 0.0 % | 50.0 % |" \
        in bound_md
    assert "| cw | none | 20 | 50.0 % | 50.0 % | 100.0 % | 100.0 % | 100.0 % | 100.0 % |" \
        in bound_md


def test_report_refuses_unknown_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    _fake_sweep(tmp_path / "a", "cw", [1.0])
    _fake_sweep(tmp_path / "b", "cw", [1.0])
    with pytest.raises(ToolkitError, match="same attack"):
        make_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")


def test_report_a2d_tables_beside_the_paper(tmp_path):
    from pathlib import Path

    source = Path(__file__).resolve().parents[1] / "reports/a2d/mnist_a2d_eval.json"
    make_report([source], tmp_path / "rep")
    auroc = (tmp_path / "rep/mnist_a2d_auroc.md").read_text()
    assert "| attack | AUROC bim_d | paper bim_d |" in auroc
    assert "| cw | 0.9999 | 0.9870 |" in auroc  # ours, then the paper's Table 2 (Env2)
    costs = (tmp_path / "rep/mnist_a2d_costs.md").read_text()
    assert "| bim_d | 14.1 | 100.0 % | 158.8 | 162 | 89.0 % | 16 | 99.8 % | 148 | 122 |" in costs


def test_report_kappa_table_from_a_clever_sweep(tmp_path):
    import json

    _fake_sweep(tmp_path / "cw", "cw", [1.0, 3.0])
    summary = json.loads((tmp_path / "cw/summary.json").read_text())
    summary["config"]["clever"] = {"n_batches": 50, "n_samples": 64, "radius": 5.0}
    for r in summary["rows"]:
        r.update(mean_clever=0.01 * r["kappa"], mean_a2d_cost=2.0 * r["kappa"])
    (tmp_path / "cw/summary.json").write_text(json.dumps(summary))
    make_report([tmp_path / "cw"], tmp_path / "rep")
    table = (tmp_path / "rep/mnist_mnist-cnn_cw_robustness_vs_kappa.md").read_text()
    assert "| kappa | CLEVER | BIM_d cost | L2 | paper CLEVER | paper BIM_d cost | paper L2 |" \
        in table
    assert "| 0 | 0.00 | 0.00 | 2.00 | 0 | 1.01 | 1.71 |" in table
    assert "| 20 | 0.20 | 40.00 | 2.00 | – | – | – |" in table


def test_report_a2d_cost_boxplots_from_a_run_folder(tmp_path):
    import torch

    folder = tmp_path / "a2d"
    (folder / "cache").mkdir(parents=True)
    engines, attacks = ["bim_d"], ["fgsm", "cw"]
    result = {"dataset": "mnist-bundled", "engines": engines, "attacks": attacks,
              "n_evaluation": 4, "command": "adaptive a2d evaluate",
              "auroc": {"bim_d": {"fgsm": 0.9, "cw": 1.0}},
              "zscore": {"bim_d": {"detection_rate": {"fgsm": 0.8, "cw": 1.0},
                                   "cost_threshold": 10, "benign_accuracy": 0.9}},
              "costs": {"bim_d": {s: {"mean_queries_detection_mode": 5.0}
                                  for s in ["benign"] + attacks}}}
    (folder / "a2d_eval.json").write_text(json.dumps(result))
    for s, c in (("benign", [20, 30, 25, 40]), ("fgsm", [3, 5, 2, 1]), ("cw", [0, 0, 1, 0])):
        torch.save({"costs": torch.tensor(c), "queries": torch.tensor(c) + 2,
                    "flipped": torch.ones(4, dtype=torch.bool)},
                   folder / "cache" / f"cost_bim_d_eval_{s}.pt")
    written = make_report([folder], tmp_path / "rep")
    png = tmp_path / "rep/mnist_a2d_cost_boxplots.png"
    assert png in written and png.stat().st_size > 10_000


def test_parameter_study_on_separable_costs(tmp_path):
    import numpy as np

    from adaptive.evaluations.a2d_parameters import load_costs, parameter_study

    engines, attacks = ["bim_d", "jsma_d"], ["fgsm", "cw"]
    _fake_costs(tmp_path, engines, attacks, np.random.default_rng(0), 120)
    rows = parameter_study(load_costs(tmp_path, engines, ["benign"] + attacks), engines, attacks)
    kinds = {r["parameter"].split(" (")[0] for r in rows}
    assert kinds == {"K", "benign:adversarial", "h", "k", "classifier"}
    assert sum(r["default"] for r in rows) == 5  # one default per parameter
    assert {r["value"] for r in rows if r["parameter"] == "K (K-NN END, standardised costs)"} \
        == {r["value"] for r in rows if r["parameter"] == "K (K-NN END)"}
    scaled = parameter_study(load_costs(tmp_path, engines, ["benign"] + attacks), engines,
                             attacks, knn_scale="standard")
    assert [r["parameter"] for r in scaled if r["default"] and r["parameter"].startswith("K")] \
        == ["K (K-NN END, standardised costs)"]
    for r in rows:
        if r["parameter"].startswith(("K", "classifier")):
            assert r["acc_benign"] > 0.95 and r["acc_adv"] > 0.95, r
    h_rows = [r for r in rows if r["parameter"].startswith("h ")]
    benign = [r["acc_benign"] for r in h_rows]  # h from -1 to -2: fewer false positives
    assert benign == sorted(benign) and benign[0] < benign[-1]
    (tmp_path / "cache" / "cost_jsma_d_eval_cw.pt").unlink()
    with pytest.raises(ToolkitError, match="is missing"):
        load_costs(tmp_path, engines, ["benign"] + attacks)


def _fake_costs(folder, engines, attacks, rng, n):
    """Cached per-image costs of an A2D evaluation: benign ~200, adversarial ~10."""
    import numpy as np
    import torch

    (folder / "cache").mkdir(parents=True)
    for split in ("cal", "eval"):
        for source in ["benign"] + attacks:
            for e in engines:
                mean = 200 if source == "benign" else 10
                c = np.maximum(rng.normal(mean, mean / 4, n), 0).round()
                torch.save({"costs": torch.tensor(c)},
                           folder / "cache" / f"cost_{e}_{split}_{source}.pt")


def _fake_a2d(folder, rng):
    """An A2D evaluation folder with two engines' per-image costs on both splits."""
    engines, attacks = ["bim_d", "jsma_d"], ["fgsm", "cw"]
    _fake_costs(folder, engines, attacks, rng, 60)
    z = {"detection_rate": {"fgsm": 0.9, "cw": 1.0}, "cost_threshold": 50, "benign_accuracy": 0.9}
    result = {"dataset": "mnist-bundled", "engines": engines, "attacks": attacks,
              "n_evaluation": 60, "command": "adaptive a2d evaluate",
              "auroc": {e: {"fgsm": 0.9, "cw": 1.0} for e in engines},
              "zscore": {e: z for e in engines},
              "costs": {e: {s: {"mean_queries_detection_mode": 5.0} for s in ["benign"] + attacks}
                        for e in engines}}
    (folder / "a2d_eval.json").write_text(json.dumps(result))


def _fake_clever_and_costs(folder, rng):
    """An `adaptive clever --target all --cost jsma_d` result and an `adaptive costs` one."""
    folder.mkdir(parents=True)
    images, costs = [], []
    for kind, scale in (("benign", 1.0), ("fgsm", 0.1), ("cw", 0.001)):
        for i in range(4):
            score = {t: {"score": scale * (1 + rng.random()), "target": 1}
                     for t in ("untargeted", "top2", "top5", "llc")}
            images.append({"index": i, "kind": kind, **score["untargeted"], "targets": score,
                           "cost": {"engine": "jsma_d", "iterations": int(100 * scale) + 1,
                                    "seconds": scale}})
            for engine in ("bim_d", "fgsm_d"):
                costs.append({"engine": engine, "kind": kind, "index": i,
                              "iterations": int(100 * scale) + 1, "seconds": scale})
    settings = {"norm": "l2", "target": "all", "radius": 5.0, "n_batches": 50, "n_samples": 64}
    (folder / "clever.json").write_text(json.dumps({
        "command": "adaptive clever --target all", "model": "mnist-cnn",
        "dataset": "mnist-bundled", "settings": settings, "images": images,
        "summary": {"targets": ["untargeted", "top2", "top5", "llc"]}}))
    (folder / "costs.json").write_text(json.dumps({
        "command": "adaptive costs", "model": "mnist-cnn", "dataset": "mnist-bundled",
        "images": costs}))


def test_report_produces_every_item_from_synthetic_runs(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    _fake_sweep(tmp_path / "cw", "cw", [1.0, 3.0])
    _fake_sweep(tmp_path / "full", "cw-full", [2.0, 9.0])
    _fake_sweep(tmp_path / "pairs", "cw", [2.0, 2.5], pairs=True)
    _fake_a2d(tmp_path / "a2d", rng)
    _fake_clever_and_costs(tmp_path / "clever", rng)
    written = make_report([tmp_path / d for d in ("cw", "full", "pairs", "a2d", "clever")],
                          tmp_path / "rep")
    names = {p.name for p in written}
    expected = {
        # Table 1, Figure 2 (CLEVER vs JSMA_d time), Figures 4, 5 and 10
        "mnist_clever_table1.md", "mnist_clever_table1.csv", "mnist_clever_vs_jsma_d_time.png",
        "mnist_attack_seconds_boxplots.png", "mnist_attack_iterations_boxplots.png",
        "mnist_bim_d_time_vs_iterations.png",
        # Tables 2, 3, 7 and the A2D evaluation's cost boxes
        "mnist_a2d_auroc.md", "mnist_a2d_costs.md", "mnist_a2d_parameters.md",
        "mnist_a2d_cost_boxplots.png",
        # adaptive attacks: tables, Figure 7, ASR vs bound, Figures 8, 9 and 11-13
        "mnist_mnist-cnn_asr_vs_kappa.md", "mnist_mnist-cnn_asr_vs_bound.md",
        "mnist_mnist-cnn_asr_vs_kappa.png", "mnist_mnist-cnn_asr_vs_bound.png",
        "mnist_mnist-cnn_cw_examples.png", "mnist_examples_across_runs.png",
        "mnist_mnist-cnn_cw_pairs_k0.png", "mnist_mnist-cnn_cw_pairs_k20.png",
        "mnist_plausibility.md"}
    assert expected <= names, expected - names
    for p in written:
        assert p.is_file() and p.stat().st_size > (5_000 if p.suffix == ".png" else 50), p
    table1 = (tmp_path / "rep/mnist_clever_table1.md").read_text()
    assert "| label | benign | fgsm | λ fgsm | cw | λ cw | avg λ | paper λ fgsm | paper λ cw |" \
        in table1
    assert "| Untarget |" in table1 and "| LLC |" in table1
    index = json.loads((tmp_path / "rep/report_index.json").read_text())
    assert set(index["files"]) == names


def test_plausibility_table_flags_claims_beyond_the_reference(tmp_path):
    _fake_sweep(tmp_path / "cw", "cw", [1.0, 3.0])  # a2d+magnet: ASR 0.5 in every row
    ref = {"model": "ref-at", "dataset": "mnist", "norm": "l2", "eps": 4.2,
           "clean_accuracy": 0.5, "robust_accuracy": 0.2,
           "command": "adaptive evaluate robust --norm l2 --eps 4.2"}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    make_report([tmp_path / "cw", tmp_path / "ref.json"], tmp_path / "rep")
    table = (tmp_path / "rep/mnist_plausibility.md").read_text()
    # Sweeps count correctly classified images only: so does the reference (20 % / 50 %).
    assert "ε/2 = 4.2" in table and "ref-at 20.0% robust at 50.0% clean: 40.0%" in table
    # ours 50 % and the paper's 100 % both exceed the reference's 40 % at eps/2
    assert "| a2d+magnet | mnist-cnn | cw | 50.0 % | 100.0 % | 40.0 % | ours and paper's too " \
           "good" in table
