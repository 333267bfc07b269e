"""`golden build|verify|prune`: fill a golden store on a CPU machine, check every entry of one, or
remove the entries this checkout no longer reads.

    python -m harness golden build --tier nightly --store DIR [--ops NAMES] [--seed N] [--jobs N] [--case GLOB]
    python -m harness golden verify --store DIR
    python -m harness golden prune --store DIR [--tier T,...] [--seed N,...] [--delete]

A store built here is read by `run --golden-store DIR` on the NPU nodes (copy DIR there, as Ascend's
ST flow ships its golden data). Exit codes: 0 all good, 1 some golden failed, an entry is bad, or
prune could not key every case (it then removes nothing), 2 usage error.
"""
from __future__ import annotations

import json
import os
import sys
import time

from .. import golden_build, golden_prune, golden_store, registry
from ..errors import UsageError
from ..spec import TIERS


def add_parser(sub):
    p = sub.add_parser("golden", help="build or verify a golden store (float64 goldens and baselines)")
    gsub = p.add_subparsers(dest="golden_command", metavar="ACTION")
    gsub.required = True
    b = gsub.add_parser("build", help="compute the goldens (and baselines) of a tier into a store")
    b.add_argument("--store", required=True, help="store directory (created if missing)")
    b.add_argument("--tier", default="nightly", choices=TIERS, help="case matrix (default nightly)")
    b.add_argument("--ops", default="all", help="comma list of operators, or all (default)")
    b.add_argument("--seed", type=int, default=0, help="input data seed (default 0; must match the run's)")
    b.add_argument("--case", action="append", default=[], metavar="GLOB", help="only cases whose id matches")
    b.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="processes (default: one per CPU core; 1 builds in this process)")
    b.add_argument("--shard", metavar="I/N", help="build only shard I of N (what each --jobs process does)")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    b.set_defaults(func=build_main)
    v = gsub.add_parser("verify", help="check every entry's checksums; list the bad ones")
    v.add_argument("--store", required=True, help="store directory")
    v.set_defaults(func=verify_main)
    r = gsub.add_parser("prune", help="remove the entries no case of the given tiers and seeds reads here "
                                      "(a dry run without --delete)")
    r.add_argument("--store", required=True, help="store directory")
    r.add_argument("--tier", default=",".join(TIERS), metavar="T,...",
                   help=f"tiers whose cases keep their entries (comma list; default all: {','.join(TIERS)})")
    r.add_argument("--ops", default="all", help="operators whose cases keep their entries (default all; the "
                                                "entries of any other op are removed)")
    r.add_argument("--seed", default="0", metavar="N,...", help="seeds whose entries are kept (comma list; default 0)")
    r.add_argument("--delete", action="store_true", help="remove them (default: only list what would go)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    r.set_defaults(func=prune_main)


def build_main(args) -> int:
    names = registry.parse_names(args.ops, "op", registry.op_names())
    specs = [registry.op(n) for n in names]
    jobs = args.jobs or os.cpu_count() or 1
    if jobs < 0:
        raise UsageError(f"--jobs {args.jobs}: give a positive number of processes")
    if args.shard and jobs > 1 and args.jobs:
        raise UsageError("--shard builds one shard in this process; drop --jobs")
    if jobs > 1 and not args.shard:
        tail = ["--store", args.store, "--tier", args.tier, "--ops", ",".join(names), "--seed", str(args.seed)]
        for g in args.case:
            tail += ["--case", g]
        summary = golden_build.build_parallel(tail, jobs)
    else:
        store = golden_store.GoldenStore(args.store)
        summary = golden_build.build(specs, args.tier, args.seed, store, args.shard, args.case)
        summary["shards_failed"] = []
    if args.json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        _write_summary(summary, args, jobs)
    return 1 if summary["failures"] or summary["shards_failed"] else 0


def _write_summary(s, args, jobs) -> None:
    w = sys.stdout
    c, st = s["counts"], s["store"]
    w.write(f"golden store {args.store}: tier {args.tier}, seed {args.seed}, {s['cases']} positive case(s), "
            f"{jobs} process(es)\n")
    w.write(f"  goldens:   {c.get('golden_store', 0)} already stored, {c.get('golden_computed', 0)} computed\n")
    w.write(f"  baselines: {c.get('baseline_store', 0)} already stored, {c.get('baseline_computed', 0)} computed, "
            f"{c.get('baseline_unavailable', 0)} unavailable\n")
    w.write(f"  inputs:    {c.get('inputs_store', 0)} already stored, {c.get('inputs_computed', 0)} drawn\n")
    w.write(f"  entries written {st.get('write', 0)}; bad entries replaced: {st.get('corrupt', 0)} corrupt, "
            f"{st.get('stale', 0)} stale; not storable {st.get('unstorable', 0)}\n")
    for f in s["failures"][:20]:
        w.write(f"  FAILED {f['op']}/{f['case_id']}: {f['error']}\n")
    if len(s["failures"]) > 20:
        w.write(f"  ... and {len(s['failures']) - 20} more failures\n")
    for f in s["shards_failed"]:
        w.write(f"  shard {f['shard']} died (exit {f['exit']}): {f['output']}\n")


def verify_main(args) -> int:
    if not os.path.isdir(args.store):
        raise UsageError(f"--store {args.store}: no such directory")
    r = golden_build.verify(args.store)
    w = sys.stdout
    kinds = ", ".join(f"{n} {k}" for k, n in r["kinds"].items())
    w.write(f"golden store {args.store}: {r['ok']} good entr{'y' if r['ok'] == 1 else 'ies'}"
            f"{f' ({kinds})' if kinds else ''}, {len(r['bad'])} bad\n")
    for b in r["bad"]:
        w.write(f"  {b['file']}: {b['problem']}\n")
    return 1 if r["bad"] else 0


def _comma_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"--{what} {text!r}: give at least one")
    return items


def prune_main(args) -> int:
    if not os.path.isdir(args.store):
        raise UsageError(f"--store {args.store}: no such directory")
    tiers = _comma_list(args.tier, "tier")
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise UsageError(f"--tier {', '.join(bad)}: unknown; valid: {', '.join(TIERS)}")
    try:
        seeds = [int(s) for s in _comma_list(args.seed, "seed")]
    except ValueError:
        raise UsageError(f"--seed {args.seed!r}: give whole numbers, comma separated") from None
    specs = [registry.op(n) for n in registry.parse_names(args.ops, "op", registry.op_names())]
    digests, unkeyed = golden_prune.live_digests(specs, tiers, seeds)
    s = golden_prune.survey(args.store, digests, time.time())
    removed = None
    if args.delete and not unkeyed:
        removed = golden_prune.remove(s)
    summary = {**s.as_dict(), "tiers": tiers, "seeds": seeds, "unkeyed": unkeyed,
               "removed_files": removed[0] if removed else 0, "removed_bytes": removed[1] if removed else 0,
               "dry_run": not args.delete}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        _write_prune(summary, args)
    return 1 if unkeyed else 0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _write_prune(d: dict, args) -> None:
    w = sys.stdout
    w.write(f"golden store {args.store}: tiers {', '.join(d['tiers'])}, seeds {', '.join(map(str, d['seeds']))}\n")
    w.write(f"  kept:         {d['kept']} entries read by those cases ({_mib(d['kept_bytes'])})\n")
    w.write(f"  unreferenced: {d['unreferenced']} entries ({_mib(d['unreferenced_bytes'])}): older code or "
            "versions, other cases, seeds or ops\n")
    w.write(f"  temporaries:  {d['temporaries']} left by killed builders ({_mib(d['temporary_bytes'])}); "
            f"{d['writing']} younger than {golden_prune.STALE_TEMP_S / 3600:g} h left alone (a builder may be writing)\n")
    if d["old_layouts"]:
        w.write(f"  old layouts:  {', '.join(d['old_layouts'])} ({_mib(d['old_layout_bytes'])}): never read by this "
                f"version ({golden_store.LAYOUT})\n")
    if d["other"]:
        w.write(f"  left alone:   {len(d['other'])} other file(s), e.g. {d['other'][0]}\n")
    if d["unkeyed"]:
        for u in d["unkeyed"][:10]:
            w.write(f"  UNKEYED {u['op']}/{u['case_id']} seed {u['seed']}: {u['error']}\n")
        w.write(f"  {len(d['unkeyed'])} key(s) could not be formed here: their entries would look unreferenced, "
                "so nothing was removed\n")
    elif d["dry_run"]:
        n = d["unreferenced"] + d["temporaries"]
        w.write(f"  dry run: {n} file(s) and {len(d['old_layouts'])} old layout(s) would be removed "
                f"({_mib(d['unreferenced_bytes'] + d['temporary_bytes'] + d['old_layout_bytes'])}); "
                "add --delete to remove them\n")
    else:
        w.write(f"  removed {d['removed_files']} file(s) ({_mib(d['removed_bytes'])})\n")
