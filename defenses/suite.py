"""A suite of defenses of known fate that wrap a classifier, written from the descriptions of the
kinds in the public self-study course of Carlini et al. (google-research/selfstudy-adversarial-
robustness) and of Athalye, Carlini & Wagner (ICML 2018): each claims robustness for a reason
that does not hold, and each falls to an attack that goes through its forward the right way.

Every entry is a plain :class:`defenses.Defense` (no detectors): what a researcher would plug in
with ``--defense-module defenses.suite:make_suite`` (the classifier behind a preprocessing, a
random part, a vote or a k-NN) and ``defenses.suite:make_trained_suite`` (networks of their
own, trained by our own commands and bundled: :data:`TRAINED`). None declares a surrogate, so
an evaluation must find the right attack by itself (``--attack auto``). :func:`make_bpda_twins`
and :func:`make_trained_twins` give the ``-bpda`` entries: the defense of that name with a
differentiable surrogate declared (BPDA), the way its author should ship it and the strongest
white-box attack we can write for it; they are run apart (a run judges every defense by every
example it made, so a twin in the same run would lend its surrogate to the defense without
one).

=================  ==========================================  ===============================
name               claim                                       how it falls
=================  ==========================================  ===============================
blur               a 3x3 Gaussian blur removes adversarial     white box through the blur
                   noise
temperature        logits x 1000 (softmax at temperature      cross entropy saturates; the
                   1/1000, as after distillation) flatten      DLR loss and the margin do not
                   the loss                                     care about the scale
discretised        pixels rounded to 4 levels (8 in colour):   gradient-free search (Square,
                   no gradient, small changes vanish           RayS), BPDA through the rounding
discretised-bpda   the same, with its BPDA surrogate           white box through the surrogate
                   (identity backward through the rounding)
random-shift       a random shift of up to 2 pixels per call   EOT over the shifts
                   (and a random horizontal flip on colour
                   images)
random-neurons     half the penultimate neurons dropped at     EOT over the dropped neurons
                   random on every call
majority-vote      the majority label of three classifiers     transfer, hard-label search
                   (plain, behind a blur, another network)
majority-vote-bpda the same; backward through the voters'   white box through the surrogate
                   mean log-probability (BPDA)
knn                the label of the 10 nearest training        transfer, hard-label search
                   images in the classifier's feature space
knn-bpda           the same; backward through minus each      white box through the surrogate
                   class's mean distance to its 10 nearest
defense-gan        the classifier sees only the generator's     BPDA through the projection
                   closest image, found by an inner             (identity backward), transfer
                   optimisation (MNIST only)
defense-gan-bpda   the same, identity backward through the     white box through the surrogate
                   projection
ensemble-          another network, trained on examples        white box: its own gradient
adversarial        transferred from static models (Tramer et   (it resists transfer, as
                   al. 2018; bundled for MNIST only)           claimed, not iterative attacks)
label-smoothing    another network, trained towards smoothed   white box: its own gradient,
                   labels: calibrated, flatter loss             a loss that ignores the scale
                   (CIFAR-10 only)
jump               another network, every activation jumps     white box; BPDA through
                   by 5 at zero: no smooth path between         smoothed steps
                   classes (CIFAR-10 only)
jump-bpda          the same, every step's gradient smoothed    white box through the surrogate
thermometer        another network, reading each pixel's       transfer, gradient-free search,
                   thermometer code: no gradient (Buckman et   BPDA through the code's ramp
                   al. 2018; CIFAR-10 only)
thermometer-bpda   the same, backward through the ramp         white box through the surrogate
=================  ==========================================  ===============================
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adaptive.core.errors import ToolkitError
from adaptive.core.models import JUMP_TRAIN_SMOOTH
from defenses.bpda import BPDA
from defenses.defense import Defense

LEVELS = {1: 4, 3: 8}  # grey levels of the discretised input, by channels (MNIST, CIFAR-10)
TEMPERATURE = 1e-3  # softmax temperature (logits divided by it)
DROP = 0.5  # share of penultimate neurons dropped per call
SHIFT = 2  # largest random shift, pixels
K = 10  # neighbours of the k-NN classifier
REFERENCE = 2000  # training images the k-NN classifier votes with


class Blur(nn.Module):
    """The classifier behind a 3x3 binomial (Gaussian-like) blur, per channel, edges
    replicated."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        row = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (row[:, None] * row[None]) / 16)

    def forward(self, x):
        c = x.shape[1]
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        return self.model(nn.functional.conv2d(padded, self.kernel.expand(c, 1, 3, 3),
                                               groups=c))


class Temperature(nn.Module):
    """The classifier's logits divided by a small temperature."""

    def __init__(self, model: nn.Module, temperature: float = TEMPERATURE):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x):
        return self.model(x) / self.temperature


class Discretise(nn.Module):
    """Each pixel rounded to one of ``levels`` evenly spaced grey levels."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class RandomShift(nn.Module):
    """The classifier behind a random shift of up to ``shift`` pixels (one draw per call, for
    the whole batch) and, with ``flip``, a random horizontal flip."""

    def __init__(self, model: nn.Module, shift: int = SHIFT, flip: bool = False):
        super().__init__()
        self.model, self.shift, self.flip = model, shift, flip

    def forward(self, x):
        dx, dy = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
        x = torch.roll(x, (dx, dy), (2, 3))
        if self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(3)
        return self.model(x)


class RandomNeurons(nn.Module):
    """The classifier with a random half of its penultimate neurons dropped on every call
    (dropout kept on at test time, rescaled as in training)."""

    def __init__(self, model: nn.Module, drop: float = DROP):
        super().__init__()
        self.model, self.drop = model, drop

    def forward(self, x):
        z = self.model.penultimate(x)
        return self.model.head(nn.functional.dropout(z, self.drop, training=True))


class MajorityVote(nn.Module):
    """The vote counts of several classifiers (logits: how many voted for each class, ties
    broken towards the first voter's label)."""

    def __init__(self, voters: list[nn.Module]):
        super().__init__()
        self.voters = nn.ModuleList(voters)

    def forward(self, x):
        labels = [v(x).argmax(1) for v in self.voters]
        n_classes = int(self.voters[0](x[:1]).shape[1])
        votes = sum(nn.functional.one_hot(lab, n_classes).float() for lab in labels)
        return votes + 0.5 * nn.functional.one_hot(labels[0], n_classes).float() / len(labels)


class MeanVote(nn.Module):
    """The voters' mean log-probability: the differentiable stand-in through which the
    ``-bpda`` twin of :class:`MajorityVote` takes its gradient (BPDA; the value stays the
    vote's)."""

    def __init__(self, vote: MajorityVote):
        super().__init__()
        self.vote = vote

    def forward(self, x):
        return torch.stack([v(x).log_softmax(1) for v in self.vote.voters]).mean(0)


class KNN(nn.Module):
    """The share of the ``k`` nearest reference images (in the classifier's penultimate
    feature space, Euclidean) of each class."""

    def __init__(self, model: Any, reference: torch.Tensor, labels: torch.Tensor,
                 k: int = K, num_classes: int = 10):
        super().__init__()
        self.model, self.k, self.num_classes = model, k, num_classes
        with torch.no_grad():
            feats = torch.cat([model.penultimate(reference[i:i + 500])
                               for i in range(0, len(reference), 500)])
        self.register_buffer("features", feats)
        self.register_buffer("labels", labels.long().to(feats.device))

    def forward(self, x):
        d = torch.cdist(self.model.penultimate(x), self.features)
        nearest = self.labels[d.topk(self.k, largest=False).indices]
        return nn.functional.one_hot(nearest, self.num_classes).float().mean(1)


class SoftKNN(nn.Module):
    """Minus each class's mean distance to its ``k`` nearest reference images: the
    differentiable stand-in through which the ``-bpda`` twin of :class:`KNN` takes its
    gradient (BPDA; the value stays the vote's)."""

    def __init__(self, knn: KNN):
        super().__init__()
        self.knn = knn

    def forward(self, x):
        d = torch.cdist(self.knn.model.penultimate(x), self.knn.features)
        per_class = [d[:, self.knn.labels == c].topk(self.knn.k, largest=False).values.mean(1)
                     for c in range(self.knn.num_classes)]
        return -torch.stack(per_class, 1)


def _other_model(model: nn.Module, dataset: str, device) -> nn.Module:
    """A second bundled network of the data set's family, for the vote."""
    from adaptive.core.data import dataset_family
    from adaptive.core.zoo import load_model

    name = {"mnist": "mnist-cnn-distilled", "cifar10": "cifar-cnn-at"}.get(
        dataset_family(dataset))
    if name is None:
        raise ToolkitError(f"the defense suite has no second network for {dataset!r}")
    other, _ = load_model(name)
    return other.to(device).eval()


# The suite's defenses that are networks of their own, trained by our own commands
# (``adaptive train classifier``; reports/zoo/): per entry, the bundled network of each data-set
# family; an entry is in the suite only where its network is bundled.
TRAINED = {
    # ensemble adversarial training (Tramer et al. 2018)
    "ensemble-adversarial": {"mnist": "mnist-cnn-ens-adv"},
    # trained towards smoothed labels (--label-smoothing 0.1)
    "label-smoothing": {"cifar10": "cifar-cnn-ls"},
    # the discontinuous jump activation in every layer (--activation jump)
    "jump": {"cifar10": "cifar-cnn-jump"},
    # reads the thermometer code of its input (--thermometer 16; Buckman et al. 2018)
    "thermometer": {"cifar10": "cifar-cnn-thermometer"},
}
# the jump-bpda surrogate's step, the gradient of height * sigmoid(x / this): the one the
# network was trained with
JUMP_SMOOTH = JUMP_TRAIN_SMOOTH


def _trained(kind: str, dataset: str, device) -> nn.Module | None:
    """The family's bundled network of the suite entry ``kind`` (:data:`TRAINED`), or None."""
    from adaptive.core.data import dataset_family
    from adaptive.core.zoo import load_model, zoo_names

    name = TRAINED[kind].get(dataset_family(dataset))
    if name is None or name not in zoo_names():
        return None
    other, _ = load_model(name)
    return other.to(device).eval()


class SmoothJumps(nn.Module):
    """A network built with the jump activation, its value unchanged, its gradient that of
    every step smoothed into ``height * sigmoid(x / smooth)`` (BPDA for the jump twin): the
    plain gradient (ReLU's) cannot see a step it is about to cross."""

    def __init__(self, model: nn.Module, smooth: float = JUMP_SMOOTH):
        super().__init__()
        import copy

        from adaptive.core.models import jump_units

        self.model = copy.deepcopy(model)  # (the deployed network keeps its own units)
        units = jump_units(self.model)
        if not units:
            raise ToolkitError("SmoothJumps needs a network with the jump activation")
        for unit in units:
            unit.smooth = smooth

    def forward(self, x):
        return self.model(x)


class SoftThermometer(nn.Module):
    """A network that reads the thermometer code of its input, its value unchanged, its
    gradient through the code's ramp (:func:`~adaptive.core.models.thermometer_encode` with
    ``soft``): BPDA for the thermometer twin, as Athalye et al. 2018 broke it."""

    def __init__(self, model: Any):
        super().__init__()
        if not getattr(model, "thermometer", 0):
            raise ToolkitError("SoftThermometer needs a network that reads a thermometer code")
        self.model = model

    def forward(self, x):
        self.model._check(x)
        code = BPDA(self.model.thermometer_code,
                    lambda v: self.model.thermometer_code(v, soft=True))(x)
        return self.model.logits(code)


# per data-set family, the bundled generator of Defense-GAN (adaptive train defense-gan)
DEFENSE_GAN = {"mnist": "defense-gan-mnist"}


def _defense_gan(model: nn.Module, dataset: str, device):
    """Defense-GAN around ``model`` with the family's bundled generator, or None."""
    from adaptive.core.checkpoint import load_checkpoint
    from adaptive.core.data import dataset_family
    from adaptive.core.zoo import entry_path
    from defenses.defense_gan import GAN_FORMAT, DefenseGAN, Generator, build_generator

    name = DEFENSE_GAN.get(dataset_family(dataset))
    path = entry_path(name) if name else None
    if path is None:
        return None
    generator, _ = load_checkpoint(path, device, builder=build_generator, fmt=GAN_FORMAT)
    assert isinstance(generator, Generator)  # (what build_generator makes)
    return DefenseGAN(model, generator)


def _reference(dataset: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first :data:`REFERENCE` training images of the data set's family (never attacked:
    sweeps attack test images)."""
    from adaptive.core.data import dataset_family, load_dataset

    family = dataset_family(dataset)
    try:
        train = load_dataset(family, "train")
    except ToolkitError as e:
        raise ToolkitError(f"the suite's knn defense needs the {family} training images: {e}"
                           ) from e
    return train.x()[:REFERENCE].to(device), train.labels[:REFERENCE]


def _parts(model: nn.Module, dataset: str, device):
    """The forwards the suite is made of, around ``model``."""
    if not (callable(getattr(model, "penultimate", None)) and hasattr(model, "head")):
        raise ToolkitError(f"the defense suite needs a classifier with the features hook "
                           f"(penultimate(x) and head, as the bundled ones have); "
                           f"{type(model).__name__} has not")
    channels = int(getattr(model, "input_shape", (1,))[0])
    discretise = Discretise(LEVELS.get(channels, LEVELS[1]))
    reference, labels = _reference(dataset, device)
    return dict(
        defense_gan=_defense_gan(model, dataset, device),
        discretise=discretise, discretised=nn.Sequential(discretise, model),
        vote=MajorityVote([model, Blur(model), _other_model(model, dataset, device)]),
        knn=KNN(model, reference, labels), colour=channels == 3)


def make_suite(model: nn.Module, dataset: str, device) -> dict[str, Defense]:
    """Every defense of the suite around ``model`` (a bundled classifier with the features hook,
    ``penultimate``/``head``), for ``dataset``, none with a surrogate; the plug-in factory of
    ``--defense-module defenses.suite:make_suite``."""
    p = _parts(model, dataset, device)
    suite = [
        Defense("blur", Blur(model)),
        Defense("temperature", Temperature(model)),
        Defense("discretised", p["discretised"]),
        Defense("random-shift", RandomShift(model, flip=p["colour"])),
        Defense("random-neurons", RandomNeurons(model)),
        Defense("majority-vote", p["vote"]),
        Defense("knn", p["knn"]),
    ]
    if p["defense_gan"] is not None:  # (only where a generator is bundled)
        suite.append(Defense("defense-gan", p["defense_gan"]))
    return {d.name: d for d in suite}


def make_trained_suite(model: nn.Module, dataset: str, device) -> dict[str, Defense]:
    """The suite's defenses that are networks of their own, trained by our own commands
    (:data:`TRAINED`: ensemble adversarial training, label smoothing, the jump activation, the
    thermometer code), those bundled for ``dataset``'s family; ``model`` (the run's bare
    classifier) is not part of them. None declares a surrogate
    (``--defense-module defenses.suite:make_trained_suite``)."""
    del model  # (the same signature as every plug-in factory)
    nets = {kind: _trained(kind, dataset, device) for kind in TRAINED}
    return {kind: Defense(kind, net) for kind, net in nets.items() if net is not None}


def make_trained_twins(model: nn.Module, dataset: str, device) -> dict[str, Defense]:
    """The BPDA twins of :func:`make_trained_suite`'s networks that hide or break their
    gradient (``--defense-module defenses.suite:make_trained_twins``): the jump network with
    its steps smoothed backward, the thermometer network backward through the code's ramp."""
    del model
    twins = []
    jump = _trained("jump", dataset, device)
    if jump is not None:
        twins.append(Defense("jump-bpda", jump, surrogate=SmoothJumps(jump)))
    thermometer = _trained("thermometer", dataset, device)
    if thermometer is not None:
        twins.append(Defense("thermometer-bpda", thermometer,
                             surrogate=SoftThermometer(thermometer)))
    return {d.name: d for d in twins}


def make_bpda_twins(model: nn.Module, dataset: str, device) -> dict[str, Defense]:
    """The suite's defenses that hide their gradient, each with its BPDA surrogate declared
    (``--defense-module defenses.suite:make_bpda_twins``): a run of their own, so that an
    evaluation of :func:`make_suite` never borrows their surrogates."""
    p = _parts(model, dataset, device)
    model_after = p["discretised"][1]
    twins = [
        Defense("discretised-bpda", p["discretised"],
                surrogate=nn.Sequential(BPDA(p["discretise"]), model_after)),
        Defense("majority-vote-bpda", p["vote"], surrogate=BPDA(p["vote"], MeanVote(p["vote"]))),
        Defense("knn-bpda", p["knn"], surrogate=BPDA(p["knn"], SoftKNN(p["knn"]))),
    ]
    if p["defense_gan"] is not None:  # the projection forward, the identity backward
        gan = p["defense_gan"]
        twins.append(Defense("defense-gan-bpda", gan,
                             surrogate=nn.Sequential(BPDA(gan.project), gan.classifier)))
    return {d.name: d for d in twins}
