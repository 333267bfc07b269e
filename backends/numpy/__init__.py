"""numpy backend: the float64 golden (bfloat16 through ml_dtypes), vectorized.

`golden()` returns float outputs unrounded in float64 (the comparison target); `run()` returns
them rounded to the op's output dtypes with round-to-nearest-even, like any other backend.
"""
from __future__ import annotations

import numpy as np

from harness.dtypes import cast
from harness.errors import Declined

from backends.base import Availability, Backend
from backends.op_modules import not_implemented, op_module


class NumpyBackend(Backend):
    name = "numpy"
    params_first = True      # spec.validate(params, inputs) first: see Backend.params_first

    def supports(self, spec, case):
        if op_module("numpy", spec.name) is None:
            return not_implemented("numpy", spec.name)
        return None

    def golden(self, spec, case, inputs) -> dict:
        """Validate (params and data), then compute the float64 golden."""
        mod = op_module("numpy", spec.name)
        if mod is None:
            raise Declined(self.supports(spec, case))
        spec.validate(case.params, inputs)
        out = mod.golden(case.params, inputs)
        missing = set(spec.outputs) - set(out)
        if missing:
            raise RuntimeError(f"numpy golden of {spec.name} did not return {sorted(missing)}")
        return out

    def prepare(self, spec, case, inputs):
        return {"spec": spec, "case": case, "inputs": inputs, "out": None}

    def launch(self, prepared):
        prepared["out"] = self.golden(prepared["spec"], prepared["case"], prepared["inputs"])

    def fetch(self, prepared):
        spec, case = prepared["spec"], prepared["case"]
        dtypes = spec.output_dtypes(case.params)
        return {k: cast(np.asarray(v), dtypes[k]) for k, v in prepared["out"].items() if k in dtypes}

    def available(self):
        return Availability(True)
