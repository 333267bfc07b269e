"""Known issues as data: `cases/known_issues/<backend>.toml`.

    [[known_issue]]
    op = "paged_cache_load"
    dtype = "bfloat16"                 # optional: the case's dtype column
    case = "pw0*"                      # optional: glob on the case id
    where = { layout = "NZ" }          # optional: params equal to these (a list means any of)
    kind = "xfail"                     # xfail | quarantine | tolerance
    reason = "NZ bf16 tail block copied twice"
    issue = "https://gitee.com/ascend/op-plugin/issues/I000"
    limits = { max_ulp = 4 }           # tolerance only: metric ceilings that turn a fail into a warn

At least one of dtype / case / where must narrow the entry. `issue` and `reason` are required.

  xfail       the case runs; rows not as expected become ok (verdict kept, reason prefixed); if
              every row is as expected the result is NOT ok: "unexpected pass ... remove the entry".
  quarantine  the case is never launched on that backend (it poisons the device); rows `skipped`.
  tolerance   a `fail` row whose metrics are all within `limits` becomes `warn` (ok).

Verdict names stay in the usual set; every touched row carries `known_issue` ("<issue> (<kind>)").
Documented-unsupported combinations are constraints in cases/, never known issues.
Entries that match no case of their op (any tier) warn, and fail when CI=true.
"""
from __future__ import annotations

import fnmatch
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .compare import METRIC_KEYS
from .dtypes import ALL_DTYPES
from .errors import UsageError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "cases" / "known_issues"
KINDS = ("xfail", "quarantine", "tolerance")
KEYS = {"op", "dtype", "case", "where", "kind", "reason", "issue", "limits", "workaround", "negative", "mode"}


@dataclass
class Entry:
    backend: str
    op: str
    kind: str
    reason: str
    issue: str
    file: str
    index: int
    dtype: str | None = None
    case: str | None = None
    where: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    workaround: str | None = None   # a backend mode (option part, e.g. aclnn:pcl_zero_seq_starts) that avoids it
    negative: bool | None = None    # match only negative (True) or only positive (False) cases
    mode: str | None = None         # applies only to a backend run in this mode (e.g. torch_npu:pcl_functional)

    @property
    def where_text(self) -> str:
        return f"{self.file} entry #{self.index}"

    @property
    def label(self) -> str:
        return f"{self.issue} ({self.kind})"

    def matches(self, spec, case) -> bool:
        if spec.name != self.op:
            return False
        if self.negative is not None and bool(case.negative) != self.negative:
            return False
        if self.dtype is not None and spec.dtype_of(case.params) != self.dtype:
            return False
        if self.case is not None and not (case.id == self.case or fnmatch.fnmatchcase(case.id, self.case)):
            return False
        for k, want in self.where.items():
            have = case.params.get(k)
            if isinstance(want, list) and not isinstance(have, list):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True

    def describe(self) -> dict:
        return {"backend": self.backend, "op": self.op, "kind": self.kind, "issue": self.issue,
                "reason": self.reason, "file": self.file, "dtype": self.dtype, "case": self.case,
                "where": self.where, "limits": self.limits, "workaround": self.workaround,
                "negative": self.negative, "mode": self.mode}


class Ledger:
    def __init__(self, entries: list[Entry] | None = None, directory: str | None = None):
        self.entries = list(entries or [])
        self.directory = directory
        self.hits: dict[int, int] = {}  # id(entry) -> rows touched, for the report

    def match(self, spec, case, backend_name: str) -> Entry | None:
        base, _, option = backend_name.partition(":")
        modes = set(option.split("+"))
        for e in self.entries:
            if (e.backend == base and e.workaround not in modes and (e.mode is None or e.mode in modes)
                    and e.matches(spec, case)):
                return e
        return None

    def quarantine(self, spec, case, backend_name: str) -> Entry | None:
        e = self.match(spec, case, backend_name)
        return e if e is not None and e.kind == "quarantine" else None

    def quarantine_rows(self, spec, case, backend_name: str, entry: Entry, tier: str, seed: int) -> list[dict]:
        from .runner import verdict_rows

        rows = verdict_rows(spec, case, backend_name, "skipped",
                             f"quarantined, not launched: known issue {entry.issue}: {entry.reason}", tier, seed)
        for r in rows:
            r.update(ok=True, known_issue=entry.label)
        self._hit(entry, len(rows))
        return rows

    def apply(self, spec, case, rows: list[dict], kinds=("xfail", "tolerance")) -> list[dict]:
        """Rewrite result rows of one case by the entries matching (case, row backend); in place."""
        by_backend: dict[str, list[dict]] = {}
        for r in rows:
            by_backend.setdefault(r["backend"], []).append(r)
        for bname, brows in by_backend.items():
            e = self.match(spec, case, bname)
            if e is None or e.kind not in kinds:
                continue
            apply_entry(e, brows)
            self._hit(e, len(brows))
        return rows

    def _hit(self, e: Entry, n: int) -> None:
        self.hits[id(e)] = self.hits.get(id(e), 0) + n

    def summary(self, rows: list[dict] | None = None) -> list[dict]:
        """Entries with the number of result rows each touched (for run.json / the report): in this
        process, or, given `rows`, among those rows by their `known_issue` label (a pytest-xdist
        session's rows were settled in its worker processes)."""
        if rows is None:
            counts = {id(e): self.hits.get(id(e), 0) for e in self.entries}
        else:
            labelled = Counter((r.get("backend", "").partition(":")[0], r.get("known_issue")) for r in rows
                               if r.get("known_issue"))
            counts = {id(e): labelled[(e.backend, e.label)] for e in self.entries}
        return [dict(e.describe(), rows=counts[id(e)]) for e in self.entries if counts[id(e)]]

    def unmatched(self, specs) -> list[Entry]:
        """Entries of the given ops that match no case of any tier: stale or mistyped."""
        from .spec import TIERS

        out = []
        for spec in specs:
            mine = [e for e in self.entries if e.op == spec.name]
            if not mine:
                continue
            cases = {c.id: c for t in TIERS for c in spec.cases(t)}.values()
            out += [e for e in mine if not any(e.matches(spec, c) for c in cases)]
        return out

    def check_unmatched(self, specs, ci: bool | None = None) -> list[str]:
        """Warn about entries matching nothing; raise UsageError instead in CI (env CI=true)."""
        ci = in_ci() if ci is None else ci
        msgs = [f"{e.where_text}: known issue {e.issue} ({e.kind}, op {e.op}) matches no case; "
                f"fix or remove the entry" for e in self.unmatched(specs)]
        if msgs and ci:
            raise UsageError("\n".join(msgs) + "\n(unmatched known-issue entries fail in CI)")
        for m in msgs:
            log.warning("%s", m)
        return msgs


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def apply_entry(e: Entry, rows: list[dict]) -> None:
    if e.kind == "xfail":
        if all(r["verdict"] == "skipped" for r in rows):
            return  # not run here (backend unavailable, case declined): neither the failure nor a pass was seen
        if all(r["ok"] for r in rows):
            for r in rows:
                r.update(ok=False, known_issue=e.label,
                         reason=f"unexpected pass of known issue {e.issue} (xfail, {e.where_text}): "
                                f"remove the entry. {r.get('reason') or ''}".rstrip())
            return
        for r in rows:
            r["known_issue"] = e.label
            if not r["ok"]:
                r.update(ok=True, reason=f"xfail, known issue {e.issue}: {e.reason} | {r['verdict']}: {r['reason']}")
    elif e.kind == "tolerance":
        for r in rows:
            if r["verdict"] != "fail":
                continue
            r["known_issue"] = e.label
            over = {k: r.get(k) for k, lim in e.limits.items() if not _within(r.get(k), lim)}
            if over:
                r["reason"] = f"{r['reason']} (beyond known-issue tolerance {e.issue}: {over} vs {e.limits})"
            else:
                r.update(verdict="warn", ok=True,
                         reason=f"within known-issue tolerance {e.issue} {e.limits}: {e.reason} | fail: {r['reason']}")


def _within(value, limit) -> bool:
    return isinstance(value, (int, float)) and value == value and value <= limit


# ---- loading -------------------------------------------------------------------------------------

def load(directory: str | os.PathLike | None = None, backends: list[str] | None = None) -> Ledger:
    """All `<backend>.toml` files of a directory (default cases/known_issues); with `backends`,
    only those backends' files. Any problem is a UsageError naming the file and the entry."""
    d = Path(directory) if directory is not None else DEFAULT_DIR
    if not d.exists():
        if directory is None:
            return Ledger([], str(d))
        raise UsageError(f"known-issues directory {d}: no such directory")
    if not d.is_dir():
        raise UsageError(f"known-issues directory {d}: not a directory")
    wanted = None if backends is None else {b.partition(":")[0] for b in backends}
    entries = []
    for f in sorted(d.glob("*.toml")):
        if wanted is not None and f.stem not in wanted:
            continue
        entries += load_file(f)
    return Ledger(entries, str(d))


def load_file(path: str | os.PathLike) -> list[Entry]:
    from . import registry

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: unreadable ({exc})") from None
    extra = set(data) - {"known_issue"}
    if extra:
        raise UsageError(f"{p}: unknown top-level key(s) {sorted(extra)}; entries are [[known_issue]] tables")
    raw = data.get("known_issue", [])
    if not isinstance(raw, list):
        raise UsageError(f"{p}: 'known_issue' must be an array of tables ([[known_issue]])")
    ops = registry.op_names()
    out = []
    for i, item in enumerate(raw, 1):
        where = f"{p} entry #{i}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: not a table")
        unknown = set(item) - KEYS
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(sorted(KEYS))}")
        for key in ("op", "kind", "reason", "issue"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise UsageError(f"{where}: '{key}' is required (a non-empty string)")
        if item["op"] not in ops:
            raise UsageError(f"{where}: unknown op {item['op']!r}; known ops: {', '.join(ops)}")
        if item["kind"] not in KINDS:
            raise UsageError(f"{where}: kind {item['kind']!r} is not one of {', '.join(KINDS)}")
        if not any(k in item for k in ("dtype", "case", "where")):
            raise UsageError(f"{where}: give at least one of dtype, case, where (an entry must not cover a whole op)")
        if "dtype" in item and item["dtype"] not in ALL_DTYPES:
            raise UsageError(f"{where}: dtype {item['dtype']!r} is not one of {', '.join(ALL_DTYPES)}")
        if "case" in item and (not isinstance(item["case"], str) or not item["case"]):
            raise UsageError(f"{where}: 'case' must be a case id or glob")
        w = item.get("where", {})
        if not isinstance(w, dict):
            raise UsageError(f"{where}: 'where' must be a table of param = value")
        spec = registry.op(item["op"])
        bad = set(w) - set(spec.axes) - _param_names(spec)
        if bad:
            raise UsageError(f"{where}: 'where' names unknown param(s) {sorted(bad)} of {spec.name}; "
                             f"params: {', '.join(sorted(set(spec.axes) | _param_names(spec)))}")
        limits = item.get("limits", {})
        if item["kind"] == "tolerance":
            if not isinstance(limits, dict) or not limits:
                raise UsageError(f"{where}: a tolerance entry needs 'limits' (e.g. limits = {{ max_ulp = 4 }})")
            for k, v in limits.items():
                if k not in METRIC_KEYS:
                    raise UsageError(f"{where}: limit {k!r} is not a metric; metrics: {', '.join(METRIC_KEYS)}")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise UsageError(f"{where}: limit {k} = {v!r} must be a number >= 0")
        elif "limits" in item:
            raise UsageError(f"{where}: 'limits' only applies to kind = \"tolerance\"")
        if "negative" in item and not isinstance(item["negative"], bool):
            raise UsageError(f"{where}: 'negative' must be true or false (match only negative / positive cases)")
        if "mode" in item and (not isinstance(item["mode"], str) or not item["mode"].strip()):
            raise UsageError(f"{where}: 'mode' must name a backend mode (e.g. \"pcl_functional\")")
        if "workaround" in item and (not isinstance(item["workaround"], str) or not item["workaround"].strip()):
            raise UsageError(f"{where}: 'workaround' must name a backend mode (e.g. \"pcl_zero_seq_starts\")")
        out.append(Entry(backend=p.stem, op=item["op"], kind=item["kind"], reason=item["reason"].strip(),
                         issue=item["issue"].strip(), file=str(p), index=i, dtype=item.get("dtype"),
                         case=item.get("case"), where=dict(w), limits=dict(limits),
                         workaround=item.get("workaround"), negative=item.get("negative"), mode=item.get("mode")))
    return out


def _param_names(spec) -> set[str]:
    """Param names of an op's cases (its smoke tier), beyond the pairwise axes."""
    names = set()
    for c in spec.cases("smoke"):
        names |= set(c.params)
    return names


# ---- pytest --------------------------------------------------------------------------------------

def pytest_marks(entry: Entry | None) -> list:
    """Collection-time marks: quarantine -> skip (never launched); xfail -> strict xfail."""
    import pytest

    if entry is None:
        return []
    if entry.kind == "quarantine":
        return [pytest.mark.skip(reason=f"quarantined: known issue {entry.issue}: {entry.reason}")]
    if entry.kind == "xfail":
        return [pytest.mark.xfail(strict=True, reason=f"known issue {entry.issue}: {entry.reason} "
                                                      f"(if this passes, remove the entry: {entry.where_text})")]
    return []
