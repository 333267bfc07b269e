"""Synthetic run directories for the report tests: written row by row so that each kind of
unexpected result, a hostile case id and the metric columns are there without running a backend."""
from __future__ import annotations

import json
from pathlib import Path

HOSTILE = "<img src=x onerror=alert(1)>\"'&amp;</td>"
SKIP_REASON = "unavailable: no CANN runtime <libascendcl.so> here"
META = {"run_id": "20261201T000000-abcdef", "tier": "smoke", "seed": 0, "status": "finished",
        "started": "2026-12-01T00:00:00+0000", "finished": "2026-12-01T00:01:00+0000",
        "backends": ["numpy", "torch", "torch_npu", "aclnn"],
        "env": {"opdiff_commit": "0123456789abcdef", "torch": "2.13.0+cpu", "torch_npu": "2.13.0", "cann": "8.1.RC1",
                "devices": {"numpy": "cpu", "torch": "cpu", "torch_npu": "Ascend910B3", "aclnn": "unavailable"},
                "host": "box", "cpu": "x86", "cpu_count": 2}}


def row(op, case_id, backend, verdict, ok=True, output="out", dtype="float16", negative=False, reason="", **kw):
    r = {"run_id": META["run_id"], "op": op, "case_id": case_id, "params": json.dumps({"n": len(case_id)}),
         "negative": negative, "violates": "c1" if negative else None, "backend": backend, "output": output,
         "dtype": dtype, "verdict": verdict, "ok": ok, "reason": reason, "tier": "smoke", "seed": 0,
         "repro": f"python -m harness run --ops {op} --backends {backend} --case '{case_id}'"}
    r.update(kw)
    return r


def good(op, i, backend, **kw):
    """A compared positive case with error metrics and a latency."""
    fields = dict(baseline_ratio=0.5 + 0.1 * i, rmse_ratio=0.4 + 0.05 * i, max_ulp=float(i),
                  latency_median_us=10.0 + i, latency_p20_us=9.0 + i, latency_p80_us=11.0 + i, bytes=1e4 * (i + 1),
                  flops=2e4 * (i + 1), gbps=1.0 + i, pct_peak_bw=0.5 + i, peak_device="host CPU (memcpy probe)",
                  timing_mode="host_perf_counter/hot", reason="within L1 of the baseline")
    fields.update(kw)
    return row(op, f"pw{i:02d}-case", backend, fields.pop("verdict", "pass"), **fields)


def unexpected_rows() -> list[dict]:
    """One of each kind the first screen must list, all on torch_npu / paged_cache_load."""
    op, b = "paged_cache_load", "torch_npu"
    return [
        row(op, "fail-case", b, "fail", ok=False, max_ulp=40.0, baseline_ratio=9.0,
            reason="max error 9x the baseline; worst at index (1, 2): actual 3.0, golden 1.0"),
        row(op, "error-case", b, "error", ok=False, reason="RuntimeError: device lost"),
        row(op, "rejected-positive", b, "rejected", ok=False, reason="positive case rejected: ERR00100"),
        row(op, "neg-unrejected", b, "fail", ok=False, negative=True,
            reason="negative case (breaks 'c1') ran without rejection"),
        row(op, "xfail-passed", b, "pass", ok=False, known_issue="ISSUE-7 (xfail)",
            reason="unexpected pass of known issue ISSUE-7 (xfail, where layout=ND): remove the entry"),
        row(op, HOSTILE, b, "crash", ok=False, reason="worker died: <b>SIGSEGV</b>"),
    ]


def write_run(path: Path, rows: list[dict], meta: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(meta or META), encoding="utf-8")
    with open(path / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    (path / "samples.jsonl").write_text("", encoding="utf-8")
    return path


def small_run(path: Path) -> Path:
    rows = []
    for op in ("paged_cache_load", "incre_flash_attention"):
        for i in range(6):
            rows.append(good(op, i, "numpy"))
            rows.append(good(op, i, "torch", verdict="warn" if (op, i) == ("incre_flash_attention", 2) else "pass"))
            rows.append(row(op, f"pw{i:02d}-case", "aclnn", "skipped", reason=SKIP_REASON))
            if op == "incre_flash_attention":
                rows.append(good(op, i, "torch_npu"))
        rows.append(row(op, "neg-ok", "numpy", "rejected", negative=True, reason="constraint 'c1' violated"))
    rows += unexpected_rows()
    return write_run(path, rows)
