"""The case matrix as tests: every positive case must pass on every selected backend, every
negative case must be rejected. Each test runs through the session's engine (fixture `opdiff_run`,
harness.engine: isolated workers for backends that may crash, the known issues applied once, the rows
into --opdiff-out). Failures end with a one-line repro command."""
from __future__ import annotations

from harness.verdicts import is_failure


def _explain(rows, tier, seed) -> str:
    lines = []
    for r in rows:
        metrics = ", ".join(f"{k}={r[k]:.4g}" for k in ("max_abs_err", "max_ulp", "baseline_ratio", "mismatch_frac")
                            if isinstance(r.get(k), (int, float)))
        lines.append(f"{r['output']} [{r['dtype']}]: {r['verdict']}: {r['reason']}" + (f" ({metrics})" if metrics else ""))
    r = rows[0]
    lines.append(f"REPRO: pytest tests/test_matrix.py --ops {r['op']} --backends {r['backend']} --tier {tier} "
                 f"--seed {seed} -k '{r['op']}-{r['case_id']}-{r['backend']}'")
    return "\n".join(lines)


# res.judged: the rows as they ran where a known issue of kind xfail applies (its strict xfail mark judges
# those), the rows with the known issues applied otherwise (harness.runner.CaseResult)

def test_positive_case(op_case, backend_name, opdiff_run, opdiff_options, fail_on):
    spec, case = op_case
    res = opdiff_run(spec, case, backend_name)
    bad = [r for r in res.judged if is_failure(r, fail_on)]
    assert not bad, _explain(bad, **opdiff_options)


def test_negative_case_rejected(negative_case, backend_name, opdiff_run, opdiff_options):
    spec, case = negative_case
    res = opdiff_run(spec, case, backend_name)
    bad = [r for r in res.judged if not r["ok"]]
    assert not bad, _explain(bad, **opdiff_options)
    # The references raise ConstraintViolation naming the constraint; a device's message is its own.
    reference = backend_name in ("numpy", "torch") or backend_name.startswith("torch:")
    for r in res.judged:
        if reference and r["verdict"] == "rejected":
            assert case.violates in r["reason"], f"rejected for another reason than {case.violates!r}: {r['reason']}"
