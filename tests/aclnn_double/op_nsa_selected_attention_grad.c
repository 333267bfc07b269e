/* aclnnNsaSelectedAttentionGrad in the double (seed 002; shared/reference/ops.md section 3, Backward).
 *
 * TND layout, cumulative actual lengths; query head h uses KV head h / G; topk holds block ids relative to
 * the batch's first KV row; sparseMode 2 masks key position p > s1. Recomputes P from the passed softmax
 * statistics (first of the 8 copies), then dQ, dK, dV (scatter-add over selected rows), in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"

static const char *API = "aclnnNsaSelectedAttentionGradGetWorkspaceSize";

typedef struct {
    aclTensor *q, *k, *v, *o, *dy, *mx, *sm, *topk, *dq, *dk, *dv;
    int64_t *cu_q, *cu_kv, B, bs, count, causal;
    double scale;
} Nsag;

static void drop(void *p) {
    Nsag *k = p;
    aclTensor *all[] = {k->q, k->k, k->v, k->o, k->dy, k->mx, k->sm, k->topk, k->dq, k->dk, k->dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(k->cu_q);
    free(k->cu_kv);
    free(k);
}

static aclError run(void *p) {
    Nsag *k = p;
    aclTensor *dev[] = {k->q, k->k, k->v, k->o, k->dy, k->mx, k->sm, k->topk, k->dq, k->dk, k->dv};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (!dbl_still_on_device(dev[i])) {
            opdiff_double_set_error("aclnnNsaSelectedAttentionGrad kernel: device memory freed before the stream ran it");
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    int64_t T1 = k->q->dims[0], N1 = k->q->dims[1], Dq = k->q->dims[2], T2 = k->k->dims[0], N2 = k->k->dims[1];
    int64_t Dv = k->v->dims[2], G = N1 / N2, L = k->count * k->bs;
    double *dq = calloc(Dq, sizeof(double)), *dk = calloc(T2 * N2 * Dq + 1, sizeof(double));
    double *dv = calloc(T2 * N2 * Dv + 1, sizeof(double)), *ps = malloc(sizeof(double) * L);
    double *dss = malloc(sizeof(double) * L);
    int64_t *rows = malloc(sizeof(int64_t) * L), b = 0;
    for (int64_t t = 0; t < T1; t++) {
        while (t >= k->cu_q[b]) b++;
        int64_t s1 = t - (b ? k->cu_q[b - 1] : 0), kv0 = b ? k->cu_kv[b - 1] : 0;
        for (int64_t h = 0; h < N1; h++) {
            int64_t n = h / G;
            double m = dbl_load(k->mx, (t * N1 + h) * 8), sum = dbl_load(k->sm, (t * N1 + h) * 8), dr = 0;
            for (int64_t d = 0; d < Dv; d++)
                dr += dbl_load(k->dy, (t * N1 + h) * Dv + d) * dbl_load(k->o, (t * N1 + h) * Dv + d);
            for (int64_t l = 0; l < L; l++) {
                int64_t rel = (int64_t)dbl_load(k->topk, (t * N2 + n) * k->count + l / k->bs) * k->bs + l % k->bs;
                rows[l] = kv0 + rel;
                if (k->causal && rel > s1) { ps[l] = 0; dss[l] = 0; continue; }
                double s = 0, dp = 0;
                for (int64_t d = 0; d < Dq; d++)
                    s += dbl_load(k->q, (t * N1 + h) * Dq + d) * dbl_load(k->k, (rows[l] * N2 + n) * Dq + d);
                for (int64_t d = 0; d < Dv; d++)
                    dp += dbl_load(k->dy, (t * N1 + h) * Dv + d) * dbl_load(k->v, (rows[l] * N2 + n) * Dv + d);
                ps[l] = exp(k->scale * s - m) / sum;
                dss[l] = ps[l] * (dp - dr);
            }
            memset(dq, 0, sizeof(double) * Dq);
            for (int64_t l = 0; l < L; l++) {
                for (int64_t d = 0; d < Dq; d++) {
                    dq[d] += k->scale * dss[l] * dbl_load(k->k, (rows[l] * N2 + n) * Dq + d);
                    dk[(rows[l] * N2 + n) * Dq + d] += k->scale * dss[l] * dbl_load(k->q, (t * N1 + h) * Dq + d);
                }
                for (int64_t d = 0; d < Dv; d++)
                    dv[(rows[l] * N2 + n) * Dv + d] += ps[l] * dbl_load(k->dy, (t * N1 + h) * Dv + d);
            }
            for (int64_t d = 0; d < Dq; d++) dbl_store(k->dq, (t * N1 + h) * Dq + d, dq[d]);
        }
    }
    for (int64_t i = 0; i < T2 * N2 * Dq; i++) dbl_store(k->dk, i, dk[i]);
    for (int64_t i = 0; i < T2 * N2 * Dv; i++) dbl_store(k->dv, i, dv[i]);
    free(dq); free(dk); free(dv); free(ps); free(dss); free(rows);
    return ACL_SUCCESS;
}

static int live(const aclTensor *t) { return t && opdiff_double_is_live("tensor", t); }

aclnnStatus aclnnNsaSelectedAttentionGradGetWorkspaceSize(const aclTensor *query, const aclTensor *key,
    const aclTensor *value, const aclTensor *attentionOut, const aclTensor *attentionOutGrad,
    const aclTensor *softmaxMax, const aclTensor *softmaxSum, const aclTensor *topkIndices,
    const aclIntArray *actualSeqQLenOptional, const aclIntArray *actualSeqKvLenOptional,
    const aclTensor *attenMaskOptional, double scaleValue, int64_t selectedBlockSize, int64_t selectedBlockCount,
    int64_t headNum, char *inputLayout, int64_t sparseMode, const aclTensor *dqOut, const aclTensor *dkOut,
    const aclTensor *dvOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    if (!workspaceSize || !executor) return ACLNN_ERR_PARAM_NULLPTR;
    const aclTensor *req[] = {query, key, value, attentionOut, attentionOutGrad, softmaxMax, softmaxSum, topkIndices,
                              dqOut, dkOut, dvOut};
    const char *names[] = {"query", "key", "value", "attentionOut", "attentionOutGrad", "softmaxMax", "softmaxSum",
                           "topkIndices", "dqOut", "dkOut", "dvOut"};
    /* A layout other than TND fails before any tensor check, with 561103 ACLNN_ERR_INNER_NULLPTR, not 161002
     * (ops-transformer aclnn_nsa_selected_attention_grad.cpp:104-105) */
    if (!inputLayout || strcmp(inputLayout, "TND") != 0) {
        opdiff_double_set_error("%s: inputLayout '%s': only TND", API, inputLayout ? inputLayout : "(null)");
        return ACLNN_ERR_INNER_NULLPTR;
    }
    /* shapes and attributes first (inputs of broken cases may be broadcast views), data last */
    for (int i = 0; i < 11; i++) {
        if (!req[i]) {
            opdiff_double_set_error("%s: %s is a nullptr", API, names[i]);
            return ACLNN_ERR_PARAM_NULLPTR;
        }
        if (!live(req[i])) return dbl_reject(API, "%s is not a live aclTensor", names[i]);
        if (req[i]->ndim != 3) return dbl_reject(API, "%s must be 3-D (TND)", names[i]);
    }
    aclDataType dt = query->dtype;
    if (dt != ACL_FLOAT16 && dt != ACL_BF16) return dbl_reject(API, "query dtype %d: only FLOAT16 and BFLOAT16", dt);
    for (int i = 1; i < 5; i++)
        if (req[i]->dtype != dt) return dbl_reject(API, "%s dtype %d differs from query's %d", names[i], req[i]->dtype, dt);
    if (softmaxMax->dtype != ACL_FLOAT || softmaxSum->dtype != ACL_FLOAT)
        return dbl_reject(API, "softmaxMax/softmaxSum must be FLOAT");
    if (topkIndices->dtype != ACL_INT32) return dbl_reject(API, "topkIndices must be INT32");
    if (!dbl_live_int_array(actualSeqQLenOptional) || !dbl_live_int_array(actualSeqKvLenOptional))
        return dbl_reject(API, "actualSeqQLen/actualSeqKvLen are required for TND");
    int64_t B = (int64_t)actualSeqQLenOptional->size;
    if ((int64_t)actualSeqKvLenOptional->size != B)
        return dbl_reject(API, "actualSeqQLen has %ld batches, actualSeqKvLen %ld", (long)B,
                          (long)actualSeqKvLenOptional->size);
    if (B < 1 || B > 2 * 1024 * 1024) return dbl_reject(API, "B = %ld outside 1..2M", (long)B);
    const int64_t *cq = actualSeqQLenOptional->values, *ck = actualSeqKvLenOptional->values;
    for (int64_t b = 0; b < B; b++) {
        int64_t sq = cq[b] - (b ? cq[b - 1] : 0), sk = ck[b] - (b ? ck[b - 1] : 0);
        if (sq < 1 || sq > 128 * 1024 || sk < 1 || sk > 128 * 1024)
            return dbl_reject(API, "batch %ld: S = %ld / %ld outside 1..128K", (long)b, (long)sq, (long)sk);
    }
    int64_t T1 = query->dims[0], N1 = query->dims[1], Dq = query->dims[2];
    int64_t T2 = key->dims[0], N2 = key->dims[1], Dv = value->dims[2];
    if (cq[B - 1] != T1 || T1 > 2 * 1024 * 1024)
        return dbl_reject(API, "T1 = %ld (actualSeqQLen ends at %ld) outside 1..2M", (long)T1, (long)cq[B - 1]);
    if (ck[B - 1] != T2 || T2 > 2 * 1024 * 1024)
        return dbl_reject(API, "T2 = %ld (actualSeqKvLen ends at %ld) outside 1..2M", (long)T2, (long)ck[B - 1]);
    if (N1 < 1 || N1 > 128) return dbl_reject(API, "N1 = %ld outside 1..128", (long)N1);
    if (N2 < 1 || N2 > 128) return dbl_reject(API, "N2 = %ld outside 1..128", (long)N2);
    if (N1 % N2) return dbl_reject(API, "N1 = %ld is not a multiple of N2 = %ld", (long)N1, (long)N2);
    if (N1 / N2 > 32) return dbl_reject(API, "G = N1/N2 = %ld > 32", (long)(N1 / N2));
    if (headNum != N1) return dbl_reject(API, "headNum %ld differs from query's N %ld", (long)headNum, (long)N1);
    if (value->dims[1] != N2 || value->dims[0] != T2 || key->dims[2] != Dq)
        return dbl_reject(API, "key/value heads differ (%ld/%ld)", (long)N2, (long)value->dims[1]);
    if (attentionOut->dims[1] != N1 || attentionOutGrad->dims[1] != N1 || attentionOut->dims[0] != T1 ||
        attentionOutGrad->dims[0] != T1)
        return dbl_reject(API, "query/attentionOut/attentionOutGrad heads differ");
    if (attentionOut->dims[2] != Dv || attentionOutGrad->dims[2] != Dv)
        return dbl_reject(API, "value/attentionOut/attentionOutGrad head dims differ");
    if ((Dq != 128 && Dq != 192) || (Dv != 128 && Dv != 192))
        return dbl_reject(API, "head dims %ld/%ld: only 128 or 192", (long)Dq, (long)Dv);
    if (Dv > Dq) return dbl_reject(API, "Dv %ld > Dqk %ld", (long)Dv, (long)Dq);
    if (softmaxMax->dims[0] != T1 || softmaxMax->dims[1] != N1 || softmaxMax->dims[2] != 8 ||
        softmaxSum->dims[0] != T1 || softmaxSum->dims[1] != N1 || softmaxSum->dims[2] != 8)
        return dbl_reject(API, "softmaxMax/softmaxSum must be [T1, N1, 8]");
    if (topkIndices->dims[0] != T1 || topkIndices->dims[1] != N2 || topkIndices->dims[2] != selectedBlockCount)
        return dbl_reject(API, "topkIndices must be [T1, N2, selectedBlockCount]");
    if (selectedBlockSize < 16 || selectedBlockSize > 128 || selectedBlockSize % 16)
        return dbl_reject(API, "selectedBlockSize %ld: 16..128, aligned to 16", (long)selectedBlockSize);
    if (selectedBlockCount < 1 || selectedBlockCount > 32)
        return dbl_reject(API, "selectedBlockCount %ld: 1..32", (long)selectedBlockCount);
    for (int64_t b = 0; b < B; b++) {
        int64_t sk = ck[b] - (b ? ck[b - 1] : 0);
        if (sk < selectedBlockSize * selectedBlockCount || sk % selectedBlockSize)
            return dbl_reject(API, "batch %ld: key S %ld must be >= %ld and a multiple of selectedBlockSize", (long)b,
                              (long)sk, (long)(selectedBlockSize * selectedBlockCount));
    }
    if (sparseMode != 0 && sparseMode != 2) return dbl_reject(API, "sparseMode %ld: only 0 or 2", (long)sparseMode);
    if (attenMaskOptional) return dbl_reject(API, "attenMaskOptional is reserved and not supported");
    aclnnStatus st;
    for (int i = 0; i < 11; i++)
        if ((st = dbl_check_tensor(API, names[i], req[i], 1))) return st;
    if (dqOut->dtype != dt || dkOut->dtype != dt || dvOut->dtype != dt ||
        opdiff_double_numel(dqOut) != opdiff_double_numel(query) || opdiff_double_numel(dkOut) != opdiff_double_numel(key) ||
        opdiff_double_numel(dvOut) != opdiff_double_numel(value))
        return dbl_reject(API, "dqOut/dkOut/dvOut must match query/key/value");
    for (int64_t t = 0, b = 0; t < T1; t++) {
        while (t >= cq[b]) b++;
        int64_t nblk = (ck[b] - (b ? ck[b - 1] : 0)) / selectedBlockSize;
        for (int64_t i = 0; i < N2 * selectedBlockCount; i++) {
            int64_t id = (int64_t)dbl_load(topkIndices, t * N2 * selectedBlockCount + i);
            if (id < 0 || id >= nblk)
                return dbl_reject(API, "topkIndices of token %ld holds %ld outside [0, %ld)", (long)t, (long)id, (long)nblk);
        }
    }
    Nsag *k = calloc(1, sizeof *k);
    k->q = dbl_snapshot(query); k->k = dbl_snapshot(key); k->v = dbl_snapshot(value);
    k->o = dbl_snapshot(attentionOut); k->dy = dbl_snapshot(attentionOutGrad);
    k->mx = dbl_snapshot(softmaxMax); k->sm = dbl_snapshot(softmaxSum); k->topk = dbl_snapshot(topkIndices);
    k->dq = dbl_snapshot(dqOut); k->dk = dbl_snapshot(dkOut); k->dv = dbl_snapshot(dvOut);
    k->cu_q = malloc(sizeof(int64_t) * B);
    k->cu_kv = malloc(sizeof(int64_t) * B);
    memcpy(k->cu_q, cq, sizeof(int64_t) * B);
    memcpy(k->cu_kv, ck, sizeof(int64_t) * B);
    k->B = B; k->bs = selectedBlockSize; k->count = selectedBlockCount; k->causal = sparseMode == 2;
    k->scale = scaleValue;
    *workspaceSize = 4096;
    *executor = opdiff_double_new_executor("aclnnNsaSelectedAttentionGrad", k, drop);
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnNsaSelectedAttentionGrad(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                          aclrtStream stream) {
    return dbl_launch("aclnnNsaSelectedAttentionGrad", executor, stream, workspace, workspaceSize, 4096, run, drop);
}
