"""GCD's detector (Guided Complementary Defense; "L2 adversarial examples are intrinsically
different", in ``../shared/papers/``): two small CNNs tell adversarial inputs from benign ones,

* ``DET_IS`` on the input-sensitivity map ``G(x, y_hat)``, the gradient of the protected
  model's cross-entropy at its own prediction with respect to the input (eq. 8): an L2
  adversarial example sits near a decision boundary, where that gradient is large;
* ``DET_org`` on the pixels (eq. 9), for L-inf examples, whose sensitivity can look benign;

and the more confident of the two decides (eqs. 10-11: the lower binary entropy, i.e. the
larger logit margin; a tie goes to DET_IS). An input is adversarial when the deciding net's
``p-`` exceeds its ``p+``: the score is that net's logit margin ``z- - z+`` and the threshold 0,
the paper's rule (the false-positive rate it gives on held-out benign images is recorded).

Departure, and why: ``DET_IS`` reads ``sign(G) log(1 + |G| / s)`` (``s``: the median L2 norm
of ``G`` over the benign training images) instead of ``G`` itself: on a confident classifier
the gradient of a benign input is often 1e-6 of an adversarial one's, a range a small CNN does
not train on; the transform is monotone per pixel and keeps the map's pattern.

White-box, the score is differentiable end to end: through DET_IS it needs the derivative of
``G``, a second-order gradient of the protected model (``relative_score`` builds it with
``create_graph=True``).

The rectifier (section 3.2) is below: the pixels a flagged input's detector gradient points at
(eq. 12), suppressed at random (eq. 13), classified by a copy of the model fine-tuned on such
suppressed duplicates of adversarial examples; :class:`GCDClassifier` is GCD as one
classifier (the model for inputs the detector passes, the rectifier for flagged ones).
"""

from __future__ import annotations

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.pooling import MaxPool2x2
from adaptive.core.validation import check_images
from defenses.detector import (
    Detector,
    float32_list,
    require_model,
    restore_threshold,
    scores_in_batches,
)


class DetectorNet(nn.Module):
    """A small CNN with two logits (benign, adversarial): two 3x3 convolutions with max
    pooling, a hidden layer of 64. ``shape``: the (C, H, W) of its input."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), MaxPool2x2(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), MaxPool2x2(), nn.Flatten(),
            nn.Linear(32 * (h // 4) * (w // 4), 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def input_sensitivity(model: nn.Module, x: torch.Tensor, create_graph: bool = False
                      ) -> torch.Tensor:
    """``G(x, y_hat)``: the gradient of ``model``'s cross-entropy at its own prediction with
    respect to ``x``, per image (``create_graph``: differentiable again, for an attack)."""
    with torch.enable_grad():
        xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        logits = model(xg)
        loss = nn.functional.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")
        (g,) = torch.autograd.grad(loss, xg, create_graph=create_graph)
    return g


class GCDDetector(Detector):
    """GCD's detector for ``model`` (see the module docstring).
    ``fit(x_benign_train, x_adversarial_train, x_benign)``; ``margins(x)`` the two nets'
    logit margins; ``score(x)`` the deciding one's."""

    kind = "gcd"
    differentiable = True

    def __init__(self, model: nn.Module, name: str = "gcd"):
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise ToolkitError("GCD needs the model's input_shape (C, H, W)")
        self.model, self.name, self.shape = model, name, tuple(shape)
        self.det_is, self.det_org = DetectorNet(self.shape), DetectorNet(self.shape)
        self.scale: float | None = None
        self.fpr: float | None = None
        self.training_log: dict = {}

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sensitivity_map(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """What DET_IS reads: ``sign(G) log(1 + |G| / scale)``."""
        if self.scale is None:
            raise ToolkitError(f"detector {self.name!r} is not trained: call fit()")
        g = input_sensitivity(self.model, x, create_graph)
        return torch.sign(g) * torch.log1p(g.abs() / self.scale)

    def margins(self, x: torch.Tensor, create_graph: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(DET_org's, DET_IS's) logit margin ``z- - z+`` (> 0: says adversarial)."""
        zo = self.det_org(x)
        zs = self.det_is(self.sensitivity_map(x, create_graph))
        return zo[:, 1] - zo[:, 0], zs[:, 1] - zs[:, 0]

    @staticmethod
    def decide(m_org: torch.Tensor, m_is: torch.Tensor) -> torch.Tensor:
        """Eq. 11: the margin of the more confident net (lower entropy = larger |margin|;
        DET_IS on a tie)."""
        return torch.where(m_org.abs() > m_is.abs(), m_org, m_is)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return self.decide(*self.margins(x)).detach()

    def score(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        check_images(x, self.shape, what=f"inputs to {self.name}")
        self._eval()
        return scores_in_batches(self._score, x, self._device(), batch_size)

    def relative_score(self, x: torch.Tensor) -> torch.Tensor:
        """1 + the deciding margin: above 1 exactly where ``detect`` fires; through DET_IS
        a second-order gradient of the model."""
        self.check_fitted()
        self._eval()
        return 1 + self.decide(*self.margins(x, create_graph=True)) - self.threshold

    def _eval(self) -> None:
        self.det_is.to(self._device()).eval()
        self.det_org.to(self._device()).eval()

    def fit(self, x_benign_train: torch.Tensor, x_adversarial_train: torch.Tensor,
            x_benign: torch.Tensor, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
            seed: int = 0) -> GCDDetector:
        """Train DET_IS and DET_org on benign (label 0) against adversarial (label 1) training
        images, ``epochs`` of Adam each, seeded; the threshold 0 (the paper's p+ >= p- rule)
        and its false-positive rate on the held-out benign ``x_benign``."""
        if len(x_benign_train) == 0 or len(x_adversarial_train) == 0:
            raise ToolkitError("GCD needs benign and adversarial training images")
        for what, v in (("benign training", x_benign_train),
                        ("adversarial training", x_adversarial_train), ("benign", x_benign)):
            check_images(v, self.shape, what=f"{what} images of {self.name}")
        device = self._device()
        g_benign = torch.cat([input_sensitivity(self.model, x_benign_train[i:i + 500]
                                                .to(device)).cpu()
                              for i in range(0, len(x_benign_train), 500)])
        self.scale = max(float(g_benign.flatten(1).norm(dim=1).median()), 1e-12)
        x = torch.cat([x_benign_train, x_adversarial_train])
        labels = torch.cat([torch.zeros(len(x_benign_train), dtype=torch.long),
                            torch.ones(len(x_adversarial_train), dtype=torch.long)])
        maps = scores_in_batches(self.sensitivity_map, x, device)
        gen = torch.Generator().manual_seed(seed)
        for inputs, key in ((x, "det_org"), (maps, "det_is")):
            torch.manual_seed(seed)  # the same initialisation for a given seed
            net = DetectorNet(self.shape).to(device).train()
            setattr(self, key, net)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            for _ in range(epochs):
                order = torch.randperm(len(inputs), generator=gen)
                for i in range(0, len(order), batch_size):
                    b = order[i:i + batch_size]
                    loss = nn.functional.cross_entropy(net(inputs[b].to(device)),
                                                       labels[b].to(device))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            net.eval()
            with torch.no_grad():
                z = scores_in_batches(net, inputs, device)
            self.training_log[key] = {"train_accuracy": float((z.argmax(1) == labels)
                                                              .float().mean())}
        self.threshold = 0.0
        self.fpr = float((self.score(x_benign) > self.threshold).float().mean())
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "scale": self.scale,
                "threshold": self.threshold, "fpr": self.fpr,
                "training": self.training_log,
                "det_is": {k: float32_list(v) for k, v in self.det_is.state_dict().items()},
                "det_org": {k: float32_list(v) for k, v in self.det_org.state_dict().items()}}

    @classmethod
    def from_dict(cls, d: dict, model: nn.Module = None, **context) -> GCDDetector:
        det = cls(require_model(model, "GCD"), d["name"])
        if tuple(d["shape"]) != det.shape:
            raise ValueError(f"fitted for inputs {tuple(d['shape'])}, the model takes "
                             f"{det.shape}")
        for key in ("det_is", "det_org"):
            state = {k: torch.tensor(v, dtype=torch.float32) for k, v in d[key].items()}
            try:
                getattr(det, key).load_state_dict(state)
            except RuntimeError as e:  # missing, extra or misshapen weights: damaged
                raise ValueError(f"{key}: {e}") from None
        det.scale, det.training_log = float(d["scale"]), d.get("training", {})
        return restore_threshold(det, d)


# -- the rectifier (section 3.2) ----------------------------------------------------------------

RECTIFIER_ALPHA = 0.55  # the paper's masking rate for MNIST, untargeted
RECTIFIER_EPOCHS = 30

def suspect_pixels(det: GCDDetector, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 12: per image, the pixels whose detector gradient exceeds ``alpha`` of the way from
    the image's smallest to its largest; the gradient of the deciding net's margin (the
    detector's loss changes along it, scaled per image, which the rule ignores)."""
    if not 0 <= alpha <= 1:
        raise ToolkitError(f"alpha must be in [0, 1], got {alpha}")
    det._eval()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        m_org, m_is = det.margins(xg, create_graph=True)
        (g,) = torch.autograd.grad(det.decide(m_org, m_is).sum(), xg)
    g = g.abs().flatten(1)
    lo, hi = g.min(1, keepdim=True).values, g.max(1, keepdim=True).values
    return (g > alpha * (hi - lo) + lo).view_as(x)


def suppress(x: torch.Tensor, suspect: torch.Tensor, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Eq. 13: each suspect pixel replaced with probability 1/2 by a value drawn from a normal
    with the image's pixel mean and standard deviation, on the 8-bit grid, in [0, 1]."""
    flat = x.flatten(1)
    mean, std = flat.mean(1), flat.std(1)
    shape = (len(x),) + (1,) * (x.dim() - 1)
    draw = torch.randn(x.shape, generator=generator).to(x) * std.view(shape) + mean.view(shape)
    draw = (draw.clamp(0, 1) * 255).round() / 255
    coin = torch.rand(x.shape, generator=generator).to(x) < 0.5
    return torch.where(suspect & coin, draw, x)


class GCDClassifier(nn.Module):
    """GCD as one classifier: inputs the detector passes go to the protected ``model``; flagged
    ones are suppressed (eqs. 12-13, random per call) and go to the fine-tuned ``rectifier``.
    Inputs in [0, 1] NCHW, logits out."""

    def __init__(self, model: nn.Module, detector: GCDDetector, rectifier: nn.Module,
                 alpha: float):
        super().__init__()
        self.model, self.rectifier, self.detector, self.alpha = model, rectifier, detector, alpha
        self.input_shape = getattr(model, "input_shape", None)
        self.num_classes = getattr(model, "num_classes", None)

    def rectified(self, x: torch.Tensor, draws: int = 1) -> torch.Tensor:
        """The rectifier's path for every input of ``x``, flagged or not: its suspect pixels
        suppressed at random, then the rectifier; the logits averaged over ``draws``
        suppressions (one: GCD's own; more: an attack's expectation over the randomness)."""
        suspect = suspect_pixels(self.detector, x, self.alpha).repeat(draws, 1, 1, 1)
        out = self.rectifier(suppress(x.repeat(draws, 1, 1, 1), suspect))
        return out.view(draws, len(x), -1).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        flagged = self.detector.detect(x.detach()).to(x.device)
        if flagged.any():
            out = out.clone()
            out[flagged] = self.rectified(x[flagged]).to(out.dtype)
        return out


def fine_tune_rectifier(model: nn.Module, det: GCDDetector, x_adv: torch.Tensor,
                        y_adv: torch.Tensor, alpha: float, epochs: int = 5,
                        batch_size: int = 128, lr: float = 1e-4, seed: int = 0) -> nn.Module:
    """A copy of ``model`` fine-tuned on suppressed duplicates of the adversarial examples
    ``x_adv`` (labels: their images' true classes ``y_adv``), a fresh random suppression of
    each in every epoch (the paper's randomized duplicates), seeded."""
    import copy

    if len(x_adv) == 0 or len(x_adv) != len(y_adv):
        raise ToolkitError("the rectifier needs adversarial examples with one label each")
    device = next(model.parameters()).device
    suspect = torch.cat([suspect_pixels(det, x_adv[i:i + 200].to(device), alpha).cpu()
                         for i in range(0, len(x_adv), 200)])
    rec = copy.deepcopy(model).to(device).train()
    opt = torch.optim.Adam(rec.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x_adv), generator=gen)
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            xs = suppress(x_adv[b], suspect[b], gen).to(device)
            loss = nn.functional.cross_entropy(rec(xs), y_adv[b].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return rec.eval()
