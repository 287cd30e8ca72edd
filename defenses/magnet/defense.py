"""A MagNet defense: its detectors (an input is rejected if any fires) and, optionally, the
reformer, which classifies ``f(AE(x))`` instead of ``f(x)``.

A defense is described by a JSON spec: the autoencoders (zoo names or checkpoint paths,
relative to the spec), each detector's kind, parameters and threshold, and the reformer. The
bundled MNIST defense is ``defenses/magnet/bundled/mnist.json`` (``MagNet.load("mnist", f)``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from adaptive.core.checkpoint import load_checkpoint, write_json
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import entry_path
from defenses.magnet.autoencoder import AE_FORMAT, build_autoencoder
from defenses.magnet.detectors import DivergenceDetector, ReconstructionDetector

BUNDLED = Path(__file__).parent / "bundled"
SPEC_TYPE = "magnet"
POOL_TYPE = "magnet-pool"  # randomised MagNet's pool (adaptive train magnet-pool)


class ReformedClassifier(nn.Module):
    """``f(AE(x))``: MagNet's reformer in front of a classifier ([0, 1] in, logits out).
    Subclasses change ``reform`` only."""

    def __init__(self, classifier: nn.Module, ae: nn.Module | None):
        super().__init__()
        self.classifier, self.ae = classifier, ae
        self.input_shape = getattr(classifier, "input_shape", None)
        self.num_classes = getattr(classifier, "num_classes", None)

    def reform(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae(x)

    def forward(self, x):
        return self.classifier(self.reform(x))

    def penultimate(self, x):
        """The classifier's features of the reformed input (the features hook)."""
        return self.classifier.penultimate(self.reform(x))

    @property
    def head(self):
        return self.classifier.head


class RandomizedReformedClassifier(ReformedClassifier):
    """Randomised MagNet's reformer (the grey-box variant: the attacker knows the pool, not the
    pick): ``f(AE_i(x))`` with ``i`` drawn anew for every input at every call from the
    autoencoders ``aes`` (torch's global generator, so a seeded run repeats its draws). Its
    output is random per call: attack it with EOT (``--eot``)."""

    def __init__(self, classifier: nn.Module, aes: list[nn.Module]):
        if not aes:
            raise ToolkitError("randomised MagNet needs at least one autoencoder")
        super().__init__(classifier, None)
        self.aes = nn.ModuleList(aes)

    def reform(self, x: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(len(self.aes), (len(x),), device=x.device)
        outs = torch.stack([ae(x) for ae in self.aes])  # (K, n, ...): the pool is small
        return outs[pick, torch.arange(len(x), device=x.device)]


def load_autoencoder(ref: str, base: Path, device="cpu") -> tuple[nn.Module, dict]:
    """An autoencoder by zoo name or by checkpoint path (relative to ``base``)."""
    path = entry_path(ref) or base / ref
    return load_checkpoint(path, device, builder=build_autoencoder, fmt=AE_FORMAT)


def _read_spec(ref: str, kind: str, made_by: str) -> tuple[Path, object]:
    """(path, parsed JSON) of a bundled MagNet ``kind`` (``defense`` or ``pool``) by name, or
    of a file path; a clear error naming the bundled ones when there is neither."""
    path = BUNDLED / f"{ref}.json" if (BUNDLED / f"{ref}.json").is_file() \
        else Path(ref).expanduser()
    try:
        return path, json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(p.stem for p in sorted(BUNDLED.glob("*.json"))
                          if p.stem.endswith("-pool") == (kind == "pool")) or "none"
        raise ToolkitError(f"no MagNet {kind} {ref!r} (bundled: {known}; or give the path of "
                           f"a {made_by})") from None
    except (OSError, ValueError) as e:
        raise ToolkitError(f"cannot read MagNet {kind} {path}: {e}") from e


def bundled_pool(spec_ref: str | None) -> str | None:
    """The bundled pool of a bundled MagNet (``mnist`` -> ``mnist-pool``), or None."""
    if spec_ref and (BUNDLED / f"{spec_ref}-pool.json").is_file():
        return f"{spec_ref}-pool"
    return None


def load_pool(ref: str, device="cpu") -> tuple[list[nn.Module], dict[str, str]]:
    """(the autoencoders, their sha256 by name) of randomised MagNet's pool ``ref``: a bundled
    name or the path of a pool.json (``adaptive train magnet-pool``)."""
    path, spec = _read_spec(ref, "pool", "pool.json from 'adaptive train magnet-pool'")
    aes = spec.get("autoencoders") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or spec.get("type") != POOL_TYPE:
        raise ToolkitError(f"{path} is not a MagNet pool (expected type {POOL_TYPE!r})")
    if not isinstance(aes, dict) or len(aes) < 2 or not all(
            isinstance(v, str) and v for v in aes.values()):
        raise ToolkitError(f"MagNet pool {path}: 'autoencoders' must name 2 or more "
                           "checkpoints")
    loaded = {k: load_autoencoder(r, path.parent, device) for k, r in aes.items()}
    return ([ae.eval() for ae, _ in loaded.values()],
            {k: meta["sha256"] for k, (_, meta) in loaded.items()})


def make_detector(cfg: dict, ae: nn.Module, classifier: nn.Module):
    """A MagNet detector from its spec entry (``type``, parameters, threshold)."""
    kind = cfg.get("type")
    if kind == "reconstruction":
        return ReconstructionDetector.from_dict(cfg, ae=ae)
    if kind == "divergence":
        return DivergenceDetector.from_dict(cfg, ae=ae, classifier=classifier)
    raise ToolkitError(f"unknown MagNet detector type {kind!r}")


def _positive(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def check_spec(spec, path: Path) -> None:
    """A MagNet spec's structure, before anything is loaded from it: a damaged or hand-edited
    spec gets one error naming the field, not a KeyError later or a detector that never (NaN
    threshold) or always (threshold <= 0) fires."""
    def bad(what: str) -> ToolkitError:
        return ToolkitError(f"MagNet spec {path}: {what}")

    if not isinstance(spec, dict) or spec.get("type") != SPEC_TYPE:
        raise ToolkitError(f"{path} is not a MagNet spec (expected type {SPEC_TYPE!r})")
    aes = spec.get("autoencoders")
    if not isinstance(aes, dict) or not aes or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in aes.items()):
        raise bad("'autoencoders' must map names to zoo names or checkpoint paths")
    dets = spec.get("detectors")
    if not isinstance(dets, list) or not dets:
        raise bad("'detectors' must be a non-empty list")
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise bad(f"detector {i} must be an object with a 'name'")
        where = f"detector {d['name']!r}"
        if not isinstance(d.get("ae"), str) or d["ae"] not in aes:
            raise bad(f"{where}: 'ae' must be one of {sorted(aes)}, got {d.get('ae')!r}")
        if d.get("type") == "reconstruction":
            if isinstance(d.get("p"), bool) or d.get("p") not in (1, 2):
                raise bad(f"{where}: 'p' must be 1 or 2, got {d.get('p')!r}")
        elif d.get("type") == "divergence":
            if not _positive(d.get("temperature")):
                raise bad(f"{where}: 'temperature' must be a finite number > 0")
        else:
            raise bad(f"{where}: unknown type {d.get('type')!r} (reconstruction, divergence)")
        if not _positive(d.get("threshold")):
            raise bad(f"{where}: 'threshold' must be a finite number > 0, got "
                      f"{d.get('threshold')!r}; refit it with 'adaptive train magnet'")
    reformer = spec.get("reformer")
    if reformer is not None and (not isinstance(reformer, str) or reformer not in aes):
        raise bad(f"'reformer' must be null or one of {sorted(aes)}, got {spec['reformer']!r}")
    sha = spec.get("classifier_sha256")
    if sha is not None and not isinstance(sha, str):
        raise bad("'classifier_sha256' must be a string")


class MagNet:
    """A MagNet defense: ``classifier`` ([0, 1] NCHW in, logits out), its ``autoencoders``
    (name -> network), ``detectors`` (each a ``defenses.Detector``: an input is rejected when any
    fires) and the ``reformer``, the autoencoder whose output the classifier answers on (None:
    none). ``load(spec, classifier)`` builds one from a spec; ``save`` writes one."""

    def __init__(self, classifier: nn.Module, autoencoders: dict[str, nn.Module],
                 detectors: list, reformer: str | None = None, spec: dict | None = None):
        if reformer is not None and reformer not in autoencoders:
            raise ToolkitError(f"reformer autoencoder {reformer!r} is not among "
                               f"{sorted(autoencoders)}")
        self.classifier, self.autoencoders = classifier, autoencoders
        self.detectors, self.reformer = list(detectors), reformer
        self.spec = spec or {}
        self.autoencoder_sha256: dict[str, str] = {}
        self.pool: list[nn.Module] = []  # randomised MagNet's reformers (attach_pool)
        self.pool_sha256: dict[str, str] = {}

    @property
    def name(self) -> str:
        return "magnet"

    def defended_classifier(self) -> nn.Module:
        """The classifier MagNet answers with: reformed when it has a reformer."""
        if self.reformer is None:
            return self.classifier
        return ReformedClassifier(self.classifier, self.autoencoders[self.reformer]).eval()

    def randomized_classifier(self) -> nn.Module:
        """Randomised MagNet's classifier: a reformer drawn per input from the attached pool
        (``attach_pool``), else from every autoencoder of the defense (its detectors stay as
        they are)."""
        aes = self.pool if self.pool else list(self.autoencoders.values())
        return RandomizedReformedClassifier(self.classifier, aes).eval()

    def attach_pool(self, ref: str, device="cpu") -> MagNet:
        """Draw randomised MagNet's reformer from the pool ``ref`` (a bundled name such as
        ``mnist-pool``, or a pool.json path): its autoencoders and their hashes."""
        self.pool, self.pool_sha256 = load_pool(ref, device)
        return self

    def detect_each(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {d.name: d.detect(x) for d in self.detectors}

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """True where any detector rejects the input."""
        flags = self.detect_each(x)
        return torch.stack(list(flags.values())).any(0)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Largest score/threshold ratio over detectors: above 1 exactly when ``detect`` fires."""
        return torch.stack([d.score(x) / d.threshold for d in self.detectors]).amax(0)

    def spec_sha256(self) -> str:
        """A hash of the spec (autoencoders, detector kinds and thresholds, reformer)."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()

    @classmethod
    def load(cls, spec_ref: str, classifier: nn.Module, device="cpu",
             classifier_sha256: str | None = None) -> MagNet:
        """From a bundled name (``mnist``) or a spec path. ``classifier_sha256``: the hash of
        the classifier's weights, checked against the one the spec was fitted with (its
        divergence detectors and reformer accuracy depend on it)."""
        path, spec = _read_spec(spec_ref, "defense", "magnet.json")
        check_spec(spec, path)
        fitted_for = spec.get("classifier_sha256")
        if classifier_sha256 and fitted_for and fitted_for != classifier_sha256:
            raise ToolkitError(f"MagNet spec {path} was fitted with the classifier "
                               f"{spec.get('classifier', '?')} (sha256 {fitted_for[:12]}...), "
                               f"not this one ({classifier_sha256[:12]}...); fit a MagNet for "
                               "this model with 'adaptive train magnet'")
        loaded = {k: load_autoencoder(ref, path.parent, device)
                  for k, ref in spec["autoencoders"].items()}
        aes = {k: ae for k, (ae, _) in loaded.items()}
        dets = [make_detector(d, aes[d["ae"]], classifier) for d in spec["detectors"]]
        magnet = cls(classifier, aes, dets, spec.get("reformer"), spec)
        magnet.autoencoder_sha256 = {k: meta["sha256"] for k, (_, meta) in loaded.items()}
        return magnet

    def save(self, path, autoencoder_refs: dict[str, str], extra: dict | None = None) -> dict:
        """Write the spec; ``autoencoder_refs`` name each autoencoder's checkpoint."""
        ae_of = {id(ae): k for k, ae in self.autoencoders.items()}
        spec = {"type": SPEC_TYPE, "version": 1, **(extra or {}),
                "autoencoders": autoencoder_refs,
                "detectors": [{"name": d.name, "ae": ae_of[id(d.ae)], **d.config()}
                              for d in self.detectors],
                "reformer": self.reformer}
        write_json(Path(path), spec)
        return spec
