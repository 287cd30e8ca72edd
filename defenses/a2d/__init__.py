"""Attack as Defense (A2D): attack-cost engines and the detectors built on their costs."""

from defenses.a2d.bim import BIMCost
from defenses.a2d.cost import AttackCost
from defenses.a2d.dba import BoundaryCost
from defenses.a2d.detector import A2DDetector
from defenses.a2d.jsma import JSMACost
from defenses.a2d.knn import KNNDetector
from defenses.a2d.zscore import ZScoreDetector, ZScoreEnsemble

__all__ = ["AttackCost", "BIMCost", "BoundaryCost", "JSMACost", "A2DDetector", "KNNDetector",
           "ZScoreDetector", "ZScoreEnsemble"]
