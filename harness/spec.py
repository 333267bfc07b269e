"""OpSpec, Constraint and Case: an operator declared once, as data.

An operator's documented constraints are `Constraint` objects. Each names the case parameters it
reads, a predicate over them, the valid values that sit on its edge and the assignments that break
it. `harness.derive` turns them into positive cases, negative cases and hypothesis strategies, so a
constraint is written exactly once (in `cases/<op>.py`).

A case is a flat dict of JSON-able parameters (dims, dtype names, flags, modes). Input arrays are
derived from (case, seed) by the spec's input builder; the builder honours data-level fault
parameters (e.g. a duplicated slot) so that negative cases reach the backends as real inputs.
"""
from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import ConstraintViolation, SpecError

TIERS = ("smoke", "nightly", "full")
OUTPUT_KINDS = ("exact", "quant_int8", "elementwise", "reduction")


def tier_rank(tier: str) -> int:
    if tier not in TIERS:
        from .errors import UsageError

        raise UsageError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIERS)}")
    return TIERS.index(tier)


@dataclass(frozen=True)
class Source:
    """Where a constraint is documented: the seed file and a brief quote of the clause."""

    seed: str
    clause: str

    def __str__(self) -> str:
        return f"{self.seed}: {self.clause}"


@dataclass(frozen=True)
class Edge:
    """A valid partial assignment on a constraint's boundary; `tier` is the cheapest tier using it."""

    values: Mapping[str, Any]
    tier: str = "smoke"


def edge(tier: str = "smoke", **values) -> Edge:
    return Edge(dict(values), tier)


@dataclass(frozen=True)
class Constraint:
    """One documented constraint.

    holds:       predicate over the params named in `params` (it may read only those).
    edges:       valid partial assignments on the boundary (each becomes a positive case).
    violations:  partial assignments that break this constraint alone (each a negative case).
    check_inputs: optional data-level check `(params, inputs) -> problem or None`, for constraints
                 on tensor contents (unique slots, index ranges) that references verify on the data.
    """

    name: str
    source: Source
    params: tuple[str, ...]
    holds: Callable[[Mapping[str, Any]], bool]
    edges: tuple[Edge, ...] = ()
    violations: tuple[Mapping[str, Any], ...] = ()
    check_inputs: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None] | None = None
    doc: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise SpecError(f"constraint name {self.name!r} must be snake_case (used in test ids)")
        if not self.violations:
            raise SpecError(f"constraint {self.name!r} has no violation: every constraint needs a negative case")
        object.__setattr__(self, "edges", tuple(e if isinstance(e, Edge) else Edge(dict(e)) for e in self.edges))

    def applies_to(self, params: Mapping[str, Any]) -> bool:
        return all(p in params for p in self.params)

    def satisfied(self, params: Mapping[str, Any]) -> bool:
        """True when the constraint holds, or cannot be judged yet (a param is still missing)."""
        return not self.applies_to(params) or bool(self.holds(params))

    def violation(self, detail: str = "") -> ConstraintViolation:
        return ConstraintViolation(self.name, str(self.source), detail)


@dataclass(frozen=True)
class OutputRule:
    """How one output (or one region of it) is compared; see harness.compare for the policy.

    k:      for `reduction`, the allowed multiple of the same-precision baseline's max error
            (FlashAttention: 2 forward, 3 backward).
    grade:  for `reduction` and `quant_int8`, the CANN grade (L0/L1/L2, harness.policy.GRADES) whose
            ratio limits to the baseline the output must meet; `grade_why` says why this one.
    abs_cap: for `reduction` when the backend *is* the baseline: (atol, rtol) on max|err| vs max|golden|.
    small_ulp_of_max: for `elementwise`, opt into a looser small-value rule: below the small-value
            threshold an element may be off by this many ULP of max|golden| instead of the absolute
            bound (outputs that legitimately lose digits near zero); `small_why` says why.
    small_atol: for `reduction`, the same opt-in as an absolute bound the spec computes per case
            (float32 cancellation noise where the golden is near zero); `small_why` says why.
    why:    the anchor for the kind and any non-default number.
    """

    kind: str
    k: float = 2.0
    grade: str = "L0"
    grade_why: str = "CANN / msprobe default grade (precision.md section 1)"
    abs_cap: tuple[float, float] | None = None
    small_ulp_of_max: float | None = None
    small_atol: float | None = None
    small_why: str = ""
    why: str = ""

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise SpecError(f"unknown output kind {self.kind!r}; valid: {', '.join(OUTPUT_KINDS)}")
        if self.grade not in ("L0", "L1", "L2"):
            raise SpecError(f"unknown grade {self.grade!r}; valid: L0, L1, L2 (precision.md section 1)")
        if (self.small_ulp_of_max is not None or self.small_atol is not None) and not self.small_why:
            raise SpecError("a looser small-value rule (small_ulp_of_max, small_atol) needs small_why: the reason")


@dataclass(frozen=True)
class Region:
    """A part of an output compared by its own rule (e.g. cache rows written vs untouched)."""

    label: str                   # row name in results, e.g. "k_cache[untouched]"
    mask: np.ndarray | None      # boolean mask over the output's leading dims, None = whole output
    rule: OutputRule

    @cached_property
    def _rows(self) -> np.ndarray | None:
        """The mask's flat positions; None where it selects every one (no copy is needed then)."""
        rows = np.flatnonzero(self.mask)
        return None if rows.size == self.mask.size else rows

    def part(self, x: np.ndarray) -> np.ndarray:
        """x[mask]: the selected elements in C order and the shape numpy's boolean indexing gives them,
        through np.take on the mask's flat positions, found once per region: 2.7x faster on a float64
        golden of rows of 192 (every backend's output and the golden are masked by the same region).
        A mask that selects everything (NSA grad's dk of 21 in 50 smoke cases) gives x reshaped, no
        copy: a view, read, never written. IndexError where x's leading dims are not the mask's shape."""
        x = np.asarray(x)
        if self.mask is None:
            return x
        k = self.mask.ndim
        if x.shape[:k] != self.mask.shape:
            raise IndexError(f"region {self.label!r}: mask of shape {self.mask.shape} does not fit an array of "
                             f"shape {x.shape}")
        flat = x.reshape((-1,) + x.shape[k:])
        return flat if self._rows is None else np.take(flat, self._rows, axis=0)


NAMED_KINDS = ("official", "pin")


@dataclass(frozen=True)
class Named:
    """A named, cited param assignment run in every tier, next to the derived matrix.

    kind "official": a shape a document or an official test suite uses; "pin": a case that pins the
    kernel's behaviour where an official golden differs from the kernel (real_interfaces.md #3).
    params:   the assignment; `complete` fills the rest; derive validates it against the constraints:
              a documented shape breaking a constraint is a spec error (fix the constraint, or the
              document is wrong: then `violates` names the constraint and the case runs as a negative).
    reduced:  overrides for the smoke tier when the shape is too big for smoke (None: as is).
    note:     why: which source wins with `violates`; for a pin, the official golden's behaviour.
    """

    kind: str
    name: str
    source: str
    params: Mapping[str, Any]
    reduced: Mapping[str, Any] | None = None
    violates: str | None = None
    note: str = ""

    def __post_init__(self):
        if self.kind not in NAMED_KINDS:
            raise SpecError(f"unknown named case kind {self.kind!r}; valid: {', '.join(NAMED_KINDS)}")
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise SpecError(f"named case {self.name!r} must be snake_case (used in case ids)")
        if not self.source:
            raise SpecError(f"{self.kind} case {self.name!r} needs a source")
        if (self.violates or self.kind == "pin") and not self.note:
            raise SpecError(f"{self.kind} case {self.name!r} needs a note (why it breaks a constraint / "
                            "what the official golden does instead)")


def official(name: str, source: str, reduced: Mapping[str, Any] | None = None, violates: str | None = None,
             note: str = "", **params) -> Named:
    return Named("official", name, source, params, reduced, violates, note)


def pin(name: str, source: str, note: str, reduced: Mapping[str, Any] | None = None, **params) -> Named:
    return Named("pin", name, source, params, reduced, None, note)


@dataclass(eq=False)
class Case:
    """One point of an operator's matrix. `id` is stable and usable with pytest -k."""

    op: str
    id: str
    params: dict[str, Any]
    origin: str = "user"
    violates: str | None = None          # for a negative case: the constraint it breaks
    tier: str = "smoke"
    # params_json() once: every row, store key and repro of the case asks for it (params are never
    # changed in place once a case exists)
    _json: str | None = field(default=None, init=False, repr=False)

    @property
    def negative(self) -> bool:
        return self.violates is not None

    def params_json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.params, sort_keys=True, default=_json_default)
        return self._json

    def __repr__(self) -> str:
        return f"Case({self.op}/{self.id})"


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"case parameter of type {type(obj).__name__} is not JSON-able")


def sanitize_id(text: str) -> str:
    """Ids keep to [A-Za-z0-9_.-] so they work with pytest -k and in file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@dataclass(frozen=True)
class TierPlan:
    """Per-tier knobs: extra seeded random cases on top of edges + pairwise, and a size scale."""

    sample: int = 0              # seeded random cases added after edges and pairwise
    pairwise: bool = True
    hypothesis: int = 0          # hypothesis examples per op (only `full` uses them in the CLI)


@dataclass(frozen=True)
class OpSpec:
    """An operator, declared once.

    name:        registry key (snake_case).
    seed:        the seed file documenting it.
    outputs:     output names, in the order the torch_npu API returns them.
    rules:       OutputRule per output name.
    axes:        parameter -> values for the pairwise matrix (each value a valid choice by itself).
    constraints: every documented constraint.
    complete:    `(partial params, random.Random, tier) -> full params`; fills what is missing
                 consistently with the constraints, never changes what is given.
    build_inputs: `(params, np.random.Generator) -> inputs dict`, keys = torch_npu argument names.
    output_dtypes: `params -> {output name: dtype name}`.
    label:       `params -> short readable text` for case ids.
    regions:     optional `(params, inputs, output name) -> [Region]` splitting an output.
    cost:        optional `params -> (bytes moved, flops)` for roofline figures.
    perf_floor:  optional effect floor for latency regressions of this op (`compare`); None = the
                 command's default (5%). Raise it only with a comment saying why (a noisy kernel).
    dtype_key:   the param reported as a result's dtype column.
    named:       official shapes and kernel pins (`Named`), validated against the constraints.
    optional_params: params a case may carry that `complete` never fills (explicit data of a named
                 case, e.g. per-batch lengths); any other unknown param of a named case is an error.
    nondeterministic: None, or why the op's documents say repeated runs may differ (cite the clause);
                 exempts it from `run --determinism` (harness.devcheck), its rows say so.
    infer_call:  (arguments, tensor meta, manifest) of a recorded torch_npu call -> (params, inputs), for
                 `run --replay` (harness.capture.infer); None: the op's records cannot be replayed.
    """

    name: str
    seed: str
    summary: str
    outputs: tuple[str, ...]
    rules: Mapping[str, OutputRule]
    axes: Mapping[str, Sequence[Any]]
    constraints: tuple[Constraint, ...]
    complete: Callable[[dict, random.Random, str], dict]
    build_inputs: Callable[[Mapping[str, Any], np.random.Generator], dict]
    output_dtypes: Callable[[Mapping[str, Any]], dict]
    label: Callable[[Mapping[str, Any]], str]
    dtype_key: str = "dtype"
    regions: Callable[[Mapping[str, Any], Mapping[str, Any], str], list] | None = None
    cost: Callable[[Mapping[str, Any]], tuple[float, float]] | None = None
    perf_floor: float | None = None
    named: tuple[Named, ...] = ()
    optional_params: tuple[str, ...] = ()
    nondeterministic: str | None = None
    infer_call: Callable[[dict, dict, dict], tuple[dict, dict]] | None = None
    tiers: Mapping[str, TierPlan] = field(default_factory=lambda: {
        "smoke": TierPlan(sample=2), "nightly": TierPlan(sample=12), "full": TierPlan(sample=24, hypothesis=25)})

    def __post_init__(self):
        names = [c.name for c in self.constraints]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"{self.name}: constraint names repeated: {sorted(dup)}")
        missing = set(self.outputs) - set(self.rules)
        if missing:
            raise SpecError(f"{self.name}: outputs without a comparison rule: {sorted(missing)}")
        named = [(n.kind, n.name) for n in self.named]
        if len(set(named)) != len(named):
            raise SpecError(f"{self.name}: named cases repeated: {sorted({x for x in named if named.count(x) > 1})}")

    # ---- lookup -----------------------------------------------------------------------------
    def constraint(self, name: str) -> Constraint:
        for c in self.constraints:
            if c.name == name:
                return c
        from .errors import UnknownNameError

        raise UnknownNameError("constraint", name, [c.name for c in self.constraints])

    # ---- validation -------------------------------------------------------------------------
    def broken(self, params: Mapping[str, Any]) -> list[Constraint]:
        """Constraints the params break (data-level checks excluded)."""
        return [c for c in self.constraints if not c.satisfied(params)]

    def validate(self, params: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> None:
        """Raise ConstraintViolation for the first broken constraint, on params then on data."""
        for c in self.constraints:
            if not c.satisfied(params):
                raise c.violation(f"params {_brief(params, c.params)}")
        if inputs is not None:
            for c in self.constraints:
                if c.check_inputs is not None:
                    problem = c.check_inputs(params, inputs)
                    if problem:
                        raise c.violation(problem)

    # ---- cases ------------------------------------------------------------------------------
    def cases(self, tier: str = "smoke") -> list[Case]:
        """Positive and negative cases of a tier (negatives have `violates` set)."""
        from . import derive

        return derive.positive_cases(self, tier) + derive.negative_cases(self, tier) + derive.named_cases(self, tier)

    def case(self, **params) -> Case:
        """Build one case from (possibly partial) params; a broken constraint raises ConstraintViolation."""
        rng = random.Random(zlib.crc32(json.dumps(params, sort_keys=True, default=_json_default).encode()))
        full = self.complete(dict(params), rng, "smoke")
        self.validate(full)
        return Case(self.name, sanitize_id("user-" + self.label(full)), full, origin="user")

    def strategy(self, tier: str = "full"):
        """A hypothesis strategy of valid cases, built constructively from the constraints."""
        from . import derive

        return derive.strategy(self, tier)

    # ---- inputs -----------------------------------------------------------------------------
    def make_inputs(self, case: Case, seed: int = 0) -> dict:
        """Inputs keyed by torch_npu argument names; deterministic in (case params, seed)."""
        if "replay_record" in case.params:  # a recorded real call (harness.capture.replay): its own tensors
            from .capture.replay import record_inputs

            return record_inputs(case.params)
        key = zlib.crc32(f"{self.name}|{case.params_json()}".encode())
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, key])
        return self.build_inputs(case.params, rng)

    def output_regions(self, params, inputs, output: str) -> list[Region]:
        if self.regions is not None:
            regions = self.regions(params, inputs, output)
            if regions is not None:
                return regions
        return [Region(output, None, self.rules[output])]

    def dtype_of(self, params: Mapping[str, Any]) -> str:
        return str(params.get(self.dtype_key, ""))


def _brief(params: Mapping[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={params.get(k)!r}" for k in keys)
