/*
 * The double's libatb.so: atb::CreateContext / DestroyContext / DestroyOperation (C++ symbols: this file is
 * compiled as C++ so the mangled names and the Context vtable come from the compiler, not from a string the
 * backend also holds) and the ATB C API of PagedCacheLoad (seed 003; shared/reference/ops.md section 4).
 *
 * GetWorkspaceSize validates the documented constraints (ATB error codes, acl_abi.md section 1) and the
 * tensor data it can see (device memory is host memory here), creates the Operation when *op == NULL and
 * returns a small workspace; the launch queues the gather on the context's execute stream.
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "opdiff_double.h"

namespace {
struct Plan;
}

namespace atb {
class Operation {
public:
    virtual ~Operation() = default;
    int8_t cfg = 1;
    bool cumsum = false, has_starts = false;
    Plan *plan = nullptr;
};
} // namespace atb

namespace {

struct ContextDouble : atb::Context {
    aclrtStream stream = nullptr;
    bool stream_set = false;
    bool async_tiling = false;
    atb::Status SetExecuteStream(aclrtStream s) override { stream = s; stream_set = true; return atb::NO_ERROR; }
    aclrtStream GetExecuteStream() const override { return stream; }
    atb::Status SetAsyncTilingCopyStatus(bool enable) override { async_tiling = enable; return atb::NO_ERROR; }
    bool GetAsyncTilingCopyStatus() const override { return async_tiling; }
};

/* Everything the kernel needs, copied by value at launch: ATB lets the caller destroy the operation and the
 * tensors right after the launch (torch_npu does), before the stream runs it. */
struct Plan {
    const char *kc, *vc;
    char *k, *v;
    std::vector<int32_t> lens, out_start, block_off, table;
    int64_t batch = 0, mb = 0, bs = 0, nb = 0, hk = 0, hv = 0, c0k = 0, c0v = 0, total = 0;
    size_t isk = 0, isv = 0;
    bool nz = false;
    size_t kc_bytes = 0, vc_bytes = 0, k_bytes = 0, v_bytes = 0;
    uint64_t workspace = 0;
};

atb::Status fail(atb::Status st, const char *fmt, const char *what, long long a = 0, long long b = 0) {
    char buf[400];
    std::snprintf(buf, sizeof buf, fmt, what, a, b);
    opdiff_double_set_error("AtbPagedCacheLoadGetWorkspaceSize: %s", buf);
    return st;
}

bool live(const aclTensor *t) { return t && opdiff_double_is_live("tensor", t); }

size_t nbytes(const aclTensor *t) { return (size_t)opdiff_double_numel(t) * opdiff_double_itemsize(t->dtype); }

bool on_device(const aclTensor *t) {
    return nbytes(t) == 0 || (t->data && opdiff_double_is_device((const char *)t->data +
                                                                 t->offset * opdiff_double_itemsize(t->dtype),
                                                                 nbytes(t)));
}

const char *data_of(const aclTensor *t) {
    return (const char *)t->data + t->offset * opdiff_double_itemsize(t->dtype);
}

bool cache_dtype(aclDataType d) { return d == ACL_FLOAT16 || d == ACL_BF16 || d == ACL_INT8; }

/* Validate and plan; returns NO_ERROR or an ATB status with the message set. */
atb::Status plan_load(const aclTensor *kc, const aclTensor *vc, const aclTensor *bt, const aclTensor *cl,
                      const aclTensor *k, const aclTensor *v, const aclTensor *ss, int8_t cfg, bool cumsum,
                      bool has_ss, Plan &p) {
    const aclTensor *req[] = {kc, vc, bt, cl, k, v};
    const char *names[] = {"keyCache", "valueCache", "blockTables", "contextLens", "key", "value"};
    for (int i = 0; i < 6; i++)
        if (!live(req[i])) return fail(atb::ERROR_INVALID_PARAM, "%s is NULL or not a live aclTensor", names[i]);
    if (has_ss && !live(ss)) return fail(atb::ERROR_INVALID_PARAM, "%s: hasSeqStarts but seqStarts is NULL", "seqStarts");
    if (cfg != 0 && cfg != 1) return fail(atb::ERROR_INVALID_PARAM, "%s %lld is not 0 (NZ) or 1 (ND)", "kvCacheCfg", cfg);
    /* CreateOperation<PagedCacheLoadParam> refuses NZ with either flag before any tensor is looked at (ATB
     * paged_cache_load_operation.cpp, "foramt NZ donot support hasSeqStarts=true or isSeqLensCumsumMode=true") */
    if (cfg == 0 && (has_ss || cumsum))
        return fail(atb::ERROR_INVALID_PARAM, "%s: format NZ does not support hasSeqStarts=true or "
                    "isSeqLensCumsumMode=true (has %lld, cumsum %lld)", "CreateOperation", has_ss, cumsum);
    /* The C wrapper packs seqStarts into the variant pack only when hasSeqStarts (ATB
     * atb_acl_paged_cache_load.cpp:41-45): 6 in-tensors without it, 7 with it. GetInputNum is 6 for NZ and always 7
     * for ND (paged_cache_load_operation.cpp:93-99), and CheckVariantPack compares the two first
     * (operation_base.cpp:369-375): ND without seqStarts is refused with ERROR_INVALID_IN_TENSOR_NUM although the op
     * info (atb_ops_info.ini:7199-7202) and the seed document seqStarts as optional. */
    {
        long long packed = has_ss ? 7 : 6, expected = cfg == 0 ? 6 : 7;
        if (packed != expected)
            return fail(atb::ERROR_INVALID_IN_TENSOR_NUM, "%s: variantPack.inTensors.size: %lld is not equal "
                        "GetInputNum: %lld", "PagedCacheLoadOperation", packed, expected);
    }
    for (int i = 0; i < 6; i++) {
        if (!opdiff_double_contiguous(req[i])) return fail(atb::ERROR_INVALID_PARAM, "%s is not contiguous", names[i]);
        if (!on_device(req[i])) return fail(atb::ERROR_INVALID_TENSOR_ADDR, "%s data is not device memory", names[i]);
    }
    /* seed: keyCache/valueCache float16/bf16/int8 */
    if (!cache_dtype(kc->dtype) || !cache_dtype(vc->dtype))
        return fail(atb::ERROR_INVALID_TENSOR_DTYPE, "%s dtypes %lld/%lld: only float16, bf16, int8",
                    "keyCache/valueCache", kc->dtype, vc->dtype);
    p.nz = cfg == 0;
    /* ops.md#4: ND needs equal K/V dtypes; NZ allows int8 K with float16/bf16 V */
    if (kc->dtype != vc->dtype && !(p.nz && kc->dtype == ACL_INT8 && vc->dtype != ACL_INT8))
        return fail(atb::ERROR_INVALID_TENSOR_DTYPE, "%s dtype %lld with valueCache dtype %lld is not supported",
                    "keyCache", kc->dtype, vc->dtype);
    if (k->dtype != kc->dtype || v->dtype != vc->dtype)
        return fail(atb::ERROR_INVALID_TENSOR_DTYPE, "%s dtypes must equal the cache dtypes", "key/value");
    /* seed: blockTables/contextLens/seqStarts int32 */
    if (bt->dtype != ACL_INT32 || cl->dtype != ACL_INT32 || (has_ss && ss->dtype != ACL_INT32))
        return fail(atb::ERROR_INVALID_TENSOR_DTYPE, "%s must be int32", "blockTables/contextLens/seqStarts");
    aclFormat want = p.nz ? ACL_FORMAT_FRACTAL_NZ : ACL_FORMAT_ND;
    if (kc->format != want || vc->format != want)
        return fail(atb::ERROR_INVALID_TENSOR_FORMAT, "%s format %lld does not match kvCacheCfg (want %lld)",
                    "keyCache/valueCache", kc->format, want);
    if (kc->ndim != 4 || vc->ndim != 4) return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s must be 4-D", "keyCache/valueCache");
    /* SetupCheckImpl (paged_cache_load_operation.cpp:128-134): an NZ cache [nb, H/C0, bs, C0] needs key/value whose
     * dim 1 is H = dims[1] * dims[3]; an ND cache [nb, bs, N, D] needs dims 1, 2 = N, D. Then the dim-count check
     * (:213-220 NZ, 2-D; ND, 3-D) returns ERROR_INVALID_TENSOR_DIM_NUM. torch_npu's functional wrapper allocates
     * [T, bs, C0] for NZ (op-plugin PagedCacheLoadAtb.cpp:69-70), which fails here. */
    if (k->ndim < 2 || v->ndim < 2)
        return fail(atb::ERROR_INVALID_TENSOR_DIM_NUM, "%s: invalid intensor dimNum (key %lld-D, value %lld-D)",
                    "PagedCacheLoadOperation", (long long)k->ndim, (long long)v->ndim);
    if (cfg == 0) {
        if (k->dims[1] != kc->dims[1] * kc->dims[3] || v->dims[1] != vc->dims[1] * vc->dims[3])
            return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s: the last dimension of outTensors needs to remain aligned "
                        "(key dim 1 is %lld, want %lld)", "PagedCacheLoadOperation", k->dims[1],
                        kc->dims[1] * kc->dims[3]);
        if (k->ndim != 2 || v->ndim != 2)
            return fail(atb::ERROR_INVALID_TENSOR_DIM_NUM, "%s: invalid intensor dimNum (NZ key/value must be 2-D, "
                        "key is %lld-D, value %lld-D)", "PagedCacheLoadOperation", (long long)k->ndim, (long long)v->ndim);
    } else {
        if (k->ndim != 3 || v->ndim != 3)
            return fail(atb::ERROR_INVALID_TENSOR_DIM_NUM, "%s: invalid intensor dimNum (ND key/value must be 3-D, "
                        "key is %lld-D, value %lld-D)", "PagedCacheLoadOperation", (long long)k->ndim, (long long)v->ndim);
        if (k->dims[1] != kc->dims[2] || k->dims[2] != kc->dims[3] || v->dims[1] != vc->dims[2] ||
            v->dims[2] != vc->dims[3])
            return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s: the last dimension of outTensors needs to remain aligned "
                        "(key dim 1 is %lld, want %lld)", "PagedCacheLoadOperation", k->dims[1], kc->dims[2]);
    }
    p.isk = opdiff_double_itemsize(kc->dtype);
    p.isv = opdiff_double_itemsize(vc->dtype);
    p.nb = kc->dims[0];
    if (p.nz) { /* [nb, H/C0, bs, C0], C0 = 32 for int8 else 16 (seed: elenum_aligned) */
        p.c0k = kc->dtype == ACL_INT8 ? 32 : 16;
        p.c0v = vc->dtype == ACL_INT8 ? 32 : 16;
        if (kc->dims[3] != p.c0k || vc->dims[3] != p.c0v)
            return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s NZ last dims %lld/%lld must be the fractal width",
                        "keyCache/valueCache", kc->dims[3], vc->dims[3]);
        p.bs = kc->dims[2];
        p.hk = kc->dims[1] * p.c0k;
        p.hv = vc->dims[1] * p.c0v;
        if (vc->dims[2] != p.bs) return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s block sizes differ", "keyCache/valueCache");
    } else { /* [nb, bs, N, D] */
        p.bs = kc->dims[1];
        p.hk = kc->dims[2] * kc->dims[3];
        p.hv = vc->dims[2] * vc->dims[3];
        if (vc->dims[1] != p.bs || vc->dims[2] != kc->dims[2])
            return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s block size / heads differ", "keyCache/valueCache");
    }
    if (vc->dims[0] != p.nb) return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s num_blocks differ", "keyCache/valueCache");
    /* seed/ops.md#4: N*D*sizeof(T) % 32 == 0 */
    if ((p.hk * (long long)p.isk) % 32 || (p.hv * (long long)p.isv) % 32)
        return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s token bytes %lld/%lld not 32-byte aligned", "keyCache/valueCache",
                    p.hk * (long long)p.isk, p.hv * (long long)p.isv);
    if (p.nz) {
        if (p.bs % 16) return fail(atb::ERROR_INVALID_PARAM, "%s %lld must be a multiple of 16 for NZ", "block_size", p.bs);
        long long mx = p.hk * (long long)p.isk > p.hv * (long long)p.isv ? p.hk * (long long)p.isk : p.hv * (long long)p.isv;
        if (mx > 147456) /* ops.md#4 NZ tiling bound on one token's bytes */
            return fail(atb::ERROR_INVALID_PARAM, "%s %lld > 147456 for NZ", "token bytes", mx);
    }
    if (bt->ndim != 2) return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s must be 2-D", "blockTables");
    p.batch = bt->dims[0];
    p.mb = bt->dims[1];
    int64_t want_len = p.batch + (cumsum ? 1 : 0);
    if (cl->ndim != 1 || cl->dims[0] != want_len)
        return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s length %lld, expected %lld ([batch] or [batch+1] in cumsum mode)",
                    "contextLens", cl->ndim == 1 ? cl->dims[0] : -1, want_len);
    if (has_ss && (ss->ndim != 1 || ss->dims[0] != p.batch))
        return fail(atb::ERROR_INVALID_TENSOR_DIM, "%s must be [batch] (batch %lld)", "seqStarts", p.batch);
    const int32_t *clv = (const int32_t *)data_of(cl), *btv = (const int32_t *)data_of(bt);
    const int32_t *ssv = has_ss ? (const int32_t *)data_of(ss) : nullptr;
    p.table.assign(btv, btv + p.batch * p.mb);
    for (int64_t i = 0; i < p.batch * p.mb; i++)
        if (btv[i] < 0 || btv[i] >= p.nb)
            return fail(atb::ERROR_INVALID_PARAM, "%s holds block id %lld outside [0, %lld)", "blockTables", btv[i], p.nb);
    int64_t run = 0;
    for (int64_t b = 0; b < p.batch; b++) {
        int32_t len = cumsum ? clv[b + 1] - clv[b] : clv[b];
        int32_t start = cumsum ? clv[b] : (int32_t)run;
        if (len < 0) return fail(atb::ERROR_INVALID_PARAM, "%s: batch %lld has negative length %lld", "contextLens", b, len);
        int32_t off = 0;
        if (has_ss) {
            if (ssv[b] < 0) return fail(atb::ERROR_INVALID_PARAM, "%s: batch %lld starts at %lld", "seqStarts", b, ssv[b]);
            off = ssv[b] / (int32_t)p.bs; /* ops.md#4: the kernel floors seqStarts to a block */
        }
        /* seed: blockTables [len(contextLens), (max(contextLens) - 1) // block_size + 1] */
        if (off + (len + p.bs - 1) / p.bs > p.mb)
            return fail(atb::ERROR_INVALID_PARAM, "%s: batch %lld needs %lld entries of the block table",
                        "contextLens", b, off + (len + p.bs - 1) / p.bs);
        p.lens.push_back(len);
        p.out_start.push_back(start);
        p.block_off.push_back(off);
        run += len;
        if (start + len > p.total) p.total = start + len;
    }
    if (opdiff_double_numel(k) != p.total * p.hk || opdiff_double_numel(v) != p.total * p.hv)
        return fail(atb::ERROR_INVALID_TENSOR_SIZE, "%s: %lld tokens expected (key has %lld elements)", "key/value",
                    p.total, opdiff_double_numel(k));
    p.kc = data_of(kc);
    p.vc = data_of(vc);
    p.k = (char *)data_of(k);
    p.v = (char *)data_of(v);
    p.kc_bytes = nbytes(kc);
    p.vc_bytes = nbytes(vc);
    p.k_bytes = nbytes(k);
    p.v_bytes = nbytes(v);
    p.workspace = 32 * (uint64_t)(p.batch + 1); /* "tiling data": makes the caller allocate a workspace */
    return atb::NO_ERROR;
}

void gather(const Plan &p, const char *cache, char *out, int64_t h, int64_t c0, size_t is) {
    for (int64_t b = 0; b < p.batch; b++) {
        for (int32_t j = 0; j < p.lens[b]; j++) {
            int64_t blk = p.table[b * p.mb + p.block_off[b] + j / p.bs], slot = j % p.bs;
            char *dst = out + (size_t)(p.out_start[b] + j) * h * is;
            if (!p.nz) {
                std::memcpy(dst, cache + (size_t)(blk * p.bs + slot) * h * is, h * is);
            } else {
                int64_t h1n = h / c0;
                for (int64_t h1 = 0; h1 < h1n; h1++)
                    std::memcpy(dst + h1 * c0 * is, cache + (size_t)(((blk * h1n + h1) * p.bs + slot) * c0) * is, c0 * is);
            }
        }
    }
}

aclError run_plan(void *ctx) {
    Plan *p = (Plan *)ctx;
    if (!opdiff_double_is_device(p->kc, p->kc_bytes) || !opdiff_double_is_device(p->vc, p->vc_bytes) ||
        !opdiff_double_is_device(p->k, p->k_bytes) || !opdiff_double_is_device(p->v, p->v_bytes)) {
        opdiff_double_set_error("PagedCacheLoad kernel: device memory freed before the stream ran it");
        return ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    gather(*p, p->kc, p->k, p->hk, p->c0k, p->isk);
    gather(*p, p->vc, p->v, p->hv, p->c0v, p->isv);
    return ACL_SUCCESS;
}

void drop_plan(void *ctx) { delete (Plan *)ctx; }

} // namespace

namespace atb {
Status CreateContext(Context **context) {
    if (!context) return ERROR_INVALID_PARAM;
    auto *c = new ContextDouble();
    opdiff_double_track("atb_context", static_cast<Context *>(c));
    *context = c;
    return NO_ERROR;
}

Status DestroyContext(Context *context) {
    if (!context) return NO_ERROR;
    if (!opdiff_double_untrack("atb_context", context)) {
        opdiff_double_bad_call("atb::DestroyContext of a context that is not live");
        return ERROR_INVALID_CONTEXT_ADDR;
    }
    delete context;
    return NO_ERROR;
}

Status DestroyOperation(Operation *operation) {
    if (!operation) return NO_ERROR;
    if (!opdiff_double_untrack("atb_operation", operation)) {
        opdiff_double_bad_call("atb::DestroyOperation of an operation that is not live");
        return ERROR_INVALID_OPERATION_ADDR;
    }
    delete operation->plan;
    delete operation;
    return NO_ERROR;
}
} // namespace atb

extern "C" {
atb::Status AtbPagedCacheLoadGetWorkspaceSize(const aclTensor *keyCache, const aclTensor *valueCache,
    const aclTensor *blockTables, const aclTensor *contextLens, const aclTensor *key, const aclTensor *value,
    const aclTensor *seqStarts, int8_t kvCacheCfg, bool isSeqLensCumsumType, bool hasSeqStarts,
    uint64_t *workspaceSize, atb::Operation **op, atb::Context *context) {
    if (!context || !opdiff_double_is_live("atb_context", context)) {
        opdiff_double_set_error("AtbPagedCacheLoadGetWorkspaceSize: context is not a live atb::Context");
        return atb::ERROR_INVALID_CONTEXT_ADDR;
    }
    if (!workspaceSize || !op) return atb::ERROR_INVALID_PARAM;
    if (*op && !opdiff_double_is_live("atb_operation", *op)) {
        opdiff_double_set_error("AtbPagedCacheLoadGetWorkspaceSize: *op is neither NULL nor a live operation "
                                "(initialize it to NULL)");
        return atb::ERROR_INVALID_OPERATION_ADDR;
    }
    auto *plan = new Plan();
    atb::Status st = plan_load(keyCache, valueCache, blockTables, contextLens, key, value, seqStarts, kvCacheCfg,
                               isSeqLensCumsumType, hasSeqStarts, *plan);
    if (st != atb::NO_ERROR) {
        delete plan;
        return st;
    }
    if (!*op) { /* ATB creates the operation when *op == NULL; the caller destroys it */
        *op = new atb::Operation();
        opdiff_double_track("atb_operation", *op);
    }
    delete (*op)->plan;
    (*op)->plan = plan;
    (*op)->cfg = kvCacheCfg;
    *workspaceSize = plan->workspace;
    return atb::NO_ERROR;
}

atb::Status AtbPagedCacheLoad(void *workspace, uint64_t workspaceSize, atb::Operation *op, atb::Context *context) {
    if (!op || !opdiff_double_is_live("atb_operation", op) || !op->plan) {
        opdiff_double_set_error("AtbPagedCacheLoad: operation is NULL or not live");
        return atb::ERROR_INVALID_OPERATION_ADDR;
    }
    if (!context || !opdiff_double_is_live("atb_context", context)) return atb::ERROR_INVALID_CONTEXT_ADDR;
    auto *ctx = static_cast<ContextDouble *>(context);
    if (!ctx->stream_set) {
        opdiff_double_set_error("AtbPagedCacheLoad: the context has no execute stream (SetExecuteStream not called)");
        return atb::ERROR_INVALID_STREAM;
    }
    if (workspaceSize < op->plan->workspace) {
        opdiff_double_set_error("AtbPagedCacheLoad: workspace %llu < %llu", (unsigned long long)workspaceSize,
                                (unsigned long long)op->plan->workspace);
        return atb::ERROR_INVALID_WORKSPACE_SIZE;
    }
    if (op->plan->workspace && !opdiff_double_is_device(workspace, op->plan->workspace)) {
        opdiff_double_set_error("AtbPagedCacheLoad: workspace is not device memory");
        return atb::ERROR_INVALID_WORKSPACE_ADDR;
    }
    if (opdiff_double_take_fault("crash")) std::abort();
    if (opdiff_double_take_fault("launch")) {
        opdiff_double_set_error("AtbPagedCacheLoad: kernel launch failed (fault injected by the double)");
        return atb::ERROR_RT_FAIL;
    }
    Plan *copy = new Plan(*op->plan);
    aclError e = opdiff_double_enqueue(ctx->stream, run_plan, copy, drop_plan);
    return e == ACL_SUCCESS ? atb::NO_ERROR : atb::ERROR_RT_FAIL;
}
}
