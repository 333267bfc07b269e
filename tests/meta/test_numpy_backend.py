"""The numpy backend's own check, one test per op (the matrix runs the other backends against it).

Its `run` must be the float64 golden rounded once to each output's dtype (round-to-nearest-even through
harness.dtypes.cast), with the spec's output dtypes and the golden's shapes; float goldens stay float64
(unrounded) so the comparison sees the exact values, except outputs that are copies (rule `exact`); a negative case is refused naming its constraint."""
from __future__ import annotations

import numpy as np
import pytest

from harness import registry
from harness.dtypes import bits, cast, is_float, name_of
from harness.errors import ConstraintViolation

CASES_PER_OP = 3    # one per dtype of the op's dtype key where the smoke tier has them


def _cases(spec):
    chosen, seen = [], set()
    for c in spec.cases("smoke"):
        key = spec.dtype_of(c.params)
        if not c.negative and key not in seen:
            seen.add(key)
            chosen.append(c)
    return chosen[:CASES_PER_OP]


@pytest.mark.parametrize("op", registry.op_names())
def test_numpy_backend_rounds_the_golden_once_to_the_output_dtypes(op):
    spec, numpy_backend = registry.op(op), registry.backend("numpy")
    cases = _cases(spec)
    assert cases, f"{op}: no positive smoke case"
    for case in cases:
        inputs = spec.make_inputs(case, 0)
        golden = numpy_backend.golden(spec, case, inputs)
        out = numpy_backend.run(spec, case, inputs)
        dtypes = spec.output_dtypes(case.params)
        assert set(out) == set(spec.outputs), case.id
        for name, want in dtypes.items():
            g = np.asarray(golden[name])
            assert name_of(out[name]) == want and out[name].shape == g.shape, (case.id, name)
            if is_float(want) and want != "float64" and spec.rules[name].kind != "exact":   # a copy stays a copy
                assert g.dtype == np.float64, f"{case.id}: golden {name} is {g.dtype}, not unrounded float64"
            assert np.array_equal(bits(out[name]), bits(cast(g, want))), (case.id, name)


@pytest.mark.parametrize("op", registry.op_names())
def test_numpy_backend_refuses_a_negative_case_naming_its_constraint(op):
    spec = registry.op(op)
    neg = next((c for c in spec.cases("smoke") if c.negative and c.violates), None)
    if neg is None:
        pytest.skip(f"{op} has no negative smoke case")
    with pytest.raises(ConstraintViolation, match=neg.violates):
        registry.backend("numpy").run(spec, neg, spec.make_inputs(neg, 0))
