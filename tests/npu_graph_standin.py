"""Meta kernels for the schema stand-ins (tests/npu_schemas.py), so that torch.compile can trace them on CPU.

dynamo runs a call on fake tensors to build the graph; torch_npu makes that possible by registering a Meta
implementation per operator (`Library("npu", "IMPL", "Meta")` in torch_npu/op_plugin/meta/_meta_registrations.py).
This module does the same for the stand-in namespace, for the operator the seed's graph-mode example uses:

  npu_incre_flash_attention (_meta_registrations.py:258-268): int8 when quant_scale2 is given, float16 for an
  int8 query, else the query's shape and dtype.

The other four are left without one, as in torch_npu 2.13.0 for npu_nsa_compress_infer,
npu_nsa_select_attention_grad and atb.npu_paged_cache_load (the wheel has none). DequantRopeQuantKvcache does
have one there (lines 5972-5987); it is not modelled here, so the stand-in declines it where a device would run it.
"""
from __future__ import annotations

import torch


def _ifa_meta(query, key, value, *args, quant_scale2=None, **kwargs):
    if quant_scale2 is not None:
        return torch.empty_like(query, dtype=torch.int8)
    if query.dtype == torch.int8:
        return torch.empty_like(query, dtype=torch.half)
    return torch.empty_like(query)


def register_meta(ns) -> None:
    """Give the stand-in namespace `ns` (a SchemaNamespace) torch_npu's Meta kernel for IFA (idempotent)."""
    if getattr(ns, "_meta_lib", None) is not None:
        return
    lib = torch.library.Library(ns.ns, "IMPL", "Meta")
    lib.impl("npu_incre_flash_attention", _ifa_meta)
    ns._meta_lib = lib   # a Library deregisters its kernels when collected
