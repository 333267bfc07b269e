/* aclnnIncreFlashAttentionV4 in the double (seed 004; shared/reference/ops.md section 5), an Atlas A2 device.
 *
 * One query token per batch against dense (BSH / BNSD / BSND) or paged (block table; (blocknum, blocksize, H)
 * or (blocknum, Nkv, blocksize, D)) K/V, int8 K/V dequantized by antiquant (K + offset) * scale, GQA, per-batch
 * lengths with optional left padding (kvPaddingSize), atten mask (masked scores -1e12), pse shift, optional
 * int8 output y = rint(O * quantScale2 + quantOffset2). Computed in double, rounded once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"

static const char *API = "aclnnIncreFlashAttentionV4GetWorkspaceSize";

typedef struct {
    aclTensor *q, *k, *v, *pse, *mask, *as, *ao, *bt, *qs2, *qo2, *out;
    int64_t *lo, *hi;
    int64_t B, N, nkv, D, bs, layout; /* layout: 0 BSH, 1 BNSD, 2 BSND */
    int paged, bnbd;
    double scale;
} Ifa;

static void drop(void *p) {
    Ifa *k = p;
    aclTensor *all[] = {k->q, k->k, k->v, k->pse, k->mask, k->as, k->ao, k->bt, k->qs2, k->qo2, k->out};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(k->lo);
    free(k->hi);
    free(k);
}

/* flat element index of K/V position `pos`, kv head `n`, dim `d` of batch b */
static int64_t kv_index(const Ifa *k, const aclTensor *t, int64_t b, int64_t n, int64_t pos, int64_t d) {
    int64_t D = k->D, nkv = k->nkv;
    if (k->paged) {
        int64_t blk = (int64_t)dbl_load(k->bt, b * k->bt->dims[1] + pos / k->bs), slot = pos % k->bs;
        return k->bnbd ? ((blk * nkv + n) * k->bs + slot) * D + d : (blk * k->bs + slot) * nkv * D + n * D + d;
    }
    int64_t S = k->layout == 1 ? t->dims[2] : t->dims[1];
    if (k->layout == 1) return ((b * nkv + n) * S + pos) * D + d;
    return (b * S + pos) * nkv * D + n * D + d; /* BSH and BSND share the flat order */
}

static double deq(const Ifa *k, const aclTensor *t, int which, int64_t idx, int64_t n, int64_t d) {
    double x = dbl_load(t, idx);
    if (t->dtype != ACL_INT8) return x;
    int64_t per = opdiff_double_numel(k->as) == 2 ? -1 : which * k->nkv * k->D + n * k->D + d;
    double s = dbl_load(k->as, per < 0 ? which : per);
    if (k->ao) x += dbl_load(k->ao, per < 0 ? which : per);
    return x * s;
}

static aclError run(void *p) {
    Ifa *k = p;
    aclTensor *dev[] = {k->q, k->k, k->v, k->out};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (!dbl_still_on_device(dev[i])) {
            opdiff_double_set_error("aclnnIncreFlashAttentionV4 kernel: device memory freed before the stream ran it");
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    int64_t B = k->B, N = k->N, D = k->D, G = N / k->nkv;
    int64_t smax = 0;
    for (int64_t b = 0; b < B; b++) smax = k->hi[b] > smax ? k->hi[b] : smax;
    double *sc = malloc(sizeof(double) * (smax + 1)), *o = malloc(sizeof(double) * D);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < N; h++) {
            int64_t n = h / G, lo = k->lo[b], hi = k->hi[b];
            memset(o, 0, sizeof(double) * D);
            if (lo >= 0 && hi > lo) {
                double mx = -INFINITY, den = 0;
                for (int64_t pos = lo; pos < hi; pos++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += dbl_load(k->q, (b * N + h) * D + d) * deq(k, k->k, 0, kv_index(k, k->k, b, n, pos, d), n, d);
                    s *= k->scale;
                    if (k->pse) {
                        int64_t ps = k->pse->dims[3], pb = k->pse->dims[0] == 1 ? 0 : b;
                        s += dbl_load(k->pse, (pb * N + h) * ps + pos);
                    }
                    if (k->mask) {
                        int64_t ms = k->mask->dims[k->mask->ndim - 1];
                        if (dbl_load(k->mask, b * ms + pos) != 0) s = -1e12; /* ops.md#5: masked scores */
                    }
                    sc[pos] = s;
                    mx = s > mx ? s : mx;
                }
                for (int64_t pos = lo; pos < hi; pos++) den += (sc[pos] = exp(sc[pos] - mx));
                for (int64_t pos = lo; pos < hi; pos++)
                    for (int64_t d = 0; d < D; d++)
                        o[d] += sc[pos] / den * deq(k, k->v, 1, kv_index(k, k->v, b, n, pos, d), n, d);
            }
            for (int64_t d = 0; d < D; d++) {
                int64_t i = (b * N + h) * D + d, c = h * D + d; /* every query layout flattens to (B, N, D) */
                double y = o[d];
                if (k->qs2) {
                    int per = opdiff_double_numel(k->qs2) > 1;
                    y = y * dbl_load(k->qs2, per ? c : 0) + (k->qo2 ? dbl_load(k->qo2, per ? c : 0) : 0.0);
                    /* PostQuant (ops.md#5 "Output quant"): y is cast to half, then to int8 with CAST_ROUND, ties
                     * away from zero (not the rint of the int8 store); saturation follows in dbl_store */
                    double h = (double)(_Float16)y;
                    y = h < 0 ? -floor(-h + 0.5) : floor(h + 0.5);
                }
                dbl_store(k->out, i, y);
            }
        }
    }
    free(sc);
    free(o);
    return ACL_SUCCESS;
}

static int live(const aclTensor *t) { return t && opdiff_double_is_live("tensor", t); }

static aclnnStatus check_optional(const char *name, const aclTensor *t) {
    if (t && !live(t)) return dbl_reject(API, "%s is not a live aclTensor", name);
    return ACLNN_SUCCESS;
}

static int same_shape(const aclTensor *a, const aclTensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (uint64_t i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

aclnnStatus aclnnIncreFlashAttentionV4GetWorkspaceSize(const aclTensor *query, const aclTensorList *key,
    const aclTensorList *value, const aclTensor *pseShift, const aclTensor *attenMask,
    const aclIntArray *actualSeqLengths, const aclTensor *dequantScale1, const aclTensor *quantScale1,
    const aclTensor *dequantScale2, const aclTensor *quantScale2, const aclTensor *quantOffset2,
    const aclTensor *antiquantScale, const aclTensor *antiquantOffset, const aclTensor *blocktable,
    const aclTensor *kvPaddingSize, int64_t numHeads, double scaleValue, char *inputLayout, int64_t numKeyValueHeads,
    int64_t blockSize, int64_t innerPrecise, const aclTensor *attentionOut, uint64_t *workspaceSize,
    aclOpExecutor **executor) {
    aclnnStatus st;
    if (!workspaceSize || !executor || !query || !key || !value || !attentionOut) return ACLNN_ERR_PARAM_NULLPTR;
    if (!live(query) || !live(attentionOut)) return dbl_reject(API, "query/attentionOut are not live aclTensors");
    if (!opdiff_double_is_live("tensor_list", key) || !opdiff_double_is_live("tensor_list", value) || key->size != 1 ||
        value->size != 1)
        return dbl_reject(API, "key/value must be tensor lists of one tensor");
    const aclTensor *K = key->items[0], *V = value->items[0];
    const aclTensor *opt[] = {pseShift, attenMask, dequantScale1, quantScale1, dequantScale2, quantScale2, quantOffset2,
                              antiquantScale, antiquantOffset, blocktable, kvPaddingSize};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++)
        if ((st = check_optional("an optional input", opt[i]))) return st;
    /* dtypes */
    aclDataType qd = query->dtype, kd = K->dtype;
    if (qd == ACL_INT8 && kd == ACL_INT8) return dbl_reject(API, "query, key and value all INT8 is not supported");
    if (qd != ACL_FLOAT16 && qd != ACL_BF16) return dbl_reject(API, "query dtype %d: only FLOAT16, BFLOAT16", qd);
    if (kd != qd && kd != ACL_INT8) return dbl_reject(API, "key/value dtype %d: the query dtype or INT8", kd);
    /* layout and shapes */
    int layout;
    if (inputLayout && strcmp(inputLayout, "BSH") == 0) layout = 0;
    else if (inputLayout && strcmp(inputLayout, "BNSD") == 0) layout = 1;
    else if (inputLayout && strcmp(inputLayout, "BSND") == 0) layout = 2;
    else return dbl_reject(API, "inputLayout '%s': only BSH, BNSD, BSND", inputLayout ? inputLayout : "(null)");
    if (query->ndim != (layout == 0 ? 3u : 4u)) return dbl_reject(API, "query rank %lu does not fit %s",
                                                                  (unsigned long)query->ndim, inputLayout);
    int64_t B = query->dims[0], qs = layout == 1 ? query->dims[2] : query->dims[1];
    int64_t N = layout == 1 ? query->dims[1] : layout == 2 ? query->dims[2] : numHeads;
    if (B < 1 || B > 65535) return dbl_reject(API, "B = %ld outside 1..65535 (Atlas A2)", (long)B);
    if (numHeads < 1 || numHeads > 256) return dbl_reject(API, "numHeads %ld outside 1..256", (long)numHeads);
    if (qs != 1) return dbl_reject(API, "query S is %ld: incremental attention takes S = 1", (long)qs);
    if (N != numHeads || (layout == 0 && query->dims[2] % numHeads))
        return dbl_reject(API, "numHeads %ld does not match the query", (long)numHeads);
    int64_t D = layout == 0 ? query->dims[2] / numHeads : query->dims[3];
    if (D < 1 || D > 512) return dbl_reject(API, "D = %ld outside 1..512", (long)D);
    int paged = blocktable != NULL, bnbd = paged && K->ndim == 4;
    if (!paged && K->ndim != query->ndim) return dbl_reject(API, "query/key/value ranks differ");
    if (!same_shape(K, V)) return dbl_reject(API, "key and value shapes differ");
    int64_t nkv_have;
    if (paged) nkv_have = bnbd ? K->dims[1] : (K->ndim == 3 ? K->dims[2] / D : -1);
    else nkv_have = layout == 1 ? K->dims[1] : layout == 2 ? K->dims[2] : K->dims[2] / D;
    int64_t nkv = numKeyValueHeads ? numKeyValueHeads : numHeads;
    if (nkv != nkv_have) return dbl_reject(API, "numKeyValueHeads %ld (0 = numHeads) but key/value have %ld heads",
                                           (long)numKeyValueHeads, (long)nkv_have);
    if (numHeads % nkv) return dbl_reject(API, "numKeyValueHeads %ld does not divide numHeads %ld", (long)nkv, (long)numHeads);
    if (numHeads / nkv > 64) return dbl_reject(API, "numHeads / numKeyValueHeads = %ld > 64", (long)(numHeads / nkv));
    int64_t smax = paged ? 0 : (layout == 1 ? K->dims[2] : K->dims[1]);
    if (smax > 262144) return dbl_reject(API, "key S = %ld > 262144 (Atlas A2)", (long)smax);
    /* actual lengths */
    int64_t nact = actualSeqLengths ? (int64_t)actualSeqLengths->size : -1;
    if (actualSeqLengths && !dbl_live_int_array(actualSeqLengths)) return dbl_reject(API, "actualSeqLengths is not live");
    if (nact >= 0 && nact != B && nact != 1)
        return dbl_reject(API, "actualSeqLengths has %ld entries; needs B (%ld) or 1", (long)nact, (long)B);
    if (paged && nact < 0) return dbl_reject(API, "page attention needs actualSeqLengths");
    int64_t maxlen = 0;
    for (int64_t i = 0; i < nact; i++) {
        int64_t l = actualSeqLengths->values[i];
        if (l < 0) return dbl_reject(API, "actualSeqLengths holds %ld < 0", (long)l);
        maxlen = l > maxlen ? l : maxlen;
    }
    int left_pad = kvPaddingSize && nact >= 0 && !paged;
    if (!paged && !left_pad && nact >= 0 && maxlen > smax)
        return dbl_reject(API, "actualSeqLengths %ld > key S %ld", (long)maxlen, (long)smax);
    /* page attention */
    int64_t need_max = 0;
    if (paged) {
        if (blockSize <= 0 || blockSize > 512) return dbl_reject(API, "blockSize %ld: 1..512 with page attention", (long)blockSize);
        if (blockSize % (kd == ACL_INT8 ? 32 : 16))
            return dbl_reject(API, "blockSize %ld must be aligned to %d", (long)blockSize, kd == ACL_INT8 ? 32 : 16);
        if (bnbd && layout != 1) return dbl_reject(API, "(blocknum, Nkv, blocksize, D) caches need the BNSD layout");
        if (!bnbd && K->ndim == 3 && K->dims[2] > 65536) return dbl_reject(API, "cache H %ld > 64k", (long)K->dims[2]);
        if (blocktable->ndim != 2 || blocktable->dims[0] != B)
            return dbl_reject(API, "block_table must be 2-D with B = %ld rows", (long)B);
        if (blocktable->dtype != ACL_INT32) return dbl_reject(API, "block_table must be INT32");
        need_max = (maxlen + blockSize - 1) / blockSize;
        if (blocktable->dims[1] < need_max)
            return dbl_reject(API, "block_table has %ld columns < maxBlockNumPerSeq %ld", (long)blocktable->dims[1], (long)need_max);
        int64_t total = 0;
        for (int64_t b = 0; b < B; b++) total += (actualSeqLengths->values[nact == 1 ? 0 : b] + blockSize - 1) / blockSize;
        if (K->dims[0] < total) return dbl_reject(API, "blocknum %ld < %ld blocks needed", (long)K->dims[0], (long)total);
    }
    /* mask and pse */
    int64_t aux_need = paged ? need_max * blockSize : 0;
    if (attenMask) {
        if (attenMask->dtype != ACL_BOOL && attenMask->dtype != ACL_INT8 && attenMask->dtype != ACL_UINT8)
            return dbl_reject(API, "attenMask dtype %d: only BOOL, INT8, UINT8", attenMask->dtype);
        int ok = attenMask->dims[0] == B && attenMask->ndim >= 2 && attenMask->ndim <= 4;
        for (uint64_t i = 1; ok && i + 1 < attenMask->ndim; i++) ok = attenMask->dims[i] == 1;
        if (!ok) return dbl_reject(API, "attenMask must be (B,S), (B,1,S) or (B,1,1,S)");
        if (attenMask->dims[attenMask->ndim - 1] < aux_need)
            return dbl_reject(API, "attenMask S %ld < maxBlockNumPerSeq * blockSize %ld", (long)attenMask->dims[attenMask->ndim - 1], (long)aux_need);
    }
    if (pseShift) {
        if (pseShift->ndim != 4 || (pseShift->dims[0] != B && pseShift->dims[0] != 1) || pseShift->dims[1] != N ||
            pseShift->dims[2] != 1)
            return dbl_reject(API, "pseShift must be (B,N,1,S) or (1,N,1,S)");
        if (pseShift->dtype != qd) return dbl_reject(API, "pseShift dtype %d differs from query %d", pseShift->dtype, qd);
        if (D % 16) return dbl_reject(API, "pseShift needs D aligned to 16 (D = %ld)", (long)D);
        if (pseShift->dims[3] < aux_need) return dbl_reject(API, "pseShift S < maxBlockNumPerSeq * blockSize");
    }
    /* antiquant */
    if ((kd == ACL_INT8) != (antiquantScale != NULL))
        return dbl_reject(API, "antiquantScale is required exactly for INT8 key/value");
    if (antiquantOffset && !antiquantScale) return dbl_reject(API, "antiquantOffset without antiquantScale");
    if (antiquantScale) {
        const aclTensor *a = antiquantScale;
        int per_tensor = a->ndim == 1 && a->dims[0] == 2;
        int bnsd = layout == 1 && a->ndim == 4 && a->dims[0] == 2 && a->dims[1] == nkv && a->dims[2] == 1 && a->dims[3] == D;
        int bsnd = layout == 2 && a->ndim == 3 && a->dims[0] == 2 && a->dims[1] == nkv && a->dims[2] == D;
        int bsh = layout == 0 && a->ndim == 2 && a->dims[0] == 2 && a->dims[1] == nkv * D;
        if (!per_tensor && !bnsd && !bsnd && !bsh) return dbl_reject(API, "antiquantScale shape does not fit %s", inputLayout);
        if (a->dtype != qd) return dbl_reject(API, "antiquantScale dtype %d must equal query's %d", a->dtype, qd);
        if (antiquantOffset && (!same_shape(antiquantOffset, a) || antiquantOffset->dtype != a->dtype))
            return dbl_reject(API, "antiquantOffset must match antiquantScale in shape and dtype");
    }
    /* output quantization */
    if (dequantScale1 || quantScale1 || dequantScale2)
        return dbl_reject(API, "dequantScale1/quantScale1/dequantScale2 are not accepted (int8 output path)");
    if (quantOffset2 && !quantScale2) return dbl_reject(API, "quantOffset2 without quantScale2");
    if (quantScale2) {
        int64_t n = opdiff_double_numel(quantScale2);
        if (n != 1 && n != N * D) return dbl_reject(API, "quantScale2 holds %ld values: 1 or N*D = %ld", (long)n, (long)(N * D));
        if (quantScale2->dtype != ACL_FLOAT && !(quantScale2->dtype == ACL_BF16 && qd == ACL_BF16))
            return dbl_reject(API, "quantScale2 dtype %d: FLOAT (or BFLOAT16 with a BFLOAT16 query)", quantScale2->dtype);
        if (quantOffset2 && (!same_shape(quantOffset2, quantScale2) || quantOffset2->dtype != quantScale2->dtype))
            return dbl_reject(API, "quantOffset2 must match quantScale2 in shape and dtype");
    }
    if (kvPaddingSize && (kvPaddingSize->dtype != ACL_INT64 || opdiff_double_numel(kvPaddingSize) != 1))
        return dbl_reject(API, "kvPaddingSize must be INT64 of shape (1)");
    if (innerPrecise != 0 && innerPrecise != 1) return dbl_reject(API, "innerPrecise %ld: 0 or 1", (long)innerPrecise);
    if (attentionOut->dtype != (quantScale2 ? ACL_INT8 : qd) || opdiff_double_numel(attentionOut) != B * N * D)
        return dbl_reject(API, "attentionOut must have the query's shape, INT8 with quantScale2");
    /* data */
    const aclTensor *data[] = {query, K, V, attentionOut};
    for (int i = 0; i < 4; i++)
        if ((st = dbl_check_tensor(API, "query/key/value/attentionOut", data[i], 1))) return st;
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++)
        if ((st = dbl_check_tensor(API, "an optional input", opt[i], 0))) return st;
    if (attenMask && attenMask->dtype != ACL_BOOL)
        for (int64_t i = 0; i < opdiff_double_numel(attenMask); i++) {
            double m = dbl_load(attenMask, i);
            if (m != 0 && m != 1) return dbl_reject(API, "attenMask holds %g: only 0 and 1", m);
        }
    int64_t *lo = malloc(sizeof(int64_t) * B), *hi = malloc(sizeof(int64_t) * B);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = nact < 0 ? smax : actualSeqLengths->values[nact == 1 ? 0 : b];
        if (left_pad) {
            int64_t pad = (int64_t)dbl_load(kvPaddingSize, 0);
            hi[b] = smax - (pad > 0 ? pad : 0); /* seed: kv_padding_size < 0 counts as 0 */
            lo[b] = hi[b] - len;
        } else {
            lo[b] = 0;
            hi[b] = len;
        }
        if (paged) {
            int64_t used = (len + blockSize - 1) / blockSize;
            for (int64_t j = 0; j < used; j++) {
                int64_t id = (int64_t)dbl_load(blocktable, b * blocktable->dims[1] + j);
                if (id < 0 || id >= K->dims[0]) {
                    free(lo);
                    free(hi);
                    return dbl_reject(API, "block_table[%ld][%ld] = %ld outside [0, %ld)", (long)b, (long)j, (long)id,
                                      (long)K->dims[0]);
                }
            }
        }
    }
    Ifa *k = calloc(1, sizeof *k);
    k->q = dbl_snapshot(query); k->k = dbl_snapshot(K); k->v = dbl_snapshot(V);
    k->pse = dbl_snapshot(pseShift); k->mask = dbl_snapshot(attenMask);
    k->as = dbl_snapshot(antiquantScale); k->ao = dbl_snapshot(antiquantOffset); k->bt = dbl_snapshot(blocktable);
    k->qs2 = dbl_snapshot(quantScale2); k->qo2 = dbl_snapshot(quantOffset2); k->out = dbl_snapshot(attentionOut);
    k->lo = lo; k->hi = hi;
    k->B = B; k->N = N; k->nkv = nkv; k->D = D; k->bs = blockSize; k->layout = layout;
    k->paged = paged; k->bnbd = bnbd; k->scale = scaleValue;
    *workspaceSize = 512;
    *executor = opdiff_double_new_executor("aclnnIncreFlashAttentionV4", k, drop);
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnIncreFlashAttentionV4(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                       aclrtStream stream) {
    return dbl_launch("aclnnIncreFlashAttentionV4", executor, stream, workspace, workspaceSize, 512, run, drop);
}
