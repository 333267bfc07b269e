"""opdiff: differential testing and benchmarking of Ascend NPU operators.

    from harness import registry
    spec = registry.op("paged_cache_load")
"""
import os

# With torch-npu installed but no CANN, `import torch` fails unless device-backend autoload is
# off; opdiff imports torch_npu explicitly where it needs it (backends/torch_npu_env.py).
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from . import registry  # noqa: E402
from . import capture  # noqa: E402  (callable: `with harness.capture(DIR, ...)`, harness/capture/__init__.py)
from .errors import ConstraintViolation, Rejected, UsageError  # noqa: E402
from .spec import Case, Constraint, OpSpec, OutputRule, Source  # noqa: E402

__all__ = ["registry", "capture", "ConstraintViolation", "Rejected", "UsageError", "Case", "Constraint", "OpSpec",
           "OutputRule", "Source"]
__version__ = "0.1.0"
