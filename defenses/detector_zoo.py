"""Bundled detectors of known fate, by short name, fitted by our own command
(``adaptive train detector NAME``) and loaded for the model they were fitted on.

=========  ==========================================================================
``fs``     feature squeezing (Xu et al. 2018): bit depth 1 and a 2 x 2 median filter
           on MNIST; threshold at 5 % false positives on held-out training images
``maha``   Mahalanobis (Lee et al. 2018), penultimate layer: class Gaussians from
           training images, threshold at 5 % false positives on held-out ones
``kd``     kernel density (Feinman et al. 2017) of the penultimate features against
           100 training images of the predicted class, bandwidth 1.2
``bu``     Bayesian uncertainty (Feinman et al. 2017): Monte Carlo dropout variance,
           50 passes; ``kd+bu`` is the pair
``lid``    local intrinsic dimensionality (Ma et al. 2018), penultimate layer, k = 20
           nearest of 100 reference training images
``safety`` SafetyNet (Lu et al. 2017): an RBF-SVM on the penultimate ReLU activation
 ``net``   pattern, trained on 1,000 benign training images against C&W examples of
           1,000 others (made by the command that fits it)
``gcd``    GCD's detector ("L2 adversarial examples are intrinsically different"): CNNs on
           the input-sensitivity map and on the pixels, the more confident deciding;
           trained on benign training images against FGSM, BIM, DeepFool and C&W examples
           of others (made by the command that fits it)
=========  ==========================================================================

Every threshold is at 5 % false positives on held-out training images (the papers' rate),
except GCD's: its paper's rule (adversarial when p- > p+), with the rate it gives recorded.

A bundled file is ``defenses/bundled/MODEL/NAME.json``: the detector's saved state plus
``meta`` (the command that made it, the model's sha256, the images it saw); loading checks the
model's hash, so a detector is never used on a model it was not fitted for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from adaptive.core.checkpoint import write_json
from adaptive.core.errors import ToolkitError
from defenses.detector import Detector, read_saved
from defenses.feature_squeezing import FeatureSqueezingDetector
from defenses.gcd import GCDDetector
from defenses.kd_bu import BayesianUncertaintyDetector, KernelDensityDetector
from defenses.lid import LIDDetector
from defenses.mahalanobis import MahalanobisDetector
from defenses.safetynet import SafetyNetDetector

BUNDLED = Path(__file__).parent / "bundled"

DETECTORS = {"fs": "feature squeezing (Xu et al. 2018)",
             "maha": "Mahalanobis, penultimate layer (Lee et al. 2018)",
             "kd": "kernel density (Feinman et al. 2017)",
             "bu": "Bayesian uncertainty, MC dropout (Feinman et al. 2017)",
             "lid": "local intrinsic dimensionality (Ma et al. 2018)",
             "safetynet": "SafetyNet, RBF-SVM on ReLU codes (Lu et al. 2017)",
             "gcd": "GCD's detector, input sensitivity + pixels (L2 adversarial examples are "
                    "intrinsically different)"}
CLASSES = {"fs": FeatureSqueezingDetector, "maha": MahalanobisDetector,
           "kd": KernelDensityDetector, "bu": BayesianUncertaintyDetector, "lid": LIDDetector,
           "safetynet": SafetyNetDetector, "gcd": GCDDetector}
ADVERSARIAL_TRAINED = ("safetynet", "gcd")  # their training needs adversarial examples
# per data set: the squeezers of Xu et al.'s configuration
SQUEEZERS = {"mnist": dict(bits=1, median=2), "cifar10": dict(bits=5, median=2)}


def bundled_path(name: str, model_ref: str) -> Path:
    return BUNDLED / model_ref / f"{name}.json"


def check_name(name: str) -> str:
    if name not in DETECTORS:
        raise ToolkitError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    return name


def fit_detector(name: str, model: nn.Module, dataset: str, x_train: torch.Tensor,
                 y_train: torch.Tensor, x_benign: torch.Tensor, fpr: float = 0.05,
                 x_adversarial: torch.Tensor | None = None) -> Detector:
    """The detector ``name`` for ``model`` (``dataset``: mnist or cifar10): fitted on the
    labelled ``x_train`` where it learns anything (SafetyNet: its first 1,000 against the
    adversarial examples ``x_adversarial``; GCD: as many of its first as there are adversarial
    examples), its threshold on ``x_benign`` at ``fpr`` (GCD: its paper's rule)."""
    check_name(name)
    if name in ADVERSARIAL_TRAINED and x_adversarial is None:
        raise ToolkitError(f"{name} is trained on adversarial examples: pass x_adversarial")
    if name == "gcd":
        return GCDDetector(model, name=name).fit(x_train[:len(x_adversarial)], x_adversarial,
                                                 x_benign)
    if name == "safetynet":
        return SafetyNetDetector(model, name=name).fit(x_train[:1000], x_adversarial, x_benign,
                                                       fpr)
    if name == "fs":
        return FeatureSqueezingDetector(model, **SQUEEZERS.get(dataset, SQUEEZERS["mnist"]),
                                        name=name).fit(x_benign, fpr)
    if name == "maha":
        return MahalanobisDetector(model, name=name).fit(x_train, y_train, x_benign, fpr)
    if name == "kd":
        return KernelDensityDetector(model, name=name).fit(x_train, y_train, x_benign, fpr)
    if name == "bu":
        return BayesianUncertaintyDetector(model, name=name).fit(x_benign, fpr)
    return LIDDetector(model, name=name).fit(x_train[:100], x_benign, fpr)


def load_gcd_rectifier(model_ref: str, device="cpu", path: str | Path | None = None):
    """The rectifier bundled beside the GCD detector of ``model_ref`` (its hash checked
    against what the detector's meta recorded) and the masking rate it was tuned at."""
    from adaptive.core.checkpoint import load_checkpoint

    path = Path(path) if path is not None else bundled_path("gcd", model_ref)
    meta = (read_saved(path).get("meta") or {}).get("rectifier")
    if not meta:
        raise ToolkitError(f"the GCD detector {path} has no rectifier; refit it with 'adaptive "
                           f"train detector gcd --model {model_ref}'")
    rec, rec_meta = load_checkpoint(path.with_name(meta["file"]), device)
    if rec_meta["sha256"] != meta["sha256"]:
        raise ToolkitError(f"{meta['file']} is not the rectifier {path} was saved with")
    return rec.eval(), float(meta["alpha"])


def load_gcd_classifier(model: nn.Module, model_ref: str, model_sha256: str | None = None,
                        device="cpu"):
    """GCD as its paper deploys it (``defenses.gcd.GCDClassifier``): the bundled detector of
    ``model_ref`` (refused for another model) and its rectifier around ``model``."""
    from defenses.gcd import GCDClassifier

    det = load_detector("gcd", model, model_ref, model_sha256)
    rectifier, alpha = load_gcd_rectifier(model_ref, device)
    return GCDClassifier(model, det, rectifier, alpha).eval()


def save_detector(det: Detector, path: str | Path, meta: dict) -> None:
    """The detector's state (as ``Detector.save``) with ``meta`` beside it."""
    write_json(Path(path), {"type": det.kind, "version": 1, **det.to_dict(), "meta": meta})


def load_detector(name: str, model: nn.Module, model_ref: str,
                  model_sha256: str | None = None, path: str | Path | None = None) -> Detector:
    """The bundled detector ``name`` of the zoo model ``model_ref`` (or the file ``path``),
    refused when it was fitted for another model."""
    check_name(name)
    path = Path(path) if path is not None else bundled_path(name, model_ref)
    if not path.is_file():
        made = sorted(p.parent.name for p in BUNDLED.glob(f"*/{name}.json"))
        raise ToolkitError(f"no bundled {name} detector for model {model_ref!r} (bundled for: "
                           f"{', '.join(made) or 'none'}); fit one with 'adaptive train "
                           f"detector {name} --model {model_ref}' (it writes {path})")
    saved = read_saved(path)
    fitted_for = (saved.get("meta") or {}).get("model_sha256")
    if model_sha256 and fitted_for and fitted_for != model_sha256:
        raise ToolkitError(f"the {name} detector {path} was fitted for another model (sha256 "
                           f"{fitted_for[:12]}..., this one {model_sha256[:12]}...)")
    det = Detector.from_saved(saved, path, model=model)  # the file is read once
    expected = CLASSES[name]
    if not isinstance(det, expected):
        raise ToolkitError(f"{path} holds a {type(det).__name__}, not a {name} detector")
    return det
