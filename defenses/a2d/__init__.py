"""Attack as Defense (A2D): attack-cost engines and the detectors built on their costs.

``A2DDetector`` (Z-score; END with several engines) and ``A2DKNNDetector`` are image-level
detectors with the toolkit's detector contract (:mod:`defenses.detector`); ``ZScoreDetector``,
``ZScoreEnsemble`` and ``KNNDetector`` are the statistical models on cost arrays they are made
of (numpy in and out, ``predict`` True = adversarial), usable on their own for studies."""

from defenses.a2d.bim import BIMCost
from defenses.a2d.cost import AttackCost
from defenses.a2d.dba import BoundaryCost
from defenses.a2d.detector import A2DDetector, A2DKNNDetector
from defenses.a2d.jsma import JSMACost
from defenses.a2d.knn import KNNDetector
from defenses.a2d.zscore import ZScoreDetector, ZScoreEnsemble

__all__ = ["AttackCost", "BIMCost", "BoundaryCost", "JSMACost", "A2DDetector", "A2DKNNDetector",
           "KNNDetector", "ZScoreDetector", "ZScoreEnsemble"]
