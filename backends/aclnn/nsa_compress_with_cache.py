"""aclnnNsaCompressWithCache (seed 000, ops.md section 1; prototype: acl_abi.md section 4), the kernel behind
torch_npu.npu_nsa_compress_infer.cache."""
from __future__ import annotations

from ._binding import Binding, const, i64, inout, int_array, optional, param, string, tensor

BINDING = Binding("nsa_compress_with_cache", "aclnnNsaCompressWithCache", "aclnn", (
    tensor("input", "input"),
    tensor("weight", "weight"),
    tensor("slotMapping", "slot_mapping"),
    # an absent actual_seq_len reaches the kernel as an empty aclIntArray, never NULL, as torch_npu passes it
    # (op-plugin op_plugin_functions.yaml:7330, 7406-7407)
    int_array("actSeqLenOptional", "actual_seq_len", absent=[]),
    optional("blockTableOptional", "block_table"),
    string("layoutOptional", const("TND")),
    i64("compressBlockSize", "compress_block_size"),
    i64("compressStride", "compress_stride"),
    # torch_npu always passes 1; the case parameter carries the documented value (negatives pass 0)
    i64("actSeqLenType", param("act_seq_len_type", 1)),
    i64("pageBlockSize", "page_block_size"),
    inout("outputCache", "cache"),
))
