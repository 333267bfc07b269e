"""PagedCacheLoad through the ATB C API (seed 003, ops.md section 4; prototype: atb_acl.h, acl_abi.md section 4)."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of

from . import _codes
from ._binding import Binding, flag, i8, optional, output, tensor

#: backend mode (option `aclnn:pcl_zero_seq_starts`): ND PagedCacheLoad without seq_starts is called with zeros and
#: hasSeqStarts=true; the backend's name carries the mode, so every result row records it
PCL_ZERO_SEQ_STARTS = "pcl_zero_seq_starts"


def _nz(inputs) -> bool:
    return int(inputs["kv_cache_cfg"]) == _codes.ATB_KV_CACHE_NZ


def _cache_format(params, inputs) -> int:
    return _codes.ACL_FORMAT_FRACTAL_NZ if _nz(inputs) else _codes.ACL_FORMAT_ND


def _tokens(inputs) -> int:
    """Rows of key/value: the sequences' token count (golden: max over batches of start + length)."""
    cl = np.asarray(inputs["context_lens"], dtype=np.int64)
    if inputs["cumsum"]:
        ends = cl[1:] if cl.size > 1 else np.zeros(1, np.int64)
    else:
        ends = np.cumsum(np.clip(cl, 0, None))
    return int(max(ends.max(initial=0), 0))


def _out_shape(cache: str):
    def shape(params, inputs) -> tuple:
        c = inputs[cache]
        if _nz(inputs):   # NZ caches [nb, H/C0, bs, C0] -> outputs [tokens, H] (seed: key [sum(contextLens), N*Dk])
            return (_tokens(inputs), c.shape[1] * c.shape[3])
        return (_tokens(inputs),) + c.shape[2:]   # ND caches [nb, bs, N, D] -> outputs [tokens, N, D]
    return shape


def _dtype_of(cache: str):
    return lambda params, inputs: name_of(inputs[cache])


def _zero_seq_starts(modes, inputs):
    """Opt-in workaround: ATB refuses ND without seqStarts (status 5, shared/reference/real_interfaces.md section 2);
    zeros with hasSeqStarts=true select the same tokens (the offset is seq_starts // block_size)."""
    if PCL_ZERO_SEQ_STARTS not in modes or inputs.get("seq_starts") is not None or _nz(inputs):
        return inputs
    return {**inputs, "seq_starts": np.zeros(np.asarray(inputs["block_table"]).shape[0], dtype=np.int32)}


BINDING = Binding("paged_cache_load", "AtbPagedCacheLoad", "atb", (
    tensor("keyCache", "key_cache", fmt=_cache_format),
    tensor("valueCache", "value_cache", fmt=_cache_format),
    tensor("blockTables", "block_table"),
    tensor("contextLens", "context_lens"),
    output("key", "key", _out_shape("key_cache"), _dtype_of("key_cache")),
    output("value", "value", _out_shape("value_cache"), _dtype_of("value_cache")),
    optional("seqStarts", "seq_starts"),   # NULL without them, and then hasSeqStarts=false
    i8("kvCacheCfg", "kv_cache_cfg"),
    flag("isSeqLensCumsumType", "cumsum"),
    flag("hasSeqStarts", lambda params, inputs: inputs.get("seq_starts") is not None),
), workaround=_zero_seq_starts)
