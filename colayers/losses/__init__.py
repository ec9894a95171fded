"""Structured losses: Fenchel-Young, SPO+, structured SVM, imitation, regret, contrastive.

Every loss is a :class:`StructuredLoss` (a :class:`torch.nn.Module`) called as ``loss(theta, target, ...)`` with a
``reduction`` in ``{'mean', 'sum', 'none'}``; values and hand-written gradients follow θ's device and dtype.
"""

from .base import StructuredLoss
from .contrastive import MAPContrastiveLoss, NCELoss
from .fenchel_young import FenchelYoungLoss
from .imitation import ImitationLoss
from .regret import ExperienceLoss, RegretLoss
from .spo import SPOPlusLoss, spo_plus_loss
from .ssvm import StructuredSVMLoss, hamming_augmented_oracle, hamming_margin

__all__ = [
    "StructuredLoss",
    "FenchelYoungLoss",
    "SPOPlusLoss",
    "spo_plus_loss",
    "StructuredSVMLoss",
    "hamming_margin",
    "hamming_augmented_oracle",
    "ImitationLoss",
    "NCELoss",
    "MAPContrastiveLoss",
    "RegretLoss",
    "ExperienceLoss",
]
