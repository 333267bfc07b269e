"""Constraint shapes that several operators document in the same words.

no_fault(*names):     predicate for a data-level constraint broken by the `fault` case param
                      (build_inputs injects the fault; the constraint's check_inputs sees it in the data).
int32_indices(...):   "index tensors are int32", as a whole Constraint (edge, violation, data check).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .spec import Constraint, Source, edge


def no_fault(*names: str):
    return lambda p: p["fault"] not in names


def int32_indices(source: Source, keys: Sequence[str], name: str = "index_dtype_int32") -> Constraint:
    """The index tensors `keys` must be int32; the case param `index_dtype` selects what is built."""

    def check(params: Mapping, inputs: Mapping):
        for k in keys:
            v = inputs.get(k)
            if v is not None and np.asarray(v).dtype != np.int32:
                return f"{k} has dtype {np.asarray(v).dtype}, must be int32"
        return None

    return Constraint(name, source, ("index_dtype",), lambda p: p["index_dtype"] == "int32",
                      edges=[edge(index_dtype="int32")], violations=[dict(index_dtype="int64")],
                      check_inputs=check)
