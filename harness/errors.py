"""Exceptions shared by the harness, the case builders and the backends."""
from __future__ import annotations


class OpdiffError(Exception):
    """Base class of every error opdiff raises on purpose."""


class UsageError(OpdiffError):
    """Bad user input: an unknown name, a malformed option, an unreadable file."""


class UnknownNameError(UsageError, KeyError):
    """A lookup by name failed; the message lists the valid names."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, list(known)
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class SpecError(OpdiffError):
    """An OpSpec is internally inconsistent (a bug in cases/, not in a backend)."""


class ConstraintViolation(OpdiffError):
    """A documented constraint of an operator is broken by a case or by its inputs.

    `constraint` is the constraint's name, `source` its citation (seed file and clause).
    """

    def __init__(self, constraint: str, source: str, detail: str = ""):
        self.constraint, self.source, self.detail = constraint, source, detail
        msg = f"constraint {constraint!r} violated"
        if detail:
            msg += f": {detail}"
        msg += f" [{source}]"
        super().__init__(msg)


class Rejected(OpdiffError):
    """A backend refused a case at validation time (e.g. aclnn GetWorkspaceSize != 0)."""

    def __init__(self, message: str, code: int | None = None, code_name: str = ""):
        self.code, self.code_name = code, code_name
        super().__init__(message)


class Declined(OpdiffError):
    """A backend documents this case as unsupported; not a failure, not a rejection."""
