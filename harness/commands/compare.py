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
from dataclasses import asdict, dataclass

from .. import canary, frames, regress
from ..errors import UsageError
from ..history import expand, run_medians

EXIT_OK, EXIT_REGRESSION, EXIT_AMBIGUOUS = 0, 1, 3


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


@dataclass
class Row:
    op: str
    case_id: str
    backend: str
    verdict: str
    ratio: float | None
    base_us: float | None
    new_us: float | None
    n_base: int
    n_new: int
    p_value: float | None
    ci_lo: float | None
    ci_hi: float | None
    floor: float
    reason: str
    accuracy: str
    acc_reason: str
    repro: str
    canary_ratio: float | None = None  # machine-speed canary NEW/BASE (None: a side has no canary)
    in_base: bool = True  # the case x backend has result rows in BASE
    in_new: bool = True

    @property
    def regressed(self) -> bool:
        return self.verdict == regress.SLOWER or self.accuracy in ("WORSE", "GREW")


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


def _spec_floor(op: str):
    try:
        from .. import registry

        return getattr(registry.op(op), "perf_floor", None)
    except Exception:  # an op that no longer exists still gets the default floor
        return None


def compare_runs(base_paths, new_paths, floor=regress.DEFAULT_FLOOR, op_floors=None, alpha=regress.DEFAULT_ALPHA,
                 acc_growth=regress.ACC_GROWTH) -> list[Row]:
    base_runs, new_runs = expand(base_paths), expand(new_paths)
    bm, nm = run_medians(base_runs), run_medians(new_runs)
    cratio = regress.canary_ratio([v for r in base_runs for v in canary.run_values(r.meta)],
                                  [v for r in new_runs for v in canary.run_values(r.meta)])
    # the rows per case x backend come from the same typed frames the report and the README use
    brows = defaultdict(list, frames.by_case(frames.from_runs(base_runs)))
    nrows = defaultdict(list, frames.by_case(frames.from_runs(new_runs)))
    op_floors = op_floors or {}
    out = []
    for key in sorted(set(brows) | set(nrows)):
        op, case_id, backend = key
        f = op_floors.get(op)
        if f is None:
            f = _spec_floor(op)
        f = floor if f is None else f
        acc = regress.decide_accuracy(_first_run(brows[key]), _first_run(nrows[key]), acc_growth)
        b, n = bm.runs.get(key, []), nm.runs.get(key, [])
        if not b and not n:
            pv = regress.PerfVerdict("n/a", None, reason="no latency on either side")
        elif bm.modes.get(key) and nm.modes.get(key) and bm.modes[key] != nm.modes[key]:
            pv = regress.PerfVerdict(regress.AMBIGUOUS, None, n_base=len(b), n_new=len(n), floor=f,
                                     reason=f"timing modes differ: {sorted(bm.modes[key])} vs {sorted(nm.modes[key])}")
        else:
            pv = regress.apply_canary(regress.decide_latency(b, n, f, alpha), cratio)
        repro = next((r.get("repro") for r in nrows[key] or brows[key] if r.get("repro")), "")
        out.append(Row(op, case_id, backend, pv.verdict, pv.ratio, regress.median(b) if b else None,
                       regress.median(n) if n else None, len(b), len(n), pv.p_value, pv.ci[0], pv.ci[1],
                       f, pv.reason, acc.status, acc.reason, repro, cratio, bool(brows[key]), bool(nrows[key])))
    return out


def _first_run(rows):
    """Rows of one run_id (a folder of runs holds the same case once per run)."""
    if not rows:
        return rows
    rid = rows[0].get("run_id")
    return [r for r in rows if r.get("run_id") == rid]


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


def exit_code(rows: list[Row]) -> int:
    if any(r.regressed for r in rows):
        return EXIT_REGRESSION
    if any(r.verdict == regress.AMBIGUOUS for r in rows):
        return EXIT_AMBIGUOUS
    return EXIT_OK


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
