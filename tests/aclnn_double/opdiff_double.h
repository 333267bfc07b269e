/*
 * A C test double of CANN (runtime, nnopbase, aclnn ops, ATB PagedCacheLoad) for opdiff's aclnn backend.
 *
 * Compiled against the REAL ACL headers shipped in the torch-npu wheel (torch_npu/include/acl/), so every
 * runtime entry point defined here must agree with CANN's prototype or the build fails. This header declares
 * only what those headers lack: nnopbase's acl_meta.h (aclTensor & co.), the aclnn status codes, the aclnn
 * op prototypes (from the seeds / shared/reference/acl_abi.md section 2 and 4), the ATB C API and atb::Context,
 * and the double's own control functions (fault injection, create/destroy counters).
 */
#ifndef OPDIFF_ACLNN_DOUBLE_H
#define OPDIFF_ACLNN_DOUBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl/acl.h"                        /* real: aclError, aclDataType, aclFormat, aclrt* prototypes */
#include "acl/error_codes/rt_error_codes.h" /* real: ACL_ERROR_RT_* */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- nnopbase acl_meta.h (acl_abi.md section 2) -------------------------------------------------------- */
typedef int32_t aclnnStatus;
typedef struct aclTensor aclTensor;
typedef struct aclIntArray aclIntArray;
typedef struct aclTensorList aclTensorList;
typedef struct aclOpExecutor aclOpExecutor;

aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t *stride,
                           int64_t offset, aclFormat format, const int64_t *storageDims, uint64_t storageDimsNum,
                           void *tensorData);
aclIntArray *aclCreateIntArray(const int64_t *value, uint64_t size);
aclTensorList *aclCreateTensorList(const aclTensor *const *value, uint64_t size);
aclnnStatus aclDestroyTensor(const aclTensor *tensor);
aclnnStatus aclDestroyIntArray(const aclIntArray *array);
aclnnStatus aclDestroyTensorList(const aclTensorList *array);
aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor *executor);
aclnnStatus aclnnInit(const char *configPath);

/* ---- aclnn status codes (nnopbase op_errno.h; acl_abi.md section 3) ------------------------------------ */
#define ACLNN_SUCCESS 0
#define ACLNN_ERR_PARAM_NULLPTR 161001
#define ACLNN_ERR_PARAM_INVALID 161002
#define ACLNN_ERR_RUNTIME_ERROR 361001
#define ACLNN_ERR_INNER 561000
#define ACLNN_ERR_INNER_NULLPTR 561103

/* ---- aclnn operators (prototypes from the seeds / acl_abi.md section 4) -------------------------------- */
aclnnStatus aclnnNsaCompressWithCacheGetWorkspaceSize(const aclTensor *input, const aclTensor *weight,
    const aclTensor *slotMapping, const aclIntArray *actSeqLenOptional, const aclTensor *blockTableOptional,
    char *layoutOptional, int64_t compressBlockSize, int64_t compressStride, int64_t actSeqLenType,
    int64_t pageBlockSize, aclTensor *outputCache, uint64_t *workspaceSize, aclOpExecutor **executor);
aclnnStatus aclnnNsaCompressWithCache(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                      aclrtStream stream);

aclnnStatus aclnnDequantRopeQuantKvcacheGetWorkspaceSize(const aclTensor *x, const aclTensor *cos,
    const aclTensor *sin, aclTensor *kCacheRef, aclTensor *vCacheRef, const aclTensor *indices,
    const aclTensor *scaleK, const aclTensor *scaleV, const aclTensor *offsetKOptional,
    const aclTensor *offsetVOptional, const aclTensor *weightScaleOptional, const aclTensor *activationScaleOptional,
    const aclTensor *biasOptional, const aclIntArray *sizeSplits, char *quantModeOptional, char *layoutOptional,
    bool kvOutput, char *cacheModeOptional, const aclTensor *qOut, const aclTensor *kOut, const aclTensor *vOut,
    uint64_t *workspaceSize, aclOpExecutor **executor);
aclnnStatus aclnnDequantRopeQuantKvcache(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                         aclrtStream stream);

aclnnStatus aclnnNsaSelectedAttentionGradGetWorkspaceSize(const aclTensor *query, const aclTensor *key,
    const aclTensor *value, const aclTensor *attentionOut, const aclTensor *attentionOutGrad,
    const aclTensor *softmaxMax, const aclTensor *softmaxSum, const aclTensor *topkIndices,
    const aclIntArray *actualSeqQLenOptional, const aclIntArray *actualSeqKvLenOptional,
    const aclTensor *attenMaskOptional, double scaleValue, int64_t selectedBlockSize, int64_t selectedBlockCount,
    int64_t headNum, char *inputLayout, int64_t sparseMode, const aclTensor *dqOut, const aclTensor *dkOut,
    const aclTensor *dvOut, uint64_t *workspaceSize, aclOpExecutor **executor);
aclnnStatus aclnnNsaSelectedAttentionGrad(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                          aclrtStream stream);

aclnnStatus aclnnIncreFlashAttentionV4GetWorkspaceSize(const aclTensor *query, const aclTensorList *key,
    const aclTensorList *value, const aclTensor *pseShift, const aclTensor *attenMask,
    const aclIntArray *actualSeqLengths, const aclTensor *dequantScale1, const aclTensor *quantScale1,
    const aclTensor *dequantScale2, const aclTensor *quantScale2, const aclTensor *quantOffset2,
    const aclTensor *antiquantScale, const aclTensor *antiquantOffset, const aclTensor *blocktable,
    const aclTensor *kvPaddingSize, int64_t numHeads, double scaleValue, char *inputLayout, int64_t numKeyValueHeads,
    int64_t blockSize, int64_t innerPrecise, const aclTensor *attentionOut, uint64_t *workspaceSize,
    aclOpExecutor **executor);
aclnnStatus aclnnIncreFlashAttentionV4(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                       aclrtStream stream);

/* ---- the double's internals, shared by its libraries (exported by the double's libascendcl.so) -------- */
/* Fault spec (also read from env OPDIFF_ACLNN_DOUBLE_FAULT): "" | "malloc:N" (the N-th aclrtMalloc from now
 * fails) | "launch" (phase 2 fails) | "sync_timeout" (aclrtSynchronizeStream times out) | "crash" (abort in
 * phase 2). */
void opdiff_double_set_fault(const char *spec);
const char *opdiff_double_fault(void);
int opdiff_double_take_fault(const char *name); /* 1 (and consume a one-shot count) if `name` is armed */
int64_t opdiff_double_live(const char *kind);    /* created - destroyed, per kind */
int64_t opdiff_double_created(const char *kind);
int64_t opdiff_double_bad_calls(void);           /* destroys of unknown/dead handles, frees of unknown memory */
void opdiff_double_reset_counters(void);
void opdiff_double_bad_call(const char *what);
void opdiff_double_set_error(const char *fmt, ...);
int opdiff_double_is_device(const void *p, size_t nbytes); /* inside one live aclrtMalloc block */
/* Handle registry: track a created handle of `kind`; untrack returns 1 if it was live (0: unknown or dead). */
void opdiff_double_track(const char *kind, const void *handle);
int opdiff_double_untrack(const char *kind, const void *handle);
int opdiff_double_is_live(const char *kind, const void *handle);
/* Queue `run(ctx)` on the stream; it runs at aclrtSynchronizeStream. `drop(ctx)` frees ctx (after run, or
 * when the queue is discarded). Returns an aclError. */
aclError opdiff_double_enqueue(aclrtStream stream, aclError (*run)(void *), void *ctx, void (*drop)(void *));
/* Calls of an entry point the tests watch ("aclrtMemset", "aclrtMemsetAsync"), and the bytes of the last. */
int64_t opdiff_double_calls(const char *api);
uint64_t opdiff_double_last_memset_bytes(void);
/* The order in which streams ran their tasks, one letter per task: 'M' memset (aclrtMemsetAsync), 'R' event
 * record, 'K' kernel (an aclnn phase 2 or an ATB launch). Copies at most cap-1 letters into out and clears the
 * trace; returns the number of letters recorded since the last read (more than copied if it overflowed). */
size_t opdiff_double_take_trace(char *out, size_t cap);

/* The tensor struct the double's ops read (real nnopbase's layout is private; nobody outside the double
 * looks inside). */
struct aclTensor {
    aclDataType dtype;
    aclFormat format;
    uint64_t ndim;
    int64_t dims[8];
    int64_t strides[8];
    int64_t offset;
    uint64_t storage_ndim;
    int64_t storage_dims[8];
    void *data;
    int in_list; /* owned by an aclTensorList */
};
struct aclIntArray {
    uint64_t size;
    int64_t *values;
};
struct aclTensorList {
    uint64_t size;
    aclTensor **items;
};
size_t opdiff_double_itemsize(aclDataType dt);
int64_t opdiff_double_numel(const aclTensor *t);
int opdiff_double_contiguous(const aclTensor *t);
/* Executors: phase 1 registers one; phase 2 consumes it (its payload moves to the stream task). */
struct aclOpExecutor {
    const char *op;
    void *payload;
    void (*free_payload)(void *);
};
aclOpExecutor *opdiff_double_new_executor(const char *op, void *payload, void (*free_payload)(void *));
void *opdiff_double_executor_payload(aclOpExecutor *e, const char *op); /* NULL if unknown/dead/other op */
void opdiff_double_retire_executor(aclOpExecutor *e);                   /* phase 2 consumed it */

#ifdef __cplusplus
} /* extern "C" */

/* ---- ATB (acl_abi.md section 1: include/atb/context.h, types.h, atb_acl.h) ------------------------------ */
namespace atb {
using Status = int32_t;
class Operation;
class Context {
public:
    virtual ~Context() = default;                                        /* vtable slots 0, 1 */
    virtual Status SetExecuteStream(aclrtStream stream) = 0;             /* slot 2 */
    virtual aclrtStream GetExecuteStream() const = 0;                    /* slot 3 */
    virtual Status SetAsyncTilingCopyStatus(bool enable) = 0;            /* slot 4 */
    virtual bool GetAsyncTilingCopyStatus() const = 0;                   /* slot 5 */
};
Status CreateContext(Context **context);
Status DestroyContext(Context *context);
Status DestroyOperation(Operation *operation);
/* ErrorType (types.h): the subset the double returns */
enum ErrorType : int {
    NO_ERROR = 0, ERROR_INVALID_PARAM = 1, ERROR_RT_FAIL = 4, ERROR_INVALID_IN_TENSOR_NUM = 5,
    ERROR_INVALID_TENSOR_DTYPE = 6, ERROR_INVALID_TENSOR_FORMAT = 7, ERROR_INVALID_TENSOR_DIM = 8,
    ERROR_INVALID_TENSOR_SIZE = 9, ERROR_INVALID_TENSOR_ADDR = 14, ERROR_INVALID_TENSOR_DIM_NUM = 16,
    ERROR_INVALID_CONTEXT_ADDR = 20, ERROR_INVALID_STREAM = 21,
    ERROR_INVALID_WORKSPACE_SIZE = 22, ERROR_INVALID_WORKSPACE_ADDR = 23, ERROR_INVALID_OPERATION_ADDR = 24,
};
} // namespace atb

extern "C" {
atb::Status AtbPagedCacheLoadGetWorkspaceSize(const aclTensor *keyCache, const aclTensor *valueCache,
    const aclTensor *blockTables, const aclTensor *contextLens, const aclTensor *key, const aclTensor *value,
    const aclTensor *seqStarts, int8_t kvCacheCfg, bool isSeqLensCumsumType, bool hasSeqStarts,
    uint64_t *workspaceSize, atb::Operation **op, atb::Context *context);
atb::Status AtbPagedCacheLoad(void *workspace, uint64_t workspaceSize, atb::Operation *op, atb::Context *context);
}
#endif /* __cplusplus */

#endif /* OPDIFF_ACLNN_DOUBLE_H */
