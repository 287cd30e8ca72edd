"""How the A2D detectors depend on their parameters (the paper's Table 7), from cached costs.

Everything is computed from attack costs an ``adaptive a2d evaluate`` run already measured:
detectors are fitted on its calibration split and scored on its evaluation split, so no attack
is run again. Rows: the K of the K-NN ensemble (END, all engines' costs as features; on raw
costs as in the paper, and on standardised costs, ``KNNDetector(scale="standard")``), the ratio
of benign to adversarial training examples, the Z-score threshold h and the ensemble's k, and
other scikit-learn classifiers (default parameters, as in the paper) in place of K-NN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from adaptive.core.errors import ToolkitError
from defenses.a2d.knn import knn_classifier
from defenses.a2d.zscore import ZScoreEnsemble

K_VALUES = (5, 10, 25, 50, 100, 150, 200)
RATIOS = (0.5, 0.8, 1.0, 1.2, 2.0)  # adversarial per benign training example
H_VALUES = (-1.0, -1.281552, -1.644854, -1.959964, -2.0)


def load_costs(folder: Path, engines: list[str], sources: list[str]) -> dict:
    """``{split: {source: (n, engines) array}}`` from an evaluation's cache folder."""
    out: dict = {}
    for split in ("cal", "eval"):
        for source in sources:
            cols = []
            for e in engines:
                f = Path(folder) / "cache" / f"cost_{e}_{split}_{source}.pt"
                if not f.is_file():
                    raise ToolkitError(f"{f} is missing: the parameter study needs the costs "
                                       "of every engine on both splits")
                cols.append(torch.load(f, map_location="cpu", weights_only=True)["costs"]
                            .numpy().astype(float))
            out.setdefault(split, {})[source] = np.stack(cols, axis=1)
    return out


def _mixture(costs: dict, attacks: list[str], n: int, seed: int = 0) -> np.ndarray:
    """``n`` adversarial training costs drawn evenly from every attack (seeded)."""
    rng = np.random.default_rng(seed)
    per = [costs[a] for a in attacks]
    take = [n // len(per) + (i < n % len(per)) for i in range(len(per))]
    parts = []
    for arr, t in zip(per, take):
        if t > len(arr):
            raise ToolkitError(f"need {t} adversarial training costs per attack, have {len(arr)}")
        parts.append(arr[rng.permutation(len(arr))[:t]])
    return np.concatenate(parts)


def _accuracies(predict, costs: dict, attacks: list[str]) -> tuple[float, float]:
    """(benign accuracy, adversarial accuracy pooled over the attacks) on the eval split."""
    benign = float(1 - np.mean(predict(costs["benign"])))
    adv = float(np.mean(np.concatenate([predict(costs[a]) for a in attacks])))
    return benign, adv


def parameter_study(costs: dict, engines: list[str], attacks: list[str],
                    knn_k: int = 100, h: float = -1.281552, k: int = 2,
                    knn_scale: str = "none") -> list[dict]:
    """Rows ``{"kind", "parameter", "value", "acc_benign", "acc_adv", "default"}``; kind is
    one of K, K-standardised, ratio, h, k, classifier (``default``: the evaluation's own
    setting, whose K-NN scaling is ``knn_scale``)."""
    cal, ev = costs["cal"], costs["eval"]
    n_benign = len(cal["benign"])
    rows = []

    def classifier_row(kind, parameter, value, clf, ratio=1.0, default=False):
        adv = _mixture(cal, attacks, int(round(ratio * n_benign)))
        x = np.concatenate([cal["benign"], adv])
        y = np.r_[np.zeros(n_benign), np.ones(len(adv))]
        clf.fit(x, y)
        b, a = _accuracies(lambda c: clf.predict(c) > 0.5, ev, attacks)
        rows.append({"kind": kind, "parameter": parameter, "value": value, "acc_benign": b,
                     "acc_adv": a, "default": default})

    for scale, kind, parameter in (("none", "K", "K (K-NN END)"),
                                   ("standard", "K-standardised",
                                    "K (K-NN END, standardised costs)")):
        for kk in K_VALUES:
            if kk <= 2 * n_benign:
                classifier_row(kind, parameter, kk, knn_classifier(kk, scale),
                               default=kk == knn_k and knn_scale == scale)
    for r in RATIOS:
        classifier_row("ratio", "benign:adversarial (K-NN END)", f"1:{r:g}",
                       KNeighborsClassifier(min(knn_k, n_benign)), ratio=r, default=r == 1.0)
    for hh in H_VALUES:
        ens = ZScoreEnsemble(engines, min(k, len(engines)), hh).fit(
            {e: cal["benign"][:, i] for i, e in enumerate(engines)})
        b, a = _accuracies(lambda c: ens.predict({e: c[:, i] for i, e in enumerate(engines)}),
                           ev, attacks)
        rows.append({"kind": "h", "parameter": f"h (Z-score END, k={k})", "value": hh,
                     "acc_benign": b,
                     "acc_adv": a, "default": hh == h})
    for kk in range(1, len(engines) + 1):
        ens = ZScoreEnsemble(engines, kk, h).fit(
            {e: cal["benign"][:, i] for i, e in enumerate(engines)})
        b, a = _accuracies(lambda c: ens.predict({e: c[:, i] for i, e in enumerate(engines)}),
                           ev, attacks)
        rows.append({"kind": "k", "parameter": f"k (Z-score END, h={h:g})", "value": kk,
                     "acc_benign": b,
                     "acc_adv": a, "default": kk == k})
    for name, clf in (("K-NN", KNeighborsClassifier(min(knn_k, n_benign))), ("SVM", SVC()),
                      ("decision tree", DecisionTreeClassifier(random_state=0)),
                      ("random forest", RandomForestClassifier(random_state=0))):
        classifier_row("classifier", "classifier (END costs)", name, clf, default=name == "K-NN")
    return rows
