"""Derive cases from an OpSpec's constraints: positives, negatives, hypothesis strategies.

Positives: every edge of every constraint at least once, then a pairwise (all-pairs) covering of
the spec's axes (harness.pairwise: every pair some valid case can hold, each row a completed valid
case), then a seeded random top-up under the tier's budget. No derived case is dropped: one that
cannot be completed into a valid case is a SpecError. Negatives: one per
violation of every constraint, checked to break exactly that constraint. Strategies: axes drawn
one after another from the values still feasible given the earlier draws (constructive), then the
spec completes the rest.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

from . import pairwise
from .errors import SpecError
from .pairwise import complete_valid, rng_for
from .spec import Case, OpSpec, sanitize_id, tier_rank

SAMPLE_DRAWS = 8      # partial draws tried per random top-up case before it is a spec error


def _feasible(spec: OpSpec, partial: Mapping[str, Any]) -> bool:
    return all(c.satisfied(partial) for c in spec.constraints)


def _make(spec: OpSpec, origin: str, params: dict, tier: str, violates: str | None = None) -> Case:
    return Case(spec.name, sanitize_id(f"{origin}-{spec.label(params)}"), params, origin, violates, tier)


def positive_cases(spec: OpSpec, tier: str) -> list[Case]:
    rank = tier_rank(tier)
    plan = spec.tiers.get(tier)
    out: list[Case] = []
    seen: set[str] = set()

    def add(origin: str, params: dict):
        case = _make(spec, origin, params, tier)
        key = case.params_json()
        if key not in seen:
            seen.add(key)
            out.append(case)

    add("base", _required(spec, {}, tier, "base", "complete({})"))
    for c in spec.constraints:
        for i, e in enumerate(c.edges):
            if tier_rank(e.tier) <= rank:
                add(f"edge-{c.name}-{i}", _required(spec, dict(e.values), tier, f"edge{c.name}{i}",
                                                     f"edge {dict(e.values)} of {c.name!r}"))
    if plan is None or plan.pairwise:
        for n, full in enumerate(pairwise.plan(spec, tier).rows):  # every row completed: none dropped
            add(f"pw{n:02d}", full)
    rng = rng_for(spec, tier, "sample")
    for n in range(plan.sample if plan else 0):
        add(f"rand{n:02d}", _sample(spec, rng, tier, n))
    if plan and plan.hypothesis:
        for case in hypothesis_cases(spec, tier, plan.hypothesis):
            add(case.origin, case.params)
    return out


def _required(spec: OpSpec, partial: dict, tier: str, seed: str, what: str) -> dict:
    full = complete_valid(spec, partial, rng_for(spec, tier, seed), tier)
    if full is None:
        broken = [b.name for b in spec.broken(spec.complete(dict(partial), rng_for(spec, tier, seed), tier))]
        raise SpecError(f"{spec.name}: {what} completes to a case breaking {broken}")
    return full


def hypothesis_cases(spec: OpSpec, tier: str, n: int) -> list[Case]:
    """`n` cases drawn by hypothesis from `strategy(spec)`, derandomized so the matrix is stable."""
    from hypothesis import HealthCheck, Phase, given, settings

    found: list[Case] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy(spec, tier))
    def collect(case):
        found.append(case)

    collect()
    return found


def _sample(spec: OpSpec, rng: random.Random, tier: str, n: int) -> dict:
    """A random valid case; a few partial draws are tried, then it is a spec error (never dropped)."""
    for _ in range(SAMPLE_DRAWS):
        full = complete_valid(spec, draw_partial(spec, rng), rng, tier)
        if full is not None:
            return full
    raise SpecError(f"{spec.name} ({tier}): random case {n}: {SAMPLE_DRAWS} drawn partials all complete to a "
                    "broken case: complete() must choose its free values so that the constraints hold")


def draw_partial(spec: OpSpec, rng: random.Random) -> dict:
    """Axes drawn in order, each from the values feasible given the earlier ones."""
    partial: dict = {}
    for name, values in spec.axes.items():
        ok = [v for v in values if _feasible(spec, dict(partial, **{name: v}))]
        if ok:
            partial[name] = ok[rng.randrange(len(ok))]
    return partial


def negative_cases(spec: OpSpec, tier: str) -> list[Case]:
    out = []
    for c in spec.constraints:
        for i, v in enumerate(c.violations):
            full = spec.complete(dict(v), rng_for(spec, tier, f"neg{c.name}{i}"), tier)
            broken = [b.name for b in spec.broken(full)]
            if broken != [c.name]:
                raise SpecError(f"{spec.name}: violation {dict(v)} of {c.name!r} breaks {broken}, "
                                f"not exactly [{c.name!r}]")
            out.append(_make(spec, f"neg-{c.name}-{i}", full, tier, violates=c.name))
    return out


def strategy(spec: OpSpec, tier: str = "full"):
    """Hypothesis strategy of valid Cases for `spec`, constructive over its axes."""
    from hypothesis import assume, strategies as st

    @st.composite
    def cases(draw):
        partial: dict = {}
        for name, values in spec.axes.items():
            ok = [v for v in values if _feasible(spec, dict(partial, **{name: v}))]
            if ok:
                partial[name] = draw(st.sampled_from(ok))
        seed = draw(st.integers(0, 2**31 - 1))
        full = spec.complete(dict(partial), random.Random(seed), tier)
        assume(not spec.broken(full))  # rare: a constraint over params completed after the axes
        return _make(spec, f"hyp{seed:x}", full, tier)

    return cases()


def exercised(spec: OpSpec, cases: list[Case]) -> dict[str, tuple[int, int]]:
    """Per constraint: (positive cases sitting on one of its edges, negative cases breaking it)."""
    counts = {}
    for c in spec.constraints:
        pos = sum(1 for case in cases if not case.negative and any(
            all(case.params.get(k) == v for k, v in e.values.items()) for e in c.edges))
        neg = sum(1 for case in cases if case.violates == c.name)
        counts[c.name] = (pos, neg)
    return counts


def named_cases(spec: OpSpec, tier: str) -> list[Case]:
    """The spec's official shapes and kernel pins, completed and validated against the constraints.

    In the smoke tier a case with `reduced` overrides runs in that reduced form (id suffix `-reduced`).
    A named case breaking any constraint other than its declared `violates` is a SpecError: either
    the constraint or the document is wrong, and the spec must say which.
    """
    tier_rank(tier)
    known = set(spec.complete({}, rng_for(spec, tier, "known-params"), tier)) | set(spec.optional_params)
    out = []
    for n in spec.named:
        params = dict(n.params)
        reduced = tier == "smoke" and n.reduced is not None
        if reduced:
            params.update(n.reduced)
        where = f"{spec.name}: {n.kind} case {n.name!r} ({n.source})"
        unknown = sorted(set(params) - known)
        if unknown:
            raise SpecError(f"{where} sets unknown params {unknown}; known: {sorted(known)}")
        full = spec.complete(dict(params), rng_for(spec, tier, f"{n.kind}{n.name}"), tier)
        for k, v in params.items():
            if full.get(k) != v:
                raise SpecError(f"{where}: complete() changed {k}={v!r} to {full.get(k)!r}")
        broken = [c.name for c in spec.broken(full)]
        if broken != ([n.violates] if n.violates else []):
            raise SpecError(f"{where} breaks {broken}, declared {[n.violates] if n.violates else []}: a "
                            "documented shape that breaks a constraint means the constraint or the document "
                            "is wrong; fix the constraint, or declare violates= with a note saying which")
        case_id = sanitize_id(f"{n.kind}-{n.name}" + ("-reduced" if reduced else ""))
        out.append(Case(spec.name, case_id, full, n.kind, n.violates, tier))
    return out
