"""Pairwise coverage decided by the constraints: every feasible pair covered, infeasible pairs proven,
pairs complete() cannot reach reported; and the chooser complete() functions use."""
from __future__ import annotations

import pytest

from harness import registry
from harness.errors import SpecError
from harness.feasible import Chooser, extensions
from harness.pairwise import all_pairs, coverage, plan
from harness.spec import Constraint, OpSpec, OutputRule, Source, edge

SRC = Source("toy.txt", "clause")


@pytest.mark.parametrize("op_name", registry.op_names())
def test_every_op_covers_every_feasible_pair_at_smoke(op_name):
    spec = registry.op(op_name)
    cases = spec.cases("smoke")
    covered, feasible = coverage(spec, "smoke", cases)
    assert feasible > 0
    assert covered == feasible, f"{op_name}: {covered}/{feasible} feasible pairs in the smoke cases"
    ids = [c.id for c in cases if c.origin.startswith("pw")]
    assert len(plan(spec, "smoke").rows) >= len(ids) > 0   # rows that repeat another case are kept once


def test_list_prints_pairwise_coverage_per_tier(capsys):
    from harness.cli import main

    spec = registry.op("paged_cache_load")
    covered, feasible = coverage(spec, "smoke", spec.cases("smoke"))
    assert main(["list", "--op", spec.name]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "pairwise coverage:" in x)
    assert f"smoke {covered}/{feasible} pairs (100.0%)" in line and "nightly " in line and "full " in line


def _spec(complete, axes=None, extra=()):
    """Axes a (0, 1, 2), b (x, y), c (1, 8); a=2 with b=y breaks `a_b`; `c_needs_e`: c=8 needs e=1,
    where e is no axis: whether (c=8, ...) pairs are reachable is up to complete()."""
    cons = (
        Constraint("a_b", SRC, ("a", "b"), lambda p: not (p["a"] == 2 and p["b"] == "y"),
                   edges=[edge(a=2, b="x")], violations=[dict(a=2, b="y")]),
        Constraint("c_needs_e", SRC, ("c", "e"), lambda p: p["c"] != 8 or p["e"] == 1,
                   edges=[edge(c=8, e=1)], violations=[dict(c=8, e=0)]),
    ) + tuple(extra)
    return OpSpec(name="toy", seed="toy.txt", summary="toy", outputs=("y",), rules={"y": OutputRule("exact")},
                  axes=axes or {"a": (0, 1, 2), "b": ("x", "y"), "c": (1, 8)}, constraints=cons,
                  complete=complete, build_inputs=lambda p, rng: {}, output_dtypes=lambda p: {"y": "int8"},
                  label=lambda p: f"a{p['a']}{p['b']}c{p['c']}e{p['e']}")


def _good_complete(p, rng, tier):
    for k, v in (("a", 0), ("b", "x"), ("c", 1)):
        p.setdefault(k, v)
    p.setdefault("e", 1 if p["c"] == 8 else rng.choice([0, 1]))
    return p


def test_a_pair_the_constraints_rule_out_is_proven_and_not_counted():
    spec = _spec(_good_complete)
    got = plan(spec, "smoke")
    assert got.infeasible == {(("a", 2), ("b", "y"))}
    assert len(got.pairs) == 3 * 2 + 3 * 2 + 2 * 2 and len(got.feasible) == 15
    assert coverage(spec, "smoke", spec.cases("smoke")) == (15, 15)


def test_a_pair_ruled_out_only_through_a_third_axis_is_proven():
    # a=1 needs c=8 and b=y needs c=1: (a=1, b=y) holds no constraint of its own, yet no c fits both
    extra = (Constraint("a1_c8", SRC, ("a", "c"), lambda p: p["a"] != 1 or p["c"] == 8, violations=[dict(a=1, c=1)]),
             Constraint("by_c1", SRC, ("b", "c"), lambda p: p["b"] != "y" or p["c"] == 1, violations=[dict(b="y", c=8)]))
    got = plan(_spec(_good_complete, extra=extra), "smoke")
    assert (("a", 1), ("b", "y")) in got.infeasible
    assert (("a", 0), ("b", "y")) not in got.infeasible


def test_a_pair_complete_cannot_reach_is_a_spec_error_naming_it():
    def stubborn(p, rng, tier):   # never sets e=1: every case with c=8 breaks c_needs_e
        for k, v in (("a", 0), ("b", "x"), ("c", 1)):
            p.setdefault(k, v)
        p.setdefault("e", 0)
        return p

    with pytest.raises(SpecError) as exc:
        plan(_spec(stubborn), "smoke")
    msg = str(exc.value)
    assert "toy (smoke): pair a=0, c=8" in msg and "c_needs_e" in msg and "complete() reaches no valid case" in msg


def test_an_axis_value_no_valid_case_holds_is_a_spec_error():
    # c=8 needs e=1; with e an axis lacking 1, no extension over the axes holds c=8
    spec = _spec(_good_complete, axes={"a": (0, 1), "c": (1, 8), "e": (0,)})
    with pytest.raises(SpecError, match=r"axis value\(s\) \[\('c', 8\)\] are in no valid case"):
        plan(spec, "smoke")


def test_rows_are_complete_valid_cases_and_stable():
    spec = _spec(_good_complete)
    rows = plan(spec, "smoke").rows
    assert all(spec.broken(r) == [] and set(r) == {"a", "b", "c", "e"} for r in rows)
    assert rows == plan(spec, "smoke").rows
    assert len(rows) < len(all_pairs(spec.axes))


def test_extensions_prune_with_judged_constraints_only():
    cons = _spec(_good_complete).constraints
    got = list(extensions(cons, {"a": 2}, {"b": ("x", "y"), "c": (1, 8)}))
    assert got == [{"a": 2, "b": "x", "c": 1}, {"a": 2, "b": "x", "c": 8}]   # e missing: c_needs_e not judged
    assert list(extensions(cons, {"a": 2, "b": "y"}, {"c": (1, 8)})) == []


def test_chooser_picks_what_the_constraints_allow_and_looks_ahead():
    cons = _spec(_good_complete).constraints
    pick = Chooser(cons)
    p = {"a": 2}
    assert pick(p, "b", ("y", "x")) == "x" and p["b"] == "x"
    assert pick({"b": "y"}, "a", (2,)) == 2   # a negative case's givens: nothing fits, the candidate stands
    p = {}   # e will be 0: c=8 would strand it, so the lookahead keeps c=1
    assert pick(p, "c", (8, 1), ahead={"e": (0,)}) == 1
    p = {"c": 8}
    assert pick(p, "c", (1,)) == 8   # a given value is kept
    assert pick({"c": 8}, "e", (0, 1)) == 1


def test_chooser_falls_back_to_the_candidate_breaking_fewest_constraints():
    cons = (Constraint("below_2", SRC, ("x",), lambda p: p["x"] < 2, violations=[dict(x=2)]),
            Constraint("below_1", SRC, ("x",), lambda p: p["x"] < 1, violations=[dict(x=1)]))
    pick = Chooser(cons)
    assert pick.fitting({}, "x", (3, 2, 1)) == []
    assert pick({}, "x", (3, 2, 1)) == 1          # breaks below_1 only; 3 and 2 break both
    assert pick({}, "x", (3, 0, 1)) == 0
