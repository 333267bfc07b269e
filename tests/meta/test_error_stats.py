"""The one-pass statistics loop (harness/error_stats.py) against the textbook formulas, written here
in plain numpy over whole arrays: an independent second computation of every statistic it folds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness import error_stats as S
from harness import policy as P
from harness.dtypes import cast, finfo

DTYPES = ["float16", "bfloat16", "float32"]


def _ulp_by_frexp(g, dtype):
    """ULP of |g| in dtype from frexp (not the exponent-bit mask the loop uses)."""
    fi = finfo(dtype)
    _, e = np.frexp(np.abs(g))                     # |g| = m * 2**e, m in [0.5, 1)
    power = np.where(g == 0, 0.0, np.ldexp(1.0, e - 1))
    return np.maximum(power, 2.0 ** int(fi.minexp)) * 2.0 ** -int(fi.nmant)


def _pair(dtype, n=5000, seed=0):
    """A golden with a tenth of its values in the small domain and exact zeros, and a noisy actual."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(n)
    g[::10] *= 1e-5
    g[::97] = 0.0
    a = cast(g + rng.standard_normal(n) * 2e-3, dtype)
    return a, g


@pytest.mark.parametrize("slice_elements", [S.SLICE, 512])      # one slice; ten, folded by threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_fold_equals_the_formulas(dtype, slice_elements, monkeypatch):
    monkeypatch.setattr(S, "SLICE", slice_elements)
    a, g = _pair(dtype)
    x = a.astype(np.float64)
    d = x - g
    e = np.abs(d)
    u = _ulp_by_frexp(g, dtype)
    small = np.abs(g) < P.SMALL_THRESHOLD[dtype]
    normal = ~small
    atol, noise = 2.0 ** -12, 1e-4
    bound = S.Bound(1e-3, 0.0, 0.5, atol)
    t = S.fold(a, g, dtype, relative=(atol, noise), floors=True, bias=True, bound=bound)
    assert t.finite and t.n == g.size
    m = S.metrics(t, dtype, {})
    rel = e / (np.abs(g) + 1e-7)
    assert m["max_abs_err"] == e.max() and m["max_rel_err"] == rel.max()
    assert m["mere"] == pytest.approx(rel.mean(), rel=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean(e * e)), rel=1e-12)
    assert m["max_ulp"] == (e / u)[normal].max()
    assert m["beyond_1ulp_frac"] == np.count_nonzero((e / u)[normal] > 1) / g.size
    assert m["small_count"] == np.count_nonzero(small)
    assert m["small_err_count"] == np.count_nonzero(small & (e > P.SMALL_ATOL[dtype]))
    assert m["cosine"] == pytest.approx(x @ g / (np.linalg.norm(x) * np.linalg.norm(g)), rel=1e-12)
    assert m["error_balance"] == abs(np.count_nonzero(d > 0) - np.count_nonzero(d < 0)) / g.size

    r = S.relative(t)
    rr = np.maximum(e - noise, 0.0)[normal] / np.abs(g[normal])
    assert r.max_err == e.max() and r.small_errs == np.count_nonzero(small & (e > atol))
    assert r.rmse == pytest.approx(math.sqrt(np.mean(e[normal] ** 2)), rel=1e-12)
    assert r.mere == pytest.approx(rr.mean(), rel=1e-12) and r.mare == rr.max()

    f = S.floors(t)
    k = P.RATIO_FLOOR
    assert f.max_err == k * P.ROUNDING_MAX_ULP * u.max()
    assert f.rmse == pytest.approx(k * P.ROUNDING_RMS_ULP * math.sqrt(np.mean(u[normal] ** 2)), rel=1e-12)
    assert f.mere == pytest.approx(k * P.ROUNDING_MEAN_ULP * np.mean(u[normal] / np.abs(g[normal])), rel=1e-12)

    eb = d[normal] / u[normal]
    plain, towards = eb.mean(), np.mean(np.sign(g[normal]) * eb)
    sd = max(P.ROUNDING_SD_ULP, eb.std())
    got_bias, got_limit = S.bias(t)
    assert got_bias == pytest.approx(max(abs(plain), abs(towards)), rel=1e-9)
    assert got_limit == pytest.approx(P.BIAS_ULP + P.BIAS_SIGMAS * sd / math.sqrt(normal.sum()), rel=1e-9)

    allowed = np.where(small, np.maximum(1e-3 + 0.5 * u, atol), 1e-3 + 0.5 * u)
    bad = e > allowed
    assert t.bad == np.count_nonzero(bad) > 0 and t.bad_small == np.count_nonzero(bad & small)
    assert t.worst == int(np.argmax(np.where(bad, e, -1.0)))


def test_the_first_of_equal_worst_errors_is_named_and_slices_keep_their_offsets(monkeypatch):
    monkeypatch.setattr(S, "SLICE", 7)              # many slices: the flat offset must carry over
    g = np.zeros(50)
    a = np.zeros(50, np.float32)
    a[[12, 30, 41]] = [0.5, 2.0, 2.0]
    t = S.fold(a, g, "float32", bound=S.Bound(0.1))
    assert (t.bad, t.worst) == (3, 30)
    assert S.metrics(t, "float32", {})["max_abs_err"] == 2.0


def test_nan_and_inf_are_counted_on_their_side():
    g = np.array([1.0, 2.0, np.inf, 4.0])
    a = np.array([1.0, np.nan, 3.0, 4.0], np.float16)
    t = S.fold(a, g, "float16")
    assert not t.finite and (t[S.NONFINITE_A], t[S.NONFINITE_G]) == (1.0, 1.0)
    assert S.fold(np.ones(3, np.float16), np.ones(3), "float16").finite


def test_integer_outputs_fold_without_ulp_or_small_values():
    g = np.arange(-5, 5, dtype=np.float64)
    a = (np.arange(-5, 5) + np.array([0, 1] * 5)).astype(np.int8)
    m = S.metrics(S.fold(a, g, "int8"), "int8", {})
    assert m["max_abs_err"] == 1.0 and m["rmse"] == pytest.approx(math.sqrt(0.5))
    assert "max_ulp" not in m and "small_count" not in m


def test_empty_arrays_fold_to_no_metrics():
    t = S.fold(np.zeros(0, np.float16), np.zeros(0), "float16", relative=(0.0, 0.0))
    assert S.metrics(t, "float16", {}) == {} and S.relative(t).max_err == 0.0 and t.bad == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_floats_read_as_bits_widen_exactly_as_numpy_does(dtype):
    """Every one of the 65536 bit patterns: the loop widens them itself (not through astype)."""
    a = np.arange(1 << 16, dtype=np.uint16).view(cast(np.zeros(1), dtype).dtype)
    with np.errstate(invalid="ignore"):                        # ml_dtypes warns on NaN patterns
        g = a.astype(np.float64)
    finite = np.isfinite(g)
    t = S.fold(a[finite], g[finite], dtype)
    assert t.finite and S.metrics(t, dtype, {})["max_abs_err"] == 0.0
    signs = S.fold(a[finite], np.abs(g[finite]), dtype)          # -0.0 and negatives keep their sign
    assert signs[S.NEG] == np.count_nonzero(g[finite] < 0)
    t = S.fold(a, np.zeros(a.size), dtype)
    assert t[S.NONFINITE_A] == np.count_nonzero(~finite)


def test_the_answer_is_the_same_bits_on_one_thread_and_on_many(monkeypatch):
    a, g = _pair("bfloat16", n=300_000, seed=3)
    kw = dict(relative=(2.0 ** -14, 0.0), floors=True, bias=True, bound=S.Bound(1e-3, 0.0, 0.5, 2.0 ** -14))
    monkeypatch.setenv("OPDIFF_FOLD_THREADS", "1")
    one = S.fold(a, g, "bfloat16", **kw).acc
    monkeypatch.setenv("OPDIFF_FOLD_THREADS", "4")
    S._POOL.forget()                                   # made again with the thread count set here
    monkeypatch.setattr(S, "POOL_MIN_SLICES", 2)        # 300K elements: 5 slices, handed to the pool
    many = S.fold(a, g, "bfloat16", **kw).acc
    assert one.tobytes() == many.tobytes()


def test_a_bad_thread_count_is_named(monkeypatch):
    monkeypatch.setenv("OPDIFF_FOLD_THREADS", "two")
    with pytest.raises(ValueError, match="OPDIFF_FOLD_THREADS='two'"):
        S.fold(np.ones(1 << 17, np.float32), np.ones(1 << 17), "float32")


def test_without_a_writable_numba_cache_the_loop_compiles_uncached(monkeypatch, caplog):
    """numba raises RuntimeError at decoration when no cache directory is writable (a read-only
    install): the comparison must still run, compiled in the process."""
    import numba

    from harness import half

    real = numba.njit

    def njit(*args, **kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function '_fold_loop': no locator available for file")
        return real(*args, **kw)

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setattr(S, "_compiled", None)
    monkeypatch.setattr(half, "_loops", None)
    monkeypatch.setattr(half, "half_bits", None)
    with caplog.at_level("INFO"):
        t = S.fold(np.array([1.0, 2.0], np.float16), np.array([1.0, 2.5]), "float16")
    assert S.metrics(t, "float16", {})["max_abs_err"] == 0.5
    assert "compiling it in every process" in caplog.text


def test_shared_work_runs_every_slice_once_and_raises_a_helpers_error(monkeypatch):
    monkeypatch.setenv("OPDIFF_FOLD_THREADS", "3")
    S._POOL.forget()                                   # made again with the thread count set here
    seen = []
    S._shared(seen.append, 50)
    assert sorted(seen) == list(range(50))

    def boom(k):
        if k == 37:
            raise RuntimeError("slice 37")
    with pytest.raises(RuntimeError, match="slice 37"):
        S._shared(boom, 50)


def test_each_variant_folds_the_same_metrics_and_refuses_what_it_did_not_fold():
    """A fold compiles only the groups asked for; every variant's metrics are those of the full fold
    (counts and maxes exactly, sums to the last bits their vector order leaves), and asking a Totals
    for a group it lacks is an error, not a zero."""
    a, g = _pair("bfloat16", n=100_000, seed=4)
    full = S.fold(a, g, "bfloat16", relative=(2.0 ** -14, 0.0), floors=True, bias=True, bound=S.Bound(1e-3))
    want = S.metrics(full, "bfloat16", {})
    for kw in ({}, dict(relative=(2.0 ** -14, 0.0)), dict(floors=True), dict(bias=True), dict(bound=S.Bound(1e-3))):
        t = S.fold(a, g, "bfloat16", **kw)
        got = S.metrics(t, "bfloat16", {})
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-13), (kw, k)
        assert t.bad == (full.bad if "bound" in kw else 0)
    lean = S.fold(a, g, "bfloat16")
    for fn in (S.relative, S.floors, S.bias):
        with pytest.raises(ValueError, match="needs a fold with"):
            fn(lean)
    assert S.relative(S.fold(a, g, "bfloat16", relative=(2.0 ** -14, 0.0))) == S.relative(full)


def test_the_cached_loops_are_keyed_by_the_source_of_the_float16_code_they_compile_in(tmp_path, monkeypatch):
    """numba keys a cached function by its own file's code and its closure's contents; the loops carry
    a stamp of harness/half.py in their closure, so a change there compiles them again (checked by hand:
    a comment appended to half.py turned the next process's cache hit into a miss)."""
    from harness import half

    changed = tmp_path / "half.py"
    changed.write_bytes(open(half.__file__, "rb").read() + b"\n# changed\n")
    before = S._callee_stamp()
    monkeypatch.setattr(S, "_stamp", None)
    monkeypatch.setattr(half, "__file__", str(changed))
    assert S._callee_stamp() not in (before, None) and S._callee_stamp() >= 0
    cells = [c.cell_contents for c in S._fold_loop_for(S.RELATIVE, 12345).__closure__]
    assert 12345 in cells and 12345 in [c.cell_contents for c in S._worst_loop_for(12345).__closure__]
