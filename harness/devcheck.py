"""Device against device: checks that need no tolerance at all, because the same kernel must give the same bits.

CANN's precision standard requires deterministic operators to return identical results on repeated runs
(shared/reference/precision.md section 1), and the starting policy's last row holds "same kernel through two
front ends, repeated runs" to bitwise (section 6). Two checks follow, both on positive cases only (a negative
case has no outputs to compare):

  determinism   the case is launched N times on the same inputs (`run --determinism N`; the nightly tier
                defaults to 2 on device backends) and every launch is compared bitwise with the first. Any
                difference is the verdict `nondeterministic`, in a row of its own, backend
                `determinism:<backend>`, with the number of differing elements and the first index. An op
                whose documents say it is non-deterministic carries `OpSpec.nondeterministic` (the reason,
                cited); its rows are `skipped` with that reason instead.
  front ends    backends that run the same kernel on the same device (same `kernel_key`: aclnn and torch_npu
                on one NPU, torch_npu eager and torch_npu:graph) are compared bitwise per output, backend
                `pair:<a>~<b>`: a wrapper defect (a wrong default, a re-layout, a dtype cast) is then a precise
                difference even where both sides are within tolerance of the golden.

Bitwise means the stored bit patterns: a NaN is equal only to a NaN with the same payload, -0 is not +0.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .dtypes import name_of

DETERMINISM_PREFIX = "determinism:"
PAIR_PREFIX = "pair:"
#: launches per positive case on a device backend in the nightly tier when --determinism is not given
NIGHTLY_DEVICE_REPEATS = 2


@dataclass(frozen=True)
class Checks:
    """What run_case does beyond the golden comparison. `determinism`: launches per positive case (1: no
    check; None: the tier's default, NIGHTLY_DEVICE_REPEATS on device backends in the nightly tier)."""

    determinism: int | None = None
    pairs: bool = True

    def launches(self, backend, tier: str) -> int:
        if self.determinism is not None:
            return max(1, int(self.determinism))
        return NIGHTLY_DEVICE_REPEATS if tier == "nightly" and is_device(backend) else 1


def is_device(backend) -> bool:
    """A backend that runs a device kernel: it names the kernel it shares with other front ends."""
    return kernel_key(backend) is not None


def kernel_key(backend) -> str | None:
    """Backends with equal keys run the same kernel on the same device (None: a reference, never paired)."""
    key = getattr(backend, "kernel_key", None)
    return key() if callable(key) else key


@dataclass(frozen=True)
class Diff:
    count: int                   # elements whose bits differ
    numel: int
    first: tuple | None          # index of the first differing element (C order)
    a_bits: str = ""             # that element's bit patterns, hex
    b_bits: str = ""
    note: str = ""               # a shape or dtype difference (then every element counts as differing)

    def describe(self, a_name: str, b_name: str) -> str:
        if self.note:
            return f"{self.note} ({a_name} vs {b_name})"
        return (f"{self.count} of {self.numel} element(s) differ bitwise; first at index {list(self.first)}: "
                f"{a_name} {self.a_bits} vs {b_name} {self.b_bits}")


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.itemsize in (1, 2, 4, 8) else a.view(np.uint8)


def bitwise_diff(a, b) -> Diff:
    """How two arrays differ in their bit patterns (count, first index, the two patterns there)."""
    a, b = np.asarray(a), np.asarray(b)
    if name_of(a) != name_of(b):
        return Diff(max(a.size, b.size), max(a.size, b.size), None, note=f"dtype {name_of(a)} vs {name_of(b)}")
    if a.shape != b.shape:
        return Diff(max(a.size, b.size), max(a.size, b.size), None, note=f"shape {a.shape} vs {b.shape}")
    ba, bb = _bits(a), _bits(b)
    differ = ba != bb
    count = int(np.count_nonzero(differ))
    if not count:
        return Diff(0, int(a.size), None)
    flat = int(np.flatnonzero(differ.reshape(-1))[0])
    idx = tuple(int(i) for i in np.unravel_index(flat, a.shape)) if a.ndim else ()
    width = 2 * ba.dtype.itemsize
    return Diff(count, int(a.size), idx, f"0x{int(ba.reshape(-1)[flat]):0{width}x}",
                f"0x{int(bb.reshape(-1)[flat]):0{width}x}")


def _row(spec, case, name, output, dtype, tier, seed, verdict, reason, repro, diff: Diff | None = None) -> dict:
    from .runner import _base_row

    r = _base_row(spec, case, name, output, dtype, tier, seed)
    ok = verdict in ("pass", "skipped")
    r.update(verdict=verdict, reason=reason, ok=ok, repro=repro)
    if diff is not None:
        r.update(mismatch_count=diff.count, numel=diff.numel,
                 mismatch_frac=(diff.count / diff.numel) if diff.numel else 0.0,
                 first_diff_index=None if diff.first is None else ",".join(map(str, diff.first)))
    return r


# ---- determinism ------------------------------------------------------------------------------------------
def determinism_rows(spec, case, backend, inputs, first: dict, launches: int, tier: str, seed: int) -> list[dict]:
    """Launch `backend` launches-1 more times on the same inputs and compare each output with the first launch."""
    from .runner import repro_command

    name = DETERMINISM_PREFIX + backend.name
    repro = repro_command(spec.name, case, backend.name, tier, seed).replace(
        " --out ", f" --determinism {launches} --out ", 1)
    dtypes = spec.output_dtypes(case.params)
    outs = [o for o in spec.outputs if o in first]
    # a copy: a later launch may reuse the buffers the first launch's outputs were read into
    first = {o: np.array(first[o], copy=True) for o in outs}
    exempt = getattr(spec, "nondeterministic", None)
    if exempt:
        return [_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "skipped",
                     f"exempt: {spec.name} is documented as non-deterministic: {exempt}", repro) for o in outs]
    worst: dict = {o: (Diff(0, int(np.asarray(first[o]).size), None), 0) for o in outs}
    for k in range(2, launches + 1):
        try:
            again = backend.run(spec, case, inputs)
        except Exception as exc:  # a launch that fails the second time is a finding too, never dropped
            return [_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "error",
                         f"launch {k} of {launches} raised {type(exc).__name__}: {exc}", repro) for o in outs]
        for o in outs:
            d = (bitwise_diff(first[o], again[o]) if o in again
                 else Diff(1, 1, None, note=f"launch {k} returned no {o!r}"))
            if d.count > worst[o][0].count:
                worst[o] = (d, k)
    rows = []
    for o in outs:
        d, k = worst[o]
        if d.count:
            reason = f"launch {k} of {launches} on the same inputs differs from launch 1: " + d.describe(
                "launch 1", f"launch {k}")
            rows.append(_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "nondeterministic", reason, repro, d))
        else:
            rows.append(_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "pass",
                             f"{launches} launches on the same inputs: bitwise identical", repro, d))
    return rows


# ---- front-end pairs ---------------------------------------------------------------------------------------
def pair_groups(backends) -> list[tuple]:
    """(a, b) for every two backends with the same kernel key, in the order the backends were given."""
    groups: dict = {}
    for b in backends:
        key = kernel_key(b)
        if key is not None:
            groups.setdefault(key, []).append(b)
    return [p for members in groups.values() for p in itertools.combinations(members, 2)]


def _absent(backend) -> str:
    avail = backend.available()
    return "see its rows" if avail else f"unavailable: {avail.reason}"


def pair_name(a, b) -> str:
    return f"{PAIR_PREFIX}{a.name}~{b.name}"


def pair_rows(spec, case, backends, outputs: dict, tier: str, seed: int, missing: dict | None = None) -> list[dict]:
    """Bitwise rows for every front-end pair among `backends`; `outputs`: backend name -> outputs of this case
    (absent when the backend produced none; `missing` may say why, e.g. it ran in another process)."""
    from .runner import repro_command

    if case.negative:
        return []
    dtypes = spec.output_dtypes(case.params)
    rows = []
    for a, b in pair_groups(backends):
        name = pair_name(a, b)
        repro = repro_command(spec.name, case, f"{a.name},{b.name}", tier, seed)
        absent = [x for x in (a, b) if x.name not in outputs]
        if absent:
            why = "; ".join(f"{x.name} produced no outputs ({(missing or {}).get(x.name) or _absent(x)})"
                            for x in absent)
            rows += [_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "skipped", f"not compared: {why}",
                          repro) for o in spec.outputs]
            continue
        oa, ob = outputs[a.name], outputs[b.name]
        for o in spec.outputs:
            if o not in oa or o not in ob:
                rows.append(_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "fail",
                                 f"only {a.name if o in oa else b.name} returned {o!r}", repro))
                continue
            d = bitwise_diff(oa[o], ob[o])
            if d.count:
                rows.append(_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "fail",
                                 "same kernel, two front ends: " + d.describe(a.name, b.name), repro, d))
            else:
                rows.append(_row(spec, case, name, o, dtypes.get(o, ""), tier, seed, "pass",
                                 f"same kernel, two front ends: bitwise identical ({d.numel} elements)", repro, d))
    return rows
