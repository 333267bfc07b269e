"""Hypothesis-generated valid cases (built constructively from each op's constraints): the torch
reference agrees with the numpy golden under the comparison policy. Examples per tier come from
the hypothesis profile conftest.py loads for --tier."""
from __future__ import annotations

import pytest
from hypothesis import given

from harness import registry
from harness.runner import run_case
from harness.timing import TimingConfig


@pytest.mark.parametrize("op_name", registry.op_names())
def test_generated_cases_agree(op_name, opdiff_options):
    spec = registry.op(op_name)
    backends = [registry.backend("torch")]

    @given(spec.strategy(opdiff_options["tier"] if opdiff_options["tier"] != "smoke" else "smoke"))
    def check(case):
        assert not spec.broken(case.params)
        res = run_case(spec, case, backends, opdiff_options["tier"], opdiff_options["seed"],
                       TimingConfig(enabled=False))
        bad = [r for r in res.rows if not r["ok"]]
        assert not bad, f"{bad[0]['verdict']}: {bad[0]['reason']}\nparams: {case.params_json()}"

    check()
