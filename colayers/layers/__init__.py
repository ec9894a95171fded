"""Estimators as layers: an oracle, a perturbation and a vector-Jacobian-product rule.

:mod:`colayers.layers.core` holds the composition (:class:`Perturbed`, :func:`perturbed`, :class:`OracleLayer`),
:mod:`colayers.layers.rules` the VJP rules, :mod:`colayers.layers.active_set` the implicit differentiation of the
regularized layers; ``docs/estimators.md`` has the formulas, the table of named estimators and a guide to choosing
one.
"""

from . import active_set as _active_set
from . import core as _core
from . import frank_wolfe as _frank_wolfe
from . import functional as functional  # the functional twins: colayers.layers.functional, not re-exported
from . import identity as _identity
from . import imle as _imle
from . import perturbed as _perturbed
from . import pushforward as _pushforward
from . import regularized as _regularized
from . import rules as _rules
from . import soft_sort as _soft_sort
from . import wrap as _wrap
from .active_set import *  # noqa: F403
from .core import *  # noqa: F403
from .frank_wolfe import *  # noqa: F403
from .identity import *  # noqa: F403
from .imle import *  # noqa: F403
from .perturbed import *  # noqa: F403
from .pushforward import *  # noqa: F403
from .regularized import *  # noqa: F403
from .rules import *  # noqa: F403
from .soft_sort import *  # noqa: F403
from .wrap import *  # noqa: F403

# the public names are declared once, in each module's __all__; the package re-exports them all
__all__: list[str] = [
    *_core.__all__,
    *_rules.__all__,
    *_perturbed.__all__,
    *_imle.__all__,
    *_identity.__all__,
    *_regularized.__all__,
    *_frank_wolfe.__all__,
    *_active_set.__all__,
    *_soft_sort.__all__,
    *_pushforward.__all__,
    *_wrap.__all__,
]
