"""opdiff: differential testing and benchmarking of Ascend NPU operators.

    from harness import registry
    spec = registry.op("paged_cache_load")
"""
import os

# With torch-npu installed but no CANN, `import torch` fails unless device-backend autoload is
# off; opdiff imports torch_npu explicitly where it needs it (backends/torch_npu/_env.py).
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
# numpy's OpenBLAS with one thread unless the user chose (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS): on a
# loaded host its threads wait on each other, and the comparisons' dot products (cosine) took 1.4 ms
# each on average instead of 9 us (30k elements, 2 busy cores); the smoke tier's harness overhead
# fell from 61 to 3.6 ms per case and the NSA grad goldens ran 3x faster. It takes effect only when
# harness is imported before numpy (the CLI, its workers, `golden build`'s processes).
if "OMP_NUM_THREADS" not in os.environ:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import registry  # noqa: E402
from . import capture  # noqa: E402  (callable: `with harness.capture(DIR, ...)`, harness/capture/__init__.py)
from .errors import ConstraintViolation, Rejected, UsageError  # noqa: E402
from .spec import Case, Constraint, OpSpec, OutputRule, Source  # noqa: E402

__all__ = ["registry", "capture", "ConstraintViolation", "Rejected", "UsageError", "Case", "Constraint", "OpSpec",
           "OutputRule", "Source"]
__version__ = "0.1.0"
