"""MagNet (Meng & Chen, CCS 2017): autoencoder detectors and the reformer."""

from defenses.magnet.autoencoder import MagNetAutoencoder, build_autoencoder
from defenses.magnet.defense import MagNet
from defenses.magnet.detectors import DivergenceDetector, ReconstructionDetector

__all__ = ["MagNetAutoencoder", "build_autoencoder", "MagNet", "DivergenceDetector",
           "ReconstructionDetector"]
