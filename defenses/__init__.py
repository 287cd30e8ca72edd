"""Defenses to evaluate: a defended model (:class:`Defense`: a classifier and its detectors),
the detector contract every detector implements, A2D's attack-cost detectors, MagNet,
adversarial training, and the detectors of known fate. Depends only on ``adaptive.core``."""

from defenses.a2d.detector import A2DDetector, A2DKNNDetector
from defenses.bpda import BPDA, bpda
from defenses.defense import Defense, detector_flags
from defenses.detector import DETECTOR_TYPES, Detector, NotFittedError, is_differentiable
from defenses.feature_squeezing import FeatureSqueezingDetector
from defenses.gcd import GCDClassifier, GCDDetector
from defenses.kd_bu import BayesianUncertaintyDetector, KernelDensityDetector
from defenses.lid import LIDDetector
from defenses.magnet.defense import MagNet
from defenses.magnet.detectors import DivergenceDetector, ReconstructionDetector
from defenses.mahalanobis import MahalanobisDetector
from defenses.safetynet import SafetyNetDetector

__all__ = ["A2DDetector", "A2DKNNDetector", "BPDA", "BayesianUncertaintyDetector", "DETECTOR_TYPES",
           "Defense", "Detector", "DivergenceDetector", "FeatureSqueezingDetector",
           "GCDClassifier", "GCDDetector", "KernelDensityDetector", "LIDDetector", "MagNet",
           "MahalanobisDetector", "NotFittedError", "ReconstructionDetector",
           "SafetyNetDetector", "bpda", "detector_flags", "is_differentiable"]
