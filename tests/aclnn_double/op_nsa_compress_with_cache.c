/* aclnnNsaCompressWithCache in the double (seed 000; shared/reference/ops.md section 1).
 *
 * A batch of length s triggers iff s >= cbs and (s - cbs) % stride == 0; its window is its last cbs logical
 * tokens read through the block table; the weighted sum over the window (float32 accumulation, one RNE cast)
 * goes to cache row slotMapping[b]. Other rows are untouched. */
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"

static const char *API = "aclnnNsaCompressWithCacheGetWorkspaceSize";

typedef struct {
    aclTensor *x, *w, *slots, *bt, *cache;
    int64_t *act, batch, cbs, stride, page;
} Ncwc;

static void drop(void *p) {
    Ncwc *k = p;
    free(k->x); free(k->w); free(k->slots); free(k->bt); free(k->cache); free(k->act);
    free(k);
}

static int32_t i32(const aclTensor *t, int64_t i) { return (int32_t)dbl_load(t, i); }

static aclError run(void *p) {
    Ncwc *k = p;
    if (!dbl_still_on_device(k->x) || !dbl_still_on_device(k->w) || !dbl_still_on_device(k->cache)) {
        opdiff_double_set_error("aclnnNsaCompressWithCache kernel: device memory freed before the stream ran it");
        return ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    int64_t N = k->x->dims[2], D = k->x->dims[3], mb = k->bt->dims[1];
    float *acc = malloc(sizeof(float) * N * D);
    for (int64_t b = 0; b < k->batch; b++) {
        int64_t s = k->act[b];
        if (s < k->cbs || (s - k->cbs) % k->stride) continue;
        memset(acc, 0, sizeof(float) * N * D);
        for (int64_t c = 0; c < k->cbs; c++) {
            int64_t pos = s - k->cbs + c, blk = i32(k->bt, b * mb + pos / k->page), off = pos % k->page;
            int64_t base = ((blk * k->page) + off) * N * D;
            for (int64_t n = 0; n < N; n++) {
                float w = (float)dbl_load(k->w, c * N + n);
                for (int64_t d = 0; d < D; d++) acc[n * D + d] += (float)dbl_load(k->x, base + n * D + d) * w;
            }
        }
        int64_t row = i32(k->slots, b);
        for (int64_t i = 0; i < N * D; i++) dbl_store(k->cache, row * N * D + i, acc[i]);
    }
    free(acc);
    return ACL_SUCCESS;
}

aclnnStatus aclnnNsaCompressWithCacheGetWorkspaceSize(const aclTensor *input, const aclTensor *weight,
    const aclTensor *slotMapping, const aclIntArray *actSeqLenOptional, const aclTensor *blockTableOptional,
    char *layoutOptional, int64_t compressBlockSize, int64_t compressStride, int64_t actSeqLenType,
    int64_t pageBlockSize, aclTensor *outputCache, uint64_t *workspaceSize, aclOpExecutor **executor) {
    aclnnStatus st;
    if (!workspaceSize || !executor) return ACLNN_ERR_PARAM_NULLPTR;
    if ((st = dbl_check_tensor(API, "input", input, 1)) || (st = dbl_check_tensor(API, "weight", weight, 1)) ||
        (st = dbl_check_tensor(API, "slotMapping", slotMapping, 1)) ||
        (st = dbl_check_tensor(API, "outputCache", outputCache, 1)) ||
        (st = dbl_check_tensor(API, "blockTableOptional", blockTableOptional, 1)))
        return st;
    if (!dbl_live_int_array(actSeqLenOptional))
        return dbl_reject(API, "actSeqLenOptional is required by the double (its paged form)");
    (void)layoutOptional; /* seed: "可以是BSH、SBH、BSND、BNSD、TND,但是不会生效" */
    /* seed: input BFLOAT16/FLOAT16; weight, outputCache the same dtype */
    if (input->dtype != ACL_FLOAT16 && input->dtype != ACL_BF16)
        return dbl_reject(API, "input dtype %d: only FLOAT16 and BFLOAT16", input->dtype);
    if (weight->dtype != input->dtype || outputCache->dtype != input->dtype)
        return dbl_reject(API, "weight/outputCache dtypes %d/%d must equal input's %d", weight->dtype,
                          outputCache->dtype, input->dtype);
    if (compressBlockSize <= 0 || compressStride <= 0 || compressBlockSize % 16 || compressStride % 16)
        return dbl_reject(API, "compressBlockSize %ld and compressStride %ld must be multiples of 16",
                          (long)compressBlockSize, (long)compressStride);
    if (compressBlockSize < compressStride)
        return dbl_reject(API, "compressBlockSize %ld < compressStride %ld", (long)compressBlockSize, (long)compressStride);
    if (compressBlockSize > 64) return dbl_reject(API, "compressBlockSize %ld > 64", (long)compressBlockSize);
    if (actSeqLenType != 1) return dbl_reject(API, "actSeqLenType %ld: only 1 is supported", (long)actSeqLenType);
    if (pageBlockSize != 64 && pageBlockSize != 128)
        return dbl_reject(API, "pageBlockSize %ld must be 64 or 128", (long)pageBlockSize);
    if (input->ndim != 4 || weight->ndim != 2 || outputCache->ndim != 3 || slotMapping->ndim != 1 ||
        blockTableOptional->ndim != 2)
        return dbl_reject(API, "ranks: input [blockNum, pageBlockSize, N, D], weight [cbs, N], outputCache "
                               "[rows, N, D], slotMapping [B], blockTable [B, maxBlocks]");
    int64_t nb = input->dims[0], P = input->dims[1], N = input->dims[2], D = input->dims[3];
    int64_t B = slotMapping->dims[0], rows = outputCache->dims[0], mb = blockTableOptional->dims[1];
    if (opdiff_double_numel(input) == 0 || opdiff_double_numel(weight) == 0 || opdiff_double_numel(outputCache) == 0 ||
        B == 0)
        return dbl_reject(API, "empty input/weight/outputCache/slotMapping is not supported");
    if (D % 16 || D > 256) return dbl_reject(API, "headDim %ld must be a multiple of 16 and <= 256", (long)D);
    if (N > 64) return dbl_reject(API, "headNum %ld > 64", (long)N);
    if (N > 50 && N % 2) return dbl_reject(API, "headNum %ld > 50 must be even", (long)N);
    if (B > 2048) return dbl_reject(API, "batch %ld > 2048", (long)B);
    if (weight->dims[0] != compressBlockSize || weight->dims[1] != N)
        return dbl_reject(API, "weight shape [%ld, %ld], expected [compressBlockSize, N] = [%ld, %ld]",
                          (long)weight->dims[0], (long)weight->dims[1], (long)compressBlockSize, (long)N);
    if (P != pageBlockSize) return dbl_reject(API, "input dim 1 (%ld) != pageBlockSize %ld", (long)P, (long)pageBlockSize);
    if (outputCache->dims[1] != N || outputCache->dims[2] != D)
        return dbl_reject(API, "outputCache must be [rows, N, D]");
    if (rows <= (nb * P - compressBlockSize) / compressStride)
        return dbl_reject(API, "outputCache has %ld rows, needs > %ld", (long)rows,
                          (long)((nb * P - compressBlockSize) / compressStride));
    if (slotMapping->dtype != ACL_INT32 || blockTableOptional->dtype != ACL_INT32)
        return dbl_reject(API, "slotMapping and blockTableOptional must be INT32");
    if ((int64_t)actSeqLenOptional->size != B || blockTableOptional->dims[0] != B)
        return dbl_reject(API, "batch sizes disagree: slotMapping %ld, actSeqLen %ld, blockTable rows %ld", (long)B,
                          (long)actSeqLenOptional->size, (long)blockTableOptional->dims[0]);
    for (int64_t b = 0; b < B; b++) {
        int64_t slot = (int64_t)dbl_load(slotMapping, b), s = actSeqLenOptional->values[b];
        if (slot < 0 || slot >= rows) return dbl_reject(API, "slotMapping[%ld] = %ld outside [0, %ld)", (long)b, (long)slot, (long)rows);
        for (int64_t c = 0; c < b; c++)
            if ((int64_t)dbl_load(slotMapping, c) == slot)
                return dbl_reject(API, "slotMapping repeats %ld (results would be unstable)", (long)slot);
        if (s < 0 || s > mb * P)
            return dbl_reject(API, "actSeqLen[%ld] = %ld exceeds the block table (%ld tokens)", (long)b, (long)s, (long)(mb * P));
    }
    for (int64_t i = 0; i < B * mb; i++) {
        int64_t id = (int64_t)dbl_load(blockTableOptional, i);
        if (id < 0 || id >= nb) return dbl_reject(API, "blockTable holds %ld outside [0, %ld)", (long)id, (long)nb);
    }
    Ncwc *k = calloc(1, sizeof *k);
    k->x = dbl_snapshot(input); k->w = dbl_snapshot(weight); k->slots = dbl_snapshot(slotMapping);
    k->bt = dbl_snapshot(blockTableOptional); k->cache = dbl_snapshot(outputCache);
    k->act = malloc(sizeof(int64_t) * (B ? B : 1));
    memcpy(k->act, actSeqLenOptional->values, sizeof(int64_t) * B);
    k->batch = B; k->cbs = compressBlockSize; k->stride = compressStride; k->page = pageBlockSize;
    *workspaceSize = 0; /* the double needs none: exercises the "no workspace" path */
    *executor = opdiff_double_new_executor("aclnnNsaCompressWithCache", k, drop);
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnNsaCompressWithCache(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                      aclrtStream stream) {
    return dbl_launch("aclnnNsaCompressWithCache", executor, stream, workspace, workspaceSize, 0, run, drop);
}
