"""``adaptive train classifier``."""

from __future__ import annotations

import argparse
from pathlib import Path

from adaptive.cli.common import add_run_options, nonnegative_number, positive_int, positive_number
from adaptive.core.data import dataset_family, load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.models import ARCHITECTURES, DEFAULT_ARCH
from adaptive.core.runtime import resolve_device
from adaptive.core.training import TrainConfig, train_classifier
from defenses.magnet.training import PoolTrainConfig

# Recipes per data set; every flag overrides its entry.
PRESETS = {
    "mnist": dict(epochs=12, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0,
                  schedule="cosine", augment="none"),
    "cifar10": dict(epochs=30, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                    schedule="cosine", augment="crop-flip"),
}


def _register_classifier(what) -> None:
    """``adaptive train classifier``."""
    c = what.add_parser(
        "classifier", help="train a classifier with per-epoch checkpoints and resume",
        description="Train a classifier. Writes OUT/state.pt after every epoch (resume with "
                    "--resume), OUT/history.jsonl, and at the end OUT/model.pt + model.json "
                    "with the measured test accuracy. Defaults follow a per-data-set recipe: "
                    + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    c.add_argument("--dataset", default="mnist", help="mnist, cifar10, or an .npz path "
                   "with x_train/y_train and x_test/y_test (default: mnist)")
    c.add_argument("--arch", choices=sorted(ARCHITECTURES),
                   help="architecture (default: mnist-cnn for MNIST, cifar-cnn for CIFAR-10)")
    c.add_argument("--width", type=positive_int, help="channel width (cifar-cnn, tiny-cnn)")
    c.add_argument("--activation", choices=("relu", "jump"),
                   help="cifar-cnn's activation: relu (default) or jump (0 below zero, x + 5 "
                        "above: the self-study course's discontinuous one, its step ramped "
                        "up over the epochs)")
    c.add_argument("--thermometer", type=positive_int, metavar="LEVELS",
                   help="cifar-cnn reads the thermometer code of its input at LEVELS levels "
                        "(Buckman et al. 2018) instead of the pixels")
    c.add_argument("--label-smoothing", type=nonnegative_number, default=0.0,
                   help="train towards smoothed labels: 1 - S + S/classes on the label "
                        "(default 0)")
    c.add_argument("--epochs", type=positive_int)
    c.add_argument("--batch-size", type=positive_int)
    c.add_argument("--lr", type=positive_number, help="peak learning rate")
    c.add_argument("--optimizer", choices=("adam", "sgd"))
    c.add_argument("--weight-decay", type=nonnegative_number)
    c.add_argument("--schedule", choices=("cosine", "constant"))
    c.add_argument("--augment", choices=("none", "crop-flip"))
    c.add_argument("--train-n", type=positive_int,
                   help="use only the first N training images (quick experiments)")
    a = c.add_argument_group(
        "adversarial training", "scales are in the [0, 1] pixel range and accept fractions: "
        "--eps 8/255, not 8")
    a.add_argument("--adversarial", choices=("pgd", "fgsm-rs", "ensemble"),
                   help="train on adversarial examples: pgd (Madry et al.), fgsm-rs (one "
                        "step from a random start, Wong et al.'s 'fast' training) or ensemble "
                        "(Tramer et al.: half of every batch R+FGSM examples of the model or "
                        "of a --static model)")
    a.add_argument("--static", metavar="MODEL[,MODEL...]",
                   help="ensemble: the pre-trained models (zoo names or checkpoints of the "
                        "same data set) whose examples it also trains on")
    a.add_argument("--norm", choices=("linf", "l2"), default="linf")
    a.add_argument("--eps", type=positive_number, help="budget (default 8/255 CIFAR-10, 0.3 MNIST)")
    a.add_argument("--steps", type=positive_int,
                   help="PGD steps (default 7 CIFAR-10, 40 MNIST; fgsm-rs: 1)")
    a.add_argument("--step-size", type=positive_number,
                   help="step size (default eps/4 for pgd, 1.25 eps for fgsm-rs; ensemble: "
                        "the random step, eps/2)")
    a.add_argument("--monitor-n", type=positive_int, default=1000,
                   help="test images on which PGD-10 robust accuracy is measured after every "
                        "epoch (default 1000)")
    t = c.add_argument_group(
        "defensive distillation (Papernot et al. 2016)",
        "train the teacher with --temperature T, then the distilled model with --temperature "
        "T --distill-from TEACHER; both are used at temperature 1 afterwards")
    t.add_argument("--temperature", type=positive_number, default=1.0,
                   help="softmax temperature of the training loss (default 1; the paper: 100)")
    t.add_argument("--distill-from", metavar="TEACHER",
                   help="zoo name or checkpoint whose softmax at --temperature gives the soft "
                        "labels to train on")
    c.add_argument("--out", help="output folder (default: runs/train-DATASET-ARCH)")
    c.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(c)
    c.set_defaults(run=run_classifier)


def _register_magnet(what) -> None:
    """``adaptive train magnet``."""
    m = what.add_parser(
        "magnet", help="train MagNet's autoencoders and set its detector thresholds",
        description="Train the data set's MagNet autoencoders (MNIST: I [3, average, 3] and II "
                    "[3], noise 0.1; CIFAR-10: [3], noise 0.025) on all but the last 5,000 "
                    "training images, with per-epoch checkpoints, then set each detector's "
                    "threshold on those 5,000 held-out images. Writes OUT/magnet.json.")
    m.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"))
    m.add_argument("--model", help="the classifier MagNet protects (default: mnist-cnn for "
                                   "MNIST; required for CIFAR-10)")
    m.add_argument("--epochs", type=positive_int, help="epochs per autoencoder (default 20)")
    m.add_argument("--out", help="output folder (default: runs/train-magnet-DATASET)")
    m.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(m)
    m.set_defaults(run=run_magnet)


def _register_magnet_pool(what) -> None:
    """``adaptive train magnet-pool``."""
    pool = what.add_parser(
        "magnet-pool", help="train randomised MagNet's pool of diverse autoencoders",
        description="Train K autoencoders of one architecture together (Meng & Chen's "
                    "randomised MagNet: each reconstructs clean images from noisy ones, and a "
                    "reward weighted by --diversity keeps their outputs apart) on the first "
                    "--train-n training images (the last 5,000 held out), with per-epoch "
                    "checkpoints. Writes OUT/pool.json; `--defenses rmagnet` draws its "
                    "reformer from a bundled pool (scripts/bundle_magnet.py --pool).")
    pool.add_argument("--dataset", default="mnist", choices=("mnist",))
    pool.add_argument("--k", type=positive_int, default=PoolTrainConfig.k,
                      help=f"autoencoders in the pool (default {PoolTrainConfig.k})")
    pool.add_argument("--diversity", type=nonnegative_number,
                      default=PoolTrainConfig.diversity,
                      help=f"weight of the diversity reward (default {PoolTrainConfig.diversity})")
    pool.add_argument("--train-n", type=positive_int, default=PoolTrainConfig.train_n,
                      help=f"training images (default {PoolTrainConfig.train_n})")
    pool.add_argument("--epochs", type=positive_int, default=PoolTrainConfig.epochs,
                      help=f"epochs (default {PoolTrainConfig.epochs})")
    pool.add_argument("--init", metavar="AE",
                      help="start every member from this trained autoencoder (a zoo name, e.g. "
                           "magnet-mnist-I), its weights perturbed (--init-noise) so that they "
                           "differ (default: from scratch)")
    pool.add_argument("--init-noise", type=nonnegative_number,
                      default=PoolTrainConfig.init_noise,
                      help="relative weight noise of --init (default "
                           f"{PoolTrainConfig.init_noise})")
    pool.add_argument("--lr", type=positive_number, default=PoolTrainConfig.lr,
                      help=f"Adam's learning rate (default {PoolTrainConfig.lr})")
    pool.add_argument("--out", help="output folder (default: runs/train-magnet-pool-DATASET)")
    pool.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(pool)
    pool.set_defaults(run=run_magnet_pool)


def _register_defense_gan(what) -> None:
    """``adaptive train defense-gan``."""
    from defenses.defense_gan import GANTrainConfig

    g = what.add_parser(
        "defense-gan", help="train Defense-GAN's generator (MNIST)",
        description="Train the small MLP generator of Defense-GAN (Samangouei et al. 2018) on "
                    "the MNIST training images: a plain non-saturating GAN with Adam, a "
                    "checkpoint after every epoch (--resume continues). Writes "
                    "OUT/generator.pt/.json; scripts/bundle_model.py bundles it.")
    g.add_argument("--dataset", default="mnist", choices=("mnist",))
    g.add_argument("--epochs", type=positive_int, default=GANTrainConfig.epochs,
                   help=f"epochs (default {GANTrainConfig.epochs})")
    g.add_argument("--out", help="output folder (default: runs/train-defense-gan-DATASET)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(g)
    g.set_defaults(run=run_defense_gan)


def run_defense_gan(args: argparse.Namespace) -> int:
    from defenses.defense_gan import GANTrainConfig, train_gan

    cfg = GANTrainConfig(dataset=args.dataset, epochs=args.epochs, seed=args.seed)
    train = load_dataset(args.dataset, "train", args.data_root)
    out = Path(args.out or f"runs/train-defense-gan-{args.dataset}")
    meta = train_gan(cfg, train.x(), out, resolve_device(args.device), args.resume,
                     args.command_line)
    print(f"generator written to {out}/generator.pt/.json (sha256 {meta['sha256'][:12]})")
    return 0


def _register_detector(what) -> None:
    """``adaptive train detector``."""
    d = what.add_parser(
        "detector", help="fit a bundled detector of known fate (fs, maha, kd, bu, lid)",
        description="Fit a known-broken detector for a classifier: feature squeezing (fs, Xu "
                    "et al. 2018), Mahalanobis (maha, Lee et al. 2018), kernel density (kd) "
                    "or Bayesian uncertainty (bu) (Feinman et al. 2017), LID (lid, Ma et al. "
                    "2018): what it learns from the first --n-train training images, the "
                    "threshold at --fpr false positives on the last --n-benign (held out). "
                    "Writes the detector with the command, the model's sha256 and the "
                    "images used.")
    d.add_argument("name", choices=("fs", "maha", "kd", "bu", "lid", "safetynet", "gcd"),
                   help="the detector (safetynet: trained on C&W examples of 1,000 training "
                        "images after the first --n-train, made here; gcd: on FGSM, BIM, "
                        "DeepFool and C&W examples of 500 such images each, against as many "
                        "of the first training images)")
    d.add_argument("--model", default="mnist-cnn", help="zoo name or checkpoint path")
    d.add_argument("--n-train", type=positive_int, default=20000,
                   help="training images the Gaussians are fitted on (default 20000)")
    d.add_argument("--n-benign", type=positive_int, default=5000,
                   help="held-out training images the threshold is set on (default 5000)")
    d.add_argument("--fpr", type=nonnegative_number, default=0.05,
                   help="false-positive rate on those (default 0.05, the papers')")
    d.add_argument("--out", help="output file (default: defenses/bundled/MODEL/NAME.json "
                                 "for a zoo model, else runs/detector-NAME.json)")
    add_run_options(d)
    d.set_defaults(run=run_detector)


def register(sub) -> None:
    p = sub.add_parser("train", help="train models (classifiers)")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    _register_classifier(what)
    _register_magnet(what)
    _register_magnet_pool(what)
    _register_defense_gan(what)
    _register_detector(what)


def run_detector(args: argparse.Namespace) -> int:
    import time

    from adaptive.core.runtime import seed_everything
    from adaptive.core.zoo import entry_path, load_model
    from defenses.detector_zoo import bundled_path, fit_detector, save_detector

    if not args.fpr < 1:
        raise ToolkitError(f"--fpr must be below 1, got {args.fpr}")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    model, meta = load_model(args.model, device)
    family = meta["dataset"]
    train = load_dataset(family, "train", args.data_root)
    if args.n_train + args.n_benign > len(train.labels):
        raise ToolkitError(f"--n-train + --n-benign ({args.n_train + args.n_benign}) exceeds "
                           f"the {len(train.labels)} training images")
    t0 = time.perf_counter()
    x = train.x()
    x_adv, made = None, {}
    if args.name in ("safetynet", "gcd"):  # trained on adversarial examples, made here
        x_adv, y_adv, made = _adversarial_training_set(args.name, model, family, train,
                                                       args.n_train, args.n_benign, device)
    det = fit_detector(args.name, model, family, x[:args.n_train], train.labels[:args.n_train],
                       x[-args.n_benign:], args.fpr, x_adversarial=x_adv)
    out = Path(args.out) if args.out else (bundled_path(args.name, args.model)
                                           if entry_path(args.model) is not None
                                           else Path(f"runs/detector-{args.name}.json"))
    # GCD learns from as many benign images as adversarial ones; its threshold is its
    # paper's rule, and the false-positive rate that gives on the held-out images is measured
    fitted_on = len(x_adv) if args.name == "gcd" else args.n_train
    fpr = det.fpr if args.name == "gcd" else args.fpr
    if args.name == "gcd":  # and its rectifier, fine-tuned on the same adversarial examples
        made["rectifier"] = _gcd_rectifier(det, model, meta, x_adv, y_adv, out, args)
    save_detector(det, out, {"command": args.command_line, "model": args.model,
                             "model_sha256": meta["sha256"], "data": f"{train.name}:train",
                             "fitted_on": f"first {fitted_on}",
                             "threshold_on": f"last {args.n_benign}", "fpr": fpr, **made,
                             "seconds": round(time.perf_counter() - t0, 1)})
    print(f"{args.name}: threshold {det.threshold:.6g}, {fpr:.2%} false positives on "
          f"{args.n_benign} held-out training images; {out}")
    return 0


def _gcd_rectifier(det, model, meta: dict, x_adv, y_adv, out: Path, args) -> dict:
    """GCD's rectifier: a copy of the classifier fine-tuned on suppressed duplicates of the
    detector's adversarial training examples, saved as a checkpoint beside the detector
    (``gcd-rectifier.pt``/``.json``); returns what the detector's meta records of it."""
    import time

    from adaptive.core.checkpoint import save_checkpoint
    from defenses.gcd import RECTIFIER_ALPHA, RECTIFIER_EPOCHS, fine_tune_rectifier

    t0 = time.perf_counter()
    rec = fine_tune_rectifier(model, det, x_adv, y_adv, RECTIFIER_ALPHA, RECTIFIER_EPOCHS,
                              seed=args.seed)
    path = out.with_name(f"{out.stem}-rectifier")
    saved = save_checkpoint(rec, path, architecture=meta["architecture"],
                            arch_kwargs=meta.get("arch_kwargs", {}), dataset=meta["dataset"],
                            training={"command": args.command_line,
                                      "fine_tuned_from": {"model": args.model,
                                                          "sha256": meta["sha256"]},
                                      "alpha": RECTIFIER_ALPHA, "epochs": RECTIFIER_EPOCHS,
                                      "examples": len(x_adv)})
    return {"file": f"{path.name}.json", "sha256": saved["sha256"], "alpha": RECTIFIER_ALPHA,
            "epochs": RECTIFIER_EPOCHS, "seconds": round(time.perf_counter() - t0, 1)}


# GCD's training attacks: its paper's grey-box kinds (FGSM, PGD-like BIM, DeepFool, C&W)
GCD_ATTACKS = ("fgsm", "bim", "deepfool", "cw")
GCD_PER_ATTACK = 500


def _adversarial_training_set(name: str, model, family: str, train, n_train: int,
                              n_benign: int, device):
    """(adversarial examples, their images' labels, what they are) of training images after
    the first ``n_train``
    (and before the last ``n_benign``): SafetyNet's C&W examples of 1,000 images, GCD's
    FGSM / BIM / DeepFool / C&W examples of 500 images each."""
    import torch

    from adaptive.attacks.cw import CarliniWagnerL2
    from adaptive.evaluations.adversarial_sets import attack_settings, make_adversarial

    need = 1000 if name == "safetynet" else GCD_PER_ATTACK * len(GCD_ATTACKS)
    if n_train + need + n_benign > len(train.labels):
        raise ToolkitError(f"{name} needs --n-train + {need} + --n-benign training images")
    x, y = train.x(), train.labels

    def cw(src):  # (examples, their images' labels)
        r = CarliniWagnerL2(kappa=0, steps=100, binary_search_steps=3, lr=0.05,
                            initial_const=0.1).run(model, x[src].to(device), y[src].to(device))
        return r.adversarial[r.success].cpu(), y[src][r.success.cpu()]

    if name == "safetynet":
        src = slice(n_train, n_train + 1000)
        x_adv, y_adv = cw(src)
        return x_adv, y_adv, {"adversarial": f"C&W kappa 0 (100 steps x 3 constants, lr 0.05) "
                                             f"of training images {src.start}-{src.stop - 1}: "
                                             f"{len(x_adv)} examples"}
    parts, labels, said = [], [], []
    for k, attack in enumerate(GCD_ATTACKS):
        src = slice(n_train + k * GCD_PER_ATTACK, n_train + (k + 1) * GCD_PER_ATTACK)
        if attack == "cw":  # ours (the sweep's C&W; Foolbox's 9 x 300 steps cost 10x more)
            made, made_y = cw(src)
            how = "C&W kappa 0 (100 steps x 3 constants, lr 0.05)"
        else:
            s = make_adversarial(attack, model, x[src].to(device), y[src].to(device),
                                 attack_settings(attack, family))
            made, made_y = s.x.cpu(), y[src][s.source.cpu()]
            how = f"{attack} {attack_settings(attack, family)}"
        parts.append(made)
        labels.append(made_y)
        said.append(f"{how} of training images {src.start}-{src.stop - 1}: {len(made)}")
    return torch.cat(parts), torch.cat(labels), {"adversarial": "; ".join(said)}


def run_classifier(args: argparse.Namespace) -> int:
    family = dataset_family(args.dataset)
    preset = PRESETS.get(family, PRESETS["mnist"])
    arch = args.arch or DEFAULT_ARCH.get(family)
    if arch is None:
        raise ToolkitError(f"no default architecture for {args.dataset!r}; pass --arch")
    adv = _adversarial_config(args, family)  # bad flags fail before any data is read
    if not args.label_smoothing < 1:
        raise ToolkitError(f"--label-smoothing must be below 1, got {args.label_smoothing}")
    arch_kwargs = {}
    if args.width is not None:
        if arch == "mnist-cnn":
            raise ToolkitError("--width applies to cifar-cnn and tiny-cnn only")
        arch_kwargs["width"] = args.width
    for flag, key, value in (("--activation", "activation", args.activation),
                             ("--thermometer", "thermometer", args.thermometer)):
        if value is not None and value != "relu":
            if arch != "cifar-cnn":
                raise ToolkitError(f"{flag} applies to cifar-cnn only")
            arch_kwargs[key] = value
    teacher, distill = None, {}
    if args.distill_from:
        from adaptive.core.zoo import load_model

        if adv is not None:
            raise ToolkitError("--distill-from and --adversarial do not combine")
        teacher, teacher_meta = load_model(args.distill_from, resolve_device(args.device))
        if teacher_meta["dataset"] != family:
            raise ToolkitError(f"the teacher {args.distill_from!r} was trained on "
                               f"{teacher_meta['dataset']}, not {family}")
        distill = {"model": args.distill_from, "sha256": teacher_meta["sha256"]}
    static = []
    if adv is not None and adv.static:  # loaded (and checked) before any data is read
        from adaptive.core.zoo import load_model

        hashes = {}
        for name in adv.static:
            m, meta = load_model(name, resolve_device(args.device))
            if meta["dataset"] != family:
                raise ToolkitError(f"the static model {name!r} was trained on "
                                   f"{meta['dataset']}, not {family}")
            static.append(m)
            hashes[name] = meta["sha256"]
    train = load_dataset(args.dataset, "train", args.data_root)
    test = load_dataset(args.dataset, "test", args.data_root)
    if arch == "tiny-cnn":
        arch_kwargs.update(input_shape=list(train.image_shape), num_classes=train.num_classes)
    cfg = TrainConfig(
        dataset=args.dataset, arch=arch, arch_kwargs=arch_kwargs, seed=args.seed,
        train_n=args.train_n,
        adversarial={**adv.to_dict(), **({"static_sha256": hashes} if static else {})}
        if adv else {},
        temperature=args.temperature, distill_from=distill,
        label_smoothing=args.label_smoothing,
        **{k: (getattr(args, k) if getattr(args, k) is not None else v)
           for k, v in preset.items()})
    out = Path(args.out or f"runs/train-{family}-{arch}" + (f"-{adv.method}" if adv else ""))
    perturb = extra_eval = None
    if adv is not None:
        from defenses.adversarial_training import make_perturbation, robustness_monitor

        print(f"adversarial training: {adv.describe()}")
        perturb = make_perturbation(adv, static)
        n = min(args.monitor_n, len(test))
        extra_eval = robustness_monitor(test.x()[:n], test.labels[:n], adv)
    train_classifier(cfg, train, test, out, resolve_device(args.device), resume=args.resume,
                     command=args.command_line, progress=not args.no_progress,
                     perturb=perturb, extra_eval=extra_eval, teacher=teacher)
    return 0


# Per-data-set adversarial budgets (Madry et al.): L-inf 0.3 with 40 steps of 0.01 on MNIST,
# 8/255 with 7 steps of 2/255 on CIFAR-10.
ADVERSARIAL_DEFAULTS = {"mnist": dict(eps=0.3, steps=40, step_size=0.01),
                        "cifar10": dict(eps=8 / 255, steps=7, step_size=2 / 255)}


def _adversarial_config(args: argparse.Namespace, family: str):
    given = [f for f in ("eps", "steps", "step_size", "static") if getattr(args, f) is not None]
    if args.adversarial is None:
        if given:
            raise ToolkitError(f"--{given[0].replace('_', '-')} needs --adversarial "
                               "pgd|fgsm-rs|ensemble")
        return None
    from defenses.adversarial_training import AdversarialConfig

    defaults = dict(ADVERSARIAL_DEFAULTS.get(family, ADVERSARIAL_DEFAULTS["cifar10"]))
    if args.norm != "linf" and args.eps is None:
        raise ToolkitError("--norm l2 needs an explicit --eps")
    if args.eps is not None:  # the default step size belongs to the default budget
        defaults.pop("step_size")
    if args.adversarial in ("fgsm-rs", "ensemble"):
        defaults.update(steps=1, step_size=None)
    values = {k: getattr(args, k) if getattr(args, k) is not None else v
              for k, v in defaults.items()}
    static = tuple(m.strip() for m in (args.static or "").split(",") if m.strip())
    return AdversarialConfig(method=args.adversarial, norm=args.norm, static=static, **values)


def run_magnet_pool(args: argparse.Namespace) -> int:
    from defenses.magnet.training import RECIPES, train_pool

    device = resolve_device(args.device)
    reformer = RECIPES[args.dataset]["autoencoders"][RECIPES[args.dataset]["reformer"]]
    cfg = PoolTrainConfig(dataset=args.dataset, arch=reformer["arch"], noise=reformer["noise"],
                          k=args.k, diversity=args.diversity, train_n=args.train_n,
                          epochs=args.epochs, seed=args.seed, init=args.init,
                          init_noise=args.init_noise, lr=args.lr)
    if cfg.k < 2:
        raise ToolkitError("a pool needs --k 2 or more autoencoders")
    train = load_dataset(args.dataset, "train", args.data_root)
    train_pool(cfg, train.x(), Path(args.out or f"runs/train-magnet-pool-{args.dataset}"),
               device, args.resume, args.command_line, not args.no_progress)
    return 0


def run_magnet(args: argparse.Namespace) -> int:
    from adaptive.core.zoo import load_model
    from defenses.magnet.training import train_magnet

    ref = args.model or ("mnist-cnn" if args.dataset == "mnist" else None)
    if ref is None:
        raise ToolkitError("--model is required for CIFAR-10 (the classifier MagNet protects)")
    device = resolve_device(args.device)
    classifier, meta = load_model(ref, device)
    if meta["dataset"] != args.dataset:
        raise ToolkitError(f"model {ref!r} was trained on {meta['dataset']}, not {args.dataset}")
    train = load_dataset(args.dataset, "train", args.data_root)
    out = Path(args.out or f"runs/train-magnet-{args.dataset}")
    train_magnet(args.dataset, train.x(), classifier, ref, meta["sha256"], out, device,
                 args.epochs, args.resume, args.command_line, not args.no_progress,
                 seed=args.seed)
    return 0
