"""Error statistics of a float comparison in one pass over the elements (pure functions;
harness.compare decides verdicts from them).

Every statistic the policy reads is a max, a sum or a count of per-element terms (the error, its
relative size, its size in ULP of g_i, whether it is beyond a bound), so one compiled loop folds an
element into all of them at once: `fold(a, g, dtype, ...)` returns a Totals. The loop is numba's, so
the float64 temporaries that a numpy expression per statistic would stream through memory (a dozen
passes, 27 ns per element) never exist; and it has no branch, so LLVM vectorizes it (2.7 ns per
element with every statistic, against 11 to 17 ns for the scalar loop with branches before it).

    fold(a, g, dtype, relative=, floors=, bias=, bound=) -> Totals (a, g flat; a in any dtype)
    metrics(t, dtype, m)      -> the row's error metrics (max / rel / RMSE / ULP / small values ...)
    relative(t)               -> RelativeStats of one side against the golden (the ratios' numerators)
    floors(t)                 -> what correct rounding costs (the ratios' floors)
    bias(t)                   -> the mean signed error in ULP and its bound
    t.bad, t.bad_small, t.worst -> elements beyond the bound, those of them small, the worst one's index

Within a slice of SLICE elements the sums run in the vectorized loop's order (fixed by the compiled
code for this CPU), and slices combine in slice order: the same inputs give the same bits on one
thread or many. Maxes and counts are exact in any order; a sum may differ in its last bits on a CPU
of another vector width.
"""
from __future__ import annotations

import hashlib
import math
import os
import queue
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import policy as P
from . import half, jit
from .dtypes import EXPONENT_MASK, is_float, name_of, ulp_constants
from .pools import LazyPool


# Elements per call of the loop. Each slice has its own accumulator, combined in slice order, so the
# result is the same bits however many threads fold the slices (a 64K-element slice takes ~0.2 ms:
# a thread's hand-off, ~20 us, is small beside it; a smaller one would tie the answer to less).
SLICE = 1 << 16

# Slots of the accumulator (module constants: numba compiles them in).
MAX_ERR, MAX_REL, SUM_REL, SUM_ERR2, MAX_ULP, BEYOND_1ULP, SMALL, SMALL_ERR = 0, 1, 2, 3, 4, 5, 6, 7
AA, GG, AG, POS, NEG = 8, 9, 10, 11, 12
N_NORMAL, SUM_E2_NORMAL, SUM_REL_NORMAL, MAX_REL_NORMAL, SMALL_ERRS = 13, 14, 15, 16, 17
MAX_U, SUM_U2, SUM_UR, MAX_UR = 18, 19, 20, 21
BIAS_E, BIAS_T, BIAS_E2 = 22, 23, 24
BAD, BAD_SMALL, WORST_ERR, WORST_AT = 25, 26, 27, 28
NONFINITE_A, NONFINITE_G = 29, 30
MAX_G = 31                               # max |g_i|: a cap scaled to it needs no pass of its own
N_SLOTS = 32
_MAXES = [MAX_ERR, MAX_REL, MAX_ULP, MAX_REL_NORMAL, MAX_U, MAX_UR, MAX_G]
_SUMS = [k for k in range(N_SLOTS) if k not in _MAXES and k not in (WORST_ERR, WORST_AT)]



# The loop's settings, packed into one float64 array (one argument: numba checks the type of every
# argument on each call, 0.5 us apiece, and a smoke output folds in a few microseconds).
(P_ULP_SCALE, P_ULP_MIN, P_THR, P_SMALL_ATOL, P_REL_ATOL, P_NOISE, P_C0, P_C1, P_C2, P_S_FLOOR,
 P_S_KEEP) = range(11)
N_SETTINGS = 11


def _element_terms(x, y, ulp_scale, ulp_min, thr, small_atol, rel_atol, noise, c0, c1, c2, s_floor, s_keep):
    """Every per-element term of a[i] = x against g[i] = y (float64), without a branch.

    Compiled without fast-math (exact IEEE arithmetic, the same bits in the vector loop and in
    _worst_loop): only the sums of _fold_loop may be reordered. The normal-domain terms of a small
    value are selected to 0 (its 0 / 0 and x / 0 are computed and dropped: selects, not branches).

    ULP of g_i in the output dtype: the float64 exponent bits of |g_i| (2**floor(log2|g_i|)), at least
    the dtype's smallest normal, times 2**-nmant; a power of two, so err / u is exact. A dtype with
    no ULP (integers) has ulp_scale 0 and threshold 0: no small values, and ULP terms nobody reads."""
    nf_x = np.float64(x - x != 0.0)              # x - x is NaN exactly where x is NaN or inf
    nf_y = np.float64(y - y != 0.0)
    d = x - y
    e = abs(d)
    ay = abs(y)
    r = e / (ay + 1e-7)                          # CANN's MARE / MERE denominator
    p = np.int64(np.float64(ay).view(np.int64) & EXPONENT_MASK).view(np.float64)
    u = max(p, ulp_min) * ulp_scale
    small = ay < thr
    sm = np.float64(small)
    q = 0.0 if small else e / u
    rr = 0.0 if small else max(e - noise, 0.0) / ay
    ur = 0.0 if small else u / ay
    eb = 0.0 if small else d / u
    towards = eb if y > 0 else -eb               # y = 0 is small: eb is 0 there
    allowed = c0 + c1 * ay + c2 * u
    if small:
        allowed = max(allowed, s_floor) if s_keep else s_floor
    bad = e > allowed
    return (nf_x, nf_y, e, r, e * e, x * x, y * y, x * y, np.float64(d > 0), np.float64(d < 0), sm,
            sm * np.float64(e > small_atol), q, np.float64(q > 1.0), sm * np.float64(e > rel_atol),
            (1.0 - sm) * (e * e), rr, u, 0.0 if small else u * u, ur, eb, towards, eb * eb, np.float64(bad),
            sm * np.float64(bad), ay)


# What a fold computes beyond the row's metrics (those, NaN / inf counts and max|g| always): the
# groups of slots each compiled variant of the loop accumulates. A fold of fewer groups is cheaper
# (LLVM drops the terms nobody adds up): the relative sums alone 1.75 instead of 2.47 ns per element.
RELATIVE, FLOORS, BIAS, BOUND = 1, 2, 4, 8


def _fold_loop_for(groups: int, stamp: int):
    """The fold loop accumulating the metrics and `groups` (closure constants: numba compiles them in,
    and caches each variant apart). `stamp`: _callee_stamp(), a closure constant too, so the cached
    loop is compiled again when code it compiles in from another file changes."""
    rel_on, floors_on, bias_on, bound_on = (bool(groups & RELATIVE), bool(groups & FLOORS), bool(groups & BIAS),
                                            bool(groups & BOUND))

    def _fold_loop(a, g, acc, prm):
        """Fold elements a[i] vs g[i] (float64) into acc (see the slots; WORST_* are _worst_loop's).
        NaN and inf are counted (NONFINITE_A / _G); the other statistics are then meaningless, and the
        caller filters them out and folds again.

        Compiled with fast-math "reassoc" only, so that LLVM vectorizes the sums (4 or 8 partial sums
        per statistic, as the host's vector width decides; 2.5 instead of 13 ns per element here with
        every group). The maxes are integer maxes of the bit patterns (non-negative floats order as
        their bits), exact in any order. So the same inputs give the same bits on one machine however
        many threads fold them; another CPU may differ in a sum's last bits."""
        if stamp < 0:                    # never: the stamp is in the loop only to key numba's cache
            return
        ulp_scale, ulp_min, thr, small_atol = prm[P_ULP_SCALE], prm[P_ULP_MIN], prm[P_THR], prm[P_SMALL_ATOL]
        rel_atol, noise = prm[P_REL_ATOL], prm[P_NOISE]
        c0, c1, c2, s_floor, s_keep = prm[P_C0], prm[P_C1], prm[P_C2], prm[P_S_FLOOR], prm[P_S_KEEP] != 0.0
        nf_a = nf_g = sum_rel = sum_err2 = aa = gg = ag = pos = neg = n_small = small_err = 0.0
        beyond = small_errs = e2n = reln = sum_u2 = sum_ur = be = bt = be2 = bad = bad_small = 0.0
        m_err = m_rel = m_ulp = m_reln = m_u = m_ur = m_g = np.int64(0)
        for i in range(a.size):
            (fa, fg, e, r, ee, xx, yy, xy, dp, dn, sm, se, q, by, ses, een, rr, u, uu, ur, eb, tw, ebb, bd,
             bds, ay) = _element(_widen(a[i]), g[i], ulp_scale, ulp_min, thr, small_atol, rel_atol, noise,
                                 c0, c1, c2, s_floor, s_keep)
            nf_a += fa
            nf_g += fg
            m_g = max(m_g, np.float64(ay).view(np.int64))
            m_err = max(m_err, np.float64(e).view(np.int64))
            m_rel = max(m_rel, np.float64(r).view(np.int64))
            sum_rel += r
            sum_err2 += ee
            aa += xx
            gg += yy
            ag += xy
            pos += dp
            neg += dn
            n_small += sm
            small_err += se
            m_ulp = max(m_ulp, np.float64(q).view(np.int64))
            beyond += by
            if rel_on:
                small_errs += ses
                e2n += een
                reln += rr
                m_reln = max(m_reln, np.float64(rr).view(np.int64))
            if floors_on:
                m_u = max(m_u, np.float64(u).view(np.int64))
                sum_u2 += uu
                sum_ur += ur
                m_ur = max(m_ur, np.float64(ur).view(np.int64))
            if bias_on:
                be += eb
                bt += tw
                be2 += ebb
            if bound_on:
                bad += bd
                bad_small += bds
        acc[MAX_ERR] = max(acc[MAX_ERR], np.int64(m_err).view(np.float64))
        acc[MAX_REL] = max(acc[MAX_REL], np.int64(m_rel).view(np.float64))
        acc[MAX_ULP] = max(acc[MAX_ULP], np.int64(m_ulp).view(np.float64))
        acc[MAX_REL_NORMAL] = max(acc[MAX_REL_NORMAL], np.int64(m_reln).view(np.float64))
        acc[MAX_U] = max(acc[MAX_U], np.int64(m_u).view(np.float64))
        acc[MAX_UR] = max(acc[MAX_UR], np.int64(m_ur).view(np.float64))
        acc[MAX_G] = max(acc[MAX_G], np.int64(m_g).view(np.float64))
        acc[SUM_REL] += sum_rel
        acc[SUM_ERR2] += sum_err2
        acc[BEYOND_1ULP] += beyond
        acc[SMALL] += n_small
        acc[SMALL_ERR] += small_err
        acc[AA] += aa
        acc[GG] += gg
        acc[AG] += ag
        acc[POS] += pos
        acc[NEG] += neg
        acc[N_NORMAL] += a.size - n_small        # a count: exact, no sum of its own in the loop
        acc[SUM_E2_NORMAL] += e2n
        acc[SUM_REL_NORMAL] += reln
        acc[SMALL_ERRS] += small_errs
        acc[SUM_U2] += sum_u2
        acc[SUM_UR] += sum_ur
        acc[BIAS_E] += be
        acc[BIAS_T] += bt
        acc[BIAS_E2] += be2
        acc[BAD] += bad
        acc[BAD_SMALL] += bad_small
        acc[NONFINITE_A] += nf_a
        acc[NONFINITE_G] += nf_g

    return _fold_loop


def _worst_loop_for(stamp: int):
    """_worst_loop, keyed in numba's cache by `stamp` as _fold_loop_for's loops are."""

    def _worst_loop(a, g, prm, at, best):
        """The bad element with the largest error, into best = [error, flat index] (the first of equal
        errors stays; `at`: a's flat offset). Run only where _fold_loop counted bad elements: the
        same _element decides what is bad, so both loops agree on every element."""
        if stamp < 0:                    # never: the stamp keys numba's cache
            return
        ulp_scale, ulp_min, thr, small_atol = prm[P_ULP_SCALE], prm[P_ULP_MIN], prm[P_THR], prm[P_SMALL_ATOL]
        rel_atol, noise = prm[P_REL_ATOL], prm[P_NOISE]
        c0, c1, c2, s_floor, s_keep = prm[P_C0], prm[P_C1], prm[P_C2], prm[P_S_FLOOR], prm[P_S_KEEP] != 0.0
        for i in range(a.size):
            (_, _, e, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, bd, _,
             _) = _element(_widen(a[i]), g[i], ulp_scale, ulp_min, thr, small_atol, rel_atol, noise,
                           c0, c1, c2, s_floor, s_keep)
            if bd != 0.0 and e > best[0]:           # bad, and its error beyond the worst so far
                best[0], best[1] = e, float(at + i)

    return _worst_loop


# How the loop reads `a`: float32 / float64 as they are, and a 16-bit float as its bits, widened in
# the loop (numpy's float16 -> float64 conversion alone costs 1.8 ns per element; harness.half).
# float16 bits travel as int16 and bfloat16 bits as uint16: the element type picks the compiled
# variant, so the loop has no format branch to keep it from vectorizing.


def _widen(v):
    """One element of `a` as float64 (compiled per element type in _fold())."""
    raise NotImplementedError("compiled only: see _fold()")


def _widen_overload(v):
    from numba import types

    if not (isinstance(v, types.Integer) and v.bitwidth == 16):
        return lambda v: np.float64(v)
    if not v.signed:                                         # bfloat16: the top half of a float32
        return lambda v: np.float64(np.uint32(np.uint32(v) << 16).view(np.float32))
    half_bits = half.compiled()[0]
    return lambda v: half_bits(np.uint16(v))


_compiled = _element = None
_loops: dict[int, object] = {}
_stamp: int | None = None


def _callee_stamp() -> int:
    """A number that changes with the source of harness/half.py, whose float16 widening the loops
    compile in: numba keys a cached function by its own file and closure only, so without it a
    cached loop would keep an old half_bits after half.py changed."""
    global _stamp
    if _stamp is None:
        digest = hashlib.sha256(Path(half.__file__).read_bytes()).digest()
        _stamp = int.from_bytes(digest[:7], "little")                   # non-negative, fits an int64
    return _stamp


def _fold(groups: int = RELATIVE | FLOORS | BIAS | BOUND):
    """(the fold loop of `groups`, _worst_loop), compiled on first use (harness.jit), float16 read
    through harness.half. (error_model="numpy" costs no checked branch per division; a small value's
    divisions are dropped.)"""
    global _compiled, _element
    if _compiled is None:
        from numba.extending import overload

        overload(_widen)(_widen_overload)
        _element = jit.compiled(_element_terms, "the comparison's element terms")   # the loops call it
        _loops.clear()
        _compiled = jit.compiled(_worst_loop_for(_callee_stamp()), "the comparison's worst element")
    if groups not in _loops:
        _loops[groups] = jit.compiled(_fold_loop_for(groups, _callee_stamp()), "the comparison loop",
                                      fastmath={"reassoc"})
    return _loops[groups], _compiled


def _combined(accs: np.ndarray) -> np.ndarray:
    """The slices' accumulators as one: sums and counts added in slice order, maxes taken (the worst
    element is found afterwards, by _worst_loop)."""
    if len(accs) == 1:
        return accs[0]
    acc = accs[0].copy()
    for row in accs[1:]:
        acc[_SUMS] += row[_SUMS]
    acc[_MAXES] = accs[:, _MAXES].max(axis=0)
    return acc


# Slices a fold needs before pool threads help with it (_shared: the caller folds too). Waking a pool
# thread costs tens of microseconds, more on this project's 2-vCPU host (a VM whose idle vCPU halts):
# in a smoke run, where folds come between other work, NSA grad's folds (115K elements on average)
# ran at 4.4 ns per element with the pool folding every slice and the caller waiting, 3.3 on one
# thread, 2.8 to 3.0 with the caller sharing from 4 slices (256K elements) on.
POOL_MIN_SLICES = 4

# Threads per process at most, by default: a worker process of a many-core node (Ray, xdist) should
# not start one per core, and a smoke-sized output has a handful of slices to share.
MAX_THREADS = 8


def _threads() -> int:
    """Threads that fold slices: OPDIFF_FOLD_THREADS, else the CPUs this process may use (at most
    MAX_THREADS)."""
    env = os.environ.get("OPDIFF_FOLD_THREADS", "")
    if env.strip():
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"OPDIFF_FOLD_THREADS={env!r}: expected a whole number of threads") from None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, MAX_THREADS)


def _shared(fn, n: int) -> None:
    """fn(k) for every k < n, on this thread and on up to threads() - 1 pool threads, each taking the
    next k until none is left. The caller folds too, so a pool thread that wakes late (tens of
    microseconds on a VM whose idle vCPU halts) only does less of the work, never delays it."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for k in range(n):
        todo.put(k)

    def work() -> None:
        while True:
            try:
                k = todo.get_nowait()
            except queue.Empty:
                return
            fn(k)

    helpers = [_POOL.get().submit(work) for _ in range(min(_threads(), n) - 1)]
    work()
    for h in helpers:
        h.result()                       # a helper's exception is the fold's


_POOL = LazyPool("opdiff-fold", _threads)


@dataclass(frozen=True)
class Bound:
    """Per element: err > c0 + c1*|g_i| + c2*ULP(g_i) is bad; a small value (|g_i| below the dtype's
    threshold) is judged against max(that, small_floor) when keep_normal, else against small_floor."""

    c0: float
    c1: float = 0.0
    c2: float = 0.0
    small_floor: float = 0.0
    keep_normal: bool = True


class Totals:
    """The folded statistics of n elements (slots above); `groups`: what was folded beyond the metrics."""

    def __init__(self, acc: np.ndarray, n: int, groups: int = RELATIVE | FLOORS | BIAS | BOUND):
        self.acc, self.n, self.groups = acc, n, groups
        self._v = acc.tolist()           # Python floats: the policy reads ~25 slots per fold

    def __getitem__(self, slot: int) -> float:
        return self._v[slot]

    def has(self, groups: int) -> bool:
        return self.groups & groups == groups

    def need(self, group: int, what: str) -> None:
        """ValueError where `group` was not folded: its slots hold nothing, not zeros to read."""
        if not self.has(group):
            raise ValueError(f"{what} needs a fold with {what}= (these Totals were folded without it)")

    @property
    def bad(self) -> int:
        return int(self._v[BAD])

    @property
    def bad_small(self) -> int:
        return int(self._v[BAD_SMALL])

    @property
    def finite(self) -> bool:
        """No NaN or inf on either side: every statistic is meaningful."""
        return not (self._v[NONFINITE_A] or self._v[NONFINITE_G])

    @property
    def worst(self) -> int:
        """Flat index (into the folded elements) of the bad element with the largest error."""
        return int(self._v[WORST_AT])


_EMPTY = np.zeros(N_SLOTS)                 # an accumulator before any element
_EMPTY[[MAX_ERR, MAX_REL]] = -math.inf
_EMPTY[WORST_ERR] = -1.0
_NO_BOUND = Bound(math.inf)                # nothing is beyond it
_ULP_CONSTANTS: dict = {}


def _ulp_constants(dtype: str) -> tuple[float, float, float, float]:
    """(2**-nmant, smallest normal, small-value threshold, small-value atol) of a float dtype; zeros
    for any other (no ULP, no small values)."""
    if dtype not in _ULP_CONSTANTS:
        if is_float(dtype):
            smallest_normal, scale = ulp_constants(dtype)
            _ULP_CONSTANTS[dtype] = (scale, smallest_normal, P.SMALL_THRESHOLD.get(dtype, 0.0),
                                     P.SMALL_ATOL.get(dtype, 0.0))
        else:
            _ULP_CONSTANTS[dtype] = (0.0, 0.0, 0.0, 0.0)
    return _ULP_CONSTANTS[dtype]


def fold(a: np.ndarray, g: np.ndarray, dtype: str, *, relative: tuple[float, float] | None = None,
         floors: bool = False, bias: bool = False, bound: Bound | None = None) -> Totals:
    """Statistics of flat a (any dtype, converted to float64 a slice at a time) against flat float64 g
    (NaN / inf counted: Totals.finite): the row's metrics, and `relative=(small_atol, noise)`: the
    relative sums (see relative()); `floors`: what rounding costs at g (floors()); `bias`: the signed
    error sums (bias()); `bound`: bad elements (t.bad, t.worst). One vectorized loop without a branch,
    compiled for the groups asked for."""
    scale, minpow, thr, satol = _ulp_constants(dtype)
    rel_atol, noise = relative or (0.0, 0.0)
    b = bound or _NO_BOUND
    g = np.asarray(g, dtype=np.float64)
    groups = ((RELATIVE if relative is not None else 0) | (FLOORS if floors else 0) | (BIAS if bias else 0)
              | (BOUND if bound is not None else 0))
    kernel, worst = _fold(groups)
    prm = np.array([scale, minpow, thr, satol, rel_atol, noise, b.c0, b.c1, b.c2, b.small_floor, b.keep_normal],
                   np.float64)  # P_* order
    n_slices = max(1, -(-a.size // SLICE))

    def part(k: int) -> tuple[np.ndarray, np.ndarray, int]:
        lo, hi = k * SLICE, min((k + 1) * SLICE, a.size)
        return _readable(a[lo:hi], dtype), np.ascontiguousarray(g[lo:hi]), lo

    if n_slices == 1:                    # most outputs: no slices to hand out or combine
        acc = _EMPTY.copy()
        x, y, _ = part(0)
        kernel(x, y, acc, prm)
    else:
        accs = np.tile(_EMPTY, (n_slices, 1))                   # one accumulator per slice

        def one(k: int) -> None:
            x, y, _ = part(k)
            kernel(x, y, accs[k], prm)

        if _threads() > 1 and n_slices >= POOL_MIN_SLICES:
            _shared(one, n_slices)
        else:
            for k in range(n_slices):
                one(k)
        acc = _combined(accs)
    if acc[BAD]:                         # a failing comparison names its worst element: a second pass
        best = np.array([-1.0, 0.0])
        for k in range(n_slices):
            x, y, lo = part(k)
            worst(x, y, prm, lo, best)
        acc[WORST_ERR], acc[WORST_AT] = best
    return Totals(acc, int(a.size), groups)


def _readable(a: np.ndarray, dtype: str) -> np.ndarray:
    """a as the loop reads it: 16-bit floats as their bits (float16 as int16, bfloat16 as uint16),
    float32 / float64 as they are, other dtypes converted to float64 (four compiled variants of the
    loop, not one per dtype)."""
    if a.dtype.itemsize == 2 and dtype in ("float16", "bfloat16") and name_of(a) == dtype:
        return np.ascontiguousarray(a).view(np.int16 if dtype == "float16" else np.uint16)
    if a.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.float64)


@dataclass(frozen=True)
class RelativeStats:
    """Error statistics used in ratios to the baseline, each with its floor (policy.RATIO_FLOOR)."""

    max_err: float
    rmse: float
    mere: float          # normal domain, |a-g|/|g|
    mare: float
    small_errs: int


# ---- the row's metrics ------------------------------------------------------------------------
def metrics(t: Totals, dtype: str, m: dict) -> dict:
    """The error metrics of the folded elements, into the row dict m.

    max_rel_err / mere are CANN's MARE / MERE (denominator |g| + 1e-7, all elements); max_ulp and
    beyond_1ulp_frac are over the normal values (near zero the spacing is subnormal, bf16 2^-133,
    so float32 noise on a zero golden read as 1e22 ULP; small values have their own counts)."""
    n, v = t.n, t._v
    if n == 0:
        return m
    m.update(max_abs_err=v[MAX_ERR], max_rel_err=v[MAX_REL], mere=v[SUM_REL] / n, rmse=math.sqrt(v[SUM_ERR2] / n))
    if is_float(dtype):
        small, small_err = int(v[SMALL]), int(v[SMALL_ERR])
        m.update(max_ulp=v[MAX_ULP], beyond_1ulp_frac=v[BEYOND_1ULP] / n, small_count=small,
                 small_err_count=small_err, small_err_frac=small_err / small if small else 0.0)
    na, ng = math.sqrt(v[AA]), math.sqrt(v[GG])
    m["cosine"] = v[AG] / (na * ng) if na > 0 and ng > 0 else (1.0 if na == ng else 0.0)
    m["error_balance"] = abs(v[POS] - v[NEG]) / n
    return m


# ---- ratios to the baseline -------------------------------------------------------------------
def relative(t: Totals) -> RelativeStats:
    """One side against the golden: max error over all elements; RMSE, MERE, MARE over the normal
    values (msprobe drops small values from them, precision.md section 7); the count of small values
    off by more than fold's small_atol.

    fold's `noise`: an absolute error the spec allows everywhere (float32 cancellation noise,
    OutputRule small_atol), taken off each error before the relative ones, whose denominators near
    the small-value threshold would otherwise turn that noise into ratios of 30 (measured: NSA grad
    dK with 99% of its values near zero, bench/verdict_calibration.py)."""
    t.need(RELATIVE, "relative")
    n = t[N_NORMAL]
    max_err = t[MAX_ERR] if t.n else 0.0
    if not n:
        return RelativeStats(max_err, 0.0, 0.0, 0.0, int(t[SMALL_ERRS]))
    return RelativeStats(max_err, math.sqrt(t[SUM_E2_NORMAL] / n), t[SUM_REL_NORMAL] / n, t[MAX_REL_NORMAL],
                         int(t[SMALL_ERRS]))


def floors(t: Totals) -> RelativeStats:
    """What correct rounding costs (u = ULP(g)), times RATIO_FLOOR: the smallest denominators a
    ratio may use (over the same domains as the relative stats)."""
    t.need(FLOORS, "floors")
    k, n = P.RATIO_FLOOR, t[N_NORMAL]
    return RelativeStats(k * P.ROUNDING_MAX_ULP * t[MAX_U],
                         k * P.ROUNDING_RMS_ULP * math.sqrt(t[SUM_U2] / n) if n else 0.0,
                         k * P.ROUNDING_MEAN_ULP * t[SUM_UR] / n if n else 0.0,
                         k * P.ROUNDING_MAX_ULP * t[MAX_UR] if n else 0.0, 0)


# ---- bias --------------------------------------------------------------------------------------
def bias(t: Totals) -> tuple[float, float]:
    """(bias, limit) in ULP of each element (normal values): the larger of the mean signed error and
    the mean error signed towards |g| (a scale error), and the bound a correctly rounded result stays
    within."""
    t.need(BIAS, "bias")
    n = t[N_NORMAL]
    if n <= 0:
        return 0.0, math.inf
    plain, towards = t[BIAS_E] / n, t[BIAS_T] / n
    sd = max(P.ROUNDING_SD_ULP, math.sqrt(max(t[BIAS_E2] / n - plain * plain, 0.0)))  # heavy-tailed paths widen it
    limit = P.BIAS_ULP + P.BIAS_SIGMAS * sd / math.sqrt(n)
    return max(abs(plain), abs(towards)), limit
