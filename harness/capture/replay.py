"""Records -> cases: `run --replay DIR` turns every record under DIR into a case of its operator.

For each record: read and check it (harness.capture.record), infer the op's case parameters from its
tensors and attributes (harness.capture.infer), then validate them against the spec's documented
constraints, on the params and on the data. A record that breaks a constraint is a **finding**: the
real call did something the documentation rules out; it runs as a negative case (backends are
expected to refuse it) and the report names every broken constraint with its source. A record that
cannot be used at all (unreadable, truncated, a manifest that lies, arguments the op cannot take) is
counted and reported with the file and the reason; the other records still run.

Case ids are `replay-<record id>`; the params carry `replay_record` (the record's directory), which
`OpSpec.make_inputs` follows to load the recorded tensors instead of drawing random ones, so the case
runs the same in-process, in an isolated worker, under --shard and --resume.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..spec import Case, sanitize_id
from . import record as record_mod
from .infer import Unusable, infer

log = logging.getLogger(__name__)

PARAM = "replay_record"     # case param: the record directory whose tensors are the case's inputs
DIGEST = "replay_sha1"      # case param: sha1 of the record's manifest and tensor file
ORIGIN = "replay"


def _check(spec, params: dict, inputs: dict) -> list[dict]:
    """Every documented constraint the call breaks, on params then on the data."""
    found = []
    for c in spec.constraints:
        if not c.satisfied(params):
            found.append({"constraint": c.name, "source": str(c.source),
                          "detail": "params " + ", ".join(f"{k}={params.get(k)!r}" for k in c.params)})
    for c in spec.constraints:
        if c.check_inputs is None:
            continue
        try:
            problem = c.check_inputs(params, inputs)
        except Exception as exc:   # a check that cannot even read the data: the data breaks it
            problem = f"check failed on the recorded data: {type(exc).__name__}: {exc}"
        if problem:
            found.append({"constraint": c.name, "source": str(c.source), "detail": problem})
    return found


def plan(root, specs, tier: str) -> tuple[list, dict]:
    """([(spec, Case)], report) for the records under `root`, restricted to `specs`."""
    root = Path(root)
    if not root.exists():
        from ..errors import UsageError

        raise UsageError(f"--replay {root}: no such file or directory")
    by_name = {s.name: s for s in specs}
    report = {"dir": str(root), "records": 0, "cases": 0, "findings": [], "unusable": [], "not_selected": {}}
    out, seen = [], set()
    for path in record_mod.find(root):
        report["records"] += 1
        try:
            rec = record_mod.read(path)
            spec = by_name.get(rec.op)
            if spec is None:
                report["not_selected"][rec.op] = report["not_selected"].get(rec.op, 0) + 1
                continue
            params, inputs = infer(rec)
        except (record_mod.RecordError, Unusable) as exc:
            report["unusable"].append({"record": str(path), "reason": str(exc)})
            continue
        except Exception as exc:   # an inference bug must cost one record, not the run
            report["unusable"].append({"record": str(path), "reason": f"{type(exc).__name__}: {exc}"})
            log.debug("replay: %s failed", path, exc_info=True)
            continue
        broken = _check(spec, params, inputs)
        case_id = sanitize_id(f"replay-{rec.id}")
        if case_id in seen:
            report["unusable"].append({"record": str(path), "reason": f"record id {rec.id!r} repeats another record's"})
            continue
        seen.add(case_id)
        for b in broken:
            report["findings"].append({"record": str(path), "case_id": case_id, **b})
        # the record's content digest: a result (or a stored golden) keyed by the params is keyed by the data
        params = dict(params, **{PARAM: str(path.resolve()), DIGEST: _digest(path, rec)})
        out.append((spec, Case(spec.name, case_id, params, ORIGIN, broken[0]["constraint"] if broken else None, tier)))
    report["cases"] = len(out)
    return out, report


def _digest(path: Path, rec) -> str:
    h = hashlib.sha1((path / record_mod.MANIFEST).read_bytes())
    with open(path / rec.manifest.get("tensor_file", record_mod.TENSORS), "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


_cache: dict = {}


def record_inputs(params: dict) -> dict:
    """The inputs dict of a replayed case, from its record (the last one read is kept for reruns)."""
    path = params[PARAM]
    if path not in _cache:
        _cache.clear()
        _, inputs = infer(record_mod.read(Path(path)))
        _cache[path] = inputs
    return dict(_cache[path])


def write_report(report: dict, stream) -> None:
    """What became of every record, for the run's console output."""
    ns = report["not_selected"]
    stream.write(f"replay {report['dir']}: {report['records']} record(s), {report['cases']} case(s), "
                 f"{len(report['findings'])} finding(s), {len(report['unusable'])} unusable"
                 + (f", not selected by --ops: {sum(ns.values())} ({', '.join(f'{k} {v}' for k, v in sorted(ns.items()))})"
                    if ns else "") + "\n")
    for f in report["findings"][:50]:
        stream.write(f"  finding {f['case_id']}: breaks {f['constraint']!r}: {f['detail'][:200]} [{f['source']}]\n")
    for u in report["unusable"][:50]:
        stream.write(f"  unusable {u['record']}: {u['reason'][:300]}\n")
    more = max(len(report["findings"]) - 50, 0) + max(len(report["unusable"]) - 50, 0)
    if more:
        stream.write(f"  ... and {more} more (run.json summary.replay)\n")
