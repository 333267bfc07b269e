"""Case derivation from constraints, for every registered operator."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings

from harness import ConstraintViolation, registry
from harness.derive import exercised
from harness.pairwise import plan
from harness.errors import SpecError, UnknownNameError
from harness.spec import Constraint, OpSpec, OutputRule, Source, edge, tier_rank

OPS = registry.op_names()


@pytest.fixture(scope="module", params=OPS)
def spec_cases(request):
    spec = registry.op(request.param)
    return spec, spec.cases("smoke")


def test_every_edge_appears_in_the_positive_cases(spec_cases):
    spec, cases = spec_cases
    positives = [c for c in cases if not c.negative]
    for c in spec.constraints:
        for e in c.edges:
            if tier_rank(e.tier) > 0:
                continue
            assert any(all(p.params.get(k) == v for k, v in e.values.items()) for p in positives), \
                f"{spec.name}: edge {dict(e.values)} of {c.name} not in the smoke cases"


def test_each_negative_case_breaks_exactly_its_constraint(spec_cases):
    spec, cases = spec_cases
    negatives = [c for c in cases if c.negative]
    assert {c.violates for c in negatives} == {c.name for c in spec.constraints}, "a constraint lacks a negative case"
    for case in negatives:
        assert [b.name for b in spec.broken(case.params)] == [case.violates]


def test_positive_cases_break_nothing_and_ids_are_unique_and_stable(spec_cases):
    spec, cases = spec_cases
    for case in cases:
        if not case.negative:
            assert spec.broken(case.params) == []
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert ids == [c.id for c in spec.cases("smoke")]
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") for i in ids)


def test_constraints_cite_their_seed(spec_cases):
    """A constraint cites the op's seed, a section of ops.md, or an upstream doc ops.md lists (*.md)."""
    spec, _ = spec_cases
    for c in spec.constraints:
        assert c.source.seed and c.source.clause, c.name
        s = c.source.seed
        assert s == spec.seed or s.startswith("ops.md") or s.endswith(".md"), c.source
    assert any(c.source.seed == spec.seed for c in spec.constraints), "no constraint cites the seed itself"


def test_every_constraint_is_exercised(spec_cases):
    spec, cases = spec_cases
    counts = exercised(spec, cases)
    for name, (pos, neg) in counts.items():
        assert neg >= 1, name


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as exc:
        registry.op("no_such_op")
    assert "paged_cache_load" in str(exc.value)


def test_spec_case_rejects_a_broken_constraint_by_name():
    spec = registry.op("paged_cache_load")
    with pytest.raises(ConstraintViolation) as exc:
        spec.case(layout="NZ", cumsum=True)
    assert exc.value.constraint == "nz_no_cumsum" and "003_5c277c3930bec26e.txt" in str(exc.value)
    case = spec.case(layout="ND", k_dtype="int8", cumsum=True)
    assert case.params["cumsum"] is True and case.params["v_dtype"] == "int8"


# ---- a toy spec: pairwise coverage and strategy construction ---------------------------------
def _toy():
    src = Source("toy.txt", "clause")
    cons = (
        Constraint("a_b", src, ("a", "b"), lambda p: not (p["a"] == 2 and p["b"] == "y"),
                   edges=[edge(a=2, b="x")], violations=[dict(a=2, b="y")]),
        Constraint("c_small", src, ("c",), lambda p: p["c"] <= 8, edges=[edge(c=8)], violations=[dict(c=9)]),
    )

    def complete(p, rng, tier):
        p.setdefault("a", rng.choice([0, 1]))
        p.setdefault("b", "x")
        p.setdefault("c", rng.choice([1, 8]))
        p.setdefault("d", rng.choice([True, False]))
        return p

    return OpSpec(name="toy", seed="toy.txt", summary="toy", outputs=("y",), rules={"y": OutputRule("exact")},
                  axes={"a": (0, 1, 2), "b": ("x", "y"), "c": (1, 4, 8), "d": (True, False)},
                  constraints=cons, complete=complete, build_inputs=lambda p, rng: {},
                  output_dtypes=lambda p: {"y": "int8"}, label=lambda p: f"a{p['a']}{p['b']}c{p['c']}{p['d']}")


def test_pairwise_covers_every_feasible_pair_without_infeasible_rows():
    spec = _toy()
    rows = plan(spec, "smoke").rows
    assert len(rows) < 3 * 2 * 3 * 2  # fewer than the Cartesian product
    assert all(spec.broken(r) == [] for r in rows)
    axes = list(spec.axes.items())
    for i, (a, va) in enumerate(axes):
        for b, vb in axes[i + 1:]:
            for x in va:
                for y in vb:
                    feasible = not ({a: x, b: y} == {"a": 2, "b": "y"})
                    covered = any(r.get(a) == x and r.get(b) == y for r in rows)
                    assert covered == feasible, (a, x, b, y)


def test_negative_derivation_refuses_a_violation_breaking_two_constraints():
    spec = _toy()
    bad = Constraint("c_small", spec.constraints[1].source, ("c",), lambda p: p["c"] <= 8,
                     violations=[dict(c=9, a=2, b="y")])
    broken = OpSpec(**{**spec.__dict__, "constraints": (spec.constraints[0], bad)})
    with pytest.raises(SpecError, match="breaks"):
        broken.cases("smoke")


@settings(max_examples=30, deadline=None)
@given(_toy().strategy("smoke"))
def test_strategy_draws_only_valid_cases(case):
    assert _toy().broken(case.params) == []


@pytest.mark.parametrize("op_name", OPS)
def test_op_strategy_draws_valid_cases(op_name):
    spec = registry.op(op_name)

    @settings(max_examples=5, deadline=None, derandomize=True)
    @given(spec.strategy("smoke"))
    def check(case):
        assert spec.broken(case.params) == []

    check()


def test_complete_must_not_change_given_params():
    spec = _toy()

    def bad_complete(p, rng, tier):
        p = dict(p)
        p["a"] = 0
        return spec.complete(p, rng, tier)

    broken = OpSpec(**{**spec.__dict__, "complete": bad_complete})
    with pytest.raises(SpecError, match="changed given param"):
        broken.cases("smoke")


def test_full_tier_adds_hypothesis_cases():
    spec = registry.op("paged_cache_load")
    full = spec.cases("full")
    assert any(c.origin.startswith("hyp") for c in full)
    assert [c.id for c in full] == [c.id for c in spec.cases("full")]  # derandomized: stable
    random.seed(0)
