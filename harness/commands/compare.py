"""`compare BASE NEW`: per case x backend, a latency verdict (SAME / FASTER / SLOWER / AMBIGUOUS)
and an accuracy status, in one table.

BASE and NEW are each a run directory (use `run --repeat N` for process-level replicates) or a
folder of run directories (e.g. interleaved single runs: base/r1 new/r1 base/r2 new/r2 ...).
Latency verdicts come from the per-process medians (harness.regress.decide_latency); results with
different timing modes (timer or cache state) are never compared. When the machine-speed canary
(harness.canary, timed by every run process) moved between BASE and NEW beyond the floor, a warning
heads the table and SLOWER/FASTER verdicts become AMBIGUOUS: the machine, not the code, may have
changed. Interleaved runs (`run --interleave-cwd`) avoid that.

Exit status: 0 no regression, 1 a regression (SLOWER, or accuracy WORSE/GREW), 3 ambiguous only,
2 usage error: also when either side holds no result row, when no case x backend is on both sides
(nothing was compared, so "no regression" would be a lie), or when an input is corrupt.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import asdict

from .. import regress
from ..errors import UsageError
from ..run_compare import EXIT_AMBIGUOUS, EXIT_OK, EXIT_REGRESSION, Row, compare_runs, exit_code

def add_parser(sub):
    p = sub.add_parser("compare", help="latency and accuracy verdicts per case between two runs",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("base", metavar="BASE", help="baseline run directory (or folder of run directories)")
    p.add_argument("new", metavar="NEW", help="new run directory (or folder of run directories)")
    p.add_argument("--floor", type=float, default=regress.DEFAULT_FLOOR,
                   help="effect floor: ratios within 1 +- floor are SAME (default 0.05)")
    p.add_argument("--op-floor", action="append", default=[], metavar="OP=FLOOR",
                   help="per-op floor, e.g. --op-floor paged_cache_load=0.1 (repeatable; an OpSpec "
                        "attribute `perf_floor` is used when no option names the op)")
    p.add_argument("--alpha", type=float, default=regress.DEFAULT_ALPHA,
                   help="one-sided significance on run medians (default 0.05)")
    p.add_argument("--acc-growth", type=float, default=regress.ACC_GROWTH,
                   help="an error metric growing by more than this factor is an accuracy regression (default 2)")
    p.add_argument("--all", action="store_true", help="print SAME rows too")
    p.add_argument("--json", metavar="FILE", help="write every row as JSON")
    p.set_defaults(func=main)


def parse_floors(items) -> dict:
    out = {}
    for item in items:
        op, sep, val = item.partition("=")
        try:
            out[op.strip()] = float(val)
        except ValueError:
            raise UsageError(f"--op-floor wants OP=FLOOR, got {item!r}") from None
        if not sep:
            raise UsageError(f"--op-floor wants OP=FLOOR, got {item!r}")
    return out


def check_comparable(rows: list[Row], base, new) -> None:
    """A comparison that compared nothing must not pass for "no regression": usage error."""
    if not rows:
        raise UsageError(f"no result rows in {base} or {new}")
    for side, name, flag in (("BASE", base, "in_base"), ("NEW", new, "in_new")):
        if not any(getattr(r, flag) for r in rows):
            raise UsageError(f"{side} {name} holds no result rows; nothing to compare")
    both = sum(1 for r in rows if r.in_base and r.in_new)
    only_base = sum(1 for r in rows if not r.in_new)
    only_new = sum(1 for r in rows if not r.in_base)
    if not both:
        raise UsageError(f"no case x backend in common between {base} ({only_base}) and {new} ({only_new}); "
                         f"compare runs of the same cases")
    if only_base or only_new:
        sys.stderr.write(f"note: {only_base} case x backend only in BASE, {only_new} only in NEW: not compared\n")


def _f(x, fmt="{:.3g}") -> str:
    return "" if x is None else fmt.format(x)


def write_table(rows: list[Row], out, show_all: bool = False) -> None:
    counts = defaultdict(int)
    for r in rows:
        counts[r.verdict] += 1
    acc = defaultdict(int)
    for r in rows:
        acc[r.accuracy] += 1
    cr = rows[0].canary_ratio if rows else None
    if rows and regress.canary_moved(cr, min(r.floor for r in rows)):
        out.write(f"warning: {regress.canary_reason(cr)}; SLOWER/FASTER verdicts are reported as "
                  f"AMBIGUOUS\n")
    out.write("latency: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
              " | accuracy: " + ", ".join(f"{k} {v}" for k, v in sorted(acc.items())) + "\n")
    shown = [r for r in rows if show_all or r.verdict not in (regress.SAME, "n/a") or r.accuracy not in ("SAME",)]
    if not shown:
        return
    head = f"{'verdict':<10} {'ratio':>7} {'base us':>10} {'new us':>10} {'runs':>5} {'p':>7} {'accuracy':<8} case"
    out.write(head + "\n")
    for r in shown:
        out.write(f"{r.verdict:<10} {_f(r.ratio, '{:.3f}'):>7} {_f(r.base_us, '{:.1f}'):>10} "
                  f"{_f(r.new_us, '{:.1f}'):>10} {r.n_base:>2}+{r.n_new:<2} {_f(r.p_value):>7} {r.accuracy:<8} "
                  f"{r.op}/{r.case_id} [{r.backend}]\n")
        why = "; ".join(x for x in (r.reason if r.verdict != regress.SAME else "", r.acc_reason) if x)
        if why:
            out.write(f"{'':<10} {why}\n")
        if r.regressed and r.repro:
            out.write(f"{'':<10} repro: {r.repro}\n")


def main(args) -> int:
    rows = compare_runs([args.base], [args.new], args.floor, parse_floors(args.op_floor), args.alpha,
                        args.acc_growth)
    check_comparable(rows, args.base, args.new)
    write_table(rows, sys.stdout, args.all)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=1, default=str)
    code = exit_code(rows)
    moved = regress.canary_moved(rows[0].canary_ratio, min(r.floor for r in rows))
    sys.stdout.write({EXIT_OK: "no regression\n", EXIT_REGRESSION: "REGRESSION\n",
                      EXIT_AMBIGUOUS: "ambiguous only: " + ("the machine's speed changed, rerun interleaved\n" if moved
                                                            else "rerun with more --repeat\n")}[code])
    return code
