"""Run cases through backends and turn their outputs into result rows.

run_case(): one case through a list of backends. The numpy golden (float64) is always computed
for positive cases; the torch-on-cpu baseline too when an output is judged by `reduction` and a
backend other than the baseline is under test. Every backend gets, per output region, a verdict:

  pass / warn / fail   compared by the output's rule (harness.compare)
  error                the backend raised
  rejected             the backend refused the case (correct for a negative case, a failure otherwise)
  skipped              backend unavailable, or it declined the case as documented-unsupported

`ok` says whether the verdict is what the case expects.
"""
from __future__ import annotations

import logging
import shlex
import traceback
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

import numpy as np

from . import devcheck, golden_store, input_store, judgements
from .compare import METRIC_KEYS, FoldMemo, compare
from .dtypes import cast, name_of, np_dtype
from .errors import ConstraintViolation, Declined, Rejected
from .pools import LazyPool
from .roofline import peak_for, percent_of_peak
from .spec import Case, OpSpec
from .stats import summarize
from .timing import TIER_TIMING, Measurement, TimingConfig, measure_run

log = logging.getLogger(__name__)

GOOD_POSITIVE = {"pass", "warn", "skipped"}
GOOD_NEGATIVE = {"rejected", "skipped"}
BASELINE_BACKEND = "torch"
# Kinds judged relative to the same-precision baseline (harness.compare): reductions, and int8
# quantisation whose off-by-one count is held against the baseline's.
BASELINE_KINDS = ("reduction", "quant_int8")


# An entry is read ahead (References.read_ahead) from this size: below it, parsing its header is most
# of the read and holds the GIL the backend's Python needs.
READ_AHEAD_MIN_BYTES = 1 << 20
_READER = LazyPool("opdiff-store-read", 1)    # one thread: a case's reads keep their order


def repro_command(op: str, case: Case, backend: str, tier: str, seed: int) -> str:
    # a fresh directory per invocation: a fixed path would be refused the second time, or worse,
    # be one that someone else planted (run refuses to adopt it, but the repro would not run)
    replay = case.params.get("replay_record")  # a recorded call (harness.capture.replay): replay that record
    where = f"--replay {shlex.quote(str(replay))} " if replay else ""
    return (f"python -m harness run --ops {op} --backends {backend} --tier {tier} --seed {seed} {where}"
            f"--case {case.id} --out \"$(mktemp -d -t opdiff-repro.XXXXXX)\"")


@dataclass
class CaseResult:
    rows: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    #: the rows before a known issue of kind xfail rewrote them (harness.engine sets it only then): pytest's
    #: strict xfail mark for the same entry judges the case as it ran
    as_run: list[dict] | None = None

    @property
    def judged(self) -> list[dict]:
        """The rows a test judges: as they ran where an xfail entry applies, else the final rows."""
        return self.rows if self.as_run is None else self.as_run

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)


class References:
    """Lazily computed golden and baseline outputs of one case, shared by all backends."""

    def __init__(self, spec: OpSpec, case: Case, inputs: dict, seed: int | None = None, store=None):
        self.spec, self.case, self.inputs = spec, case, inputs
        self._golden = self._baseline = None
        self._baseline_error: str | None = None
        # a golden store (harness.golden_store) is keyed by the seed; without one, nothing is stored
        self.seed = seed
        self.store = store if store is not None else (golden_store.from_env() if seed is not None else None)
        self.golden_source = self.baseline_source = None  # "store" or "computed", once used
        # per output: its regions, and each region's part of the golden / baseline (every backend
        # compares against the same ones: masked once per case, not once per backend)
        self._regions: dict[str, list] = {}
        self._parts: dict[tuple, np.ndarray | None] = {}
        self._memos: dict[tuple, FoldMemo] = {}      # per region: folds every backend's comparison may share
        self._ahead: dict[str, Future] = {}          # "golden" / "baseline": store reads started by read_ahead
        self._keys: dict[str, golden_store.Key] = {}  # their keys, formed once (a read of a small one waits)

    def read_ahead(self, backends) -> None:
        """Start reading a large golden, and the baseline where a comparison will use it, from the
        store on a thread while the first backend runs (a device kernel leaves the host waiting; here
        the numpy golden leaves one of two cores free). Reading and checksumming release the GIL; a
        small entry is mostly parsing, which holds it, so it is read where it is used (measured: read
        ahead, the smoke tier's 1 to 10 KiB entries made the harness slower). Only what the case will
        read: a positive case that some backend runs; the baseline where a backend other than it
        compares a region by a kind that needs it. settle() waits for the reads (before any timing)."""
        if self.store is None or self.seed is None or self.case.negative:
            return
        runs = [b for b in backends if b.available() and not b.supports(self.spec, self.case)]
        if not runs:
            return
        self._read_ahead("golden", golden_store.golden_key)
        if any(b.name != BASELINE_BACKEND for b in runs) and self._uses_baseline() and not self._baseline_why():
            self._read_ahead("baseline", golden_store.baseline_key)

    def _read_ahead(self, what: str, key_fn) -> None:
        key = self._key(what, key_fn)
        if key is not None and self.store.size(key) >= READ_AHEAD_MIN_BYTES:
            self._ahead[what] = _READER.get().submit(golden_store.lookup, self.store, lambda *_: key,
                                                 self.spec, self.case, self.seed)

    def _uses_baseline(self) -> bool:
        try:
            return any(r.rule.kind in BASELINE_KINDS for out in self.spec.outputs for r in self.regions(out))
        except Exception:                # a region that cannot be built fails its rows later, where it is asked for
            return False

    def settle(self) -> None:
        """Wait for the reads read_ahead started (their answers stay for golden() / baseline())."""
        if self._ahead:
            wait(list(self._ahead.values()))

    def _looked_up(self, what: str):
        ahead = self._ahead.pop(what, None)
        return None if ahead is None else ahead.result()

    def _key_fn(self, what: str, key_fn):
        key = self._keys.get(what)
        return key_fn if key is None else (lambda *_: key)

    def golden_digest(self) -> str | None:
        """The golden's key digest (None where it cannot be formed)."""
        return self._digest("golden", golden_store.golden_key)

    def baseline_digest(self) -> str | None:
        """The baseline's key digest; "" where there is no baseline (unavailable, declined); None where
        it cannot be keyed."""
        if self._baseline_error is not None or self._baseline_why():
            return ""
        return self._digest("baseline", golden_store.baseline_key)

    def _digest(self, what: str, key_fn) -> str | None:
        key = self._key(what, key_fn)
        return None if key is None else key.digest

    def _key(self, what: str, key_fn) -> golden_store.Key | None:
        """The key of `what`, formed once; None where it cannot be (golden() / baseline() form it again
        where they are used, and count it as unkeyed)."""
        if what not in self._keys:
            try:
                self._keys[what] = key_fn(self.spec, self.case, self.seed)
            except (OSError, ValueError, SyntaxError, ImportError):
                return None
        return self._keys[what]

    def _baseline_why(self):
        """Why the baseline backend cannot give this case's baseline (unavailable, declined), or None."""
        from . import registry

        b = registry.backend(BASELINE_BACKEND)
        avail = b.available()
        return avail.reason if not avail else b.supports(self.spec, self.case)

    def regions(self, output: str) -> list:
        if output not in self._regions:
            self._regions[output] = self.spec.output_regions(self.case.params, self.inputs, output)
        return self._regions[output]

    def golden_part(self, output: str, i: int, dtype: str) -> np.ndarray:
        """Region i of the golden's `output` (an exact region cast to the output dtype: a cache's
        untouched rows are most of it, so only the region is cast)."""
        key = ("golden", output, i)
        if key not in self._parts:
            region = self.regions(output)[i]
            g = np.asarray(self.golden()[output])
            part = region.part(g)
            if region.rule.kind == "exact" and part.dtype != np_dtype(dtype):
                part = cast(part, dtype)
            self._parts[key] = part
        return self._parts[key]

    def baseline_part(self, output: str, i: int) -> np.ndarray | None:
        key = ("baseline", output, i)
        if key not in self._parts:
            bl = self.baseline()
            region = self.regions(output)[i]
            part = None if bl is None else np.asarray(bl[output])
            if part is not None:
                part = region.part(part)      # a baseline the mask does not fit raises: "reference failed"
            self._parts[key] = part
        return self._parts[key]

    def memo(self, output: str, i: int) -> FoldMemo:
        """Region i's folds against its golden part (harness.compare.FoldMemo): the baseline's, folded
        once for every backend compared against it, and kept for a backend that returns it bit for bit."""
        return self._memos.setdefault((output, i), FoldMemo())

    def golden(self) -> dict:
        if self._golden is None:
            from . import registry

            self._golden, self.golden_source = golden_store.through(
                self.store, self._key_fn("golden", golden_store.golden_key), self.spec, self.case, self.seed,
                lambda: registry.backend("numpy").golden(self.spec, self.case, self.inputs), self._looked_up("golden"))
        return self._golden

    def baseline(self) -> dict | None:
        if self._baseline is None and self._baseline_error is None:
            from . import registry

            b = registry.backend(BASELINE_BACKEND)
            why = self._baseline_why()
            if why:
                self._baseline_error = why
            else:
                self._baseline, self.baseline_source = golden_store.through(
                    self.store, self._key_fn("baseline", golden_store.baseline_key), self.spec, self.case, self.seed,
                    lambda: b.run(self.spec, self.case, self.inputs), self._looked_up("baseline"))
        return self._baseline


def _base_row(spec, case, backend_name, output, dtype, tier, seed, template: dict | None = None) -> dict:
    """A row's identity and empty metrics; `template` (from _row_template) saves rebuilding the parts
    every row of one case on one backend shares (its params' JSON, its repro command)."""
    r = dict(template or _row_template(spec, case, backend_name, tier, seed))
    r["output"], r["dtype"] = output, dtype
    return r


def _row_template(spec, case, backend_name, tier, seed) -> dict:
    return {
        "op": spec.name, "case_id": case.id, "params": case.params_json(), "negative": case.negative,
        "violates": case.violates, "backend": backend_name, "output": None, "dtype": None,
        "tier": tier, "seed": seed, "repro": repro_command(spec.name, case, backend_name, tier, seed),
        **{k: None for k in METRIC_KEYS},
    }


def verdict_rows(spec, case, backend_name, verdict, reason, tier, seed) -> list[dict]:
    """One row per output of `case` on `backend_name`, all with the same verdict and reason: a case that
    produced no outputs to compare (unavailable, declined, rejected, raised, crashed, timed out)."""
    dtypes = spec.output_dtypes(case.params)
    good = GOOD_NEGATIVE if case.negative else GOOD_POSITIVE
    rows = []
    template = _row_template(spec, case, backend_name, tier, seed)
    for out in spec.outputs:
        r = _base_row(spec, case, backend_name, out, dtypes.get(out, ""), tier, seed, template)
        r.update(verdict=verdict, reason=reason, ok=verdict in good)
        rows.append(r)
    return rows


def run_case(spec: OpSpec, case: Case, backends: list, tier: str = "smoke", seed: int = 0,
             timing: TimingConfig | None = None, checks: devcheck.Checks | None = None) -> CaseResult:
    """One case through `backends` in this process, rows as the backends gave them: no known issue is
    applied (harness.engine.Engine does that, for `run` and the pytest matrix alike).
    `checks`: repeated launches and front-end pairs (harness.devcheck; default: the tier's)."""
    timing = timing or TIER_TIMING[tier]
    checks = checks or devcheck.Checks()
    result = CaseResult()
    try:
        if _rejected_on_params(spec, case, backends):
            # every backend rejects it before it reads a tensor: its inputs are built only if one does
            store = golden_store.from_env()
            inputs = input_store.LazyInputs(lambda: input_store.make_inputs(spec, case, seed, store))
        else:
            inputs = input_store.make_inputs(spec, case, seed, golden_store.from_env())
    except Exception as exc:
        reason = f"inputs could not be built: {type(exc).__name__}: {exc}"
        for b in backends:
            result.rows += verdict_rows(spec, case, b.name, "error", reason, tier, seed)
        return result
    refs = References(spec, case, inputs, seed)
    refs.read_ahead(backends)
    outputs: dict = {}   # backend name -> outputs, for the front-end pairs
    try:
        for b in backends:
            rows, samples = run_backend(spec, case, b, inputs, refs, tier, seed, timing, checks=checks, sink=outputs)
            result.rows += rows
            result.samples += samples
    finally:
        refs.settle()    # a read no backend came to use must not run on into the next case's timing
    if checks.pairs:
        result.rows += devcheck.pair_rows(spec, case, backends, outputs, tier, seed)
    return result


def _rejected_on_params(spec, case, backends) -> bool:
    """A negative case breaking a documented constraint on its params, run only by backends that
    reject such a case before they read a tensor (Backend.params_first: the references validate the
    params first), or not at all (unavailable). 174 of the smoke tier's 570 cases: their inputs cost
    0.2 to 0.4 ms each to read from a store, more to draw."""
    if not case.negative or not spec.broken(case.params):
        return False
    return all(getattr(b, "params_first", False) or not b.available() for b in backends)


def run_backend(spec, case, backend, inputs, refs, tier, seed, timing, checks=None, sink=None):
    """(rows, samples) of one backend on one case in this process (the isolated worker calls it too);
    `sink`, when given, receives the backend's outputs by name, for the front-end pairs."""
    avail = backend.available()
    if not avail:
        return verdict_rows(spec, case, backend.name, "skipped", f"unavailable: {avail.reason}", tier, seed), []
    declined = backend.supports(spec, case)
    if declined:
        return verdict_rows(spec, case, backend.name, "skipped", f"declined: {declined}", tier, seed), []
    try:
        outputs = backend.run(spec, case, inputs)
    except (ConstraintViolation, Rejected) as exc:
        verdict_reason = str(exc)
        rows = verdict_rows(spec, case, backend.name, "rejected", verdict_reason, tier, seed)
        if not case.negative:
            for r in rows:
                r["reason"] = f"positive case rejected: {verdict_reason}"
        return rows, []
    except Declined as exc:
        return verdict_rows(spec, case, backend.name, "skipped", f"declined: {exc}", tier, seed), []
    except Exception as exc:  # a backend bug or a device failure: record it, keep going
        log.debug("backend %s raised on %s/%s:\n%s", backend.name, spec.name, case.id, traceback.format_exc())
        return verdict_rows(spec, case, backend.name, "error", f"{type(exc).__name__}: {exc}", tier, seed), []
    if case.negative:
        return verdict_rows(spec, case, backend.name, "fail",
                             f"negative case (breaks {case.violates!r}) ran without rejection", tier, seed), []
    if sink is not None:
        sink[backend.name] = outputs
    try:
        rows = _compare_outputs(spec, case, backend, inputs, outputs, refs, tier, seed)
    except Exception as exc:
        log.debug("reference failed on %s/%s:\n%s", spec.name, case.id, traceback.format_exc())
        rows = verdict_rows(spec, case, backend.name, "error", f"reference failed: {type(exc).__name__}: {exc}",
                             tier, seed)
        return rows + _determinism(spec, case, backend, inputs, outputs, checks, tier, seed), []
    # repeated launches after the golden comparison, before timing: rows of their own (determinism:<backend>)
    extra = _determinism(spec, case, backend, inputs, outputs, checks, tier, seed)
    if timing.enabled:
        refs.settle()    # nothing of the harness runs beside a measurement
    m = _time(spec, case, backend, inputs, timing)
    samples = m.samples
    stats = summarize(samples)
    nbytes, flops = spec.cost(case.params) if spec.cost else (None, None)
    med = stats["median_us"]
    gbps = (nbytes / (med * 1e3)) if (nbytes and med) else None
    tflops = (flops / (med * 1e6)) if (flops and med) else None
    peak = _peak(backend) if (gbps or tflops) else None
    for r in rows:
        r.update(latency_median_us=med, latency_iqr_us=stats["iqr_us"], latency_p20_us=stats["p20_us"],
                 latency_p80_us=stats["p80_us"], latency_min_us=stats["min_us"], n_samples=stats["n_samples"],
                 timing_mode=m.mode or backend.timer().mode, bytes=nbytes, flops=flops, gbps=gbps, tflops=tflops,
                 latency_stdrel=stats["stdrel"], timing_stop=m.stop or None, warmup_calls=m.warmup_calls,
                 **percent_of_peak(peak, gbps, tflops, r.get("dtype")))
    sample_rows = [{"op": spec.name, "case_id": case.id, "backend": backend.name, "sample_index": i,
                    "latency_us": s} for i, s in enumerate(samples)]
    return rows + extra, sample_rows


def _determinism(spec, case, backend, inputs, outputs, checks, tier, seed) -> list[dict]:
    launches = checks.launches(backend, tier) if checks is not None else 1
    if launches < 2:
        return []
    return devcheck.determinism_rows(spec, case, backend, inputs, outputs, launches, tier, seed)


def _time(spec, case, backend, inputs, timing) -> Measurement:
    if not timing.enabled:
        return Measurement()
    try:
        prepared = backend.prepare(spec, case, inputs)
        return measure_run(backend.timer(), lambda: backend.launch(prepared), timing)
    except Exception as exc:  # timing is best effort once the outputs were judged
        log.warning("timing %s on %s/%s failed: %s", backend.name, spec.name, case.id, exc)
        return Measurement()


def _peak(backend):
    try:
        return peak_for(backend.device_name())
    except Exception as exc:  # a device query failing must not lose the row
        log.warning("no peak for %s: %s", backend.name, exc)
        return None


def _compare_outputs(spec, case, backend, inputs, outputs, refs, tier, seed) -> list[dict]:
    dtypes = spec.output_dtypes(case.params)
    template = _row_template(spec, case, backend.name, tier, seed)
    judged = _judgements(spec, backend, outputs, dtypes, refs)
    stored = judged.read() if judged is not None else None
    if stored is not None:               # these bits were judged against these references before
        return [_judged_row(spec, case, backend, dtypes[out], tier, seed, template, s, refs)
                for out, s in zip([o for o in spec.outputs for _ in refs.regions(o)], stored)]
    refs.golden()     # first: a golden that cannot be built fails every row of the backend as "reference failed"
    rows, made = [], []
    for out in spec.outputs:
        want_dtype = dtypes[out]
        if out not in outputs:
            r = _base_row(spec, case, backend.name, out, want_dtype, tier, seed, template)
            r.update(verdict="fail", ok=False, reason=f"backend returned no output {out!r}")
            rows.append(r)
            continue
        actual = np.asarray(outputs[out])
        for i, region in enumerate(refs.regions(out)):
            r = _base_row(spec, case, backend.name, region.label, want_dtype, tier, seed, template)
            if name_of(actual) != want_dtype:
                r.update(verdict="fail", ok=False, reason=f"dtype {name_of(actual)}, expected {want_dtype}")
                rows.append(r)
                continue
            a_r = actual
            if region.mask is not None:
                if actual.shape[: region.mask.ndim] != region.mask.shape:
                    r.update(verdict="fail", ok=False, reason=f"shape {actual.shape} does not fit region mask "
                                                              f"{region.mask.shape}")
                    rows.append(r)
                    continue
                a_r = region.part(actual)
            g_r = refs.golden_part(out, i, want_dtype)
            with_base = region.rule.kind in BASELINE_KINDS and backend.name != BASELINE_BACKEND
            b_r = refs.baseline_part(out, i) if with_base else None
            c = compare(a_r, g_r, region.rule, want_dtype, b_r, refs.memo(out, i))
            r.update(c.metrics)
            r.update(verdict=c.verdict, reason=c.reason, ok=c.verdict in GOOD_POSITIVE,
                     golden_source=refs.golden_source, baseline_source=refs.baseline_source if b_r is not None else None)
            rows.append(r)
            made.append({"label": region.label, "verdict": c.verdict, "reason": c.reason, "metrics": c.metrics,
                         "baseline": b_r is not None})
    if judged is not None:               # _judgements checked the outputs: every region was judged
        judged.keep(made)
    return rows


def _judgements(spec, backend, outputs, dtypes, refs):
    """The store's entry for this backend's judgements of these outputs (harness.judgements), or None
    where none is kept: no store, small outputs, or an output missing, of another dtype or not fitting
    its regions' masks (those rows are cheap and say what is wrong)."""
    if refs.store is None or refs.seed is None:
        return None
    labels, with_base = [], False
    for out in spec.outputs:
        if out not in outputs or name_of(np.asarray(outputs[out])) != dtypes[out]:
            return None
        shape = np.shape(outputs[out])
        for region in refs.regions(out):
            if region.mask is not None and shape[: region.mask.ndim] != region.mask.shape:
                return None
            labels.append(region.label)
            with_base |= region.rule.kind in BASELINE_KINDS
    if not judgements.worth_keeping(outputs, spec.outputs, len(labels)):
        return None                      # before the baseline's key: most smoke outputs are small
    baseline = refs.baseline_digest() if with_base and backend.name != BASELINE_BACKEND else ""
    if baseline is None:
        return None
    return judgements.Judgements.of(refs.store, spec, outputs, labels, refs.golden_digest(), baseline)


def _judged_row(spec, case, backend, dtype, tier, seed, template, stored: dict, refs) -> dict:
    """A row as _compare_outputs made it, from its stored judgement. Its references are those this run
    used where it used them (another backend's outputs, the same bits, were judged first), else the
    store's: their keys are in the judgement's."""
    r = _base_row(spec, case, backend.name, stored["label"], dtype, tier, seed, template)
    r.update(stored["metrics"])
    r.update(verdict=stored["verdict"], reason=stored["reason"], ok=stored["verdict"] in GOOD_POSITIVE,
             golden_source=refs.golden_source or "store",
             baseline_source=(refs.baseline_source or "store") if stored["baseline"] else None)
    return r
