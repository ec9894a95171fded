r"""Sum-of-Gamma noise on the CPU, compiled by numba (imported on first use).

:func:`sum_of_gamma` fills each output entry with :math:`\tau \sum_{i=1}^{s} G_i / i - \text{shift}`, the
:math:`G_i` i.i.d. :math:`\mathrm{Gamma}(\alpha, 1)`, drawn one after the other by exact rejection samplers that
read their random numbers from a generator seeded by the caller (see "Random numbers" below):

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
exponentials on average (1.006 and 0.006 at α = 0.2) instead of :math:`2/p` uniforms. The proposals are computed in
chunks by tight loops (the powers vectorised; :math:`y^{k}` by repeated squaring where 1/α = k is an integer
≤ 127), then walked in order against the exponentials, drawn as they are needed. The s tests of an entry whose
proposals lie in the current chunk are made at once: as every :math:`t \ge 0`, they all pass iff
:math:`E \ge \sum t` (and then :math:`E - \sum t` is what the s tests leave), which breaks the chain of dependent
subtractions; where one fails, the entry's tests are made one by one. Arithmetic is in float64; results are stored
in the output's dtype.

Random numbers: the kernel has a generator of its own, xoshiro256** (Blackman & Vigna, ACM TOMS 47, 2021; 256 bits
of state, period :math:`2^{256} - 1`, about 1 ns a number), whose state is set from ``seed``, four words the caller
draws from its torch generator (each through SplitMix64, as the authors advise). Uniforms are
:math:`2^{-53}\lfloor x / 2^{11} \rfloor` (x the 64-bit output), in [0, 1); the normals of Marsaglia–Tsang come
from Marsaglia's polar method. The draws are therefore a function of the torch generator's state (the same state
gives the same draws, and each call advances it by the four words), and no other random state is read or changed.
Drawing the numbers inside the kernel spares the bulk pool of torch uniforms it used to read (40 % of its time at
k = 5) and the refills where such a pool ran out.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

CHUNK = 4096  # proposals computed at a time (their values and thresholds stay in the L1/L2 cache)
PIECES = 256  # pieces of the envelope for alpha <= 1 (acceptance 0.994 at alpha = 0.2, 0.99 at alpha = 1)

_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_U = tuple(np.uint64(v) for v in range(65))  # shift counts, typed as uint64 (numba types uint64 with int64 as float64)
_TO_UNIT = 2.0**-53


@njit(cache=True, nogil=True)
def seed_state(words):  # pragma: no cover - compiled
    """xoshiro256**'s state from four 64-bit words (uint64): each through SplitMix64's output function (the state
    is all zero only if every word is the one that mixes to 0, about 2^-256 for random words; then it is set to 1)."""
    s = np.empty(4, np.uint64)
    for i in range(4):
        z = words[i] + _GOLDEN
        z = (z ^ (z >> _U[30])) * _MIX1
        z = (z ^ (z >> _U[27])) * _MIX2
        s[i] = z ^ (z >> _U[31])
    if s[0] == 0 and s[1] == 0 and s[2] == 0 and s[3] == 0:
        s[0] = _U[1]
    return s


@njit(cache=True, nogil=True, inline="always")
def _next(s0, s1, s2, s3):  # pragma: no cover - compiled
    """One step of xoshiro256**: (output, new state)."""
    r = s1 * _U[5]
    r = ((r << _U[7]) | (r >> _U[57])) * _U[9]
    t = s1 << _U[17]
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U[45]) | (s3 >> _U[19])
    return r, s0, s1, s2, s3


@njit(cache=True, nogil=True)
def uniforms(s, u):  # pragma: no cover - compiled
    """Fill ``u`` with uniforms in [0, 1) (53 bits) from the xoshiro256** state ``s``, which advances."""
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    for q in range(u.shape[0]):
        r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        u[q] = float(r >> _U[11]) * _TO_UNIT
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True, error_model="numpy")
def _normals(s, z):  # pragma: no cover - compiled
    """Fill ``z`` with standard normals by Marsaglia's polar method (a point (a, b) uniform on the square [-1, 1)^2,
    kept inside the unit disc, gives the pair (a, b) sqrt(-2 log r / r), r = a^2 + b^2), from the state ``s``."""
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    n, q = z.shape[0], 0
    while q < n:
        r1, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        r2, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        a = float(r1 >> _U[11]) * (2.0 * _TO_UNIT) - 1.0
        b = float(r2 >> _U[11]) * (2.0 * _TO_UNIT) - 1.0
        r = a * a + b * b
        if 0.0 < r < 1.0:
            f = math.sqrt(-2.0 * math.log(r) / r)
            z[q] = a * f
            if q + 1 < n:
                z[q + 1] = b * f
            q += 2
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3


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
def _stepped_proposals(s, n, alpha, lower, first, span, x, t, piece, tail, tail_v):  # pragma: no cover - compiled
    """``n`` proposals ``x`` and thresholds ``t`` (accepted where E >= t) for Gamma(alpha <= 1) from uniforms drawn
    from the state ``s``, on the envelope of :func:`envelope` (``piece``: room for the piece of each; ``tail`` and
    ``tail_v``: for the places and V of those on the last piece): U P = m + V picks the piece m and the place V in
    it (P pieces of equal mass)."""
    pieces = lower.shape[0]
    power = 1.0 / alpha
    k = int(power) if power == int(power) and power <= 127 else 0
    scale = _TO_UNIT * pieces
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    nt = 0
    # every proposal as if on a finite piece; the last piece (a fraction 1/P of the proposals) noted, redone below
    for q in range(n):
        r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        v = float(r >> _U[11]) * scale
        m = int(v)
        piece[q] = m
        x[q] = max(first[m] + (v - m) * span[m], 0.0)  # x^alpha
        if m == pieces - 1:
            tail[nt], tail_v[nt] = q, v - m
            nt += 1
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
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
    for p in range(nt):  # the exponential tail beyond c
        q = tail[p]
        xq = c - math.log(1.0 - tail_v[p])
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
def _walk(x, t, nq, s, out, inv, tau, shift, state, carry):  # pragma: no cover - compiled
    """Test the proposals ``x[:nq]`` (thresholds ``t >= 0``) in order against exponentials drawn from the state ``s``
    as they are needed, summing the accepted ones into ``out``; ``state`` (entry, term) and ``carry`` (partial sum,
    unspent exponential) updated. Stops at the end of the proposals or of ``out``."""
    n, terms = out.shape[0], inv.shape[0] - 1
    acc, e = carry[0], carry[1]
    j, i, q = state[0], state[1], 0
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    while j < n:
        if i == 1 and q + terms <= nq:  # a whole entry at once: its tests all pass iff E >= the sum of thresholds
            total, acc = 0.0, 0.0  # (t >= 0: the partial sums grow), and then E - sum t is the E left over
            for m in range(terms):
                total += t[q + m]
                acc += x[q + m] * inv[m + 1]
            if e >= total:
                e -= total
                out[j] = tau * acc - shift
                j, q, acc = j + 1, q + terms, 0.0
                continue
            acc = 0.0  # a rejection among them: test them one by one
        while i <= terms:
            if q >= nq:
                state[0], state[1], carry[0], carry[1] = j, i, acc, e
                s[0], s[1], s[2], s[3] = s0, s1, s2, s3
                return
            if e >= t[q]:  # accepted: E - t is Exp(1) again
                e -= t[q]
                acc += x[q] * inv[i]
                i += 1
            else:  # rejected: the exponential is spent, the next one drawn
                r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                e = -math.log(1.0 - float(r >> _U[11]) * _TO_UNIT)
            q += 1
        out[j] = tau * acc - shift
        j, i, acc = j + 1, 1, 0.0
    state[0], state[1], carry[0], carry[1] = n, 1, acc, e
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3


@njit(cache=True, nogil=True, error_model="numpy")
def sum_of_gamma(seed, out, alpha, terms, tau, shift, lower, first, span):  # pragma: no cover - compiled
    """Fill ``out`` (1-d) with ``tau * sum_{i<=terms} G_i / i - shift``, G_i ~ Gamma(alpha), from xoshiro256**
    seeded by the four words ``seed`` (uint64, :func:`seed_state`). Each chunk draws as many proposals as there are
    terms left (at most CHUNK): uniforms if alpha <= 1, standard normals otherwise."""
    s = seed_state(seed)
    n = out.shape[0]
    inv = np.empty(terms + 1)
    for i in range(1, terms + 1):
        inv[i] = 1.0 / i
    u, x, t, piece = np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK, np.int64)
    tail, tail_v = np.empty(CHUNK, np.int64), np.empty(CHUNK)
    state = np.array([0, 1], dtype=np.int64)  # the next entry, the next term (from 1)
    carry = np.zeros(2)  # partial sum, unspent exponential
    uniforms(s, carry[1:])
    carry[1] = -math.log(1.0 - carry[1])
    while state[0] < n:
        left = (n - state[0]) * terms - (state[1] - 1)
        size = min(CHUNK, left)
        if alpha <= 1.0:
            nq = _stepped_proposals(s, size, alpha, lower, first, span, x, t, piece, tail, tail_v)
        else:
            _normals(s, u[:size])
            nq = _mt_proposals(u[:size], alpha, x, t)
        _walk(x, t, nq, s, out, inv, tau, shift, state, carry)
