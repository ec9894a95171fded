r"""Pool-adjacent-violators on the CPU in linear time, compiled by numba (imported on first use).

The classical stack form of PAV (Barlow et al. 1972; Best & Chakravarti 1990): scan each row from the left,
push every entry as its own block, and while the block on top of the stack violates the order with the one
below it (:math:`\gamma(B_{\text{below}}) < \gamma(B_{\text{top}})`, the same strict test as the batched
solver), pool the two. Each entry is pushed once and pooled at most once, so a row costs :math:`O(n)`. The
block statistics are merged in :math:`O(1)`: the sum of :math:`s - w` and the size for ``"l2"``
(:math:`\gamma = \frac1{|B|}\sum_B (s_i - w_i)`), the running log-sum-exps of s and of w for ``"kl"``
(:math:`\gamma = \log\sum_B e^{s_i} - \log\sum_B e^{w_i}`, merged by :math:`\log(e^a + e^b) = \max(a, b) +
\log(1 + e^{-|a - b|})`). Block statistics and results are stored in the arrays' dtype (float32 or
float64); numba evaluates ``exp`` and ``log`` in float64 before storing.

The block partition (``bid``) is what the exact Jacobian of :class:`~colayers.layers.soft_sort.IsotonicRegression`
needs; it equals the batched solver's wherever no two adjacent blocks have equal values (a tie).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _logaddexp(a, b):  # pragma: no cover - compiled
    """log(e^a + e^b), one exp and one log1p."""
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


@njit(cache=True, nogil=True)
def pav_rows(s, w, kl, v, bid):  # pragma: no cover - compiled; tested through soft_sort.isotonic_regression
    """Fill ``v`` (the decreasing isotonic regression) and ``bid`` (block ids from 0 at the left of each row)
    for C-contiguous rows ``s``, ``w`` ``(B, n)``; ``kl`` picks the block value."""
    b, n = s.shape
    start = np.empty(n, np.int64)
    value = np.empty(n, s.dtype)
    ms, ss = np.empty(n, s.dtype), np.empty(n, s.dtype)  # "l2": sum of s - w, size; "kl": log-sum-exp of s
    mw = np.empty(n, s.dtype)  # "kl": log-sum-exp of w
    for r in range(b):
        top = -1
        for i in range(n):
            top += 1
            start[top] = i
            if kl:
                ms[top], mw[top] = s[r, i], w[r, i]
            else:
                ms[top], ss[top] = s[r, i] - w[r, i], 1.0
            value[top] = s[r, i] - w[r, i]
            while top > 0 and value[top - 1] < value[top]:
                j = top - 1
                if kl:
                    ms[j] = _logaddexp(ms[j], ms[top])
                    mw[j] = _logaddexp(mw[j], mw[top])
                    value[j] = ms[j] - mw[j]
                else:
                    ms[j] += ms[top]
                    ss[j] += ss[top]
                    value[j] = ms[j] / ss[j]
                top = j
        for k in range(top + 1):
            end = start[k + 1] if k < top else n
            for i in range(start[k], end):
                v[r, i] = value[k]
                bid[r, i] = k
