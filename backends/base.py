"""The backend interface.

A backend imports its heavy library lazily, answers `available()` with a reason instead of
raising, may decline a case it documents as unsupported, and runs an op from the inputs dict.
Running is split so that timing never includes host-to-device copies or allocations:

    prepared = backend.prepare(spec, case, inputs)   # untimed: copies, workspace queries
    backend.launch(prepared)                          # timed, may be asynchronous
    backend.synchronize()
    outputs = backend.fetch(prepared)                 # dict: output name -> numpy array

`run()` does all four. References raise `ConstraintViolation` for a broken constraint; device
backends raise `harness.errors.Rejected` when the library refuses a case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.timing import HostTimer


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Backend:
    name: str = "?"
    #: True for backends whose crashes can take the process down (run isolated by default).
    may_crash: bool = False
    #: True for backends that reject a case breaking a constraint on its params before they read any
    #: input tensor (the references: spec.validate checks the params first), so that a negative case
    #: they alone run needs no inputs built (harness.runner). A device backend hands the tensors to the
    #: library, whose refusal is the point of the case: False.
    params_first: bool = False

    def available(self) -> Availability:
        return Availability(True)

    def supports(self, spec, case) -> str | None:
        """None if the case can run here, else the documented reason to decline it."""
        return None

    def prepare(self, spec, case, inputs) -> Any:
        raise NotImplementedError

    def launch(self, prepared) -> None:
        raise NotImplementedError

    def fetch(self, prepared) -> dict:
        raise NotImplementedError

    def synchronize(self) -> None:
        return None

    def timer(self):
        return HostTimer(self.synchronize)

    def device_name(self) -> str:
        return "cpu"

    def run(self, spec, case, inputs) -> dict:
        prepared = self.prepare(spec, case, inputs)
        self.launch(prepared)
        self.synchronize()
        return self.fetch(prepared)

    def describe(self) -> str:
        return self.name
