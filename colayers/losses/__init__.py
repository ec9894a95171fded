"""Structured losses: Fenchel-Young, SPO+, structured SVM, imitation, regret, contrastive, learning to rank;
robust (kNN) targets.

Every loss is a :class:`StructuredLoss` (a :class:`torch.nn.Module`) called as ``loss(theta, target, ...)`` with a
``reduction`` in ``{'mean', 'sum', 'none'}``; values and hand-written gradients follow θ's device and dtype.
"""

from . import base as _base
from . import cave as _cave
from . import contrastive as _contrastive
from . import fenchel_young as _fenchel_young
from . import imitation as _imitation
from . import perturbation_gradient as _perturbation_gradient
from . import ranking as _ranking
from . import regret as _regret
from . import spo as _spo
from . import ssvm as _ssvm
from . import targets as _targets
from .base import *  # noqa: F403
from .cave import *  # noqa: F403
from .contrastive import *  # noqa: F403
from .fenchel_young import *  # noqa: F403
from .imitation import *  # noqa: F403
from .perturbation_gradient import *  # noqa: F403
from .ranking import *  # noqa: F403
from .regret import *  # noqa: F403
from .spo import *  # noqa: F403
from .ssvm import *  # noqa: F403
from .targets import *  # noqa: F403

# the public names are declared once, in each module's __all__; the package re-exports them all
__all__: list[str] = [
    *_base.__all__,
    *_fenchel_young.__all__,
    *_spo.__all__,
    *_ssvm.__all__,
    *_imitation.__all__,
    *_regret.__all__,
    *_contrastive.__all__,
    *_ranking.__all__,
    *_targets.__all__,
    *_perturbation_gradient.__all__,
    *_cave.__all__,
]
