"""Combinatorial oracles: the :class:`Oracle` abstraction, the per-instance solver wrapper, built-in solvers."""

from . import base as _base
from . import cache as _cache
from . import combinatorial as _combinatorial
from . import counting as _counting
from . import enumerated as _enumerated
from . import grid as _grid
from . import highs as _highs
from . import packing as _packing
from . import pool as _pool
from . import portfolio as _portfolio
from . import pyepo as _pyepo
from . import simplex as _simplex
from . import solvers as _solvers
from . import tsp as _tsp
from .base import *  # noqa: F403
from .cache import *  # noqa: F403
from .combinatorial import *  # noqa: F403
from .counting import *  # noqa: F403
from .enumerated import *  # noqa: F403
from .grid import *  # noqa: F403
from .highs import *  # noqa: F403
from .packing import *  # noqa: F403
from .pool import *  # noqa: F403
from .portfolio import *  # noqa: F403
from .pyepo import *  # noqa: F403
from .simplex import *  # noqa: F403
from .solvers import *  # noqa: F403
from .tsp import *  # noqa: F403

# the public names are declared once, in each module's __all__; the package re-exports them all
__all__: list[str] = [
    *_base.__all__,
    *_simplex.__all__,
    *_grid.__all__,
    *_enumerated.__all__,
    *_combinatorial.__all__,
    *_packing.__all__,
    *_solvers.__all__,
    *_highs.__all__,
    *_cache.__all__,
    *_counting.__all__,
    *_pool.__all__,
    *_pyepo.__all__,
    *_tsp.__all__,
    *_portfolio.__all__,
]
