"""`list [--op NAME]`: operators, their documented constraints and case counts per tier."""
from __future__ import annotations

import sys

from .. import registry
from ..derive import exercised
from ..pairwise import coverage
from ..spec import TIERS


def add_parser(sub):
    p = sub.add_parser("list", help="list operators, their constraints and case counts")
    p.add_argument("--op", help="show one operator in detail")
    p.set_defaults(func=main)


def main(args) -> int:
    specs = [registry.op(args.op)] if args.op else registry.ops()
    out = sys.stdout
    for spec in specs:
        counts = {t: spec.cases(t) for t in TIERS}
        per_tier = ", ".join(f"{t}: {sum(not c.negative for c in cs)}+{sum(c.negative for c in cs)}neg"
                             for t, cs in counts.items())
        out.write(f"{spec.name}  ({spec.seed})\n  {spec.summary}\n  outputs: {', '.join(spec.outputs)}\n"
                  f"  cases: {per_tier}\n")
        out.write(f"  pairwise coverage: {_coverage(spec, counts)}\n")
        ex = exercised(spec, counts["nightly"])
        out.write(f"  constraints ({len(spec.constraints)}; edge cases / negative cases in the nightly tier):\n")
        width = max(len(c.name) for c in spec.constraints)
        for c in spec.constraints:
            pos, neg = ex[c.name]
            out.write(f"    {c.name:<{width}}  {pos:>3} / {neg:<2}  {c.source}\n")
        _named(out, spec, counts, detail=bool(args.op))
        out.write("\n")
    out.write(f"backends: {', '.join(registry.backend_names())}\n")
    return 0


def _coverage(spec, counts) -> str:
    """Per tier: feasible pairs of axis values the tier's positive cases hold, of all feasible pairs."""
    parts = []
    for tier, cases in counts.items():
        covered, feasible = coverage(spec, tier, cases)
        parts.append(f"{tier} {covered}/{feasible} pairs ({100.0 * covered / max(feasible, 1):.1f}%)")
    return ", ".join(parts)


def _named(out, spec, counts, detail: bool) -> None:
    """Official shapes (documented / officially tested) and kernel pins: how many run per tier."""
    for kind, title in (("official", "official shapes"), ("pin", "kernel pins")):
        entries = [n for n in spec.named if n.kind == kind]
        ran = {t: [c for c in cs if c.origin == kind] for t, cs in counts.items()}
        reduced = sum(c.id.endswith("-reduced") for c in ran["smoke"])
        neg = sum(1 for n in entries if n.violates)
        out.write(f"  {title}: {len(entries)} (nightly {len(ran['nightly'])}, smoke {len(ran['smoke'])}"
                  f"{f', {reduced} reduced' if reduced else ''}"
                  f"{f'; {neg} documented but rejected: the document is wrong' if neg else ''})\n")
        if detail:
            for n in entries:
                extra = f"  [violates {n.violates}]" if n.violates else ""
                out.write(f"    {n.name}  {n.source}{extra}\n")
