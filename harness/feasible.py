"""Which values fit: the constraints judged on partial assignments, and a depth-first search over domains.

A constraint can be judged once every param it names is present; until then it neither holds nor
breaks. `broken_judged` lists the judged constraints an assignment breaks; `extensions` walks the
assignments of some params over given value domains, pruning a branch as soon as a judged constraint
breaks or a param still to assign has no value left (forward checking); `Chooser` gives `complete()`
functions one way to pick a free value that the constraints accept, so a complete() never restates
a constraint's condition.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import SpecError


def broken_judged(constraints: Sequence, params: Mapping[str, Any], about: Iterable[str] | None = None) -> list:
    """Constraints whose params are all present and that do not hold; with `about`, only those naming one of them."""
    names = None if about is None else set(about)
    return [c for c in constraints
            if (names is None or names.intersection(c.params)) and c.applies_to(params) and not c.holds(params)]


class SearchBudget:
    """Nodes a search may visit; past it `spend` raises SpecError naming what was being searched."""

    def __init__(self, nodes: int, what: str):
        self.left, self.what = nodes, what

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise SpecError(f"{self.what}: search budget exhausted before a valid extension was found or "
                            "every extension was proven to break a constraint (add a constraint over the "
                            "params that clash, or narrow the axes)")


def _by_param(constraints: Sequence) -> dict[str, list]:
    """Constraint lists by the params they name: a value's fit is judged on its own constraints only."""
    index: dict[str, list] = {}
    for c in constraints:
        for name in c.params:
            index.setdefault(name, []).append(c)
    return index


def _fits(index: Mapping[str, list], params, name) -> bool:
    return all(not c.applies_to(params) or c.holds(params) for c in index.get(name, ()))


def extensions(constraints: Sequence, partial: Mapping[str, Any], domains: Mapping[str, Sequence[Any]],
               rank: Callable[[str, list, dict], list] | None = None,
               budget: SearchBudget | None = None) -> Iterator[dict]:
    """Every assignment of `domains`' params (in that order) extending `partial` that breaks no judged constraint.

    rank(name, fitting values, assignment so far) orders the values tried for `name` (default: as given).
    A branch is cut when a later param has no fitting value given the assignment so far. If nothing is
    yielded, every extension over the domains breaks a constraint whose params are all present.
    """
    names = [n for n in domains if n not in partial]
    index = _by_param(constraints)

    def walk(assigned: dict, i: int) -> Iterator[dict]:
        if i == len(names):
            yield dict(assigned)
            return
        name = names[i]
        values = [v for v in domains[name] if _fits(index, {**assigned, name: v}, name)]
        for v in (rank(name, values, assigned) if rank else values):
            if budget is not None:
                budget.spend()
            trial = {**assigned, name: v}
            if all(any(_fits(index, {**trial, later: w}, later) for w in domains[later])
                   for later in names[i + 1:]):
                yield from walk(trial, i + 1)

    if not broken_judged(constraints, partial):
        yield from walk(dict(partial), 0)


def extendable(constraints: Sequence, partial: Mapping[str, Any], domains: Mapping[str, Sequence[Any]]) -> bool:
    return next(extensions(constraints, partial, domains), None) is not None


class Chooser:
    """`pick = Chooser(CONSTRAINTS)`, then `pick(p, name, candidates, rng=None, ahead=None)` in one op's complete().

    pick sets p[name] (when missing) to a candidate with which no judged constraint naming `name`
    breaks: the first such candidate in order, or with `rng` one drawn at random (no draw when only
    one fits, so a forced value leaves the rng where it was). `ahead` maps params complete() fills
    later to the values it may give them; a candidate is kept only if some choice of those still fits
    (so an early choice cannot strand a later one). When no candidate fits (a negative case's given
    params already break a constraint), the lookahead is dropped, then the candidates breaking the
    fewest constraints stand: the case's own check reports what is broken. Returns p[name].
    `fitting` lists the candidates that fit.
    """

    def __init__(self, constraints: Sequence):
        self.constraints = tuple(constraints)
        self._index = _by_param(self.constraints)

    def fitting(self, p: Mapping[str, Any], name: str, candidates: Sequence[Any],
                ahead: Mapping[str, Sequence[Any]] | None = None) -> list:
        later = {k: v for k, v in (ahead or {}).items() if k not in p and k != name}
        return [v for v in candidates if _fits(self._index, {**p, name: v}, name)
                and (not later or _ahead_fits(self.constraints, {**p, name: v}, name, later))]

    def __call__(self, p: dict, name: str, candidates: Sequence[Any], rng: random.Random | None = None,
                 ahead: Mapping[str, Sequence[Any]] | None = None):
        if name in p:
            return p[name]
        ok = (self.fitting(p, name, candidates, ahead) or self.fitting(p, name, candidates)
              or self._least_broken(p, name, candidates))
        p[name] = ok[0] if rng is None or len(ok) == 1 else ok[rng.randrange(len(ok))]   # no draw for a forced value
        return p[name]

    def _least_broken(self, p, name, candidates) -> list:
        """The candidates breaking the fewest judged constraints naming `name` (a negative case's givens)."""
        count = [len(broken_judged(self.constraints, {**p, name: v}, (name,))) for v in candidates]
        return [v for v, n in zip(candidates, count) if n == min(count)]


def _ahead_fits(constraints, params, name, later) -> bool:
    """Some assignment of `later` keeps every judged constraint naming `name` or one of `later` holding.

    A constraint over `later` alone that no assignment of them satisfies (a negative case's given
    params break it whatever comes) does not tell the candidates apart and is left out.
    """
    about = {name, *later}
    base = {k: v for k, v in params.items() if k != name}
    relevant = [c for c in constraints if about.intersection(c.params)
                and (name in c.params or extendable([c], base, later))]
    return extendable(relevant, params, later)
