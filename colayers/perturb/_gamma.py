r"""Sum-of-Gamma noise on the CPU, compiled by numba (imported on first use).

:func:`sum_of_gamma` fills each output entry with :math:`\tau \sum_{i=1}^{s} G_i / i - \text{shift}`, the
:math:`G_i` i.i.d. :math:`\mathrm{Gamma}(\alpha, 1)`, drawn one after the other by exact rejection samplers that
read their random numbers from a pool drawn beforehand with the caller's generator (no random state of their own):

* :math:`\alpha \le 1`: rejection from a step envelope (the idea of Ahrens & Dieter's GS, Computing 12, 1974, on
  finer steps), built once per α by :func:`envelope`: P = 256 pieces of equal mass,
  :math:`[c_m, c_{m+1})` with :math:`c_0 = 0`, on which the envelope is :math:`e^{-c_m} x^{\alpha - 1}` (above the
  density :math:`x^{\alpha-1}e^{-x}` there), and a last piece :math:`[c, \infty)` with envelope
  :math:`c^{\alpha-1}e^{-x}`. One uniform gives :math:`UP = m + V`, the piece m and V uniform within it; the
  proposal is :math:`x = (c_m^\alpha + V(c_{m+1}^\alpha - c_m^\alpha))^{1/\alpha}` (its law within the piece is
  :math:`\propto x^{\alpha-1}`), accepted where :math:`E \ge x - c_m`; on the last piece :math:`x = c - \log(1 - V)`,
  accepted where :math:`E \ge (1-\alpha)\log(x/c)`. Acceptance probability :math:`p = \Gamma(\alpha)/(Pw)`, w the
  mass of a piece: 0.994 at α = 0.2, 0.99 at α → 1 (GS, one step: 0.86 and 0.73);
* :math:`\alpha > 1`: Marsaglia & Tsang (ACM TOMS 26, 2000), :math:`d = \alpha - 1/3`, :math:`c = 1/\sqrt{9d}`: a
  standard normal :math:`Z` gives :math:`V = (1 + cZ)^3`; the proposal :math:`dV` is rejected where :math:`V \le 0`,
  else accepted where :math:`E \ge -(Z^2/2 + d - dV + d\log V)` (p above 0.95).

Both tests compare an exponential variable :math:`E = -\log(1 - U)` with a threshold :math:`t` of the proposal
(the usual :math:`\log U' \le -t`). :math:`E` is recycled: after an acceptance, :math:`E - t` is again
:math:`\mathrm{Exp}(1)` and independent of everything drawn so far (the exponential law has no memory), so it serves
the next test; only a rejection spends it. A Gamma term then costs :math:`1/p` proposals and :math:`1/p - 1`
exponentials on average (1.006 and 0.006 at α = 0.2) instead of :math:`2/p` uniforms. The pool holds the
proposals' random numbers first (uniforms, or normals for α > 1), then the exponentials' uniforms; the proposals
are computed in chunks by branch-free loops (vectorised; :math:`y^{k}` by repeated squaring where 1/α = k is an
integer ≤ 127), then walked in order against the exponentials. Arithmetic is in float64 whatever the pool's dtype;
results are stored in the output's.

When a part of the pool runs out, the kernel stops before the proposal it cannot pay for and leaves its progress
in ``state`` (entry, term) and ``carry`` (partial sum, unspent exponential); called again with a new pool it goes on
from there, so the draws depend only on the sequence of pools.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

CHUNK = 4096  # proposals computed at a time (their values and thresholds stay in the L1/L2 cache)
PIECES = 256  # pieces of the envelope for alpha <= 1 (acceptance 0.994 at alpha = 0.2, 0.99 at alpha = 1)


@functools.lru_cache(maxsize=64)
def tables(alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(lower, first, span, acceptance)``: the envelope of :func:`envelope` for alpha <= 1 (its acceptance
    probability Gamma(alpha) / (PIECES w)); for alpha > 1 (Marsaglia-Tsang: no tables) empty tables and a lower
    bound of the acceptance, 1 / (1 + 0.06 / alpha) (measured: 0.951 at alpha = 1.01, 0.981 at 2)."""
    if alpha > 1.0:
        empty = np.zeros(1)
        return empty, empty, empty, 1.0 / (1.0 + 0.06 / alpha)
    lower, first, span, w = envelope(alpha, PIECES)
    return lower, first, span, math.gamma(alpha) / (PIECES * w)


@njit(cache=True, nogil=True, error_model="numpy")
def _pieces(alpha, w, pieces):  # pragma: no cover - compiled
    """Breakpoints of ``pieces`` pieces, all but the last of envelope mass ``w``, kept as a_m = c_m^alpha (c_m may
    underflow to 0 for a small alpha, a_m does not): a_0 = 0, a_{m+1} = a_m + alpha w e^{c_m}; and the mass of the
    last piece [c_{P-1}, inf), c^(alpha - 1) e^{-c} (-1 where the breakpoints overflow: w too large)."""
    a = np.zeros(pieces)
    for m in range(pieces - 1):
        a[m + 1] = a[m] + alpha * w * math.exp(a[m] ** (1.0 / alpha))
        if math.log(a[m + 1]) / alpha > 700.0:
            return a, -1.0
    c = a[pieces - 1] ** (1.0 / alpha)
    return a, c ** (alpha - 1.0) * math.exp(-c)


@njit(cache=True, nogil=True, error_model="numpy")
def envelope(alpha, pieces):  # pragma: no cover - compiled
    """The envelope of Gamma(alpha <= 1) in ``pieces`` pieces of equal mass ``w``: ``(lower, first, span, w)``.
    Piece m covers [lower[m], lower[m + 1]) (the last one up to infinity); on a finite piece the envelope is
    e^{-c} x^(alpha - 1) (c = lower[m]: above the density x^(alpha - 1) e^{-x} there), and x is drawn by
    x^alpha = first[m] + V span[m] (V uniform on [0, 1); first[m] = c^alpha); on the last one it is
    c^(alpha - 1) e^{-x}, drawn as x = c - log(1 - V). The masses are equal (to rounding) for w found by bisection
    on the mass of the last piece; the acceptance probability is Gamma(alpha) / (pieces w)."""
    lo, hi = math.gamma(alpha) / pieces, 4.0 * (1.0 / alpha + 1.0) / pieces
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        last = _pieces(alpha, mid, pieces)[1]
        if last < 0.0 or last < mid:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-16 * hi:
            break
    first = _pieces(alpha, lo, pieces)[0]
    lower, span = np.empty(pieces), np.zeros(pieces)
    for m in range(pieces):
        lower[m] = first[m] ** (1.0 / alpha)
        if m + 1 < pieces:
            span[m] = first[m + 1] - first[m]
    return lower, first, span, lo


@njit(cache=True, nogil=True, error_model="numpy")
def _stepped_proposals(u, alpha, lower, first, span, x, t, piece):  # pragma: no cover - compiled
    """Proposals ``x`` and thresholds ``t`` (accepted where E >= t) for Gamma(alpha <= 1) from the uniforms ``u``,
    on the envelope of :func:`envelope` (``piece``: room for the piece of each): U P = m + V picks the piece m and the
    place V in it (P pieces of equal mass)."""
    pieces = lower.shape[0]
    power = 1.0 / alpha
    k = int(power) if power == int(power) and power <= 127 else 0
    n = u.shape[0]
    # every proposal as if on a finite piece, in branch-free loops (vectorised); the last piece is redone below
    for q in range(n):
        s = float(u[q]) * pieces
        m = int(s)
        piece[q] = m
        x[q] = max(first[m] + (s - m) * span[m], 0.0)  # x^alpha
    if k:  # x = (x^alpha)^k by repeated squaring over the bits of k (a fixed loop)
        for q in range(n):
            y, result = x[q], 1.0
            for bit in range(7):
                if (k >> bit) & 1:
                    result *= y
                y *= y
            x[q] = result
    else:  # exp(log) is faster than pow here (error about |power log y| ulps)
        for q in range(n):
            x[q] = math.exp(power * math.log(x[q])) if x[q] > 0.0 else 0.0
    for q in range(n):
        t[q] = max(x[q] - lower[piece[q]], 0.0)  # the envelope exceeds the density by e^{x - c} (t >= 0)
    c = lower[pieces - 1]
    for q in range(n):  # the last piece (a fraction 1/P of the proposals): the exponential tail beyond c
        if piece[q] == pieces - 1:
            s = float(u[q]) * pieces
            xq = c - math.log(1.0 - (s - (pieces - 1)))
            x[q] = xq
            t[q] = (1.0 - alpha) * math.log(xq / c)  # the envelope exceeds the density by (x / c)^(1 - alpha)
    return n


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_proposals(z, alpha, x, t):  # pragma: no cover - compiled
    """Marsaglia-Tsang proposals and thresholds for the normals ``z``, those with V <= 0 left out (rejected without
    a test); returns how many were written."""
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    m = 0
    for q in range(z.shape[0]):
        zq = float(z[q])
        v = 1.0 + c * zq
        if v > 0.0:
            v3 = v * v * v
            x[m] = d * v3
            t[m] = max(-(0.5 * zq * zq + d - d * v3 + 3.0 * d * math.log(v)), 0.0)  # >= 0 but for rounding
            m += 1
    return m


@njit(cache=True, nogil=True, error_model="numpy")
def _walk(x, t, nq, ex, r, out, inv, tau, shift, state, carry):  # pragma: no cover - compiled
    """Test the proposals ``x[:nq]`` (thresholds ``t >= 0``) in order against the exponentials ``ex[r:]``, summing the
    accepted ones into ``out``; returns the next unused exponential, ``state``/``carry`` updated. Stops at the end of
    the proposals, of the exponentials, or of ``out``."""
    n, ne, terms = out.shape[0], ex.shape[0], inv.shape[0] - 1
    acc, e = carry[0], carry[1]
    j, i, q = state[0], state[1], 0
    if e < 0.0:  # no exponential at hand: take the next one
        if r >= ne:
            return r
        e, r = ex[r], r + 1
    while j < n:
        while i <= terms:
            if q >= nq:
                state[0], state[1], carry[0], carry[1] = j, i, acc, e
                return r
            if e >= t[q]:  # accepted: E - t is Exp(1) again
                e -= t[q]
                acc += x[q] * inv[i]
                i += 1
            elif r < ne:  # rejected: the exponential is spent, the next one taken
                e, r = ex[r], r + 1
            else:
                state[0], state[1], carry[0], carry[1] = j, i, acc, -1.0
                return r
            q += 1
        out[j] = tau * acc - shift
        j, i, acc = j + 1, 1, 0.0
    state[0], state[1], carry[0], carry[1] = n, 1, acc, e
    return r


@njit(cache=True, nogil=True, error_model="numpy")
def sum_of_gamma(pool, split, out, alpha, terms, tau, shift, state, carry, lower, first, span):  # pragma: no cover
    """Fill ``out[state[0]:]`` (1-d) with ``tau * sum_{i<=terms} G_i / i - shift``, G_i ~ Gamma(alpha), from the
    random numbers ``pool`` (1-d): ``pool[:split]`` for the proposals (uniforms in [0, 1) if alpha <= 1, standard
    normals otherwise), ``pool[split:]`` uniforms in [0, 1) for the exponentials. ``state`` (int64: entry, next term
    from 1) and ``carry`` (float64: partial sum, unspent exponential or -1) hold the progress: where a part of the
    pool runs out the kernel returns early, to be called again with a new pool (``state[0] < out.shape[0]``)."""
    ex = np.empty(pool.shape[0] - split)
    for r in range(ex.shape[0]):
        ex[r] = -math.log(1.0 - float(pool[split + r]))  # 1 - U in (0, 1]: E finite
    inv = np.empty(terms + 1)
    for i in range(1, terms + 1):
        inv[i] = 1.0 / i
    x, t, piece = np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK, np.int64)
    r = 0
    for start in range(0, split, CHUNK):
        stop = min(start + CHUNK, split)
        if alpha <= 1.0:
            nq = _stepped_proposals(pool[start:stop], alpha, lower, first, span, x, t, piece)
        else:
            nq = _mt_proposals(pool[start:stop], alpha, x, t)
        r = _walk(x, t, nq, ex, r, out, inv, tau, shift, state, carry)
        if state[0] >= out.shape[0] or (r >= ex.shape[0] and carry[1] < 0.0):
            break
