"""How much any sound verdict can see through an int8 output (a benchmark that prints a table; never a test).

    .tox/test/bin/python bench/int8_decidability.py [--tier smoke] [--seed 0] [--k 2.0]

IncreFlashAttention with quant_scale2 returns int8: y = O * quant_scale2 + quant_offset2, cast to
half, rounded ties away (the kernel's PostQuant, ops.md #5). A verdict sees only the int8 values. It
may fail an element only when no float O' that the float policy accepts would quantize to that value:
with O' within k * max|O_baseline - O_golden| of the golden's O (the reduction rule's per-element
bound, k = 2 for this op), and quantize monotone in O', the int8 values reachable are
[q(O - tol), q(O + tol)]. A value outside it is a proven failure; inside it, failing the element
would fail a kernel whose float output the policy passes.

Per int8 case this prints: the baseline's own max float error in int8 units (scale * max|Ob - Og|);
the golden's exact ties (half(y) = m + 0.5) and how many of them are decidable (the whole interval
maps to one int8 value); and for the calibration mutants that flip elements (accumulation in the
output dtype, ties the other way; bench/calibration_variants.py) the flips and how many of them are
proven. Float outputs come from the same golden and torch reference with quant_scale2 removed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from calibration_variants import VARIANTS, run_reference  # noqa: E402
from cases import _ifa_ties  # noqa: E402
from harness import registry  # noqa: E402

import backends.numpy.incre_flash_attention as golden_mod  # noqa: E402

OP = "incre_flash_attention"
MUTANTS = ("acc_in_out_dtype", "ties_swapped")


def _channels(inputs, o):
    """(flat O as (B, N*D), per-channel scale, offset) of the int8 path (S_q = 1)."""
    qs = np.asarray(inputs["quant_scale2"]).astype(np.float64).reshape(-1)
    qo = inputs.get("quant_offset2")
    qo = np.zeros(1) if qo is None else np.asarray(qo).astype(np.float64).reshape(-1)
    return o.reshape(o.shape[0], -1), qs, qo


def _quant(flat, qs, qo):
    """The kernel's PostQuant on exact values (as the golden's quantize): half, ties away, saturate."""
    with np.errstate(over="ignore"):
        h = (flat * qs + qo).astype(np.float16).astype(np.float64)
    return np.clip(np.sign(h) * np.floor(np.abs(h) + 0.5), -128, 127)


def reachable(flat, qs, qo, tol):
    """[lo, hi] int8 values of every O' within tol of flat (quantize is monotone in O')."""
    a, b = _quant(flat - tol, qs, qo), _quant(flat + tol, qs, qo)
    return np.minimum(a, b), np.maximum(a, b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=float, default=2.0, help="the float rule's k (cases/incre_flash_attention.py)")
    args = ap.parse_args(argv)
    spec = registry.op(OP)
    variants = {v.name: v for v in VARIANTS if v.name in MUTANTS}
    keys = ("ties", "decidable", *(f"{m} {w}" for m in MUTANTS for w in ("flips", "proven")))
    totals = {"all": dict.fromkeys(keys, 0), "random": dict.fromkeys(keys, 0)}  # random: not a constructed pin
    print(f"{'case':44s} {'n':>5s} {'base err':>8s} {'ties':>5s} {'decid':>5s} | "
          + " | ".join(f"{m[:12]:>12s} flips proven" for m in MUTANTS))
    for case in spec.cases(args.tier):
        if case.negative or any(d != "int8" for d in spec.output_dtypes(case.params).values()):
            continue
        inputs = spec.make_inputs(case, args.seed)
        as_float = dict(inputs, quant_scale2=None, quant_offset2=None)
        og = golden_mod.golden(case.params, as_float)["attention_out"]
        ob = np.asarray(run_reference(spec, case, as_float)["attention_out"]).astype(np.float64)
        flat, qs, qo = _channels(inputs, og)
        tol = args.k * float(np.abs(ob - og).max())
        lo, hi = reachable(flat, qs, qo, tol)
        h = (flat * qs + qo).astype(np.float16).astype(np.float64)
        ties = (np.abs(h - np.floor(h)) == 0.5) & (np.abs(h) < 127)
        decidable = int(np.count_nonzero(ties & (lo == hi)))
        gq = _quant(flat, qs, qo)
        cells, counts = [], {"ties": int(ties.sum()), "decidable": decidable}
        for m in MUTANTS:
            out = variants[m].make(spec, case, inputs, registry.backend("numpy").golden(spec, case, inputs))
            dq = np.asarray(out["attention_out"]).astype(np.float64).reshape(gq.shape)
            flips = int(np.count_nonzero(dq != gq))
            proven = int(np.count_nonzero((dq < lo) | (dq > hi)))
            counts[f"{m} flips"], counts[f"{m} proven"] = flips, proven
            cells.append(f"{flips:12d} {flips and proven:6d}")
        for which in ("all",) + (() if _ifa_ties.constructed(case.params) else ("random",)):
            for k2, v in counts.items():
                totals[which][k2] += v
        base_err = float(np.abs(ob - og).max() * np.abs(qs).max())
        print(f"{case.id[:44]:44s} {og.size:5d} {base_err:8.4f} {int(ties.sum()):5d} {decidable:5d} | " + " | ".join(cells))
    for which, label in (("all", "every int8 case"), ("random", "random data (no constructed pin)")):
        t = totals[which]
        print(f"{label}: {t['ties']} golden ties, {t['decidable']} decidable (the rest lie within the baseline's own "
              f"float error of a rounding boundary); " + "; ".join(
                  f"{m}: {t[f'{m} flips']} flipped elements, {t[f'{m} proven']} proven" for m in MUTANTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
