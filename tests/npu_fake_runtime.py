"""What the real torch_npu stack does around a kernel call, for the schema stand-in (tests/npu_schemas.py).

The stand-in implements the real schemas with the torch references; this module models what the real
wrappers, ATB and the task queue do before and after the kernel, each from its public source
(shared/reference/real_interfaces.md):

  - ATB's PagedCacheLoad checks: CreateOperation, the in-tensor count, the key/value shape checks;
  - the functional `torch_npu.atb.npu_paged_cache_load` allocating [T, bs, C0] for an NZ cache;
  - the kernels' parameter checks (GetWorkspaceSize), modelled by the operator's documented constraints
    (`OpSpec.validate`: the same clauses the C double checks in tests/aclnn_double);
  - the task queue: a refusal raises at the next synchronize with the queue's text (TASK_QUEUE_ENABLE=0: at
    the call), with the messages the real wrappers build.
"""
from __future__ import annotations

import os

from backends.aclnn._binding import binding_of

# The text torch_npu's queue raises at synchronize when a queued task failed (torch_npu NPUQueue; the same
# words in every public report of a deferred failure), followed by the failed call's own message.
QUEUE_TEXT = ("The Inner error is reported as above. The process exits for this inner error, and the current "
              "working operator name is {op}.\nSince the operator is called asynchronously, the stacktrace may be "
              "inaccurate. If you want to get the accurate stacktrace, please set the environment variable "
              "ASCEND_LAUNCH_BLOCKING=1.\nNote: ASCEND_LAUNCH_BLOCKING=1 will force ops to run in synchronous mode, "
              "resulting in performance degradation. Please unset ASCEND_LAUNCH_BLOCKING in time after debugging.\n"
              "[ERROR] 2026-01-01-00:00:00 (PID:1, Device:0, RankID:-1) ERR00100 PTA call acl api failed.\n{inner}")


def symbol(op: str) -> str:
    """The C entry point torch_npu reaches for an opdiff operator (aclnnXxx, or AtbPagedCacheLoad)."""
    return binding_of(op).symbol


def refusal_text(sym: str, detail: str) -> str:
    """The wrapper's message when GetWorkspaceSize returns non-zero."""
    if sym.startswith("Atb"):
        # EXEC_ATB_CMD: TORCH_CHECK(workspace_status == 0, "call " #atb_api "GetWorkspaceSize failed")
        # (op-plugin AtbCommon.h:374-418); the ATB status itself is not in the message
        return f"call {sym}GetWorkspaceSize failed"
    # EXEC_NPU_CMD: TORCH_CHECK(workspace_status == 0, "call " #aclnn_api " failed, detail:", aclGetRecentErrMsg())
    return f"call {sym} failed, detail:{detail}"


class TaskQueue:
    """torch_npu's task queue as seen from Python: on by default (TASK_QUEUE_ENABLE unset, 1 or 2)."""

    def __init__(self, enabled: bool | None = None):
        if enabled is None:
            enabled = os.environ.get("TASK_QUEUE_ENABLE", "1").strip() != "0"
        self.enabled = enabled
        self.pending: str | None = None
        self.refusals: list[tuple[str, str]] = []   # (symbol, detail) of every refused call, for the tests

    def refuse(self, sym: str, detail: str) -> None:
        """A refused call: raises now with the queue off; with it on, the call returns and the next
        synchronize raises (GetWorkspaceSize runs inside the queued task, AtbCommon.h:374-418)."""
        self.refusals.append((sym, detail))
        text = refusal_text(sym, detail)
        if not self.enabled:
            raise RuntimeError(text)
        if self.pending is None:   # the first failed task is the one reported
            self.pending = QUEUE_TEXT.format(op=sym, inner=text)

    def synchronize(self) -> None:
        if self.pending is not None:
            text, self.pending = self.pending, None
            raise RuntimeError(text)


# ---- ATB PagedCacheLoad ---------------------------------------------------------------------------------------
ATB_INVALID_PARAM, ATB_INVALID_IN_TENSOR_NUM, ATB_INVALID_TENSOR_DIM, ATB_INVALID_TENSOR_DIM_NUM = 1, 5, 8, 16


def atb_paged_cache_load_status(key_cache, value_cache, key, value, has_seq_starts: bool, cumsum: bool,
                                nz: bool) -> tuple[int, str] | None:
    """ATB's refusal (status, log text) of a PagedCacheLoad call, or None; in ATB's own order."""
    if nz and (has_seq_starts or cumsum):
        # CreateOperation<PagedCacheLoadParam> (paged_cache_load_operation.cpp)
        return ATB_INVALID_PARAM, "foramt NZ donot support hasSeqStarts=true or isSeqLensCumsumMode=true!"
    # the C wrapper packs seqStarts only when hasSeqStarts (atb_acl_paged_cache_load.cpp:41-45); GetInputNum is 6
    # for NZ, 7 for ND (paged_cache_load_operation.cpp:93-99); CheckVariantPack compares them first
    # (operation_base.cpp:369-375)
    packed, expected = (7 if has_seq_starts else 6), (6 if nz else 7)
    if packed != expected:
        return ATB_INVALID_IN_TENSOR_NUM, f"variantPack.inTensors.size: {packed}is not equal GetInputNum: {expected}"
    if key.dim() < 2 or value.dim() < 2:
        return ATB_INVALID_TENSOR_DIM_NUM, "invalid intensor dimNum"
    if nz:
        # SetupCheckImpl (paged_cache_load_operation.cpp:128-134): dim 1 of key/value is H = dims[1] * dims[3]
        if (key.shape[1] != key_cache.shape[1] * key_cache.shape[3]
                or value.shape[1] != value_cache.shape[1] * value_cache.shape[3]):
            return ATB_INVALID_TENSOR_DIM, "The last dimension of outTensors needs to remain aligned"
        if key.dim() != 2 or value.dim() != 2:   # KVCacheDimCheck910BNZ (:213-220)
            return ATB_INVALID_TENSOR_DIM_NUM, "invalid intensor dimNum"
    else:
        if key.dim() != 3 or value.dim() != 3:   # KVCacheDimCheck910BND
            return ATB_INVALID_TENSOR_DIM_NUM, "invalid intensor dimNum"
        if tuple(key.shape[1:]) != tuple(key_cache.shape[2:]) or tuple(value.shape[1:]) != tuple(value_cache.shape[2:]):
            return ATB_INVALID_TENSOR_DIM, "The last dimension of outTensors needs to remain aligned"
    return None


def functional_paged_cache_load_outputs(key_cache, value_cache, context_lens, cumsum: bool):
    """What `torch_npu.atb.npu_paged_cache_load` (the functional form) allocates (op-plugin
    PagedCacheLoadAtb.cpp:69-70): [T, key_cache.size(2), key_cache.size(3)], T the last prefix sum (cumsum) or
    the sum of context_lens. For an NZ cache [nb, H/C0, bs, C0] that is [T, bs, C0]."""
    import torch

    lens = context_lens.reshape(-1)
    tokens = (int(lens[-1]) if lens.numel() else 0) if cumsum else int(lens.sum())
    key = torch.zeros((tokens, key_cache.shape[2], key_cache.shape[3]), dtype=key_cache.dtype)
    value = torch.zeros((tokens, value_cache.shape[2], value_cache.shape[3]), dtype=value_cache.dtype)
    return key, value


# ---- attributes the wrappers fix, whatever the caller wants --------------------------------------------------
#: case params the torch_npu wrapper hard-codes (the backend declines cases that want other values)
HARD_CODED = {
    # actSeqLenType is always 1 (op-plugin op_plugin_functions.yaml:7330)
    "nsa_compress_with_cache": {"act_seq_len_type": 1},
    # inputLayout "TND" and sparse_mode 2 (ops.md section 3 "torch API")
    "nsa_selected_attention_grad": {"layout": "TND", "sparse_mode": 2},
}
