"""incre_flash_attention through torch_npu.npu_incre_flash_attention."""
from __future__ import annotations

from ._adapters import OpAdapter


def _decline_ascend950(device_name: str) -> str | None:
    if device_name.replace(" ", "").lower().startswith("ascend950"):
        return ("the npu_incre_flash_attention wrapper raises on Ascend950 (ops.md section 5 'Signature'; OP "
                "FlashAttentionKernelNpuOpApi.cpp)")
    return None


ADAPTER = OpAdapter("incre_flash_attention", "npu_incre_flash_attention",
                    positional=("query", "key", "value"),
                    returns=("attention_out",), host_int_lists=("actual_seq_lengths",),
                    device_decline=_decline_ascend950)
