"""Calibrate the comparison policy by kernel mutants (a benchmark that prints a table; never a test).

    python bench/verdict_calibration.py [--ops a,b] [--tier smoke] [--seed 0] [--variants x,y]

The "device" under test is the torch reference with one change (bench/calibration_variants.py):
realistic kernel bugs (mutants) and things a correct kernel may do differently (legitimate variants).
Each is judged exactly as `run` judges a device backend (golden = numpy float64, baseline = the
unchanged torch reference, the op's regions and rules), by today's policy (harness.compare) and by
the policy before issue 13 (harness/compare.py at OLD_POLICY_COMMIT, read from git).

A mutant "changes the output" of a case where, in some output, it moves further from the unchanged
reference than every legitimate variant does, in max or in RMS over the elements (the legit
envelope): a mutant whose deviation is no larger than a correct kernel's cannot be failed without
failing that correct kernel too. Printed per op and variant: cases where it applies,
where it changes the output bitwise, where it changes it beyond the envelope, and the verdicts on
those (fail / warn / pass), new policy beside old. For a legitimate variant: false fails and warns
on every case. A mutant that raised (an index out of range) is counted apart: a kernel would have
read memory out of bounds instead.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import types
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from calibration_variants import VARIANTS, run_reference  # noqa: E402
from harness import registry, runner  # noqa: E402
from harness.compare import compare as compare_now  # noqa: E402
from harness.compare import worst_verdict  # noqa: E402
from harness.spec import OutputRule, Region  # noqa: E402

OLD_POLICY_COMMIT = "b1ae436"   # the last commit before issue 13's policy


def load_old_policy():
    """harness.compare as it was before issue 13, or None (with the reason) without git history."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_POLICY_COMMIT}:harness/compare.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"old policy unavailable ({exc}); only the new one is shown"
    src = src.replace("from .dtypes", "from harness.dtypes").replace("from .spec", "from harness.spec")
    mod = types.ModuleType("opdiff_policy_before_issue13")
    sys.modules[mod.__name__] = mod          # dataclasses look their module up there
    exec(compile(src, f"{OLD_POLICY_COMMIT}:harness/compare.py", "exec"), mod.__dict__)

    def old_compare(actual, golden, rule, dtype=None, baseline=None, memo=None):
        return mod.compare(actual, golden, rule, dtype, baseline)     # it had no memo of folds (runner passes one)
    return old_compare, ""


# Rules that issue 13 changed, as they were (the old column must judge by the old rules too).
OLD_RULES = {("nsa_compress_with_cache", "cache[written]"): OutputRule("elementwise")}


@contextlib.contextmanager
def _old_rules(spec):
    real = spec.output_regions

    def regions(params, inputs, output):
        return [Region(r.label, r.mask, OLD_RULES.get((spec.name, r.label), r.rule))
                for r in real(params, inputs, output)]
    object.__setattr__(spec, "output_regions", regions)
    try:
        yield
    finally:
        object.__delattr__(spec, "output_regions")


class _Device:
    name = "device"                         # not the baseline: judged against it, as a device is


def judge(spec, case, inputs, outputs, golden, baseline, compare_fn) -> str:
    refs = runner.References(spec, case, inputs)
    refs._golden, refs._baseline = golden, baseline
    old = runner.compare
    runner.compare = compare_fn
    try:
        rows = runner._compare_outputs(spec, case, _Device(), inputs, outputs, refs, "smoke", 0)
    except Exception:                       # a comparison that cannot run is not a pass
        return "error"
    finally:
        runner.compare = old
    return worst_verdict(r["verdict"] for r in rows)


def _distance(x, ref) -> np.ndarray | None:
    """|x - ref| elementwise (float64; NaN-pattern differences inf), None when shapes differ."""
    x, ref = np.asarray(x), np.asarray(ref)
    if x.shape != ref.shape or x.dtype != ref.dtype:
        return None
    a, r = x.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - r)
    both_nan = np.isnan(a) & np.isnan(r)
    d = np.where(both_nan, 0.0, d)
    d = np.where(np.isnan(d) | (np.isinf(a) != np.isinf(r)), np.inf, d)
    same_inf = np.isinf(a) & np.isinf(r) & (np.sign(a) == np.sign(r))
    return np.where(same_inf, 0.0, d)


def deviation(out, ref) -> dict:
    """Per output: (max, RMS) of |x - ref| over the elements (inf where shapes or NaNs differ)."""
    dev = {}
    for k in ref:
        d = _distance(out.get(k), ref[k]) if k in out else None
        if d is None or not np.isfinite(d).all():
            dev[k] = (np.inf, np.inf)
        else:
            dev[k] = (float(d.max()), float(np.sqrt(np.mean(d * d)))) if d.size else (0.0, 0.0)
    return dev


def beyond_envelope(out, ref, envelope) -> bool:
    return any(m > envelope[k][0] or r > envelope[k][1] for k, (m, r) in deviation(out, ref).items())


def bitwise_changed(out, ref) -> bool:
    for k in ref:
        d = _distance(out.get(k), ref[k]) if k in out else None
        if d is None or (d > 0).any():
            return True
    return False


# Cases whose every output is int8 (IncreFlashAttention with quant_scale2) are tallied apart: there
# the policy's resolution is CANN's AE <= 1 plus an off-by-one count against the baseline's.
INT8_ONLY = " [int8 out]"


def calibrate(ops, tier, seed, names, old_compare, labels):
    tally = defaultdict(lambda: defaultdict(int))
    for op in ops:
        spec = registry.op(op)
        for case in (c for c in spec.cases(tier) if not c.negative):
            inputs = spec.make_inputs(case, seed)
            golden = registry.backend("numpy").golden(spec, case, inputs)
            ref = run_reference(spec, case, inputs)
            outs, raised = {}, set()
            for v in VARIANTS:
                if (names and v.name not in names) or (v.ops is not None and op not in v.ops):
                    continue
                try:
                    out = v.make(spec, case, inputs, golden)
                except Exception:
                    out, _ = None, raised.add(v.name)
                if out is not None or v.name in raised:
                    outs[v.name] = out
            envelope = {k: (0.0, 0.0) for k in ref}
            for v in VARIANTS:
                if v.legit and outs.get(v.name) is not None:
                    for k, (m, r) in deviation(outs[v.name], ref).items():
                        envelope[k] = (max(envelope[k][0], m), max(envelope[k][1], r))
            label = op + (INT8_ONLY if all(d == "int8" for d in spec.output_dtypes(case.params).values()) else "")
            labels.setdefault(op, []).append(label) if label not in labels.get(op, []) else None
            for v in VARIANTS:
                if v.name not in outs:
                    continue
                t = tally[(label, v.name)]
                t["applies"] += 1
                if v.name in raised:
                    t["raised"] += 1
                    continue
                out = outs[v.name]
                if not v.legit:
                    if not bitwise_changed(out, ref):
                        continue
                    t["changed"] += 1
                    if not beyond_envelope(out, ref, envelope):
                        continue
                    t["distinct"] += 1
                t["new_" + judge(spec, case, inputs, out, golden, ref, compare_now)] += 1
                if old_compare is not None:
                    with _old_rules(spec):
                        t["old_" + judge(spec, case, inputs, out, golden, ref, old_compare)] += 1
    return tally


def _fmt(t, prefix):
    bad = t[prefix + "error"] + t[prefix + "crash"]
    return f"{t[prefix + 'fail'] + bad:5d} {t[prefix + 'warn']:5d} {t[prefix + 'pass']:5d}"


def print_table(tally, ops, have_old, labels) -> int:
    """Print the table; return the number of done-when violations (mutant < 90% fail, legit fails)."""
    legit = {v.name for v in VARIANTS if v.legit}
    head = (f"{'op':34s} {'variant':24s} {'apply':>5s} {'chg':>4s} {'dist':>4s} {'raise':>5s} | "
            f"{'new fail  warn  pass':>17s} | {'old fail  warn  pass':>17s} | caught new/old")
    print(head)
    print("-" * len(head))
    problems = 0
    for op in (lab for o in ops for lab in sorted(labels.get(o, []))):
        for v in VARIANTS:
            t = tally.get((op, v.name))
            if not t:
                continue
            judged = t["applies"] - t["raised"] if v.name in legit else t["distinct"]
            new_fail = t["new_fail"] + t["new_error"]
            old_fail = t["old_fail"] + t["old_error"]
            if v.name in legit:
                note = f"false fails {new_fail}/{judged} / {old_fail if have_old else '-'}"
                problems += new_fail > 0
            else:
                pct_new = 100.0 * new_fail / judged if judged else float("nan")
                pct_old = 100.0 * old_fail / judged if judged else float("nan")
                note = f"{pct_new:5.1f}% / {pct_old:5.1f}%" if judged else "  (no change beyond legit)"
                problems += bool(judged) and pct_new < 90.0
            chg = "-" if v.name in legit else f"{t['changed']:4d}"
            dist = "-" if v.name in legit else f"{t['distinct']:4d}"
            old = _fmt(t, "old_") if have_old else "    -     -     -"
            print(f"{op:34s} {v.name + (' (legit)' if v.name in legit else ''):24s} {t['applies']:5d} {chg:>4s} "
                  f"{dist:>4s} {t['raised']:5d} | {_fmt(t, 'new_')} | {old} | {note}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default="all")
    ap.add_argument("--tier", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    args = ap.parse_args(argv)
    ops = registry.op_names() if args.ops == "all" else [o for o in args.ops.split(",") if o]
    names = {n for n in args.variants.split(",") if n}
    old_compare, why = load_old_policy()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(sys.stderr):
        labels: dict = {}
        tally = calibrate(ops, args.tier, args.seed, names, old_compare, labels)
    problems = print_table(tally, ops, old_compare is not None, labels)
    print(f"\n{problems} done-when violation(s) (a mutant failing < 90% of the cases it changes beyond the "
          f"legit envelope, or a legit variant failing anywhere); {time.perf_counter() - t0:.0f} s; "
          f"old policy = harness/compare.py at {OLD_POLICY_COMMIT}. {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
