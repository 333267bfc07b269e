"""All-pairs rows over an OpSpec's axes, each a completed valid case; feasibility of a pair decided by search.

A pair of axis values is feasible when some complete valid case holds it. For each pair not yet
covered, a depth-first search extends it axis by axis over the axis values (values covering the most
uncovered pairs first, so the first success is the greedy all-pairs row), pruning with the
constraints that can be judged, and completes each full row with a few rng draws. Outcomes:

- a completed valid case: it becomes a row and covers all the pairs it holds;
- no extension survives the constraints: the pair is proven infeasible and not counted;
- extensions survive but complete() reaches no valid case from any of them: SpecError naming the pair
  (complete() must be able to finish what the constraints allow).

No row is dropped: every pair ends covered, proven infeasible, or as an error.
"""
from __future__ import annotations

import itertools
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import SpecError
from .feasible import SearchBudget, broken_judged, extensions

Pair = tuple[tuple[str, Any], tuple[str, Any]]

DRAWS = 4             # rng draws per completed row: completion is random, a few draws rescue most rows
LEAF_LIMIT = 64       # full rows completed per pair before giving up: complete() cannot reach the pair
NODE_LIMIT = 50_000   # search nodes per pair before giving up: the constraints neither allow nor rule it out


@dataclass
class Plan:
    """The pairwise rows of one op and tier, and the pairs proven infeasible (not counted)."""

    rows: list[dict] = field(default_factory=list)
    infeasible: set[Pair] = field(default_factory=set)
    pairs: set[Pair] = field(default_factory=set)     # every pair of axis values

    @property
    def feasible(self) -> set[Pair]:
        return self.pairs - self.infeasible


def rng_for(spec, tier: str, what: str) -> random.Random:
    return random.Random(zlib.crc32(f"{spec.name}|{tier}|{what}".encode()))


def all_pairs(axes: Mapping[str, Any]) -> set[Pair]:
    return {((a, x), (b, y)) for (a, va), (b, vb) in itertools.combinations(axes.items(), 2) for x in va for y in vb}


def pairs_in(axes: Mapping[str, Any], params: Mapping[str, Any]) -> set[Pair]:
    """The pairs of axis values a case holds (values outside an axis are not pairs of the matrix)."""
    held = [(a, params[a]) for a in axes if a in params and params[a] in axes[a]]
    return set(itertools.combinations(held, 2))


def complete_valid(spec, partial: dict, rng: random.Random, tier: str) -> dict | None:
    """spec.complete(partial), or None when the completed case breaks a constraint."""
    full = spec.complete(dict(partial), rng, tier)
    for k, v in partial.items():
        if full.get(k) != v:
            raise SpecError(f"{spec.name}: complete() changed given param {k}={v!r} to {full.get(k)!r}")
    return full if not spec.broken(full) else None


def plan(spec, tier: str) -> Plan:
    axes = dict(spec.axes)
    order = {name: i for i, name in enumerate(axes)}
    out = Plan(pairs=all_pairs(axes))
    out.infeasible = {p for p in out.pairs if broken_judged(spec.constraints, dict(p))}
    uncovered = out.pairs - out.infeasible
    while uncovered:
        first = min(uncovered, key=lambda p: (order[p[0][0]], order[p[1][0]], repr(p)))
        full = _reach(spec, tier, first, uncovered, len(out.rows))
        if full is None:
            out.infeasible.add(first)
            uncovered.discard(first)
            continue
        out.rows.append(full)
        uncovered -= pairs_in(axes, full)
    _check_values_reachable(spec, tier, out)
    return out


def _check_values_reachable(spec, tier: str, out: Plan) -> None:
    """Every axis value must sit in some valid case (OpSpec.axes: each value a valid choice by itself).

    A value in no feasible pair is one no extension over the axes can hold, usually because another
    axis lacks the value it needs (e.g. a mask shape "none" for no mask): its pairs would be counted
    infeasible for a reason that is the axes', not the constraints'.
    """
    held = {v for pair in out.feasible for v in pair}
    lost = [(a, v) for a, values in spec.axes.items() for v in values if (a, v) not in held]
    if lost and len(spec.axes) > 1:
        raise SpecError(f"{spec.name} ({tier}): axis value(s) {lost} are in no valid case over the axes: "
                        "add the value another axis needs with them, or drop them from the axes")


def _reach(spec, tier: str, pair: Pair, uncovered: set[Pair], n: int) -> dict | None:
    """A valid completed case holding `pair`, or None when the constraints rule every extension out."""
    axes = dict(spec.axes)
    order = {name: i for i, name in enumerate(axes)}
    what = f"{spec.name} ({tier}): pair {_show(pair)}"

    def gain(name, value, assigned):
        return sum(1 for k, x in assigned.items()
                   if (((k, x), (name, value)) if order[k] < order[name] else ((name, value), (k, x))) in uncovered)

    def rank(name, values, assigned):
        return sorted(values, key=lambda v: -gain(name, v, assigned))   # stable: ties keep the axis order

    leaves, last = 0, None
    for row in extensions(spec.constraints, dict(pair), axes, rank, SearchBudget(NODE_LIMIT, what)):
        for attempt in range(DRAWS):
            rng = rng_for(spec, tier, f"pw{n}.{attempt}")
            full = complete_valid(spec, row, rng, tier)
            if full is not None:
                return full
        leaves += 1
        last = row
        if leaves >= LEAF_LIMIT:
            break
    if leaves == 0:
        return None
    broken = [c.name for c in spec.broken(spec.complete(dict(last), rng_for(spec, tier, f"pw{n}.0"), tier))]
    raise SpecError(f"{what} is allowed by the constraints but complete() reaches no valid case from "
                    f"{leaves} row(s) holding it ({DRAWS} draws each); e.g. {last} completes to a case breaking "
                    f"{broken}: complete() must choose its free values so that the constraints hold")


def coverage(spec, tier: str, cases) -> tuple[int, int]:
    """(feasible pairs held by the tier's positive cases, feasible pairs) for `spec` in `tier`."""
    feasible = plan(spec, tier).feasible
    held = set()
    for case in cases:
        if not case.negative:
            held |= pairs_in(spec.axes, case.params)
    return len(held & feasible), len(feasible)


def _show(pair: Pair) -> str:
    (a, x), (b, y) = pair
    return f"{a}={x!r}, {b}={y!r}"
