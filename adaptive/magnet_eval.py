"""Evaluate a MagNet defense: benign false positives, reformer accuracy, and detection of
high-confidence C&W examples made against the bare classifier (MagNet's Table / the A2D paper's
Figure 7a setting).

C&W is Foolbox 3's ``L2CarliniWagnerAttack`` with ``confidence=kappa``; Foolbox counts any
misclassification as success, so we also report how many examples reach the full kappa margin.
"""

from __future__ import annotations

import time

import foolbox as fb
import torch

from core.evaluation import accuracy, predict_logits
from core.runtime import environment_info, seed_everything
from defenses.magnet.defense import MagNet


def evaluate_magnet(magnet: MagNet, x: torch.Tensor, y: torch.Tensor, n_cw: int, kappa: float,
                    cw_steps: int, seed: int, device, log=print) -> dict:
    seed_everything(seed)
    t0 = time.perf_counter()
    flags = {name: f.float() for name, f in magnet.detect_each(x).items()}
    rejected = torch.stack(list(flags.values())).amax(0)
    clean_acc = accuracy(magnet.classifier, x, y, device=device)
    reformer_acc = accuracy(magnet.defended_classifier(), x, y, device=device)
    log(f"benign: {100 * float(rejected.mean()):.2f}% rejected; clean accuracy "
        f"{clean_acc:.4f}, with the reformer {reformer_acc:.4f}")

    pred = predict_logits(magnet.classifier, x, device=device).argmax(1)
    idx = (pred == y).nonzero().squeeze(1)[:n_cw]
    attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=9, steps=cw_steps,
                                              stepsize=0.01, confidence=kappa)
    fmodel = fb.PyTorchModel(magnet.classifier, bounds=(0, 1))
    adv = attack(fmodel, x[idx].to(device), y[idx].to(device), epsilons=None)[1].cpu()
    logits = predict_logits(magnet.classifier, adv, device=device)
    ok = logits.argmax(1) != y[idx]
    top2 = logits.topk(2, dim=1).values
    reached = ok & ((top2[:, 0] - top2[:, 1]) >= kappa - 1e-3)
    adv_ok = adv[ok]
    adv_flags = {name: f.float() for name, f in magnet.detect_each(adv_ok).items()}
    adv_rejected = torch.stack(list(adv_flags.values())).amax(0)
    fooled_reformer = (magnet.defended_classifier()(adv_ok.to(device)).argmax(1).cpu()
                       != y[idx][ok])
    log(f"C&W kappa={kappa:g}: {int(ok.sum())}/{len(idx)} misclassified, "
        f"{100 * float(adv_rejected.mean()):.1f}% detected")
    return {
        "n_benign": len(x), "benign_fpr": float(rejected.mean()),
        "benign_fpr_per_detector": {k: float(v.mean()) for k, v in flags.items()},
        "drop_rates": {d.name: d.drop_rate for d in magnet.detectors},
        "classifier_accuracy": clean_acc, "reformer_accuracy": reformer_acc,
        "cw": {"kappa": kappa, "steps": cw_steps, "binary_search_steps": 9,
               "attempted": len(idx), "misclassified": int(ok.sum()),
               "reached_kappa_margin": int(reached.sum()),
               "mean_l2": float((adv_ok - x[idx][ok]).flatten(1).norm(dim=1).mean()),
               "detection_per_detector": {k: float(v.mean()) for k, v in adv_flags.items()},
               "still_fooling_after_reformer": float(fooled_reformer.float().mean())},
        f"detection_rate_cw_kappa{kappa:g}": float(adv_rejected.mean()),
        "seconds": round(time.perf_counter() - t0, 1), "environment": environment_info()}
