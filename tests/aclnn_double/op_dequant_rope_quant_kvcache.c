/* aclnnDequantRopeQuantKvcache in the double (seed 001; shared/reference/ops.md section 2).
 *
 * (int32 x: (x + int bias) * weightScale * activationScale + float bias), split q/k/v by sizeSplits, NeoX
 * rotate-half RoPE on q and k, y = value / scale (+ offset when both offsets are given), int8(clamp(rint(y)))
 * scattered into the caches (contiguous: cache[b, indices[b] + s]; page: flat row indices[t], negative
 * skipped). Computed in double, rounded once to the output dtype. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"

static const char *API = "aclnnDequantRopeQuantKvcacheGetWorkspaceSize";

typedef struct {
    aclTensor *x, *cos, *sin, *kc, *vc, *idx, *sk, *sv, *ok, *ov, *ws, *as, *bias, *q, *k, *v;
    int64_t T, S, H, nq, nkv, D, c2;
    int page, kv_output;
} Drq;

static void drop(void *p) {
    Drq *k = p;
    aclTensor *all[] = {k->x, k->cos, k->sin, k->kc, k->vc, k->idx, k->sk, k->sv, k->ok, k->ov, k->ws, k->as,
                        k->bias, k->q, k->k, k->v};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(k);
}

static int is_float(aclDataType d) { return d == ACL_FLOAT16 || d == ACL_BF16; }

static aclError run(void *p) {
    Drq *k = p;
    aclTensor *dev[] = {k->x, k->cos, k->sin, k->kc, k->vc, k->q, k->k, k->v};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (!dbl_still_on_device(dev[i])) {
            opdiff_double_set_error("aclnnDequantRopeQuantKvcache kernel: device memory freed before the stream ran it");
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    int64_t H = k->H, D = k->D, half = D / 2, nq = k->nq, nkv = k->nkv;
    double *row = malloc(sizeof(double) * H), *rot = malloc(sizeof(double) * H);
    int int_x = k->x->dtype == ACL_INT32, offsets = k->ok && k->ov;
    for (int64_t t = 0; t < k->T; t++) {
        for (int64_t h = 0; h < H; h++) {
            double v = dbl_load(k->x, t * H + h);
            if (int_x) {
                if (k->bias && k->bias->dtype == ACL_INT32) v += dbl_load(k->bias, h); /* before the scales */
                v *= dbl_load(k->ws, h);
                if (k->as) v *= dbl_load(k->as, t);
                if (k->bias && k->bias->dtype != ACL_INT32) v += dbl_load(k->bias, h); /* after the scales */
            }
            row[h] = v;
        }
        memcpy(rot, row, sizeof(double) * H);
        for (int64_t n = 0; n < nq + nkv; n++) { /* q heads then k heads: rotate-half RoPE */
            double *src = row + n * D, *dst = rot + n * D;
            for (int64_t i = 0; i < D; i++) {
                double c = dbl_load(k->cos, t * D + i), s = dbl_load(k->sin, t * D + i);
                double other = i < half ? -src[i + half] : src[i - half];
                dst[i] = src[i] * c + other * s;
            }
        }
        for (int64_t i = 0; i < nq * D; i++) dbl_store(k->q, t * nq * D + i, rot[i]);
        if (k->kv_output)
            for (int64_t i = 0; i < nkv * D; i++) {
                dbl_store(k->k, t * nkv * D + i, rot[nq * D + i]);
                dbl_store(k->v, t * nkv * D + i, rot[(nq + nkv) * D + i]);
            }
        int64_t dst_row;
        if (k->page) {
            dst_row = (int64_t)dbl_load(k->idx, t);
            if (dst_row < 0) continue; /* padding token */
        } else {
            int64_t b = t / k->S;
            dst_row = b * k->c2 + (int64_t)dbl_load(k->idx, b) + t % k->S;
        }
        for (int64_t i = 0; i < nkv * D; i++) {
            double yk = rot[nq * D + i] / dbl_load(k->sk, i), yv = rot[(nq + nkv) * D + i] / dbl_load(k->sv, i);
            if (offsets) {
                yk += dbl_load(k->ok, i);
                yv += dbl_load(k->ov, i);
            }
            dbl_store(k->kc, dst_row * nkv * D + i, yk); /* int8 store: rint (ties to even) + saturation */
            dbl_store(k->vc, dst_row * nkv * D + i, yv);
        }
    }
    free(row);
    free(rot);
    return ACL_SUCCESS;
}

aclnnStatus aclnnDequantRopeQuantKvcacheGetWorkspaceSize(const aclTensor *x, const aclTensor *cos,
    const aclTensor *sin, aclTensor *kCacheRef, aclTensor *vCacheRef, const aclTensor *indices,
    const aclTensor *scaleK, const aclTensor *scaleV, const aclTensor *offsetKOptional,
    const aclTensor *offsetVOptional, const aclTensor *weightScaleOptional, const aclTensor *activationScaleOptional,
    const aclTensor *biasOptional, const aclIntArray *sizeSplits, char *quantModeOptional, char *layoutOptional,
    bool kvOutput, char *cacheModeOptional, const aclTensor *qOut, const aclTensor *kOut, const aclTensor *vOut,
    uint64_t *workspaceSize, aclOpExecutor **executor) {
    aclnnStatus st;
    if (!workspaceSize || !executor) return ACLNN_ERR_PARAM_NULLPTR;
    if ((st = dbl_check_tensor(API, "x", x, 1)) || (st = dbl_check_tensor(API, "cos", cos, 1)) ||
        (st = dbl_check_tensor(API, "sin", sin, 1)) || (st = dbl_check_tensor(API, "indices", indices, 1)) ||
        (st = dbl_check_tensor(API, "scaleK", scaleK, 1)) || (st = dbl_check_tensor(API, "scaleV", scaleV, 1)) ||
        (st = dbl_check_tensor(API, "offsetKOptional", offsetKOptional, 0)) ||
        (st = dbl_check_tensor(API, "offsetVOptional", offsetVOptional, 0)) ||
        (st = dbl_check_tensor(API, "weightScaleOptional", weightScaleOptional, 0)) ||
        (st = dbl_check_tensor(API, "activationScaleOptional", activationScaleOptional, 0)) ||
        (st = dbl_check_tensor(API, "biasOptional", biasOptional, 0)) ||
        (st = dbl_check_tensor(API, "qOut", qOut, 1)) || (st = dbl_check_tensor(API, "kOut", kOut, 1)) ||
        (st = dbl_check_tensor(API, "vOut", vOut, 1)))
        return st;
    if (!kCacheRef || !vCacheRef) return ACLNN_ERR_PARAM_NULLPTR;
    /* seed: caches "不支持非连续的Tensor" (checked before the generic tensor check names it) */
    if (!opdiff_double_is_live("tensor", kCacheRef) || !opdiff_double_is_live("tensor", vCacheRef))
        return dbl_reject(API, "kCacheRef/vCacheRef are not live aclTensors");
    if (!opdiff_double_contiguous(kCacheRef) || !opdiff_double_contiguous(vCacheRef))
        return dbl_reject(API, "kCacheRef/vCacheRef must be contiguous");
    if ((st = dbl_check_tensor(API, "kCacheRef", kCacheRef, 1)) || (st = dbl_check_tensor(API, "vCacheRef", vCacheRef, 1)))
        return st;
    if (x->ndim != 2 && x->ndim != 3) return dbl_reject(API, "x is %lu-D: only [B,S,H] or [B,H]", (unsigned long)x->ndim);
    if (x->dtype != ACL_FLOAT16 && x->dtype != ACL_BF16 && x->dtype != ACL_INT32)
        return dbl_reject(API, "x dtype %d: only FLOAT16, BFLOAT16, INT32", x->dtype);
    if (!is_float(cos->dtype)) return dbl_reject(API, "cos dtype %d: only FLOAT16, BFLOAT16", cos->dtype);
    if (sin->dtype != cos->dtype) return dbl_reject(API, "sin dtype %d differs from cos dtype %d", sin->dtype, cos->dtype);
    if (x->dtype != ACL_INT32 && cos->dtype != x->dtype)
        return dbl_reject(API, "x dtype %d must equal cos/sin dtype %d when x is not int32", x->dtype, cos->dtype);
    if (x->dtype == ACL_INT32 && !weightScaleOptional) return dbl_reject(API, "weightScaleOptional is required for int32 x");
    if (biasOptional && biasOptional->dtype != ACL_FLOAT && biasOptional->dtype != ACL_FLOAT16 &&
        biasOptional->dtype != ACL_INT32 && biasOptional->dtype != ACL_BF16)
        return dbl_reject(API, "biasOptional dtype %d: only FLOAT, FLOAT16, INT32, BFLOAT16", biasOptional->dtype);
    int64_t H = x->dims[x->ndim - 1], B = x->dims[0], S = x->ndim == 3 ? x->dims[1] : 1, T = B * S;
    if (H > 4096 || H % 64) return dbl_reject(API, "x last dim %ld must be <= 4096 and a multiple of 64", (long)H);
    if ((x->ndim == 3 && cos->ndim != 4) || (x->ndim == 2 && cos->ndim != 2))
        return dbl_reject(API, "cos/sin are %lu-D: [B,S,1,D] for 3-D x, [B,D] for 2-D x", (unsigned long)cos->ndim);
    if (kCacheRef->dtype != ACL_INT8 || vCacheRef->dtype != ACL_INT8) return dbl_reject(API, "kCacheRef/vCacheRef must be int8");
    if (kCacheRef->ndim != 4 || vCacheRef->ndim != 4) return dbl_reject(API, "kCacheRef/vCacheRef must be 4-D [C1,C2,Nkv,D]");
    int64_t c1 = kCacheRef->dims[0], c2 = kCacheRef->dims[1], nkv = kCacheRef->dims[2], D = kCacheRef->dims[3];
    for (int i = 0; i < 4; i++)
        if (vCacheRef->dims[i] != kCacheRef->dims[i]) return dbl_reject(API, "kCacheRef and vCacheRef shapes differ");
    if (!quantModeOptional || strcmp(quantModeOptional, "static") != 0)
        return dbl_reject(API, "quantModeOptional '%s': only static", quantModeOptional ? quantModeOptional : "(null)");
    if (!layoutOptional || strcmp(layoutOptional, "BSND") != 0)
        return dbl_reject(API, "layoutOptional '%s': only BSND", layoutOptional ? layoutOptional : "(null)");
    int page;
    if (cacheModeOptional && strcmp(cacheModeOptional, "page") == 0) page = 1;
    else if (cacheModeOptional && strcmp(cacheModeOptional, "contiguous") == 0) page = 0;
    else return dbl_reject(API, "cacheModeOptional '%s': only page and contiguous", cacheModeOptional ? cacheModeOptional : "(null)");
    const aclTensor *qp[] = {scaleK, scaleV, offsetKOptional, offsetVOptional};
    const char *qn[] = {"scaleK", "scaleV", "offsetKOptional", "offsetVOptional"};
    /* the tiling checks only the element count of the quant parameters (ops-transformer
     * dequant_rope_quant_kvcache_tiling.cpp:386-391): [Nkv, D] and a flat [Nkv * D] are both accepted */
    for (int i = 0; i < 4; i++)
        if (qp[i] && opdiff_double_numel(qp[i]) != nkv * D)
            return dbl_reject(API, "%s must hold Nkv * D = %ld values ([Nkv, D] or flat), has %ld", qn[i],
                              (long)(nkv * D), (long)opdiff_double_numel(qp[i]));
    if (!dbl_live_int_array(sizeSplits) || sizeSplits->size != 3)
        return dbl_reject(API, "sizeSplits must hold 3 values");
    const int64_t *sp = sizeSplits->values;
    if (sp[1] != nkv * D || sp[2] != nkv * D || sp[0] <= 0 || sp[0] % D || sp[0] + sp[1] + sp[2] != H)
        return dbl_reject(API, "sizeSplits [%ld, %ld, %ld] must be [Nq*D, Nkv*D, Nkv*D] with Nkv*D = %ld, sum = %ld",
                          (long)sp[0], (long)sp[1], (long)sp[2], (long)(nkv * D), (long)H);
    int64_t nq = sp[0] / D;
    if (D % 2) return dbl_reject(API, "head dim %ld must be even for rotate-half RoPE", (long)D);
    if (opdiff_double_numel(cos) != T * D || opdiff_double_numel(sin) != T * D)
        return dbl_reject(API, "cos/sin must hold one row of D per token");
    int64_t n_idx = opdiff_double_numel(indices);
    if (!page) {
        if (c1 < B) return dbl_reject(API, "contiguous: kCacheRef dim 0 (%ld) < x dim 0 (%ld)", (long)c1, (long)B);
        if (c2 < S) return dbl_reject(API, "contiguous: kCacheRef dim 1 (%ld) < S (%ld)", (long)c2, (long)S);
        if (n_idx != B) return dbl_reject(API, "contiguous: indices has %ld entries, needs one per batch (%ld)", (long)n_idx, (long)B);
        for (int64_t b = 0; b < B; b++) {
            int64_t i = (int64_t)dbl_load(indices, b);
            if (i < 0 || i > c2 - S)
                return dbl_reject(API, "contiguous: indices[%ld] = %ld outside [0, %ld]", (long)b, (long)i, (long)(c2 - S));
        }
    } else {
        if (n_idx != T) return dbl_reject(API, "page: indices has %ld entries, needs one per token (%ld)", (long)n_idx, (long)T);
        for (int64_t t = 0; t < T; t++) {
            int64_t i = (int64_t)dbl_load(indices, t);
            if (i >= c1 * c2) return dbl_reject(API, "page: indices[%ld] = %ld >= C1*C2 = %ld", (long)t, (long)i, (long)(c1 * c2));
            for (int64_t u = 0; i >= 0 && u < t; u++)
                if ((int64_t)dbl_load(indices, u) == i) return dbl_reject(API, "page: indices repeat slot %ld", (long)i);
        }
    }
    if (opdiff_double_numel(qOut) != T * nq * D || qOut->dtype != cos->dtype)
        return dbl_reject(API, "qOut must be [..., Nq, D] in the cos/sin dtype");
    /* With kvOutput false torch_npu passes kOut/vOut as {0}-shaped tensors (op-plugin
     * DequantRopeQuantKVCacheKernelNpuOpApi.cpp:78-81) and the kernel never writes them: only checked when written. */
    if (kvOutput && (opdiff_double_numel(kOut) != T * nkv * D || opdiff_double_numel(vOut) != T * nkv * D ||
                     kOut->dtype != cos->dtype || vOut->dtype != cos->dtype))
        return dbl_reject(API, "kOut/vOut must be [..., Nkv, D] in the cos/sin dtype when kvOutput is true");
    if (weightScaleOptional && opdiff_double_numel(weightScaleOptional) != H)
        return dbl_reject(API, "weightScaleOptional must hold H values");
    if (activationScaleOptional && opdiff_double_numel(activationScaleOptional) != T)
        return dbl_reject(API, "activationScaleOptional must hold one value per token");
    if (biasOptional && opdiff_double_numel(biasOptional) != H) return dbl_reject(API, "biasOptional must hold H values");
    Drq *k = calloc(1, sizeof *k);
    k->x = dbl_snapshot(x); k->cos = dbl_snapshot(cos); k->sin = dbl_snapshot(sin);
    k->kc = dbl_snapshot(kCacheRef); k->vc = dbl_snapshot(vCacheRef); k->idx = dbl_snapshot(indices);
    k->sk = dbl_snapshot(scaleK); k->sv = dbl_snapshot(scaleV);
    k->ok = dbl_snapshot(offsetKOptional); k->ov = dbl_snapshot(offsetVOptional);
    int int_x = x->dtype == ACL_INT32; /* weight/activation scales and bias only apply to int32 x */
    k->ws = int_x ? dbl_snapshot(weightScaleOptional) : NULL;
    k->as = int_x ? dbl_snapshot(activationScaleOptional) : NULL;
    k->bias = int_x ? dbl_snapshot(biasOptional) : NULL;
    k->q = dbl_snapshot(qOut); k->k = dbl_snapshot(kOut); k->v = dbl_snapshot(vOut);
    k->T = T; k->S = S; k->H = H; k->nq = nq; k->nkv = nkv; k->D = D; k->c2 = c2;
    k->page = page; k->kv_output = kvOutput;
    *workspaceSize = 1024; /* the double asks for a workspace: exercises the allocate-when->0 path */
    *executor = opdiff_double_new_executor("aclnnDequantRopeQuantKvcache", k, drop);
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnDequantRopeQuantKvcache(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                         aclrtStream stream) {
    return dbl_launch("aclnnDequantRopeQuantKvcache", executor, stream, workspace, workspaceSize, 1024, run, drop);
}
