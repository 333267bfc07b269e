/* Helpers shared by the double's aclnn operators (op_*.c). */
#ifndef OPDIFF_DOUBLE_OPS_COMMON_H
#define OPDIFF_DOUBLE_OPS_COMMON_H
#include "opdiff_double.h"

/* Set the error text "<api>: <message>" and return ACLNN_ERR_PARAM_INVALID (161002). */
aclnnStatus dbl_reject(const char *api, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0 if `t` is usable (live, contiguous, data in device memory); else sets the error and returns 161001/161002.
 * A NULL `t` is fine when !required. */
aclnnStatus dbl_check_tensor(const char *api, const char *name, const aclTensor *t, int required);
int dbl_live_int_array(const aclIntArray *a);
/* element access as double; store rounds to the tensor's dtype (round to nearest even, saturating ints) */
double dbl_load(const aclTensor *t, int64_t i);
void dbl_store(const aclTensor *t, int64_t i, double v);
/* the data of a tensor still in device memory at kernel time (NULL otherwise) */
int dbl_still_on_device(const aclTensor *t);
/* A snapshot of a tensor for a queued kernel (tensors may be destroyed before the stream runs). */
aclTensor *dbl_snapshot(const aclTensor *t);
/* Phase 2 common path: take the executor's payload, honour faults, queue run(payload). */
aclnnStatus dbl_launch(const char *op, aclOpExecutor *executor, aclrtStream stream, void *workspace,
                       uint64_t workspaceSize, uint64_t needed, aclError (*run)(void *), void (*drop)(void *));
#endif
