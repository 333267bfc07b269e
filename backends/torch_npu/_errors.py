"""What an exception from the torch_npu stack means: a refusal of the case, or an error.

A refusal is a parameter check of the Ascend stack saying no: aclnn GetWorkspaceSize (statuses 161001/161002,
acl_abi.md section 3; CANN error codes such as EZ1001), ATB Setup (`call AtbXxxGetWorkspaceSize failed`), a
wrapper's own check (torch_npu's ERRxxxxx suffix). Everything else is an error: a call that does not fit the
schema (ours), a device fault, a Python bug.

With the task queue on (TASK_QUEUE_ENABLE unset or 1, the default), torch_npu runs GetWorkspaceSize inside
the queued task (op-plugin `AtbCommon.h:374-418` for ATB; aclnn entry points are queued the same way), so a
refusal is raised at the next synchronize, wrapped in the queue's generic text ("The Inner error is reported
as above ... the current working operator name is X ... ERR00100 PTA call acl api failed.") followed by the
inner message. That generic text alone (ERR00100) also ends device faults, so it is never a refusal by
itself; the inner message decides. With TASK_QUEUE_ENABLE=0 the same check raises at the call.
"""
from __future__ import annotations

import re

# Messages of the dispatcher's own argument binding: a call that does not fit the schema is a bug of the
# backend (or of a case builder), never a device rejection.
SCHEMA_ERRORS = re.compile(r"Unknown keyword argument|missing value for argument|Expected a value of type|"
                           r"expected at most \d+ argument|failed to match any schema|got multiple values")
# A parameter check saying no. ERR00100 ("PTA call acl api failed") is excluded: it ends every failure the
# task queue re-raises, device faults included.
REFUSAL = re.compile(r"\b16100[12]\b|\bE[A-Z]\d{4}\b|ERR(?!00100)\d{5}|aclnn\w*GetWorkspaceSize|"
                     r"call \w+GetWorkspaceSize failed|PARAM_INVALID|Setup failed|check failed|not support",
                     re.IGNORECASE)
# Device faults (AICORE/vector-core exceptions, 507xxx) are errors even when they surface at the call.
DEVICE_FAULT = re.compile(r"\b507\d{3}\b|AICORE|AIV_|VECTOR_CORE|_EXCEPTION|_TIMEOUT")
# The task queue's re-raise at synchronize (torch_npu NPUQueue): names the operator whose task failed.
DEFERRED = re.compile(r"current working operator name is (\S+?)\.?$", re.MULTILINE)
# The library's own words inside a longer text: the wrapper's check line and the CANN error text.
LIBRARY_LINE = re.compile(r"call \w+ failed.*|\bE[A-Z]\d{4}\b.*|.*\b16100[12]\b.*")


def classify(exc: BaseException) -> str:
    """'rejected' for a refusal by the Ascend stack, 'error' for anything else (our bugs, device faults)."""
    text = str(exc)
    if SCHEMA_ERRORS.search(text) or DEVICE_FAULT.search(text):
        return "error"
    return "rejected" if REFUSAL.search(text) else "error"


def deferred_operator(exc: BaseException) -> str | None:
    """The operator named by the task queue's re-raise at synchronize, or None for an error raised at the call."""
    m = DEFERRED.search(str(exc))
    return m.group(1) if m else None


def library_message(exc: BaseException, limit: int = 300) -> str:
    """The refusal's own text: the lines naming the failed call and CANN's error, else the first line."""
    text = str(exc).strip()
    lines = [m.group(0).strip() for m in LIBRARY_LINE.finditer(text)]
    picked = " | ".join(dict.fromkeys(lines)) if lines else (text.splitlines() or [""])[0]
    return picked[:limit]
