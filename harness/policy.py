"""The numbers of the comparison policy, each next to its anchor (shared/reference/precision.md).

Only data lives here: harness.compare reads it. A number changes only with a comment saying why.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    """Ratio limits (NPU error / same-precision third party's error, both against the golden)."""

    name: str
    mare: float
    mere: float
    rmse: float


# CANN commercial-grade precision standard; msprobe 26.2.0's benchmark levels use the same numbers
# (precision.md section 1: L0 default 10/2/2, L1 fused attention 5/1.5/1.5, L2 matmul family 2/1.2/1.2).
GRADES = {"L0": Grade("L0", 10.0, 2.0, 2.0), "L1": Grade("L1", 5.0, 1.5, 1.5), "L2": Grade("L2", 2.0, 1.2, 1.2)}
# A result within its grade but beyond the next stricter one is `warn` (worth a look, not a failure).
STRICTER = {"L0": "L1", "L1": "L2", "L2": None}

# Small-value domain: |golden| below the threshold is judged by an absolute error bound, not by
# relative error (which explodes near zero). Thresholds and bounds: msprobe's table (precision.md
# section 1: fp16 2^-10, bf16 2^-10, fp32 2^-20; atol 2^-16, 2^-16, 2^-30). A correctly rounded fp16
# result below 2^-10 is within 2^-21 of the truth, so 2^-16 leaves room for float32 accumulation.
SMALL_THRESHOLD = {"float16": 2.0**-10, "bfloat16": 2.0**-10, "float32": 2.0**-20, "float64": 2.0**-40}
SMALL_ATOL = {"float16": 2.0**-16, "bfloat16": 2.0**-16, "float32": 2.0**-30, "float64": 2.0**-60}
# Benchmark comparison: error if the small-value error count exceeds 2x the third party's
# (CANN / msprobe "small-value error ratio limit 2", precision.md section 1).
SMALL_RATIO_LIMIT = 2.0

# msprobe absolute-threshold rtol per dtype (precision.md section 1 table).
ELEMENTWISE_RTOL = {"float16": 2.0**-10, "bfloat16": 2.0**-8, "float32": 2.0**-20, "float64": 1e-12}
# FlashAttention's rotary test: atol = 2 * max|r + 0.3 - 0.3 - r|, about 2 ULP at max|r| (section 3).
ELEMENTWISE_ULP_OF_MAX = 2.0

# Bias: round-to-nearest is unbiased, so a correct result's mean signed error (in ULP of each
# element) is 0 +- 0.29/sqrt(n) (the error is uniform on [-0.5, 0.5] ULP). BIAS_ULP (a quarter of an
# ULP, half of one rounding's worst error) plus 4 sigma of that noise is the bound. Read both ways:
# the plain mean (an additive offset) and the mean signed towards |golden| (a scale error: +0.5% in
# bf16 is 0.64-1.28 ULP, precision.md section 7; an error balance cannot see it on zero-mean data).
BIAS_ULP = 0.25
BIAS_SIGMAS = 4.0
ROUNDING_SD_ULP = 0.2887            # sd of a uniform [-0.5, 0.5]: 1/sqrt(12)

# Reduction, per element: |a - g| <= k * max|baseline - g| + REDUCTION_ULP_FLOOR * ULP(g_i). The
# floor is per element (ULP of |g_i|, never of max|g|) and half an ULP: what a correctly rounded
# result may be off by, so a device is never asked to beat rounding, yet the slack cannot dwarf the
# baseline's error (the old 2 ULP(max|g|) was 4x it, precision.md section 7).
REDUCTION_ULP_FLOOR = 0.5
# Ratio denominators: a baseline error below half of what correct rounding costs on average (0.25
# ULP mean, 0.29 ULP RMS, 0.5 ULP max) is floored there, so a lucky or exact baseline does not turn a
# correctly rounded device result into a huge ratio.
RATIO_FLOOR = 0.5
ROUNDING_MEAN_ULP, ROUNDING_RMS_ULP, ROUNDING_MAX_ULP = 0.25, 0.2887, 0.5

# Absolute caps (atol, rtol on max|golden|) for judging the baseline itself, whose ratio is 1 by
# construction: xformers forward tolerances (precision.md sections 3 and 6, "two consequences").
# Outputs with long reductions override them through OutputRule.abs_cap.
BASELINE_CAP = {"float16": (4e-3, 4e-4), "bfloat16": (2e-2, 5e-3), "float32": (3e-4, 2e-5), "float64": (1e-10, 1e-12)}

# int8 from quantisation: AE <= 1 (CANN; vLLM atol=1; precision.md section 4). Off-by-ones come from
# intermediate precision near .5 boundaries; against the same-precision third party their count may
# be at most INT8_RATIO (the L0 ratio, CANN) times the baseline's plus a chance margin of
# COUNT_SIGMAS * sqrt(count) + 2 (two extra near-boundary flips are noise on any size).
INT8_RATIO = 2.0
COUNT_SIGMAS = 3.0          # also the chance margin of the small-value error count
# Without a baseline, more than this fraction of off-by-ones warns (isolated ones are expected,
# FlashInfer, precision.md section 4; many suggest a rounding-mode difference).
WARN_OFF_BY_ONE_FRAC = 0.05

# msprobe ULP "bad element" threshold (section 1): fp16/bf16 1 ULP, fp32 32; recorded, not judged.
ULP_BAD = {"float16": 1.0, "bfloat16": 1.0, "float32": 32.0, "float64": 1.0}
