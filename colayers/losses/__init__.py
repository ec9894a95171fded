"""Structured losses: Fenchel-Young, SPO+, structured SVM, imitation, regret, contrastive.

Every loss is a :class:`torch.nn.Module` called as ``loss(theta, target, ...)`` with a ``reduction`` in
``{'mean', 'sum', 'none'}``; values and hand-written gradients follow θ's device and dtype.
"""

from .contrastive import MAPContrastiveLoss, NCELoss
from .fenchel_young import FenchelYoungLoss
from .imitation import ImitationLoss
from .pool import SolutionPool
from .regret import ExperienceLoss, RegretLoss
from .spo import SPOPlusLoss, spo_plus_loss
from .ssvm import StructuredSVMLoss, hamming_augmented_oracle, hamming_margin

__all__ = [
    "FenchelYoungLoss",
    "SPOPlusLoss",
    "spo_plus_loss",
    "StructuredSVMLoss",
    "hamming_margin",
    "hamming_augmented_oracle",
    "ImitationLoss",
    "SolutionPool",
    "NCELoss",
    "MAPContrastiveLoss",
    "RegretLoss",
    "ExperienceLoss",
]
