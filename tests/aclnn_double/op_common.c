/* Shared helpers of the double's aclnn operators: validation, element access, the phase-2 launch path. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"

aclnnStatus dbl_reject(const char *api, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    opdiff_double_set_error("%s: %s", api, msg);
    return ACLNN_ERR_PARAM_INVALID;
}

aclnnStatus dbl_check_tensor(const char *api, const char *name, const aclTensor *t, int required) {
    if (!t) {
        if (!required) return ACLNN_SUCCESS;
        opdiff_double_set_error("%s: %s is a nullptr", api, name);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (!opdiff_double_is_live("tensor", t)) return dbl_reject(api, "%s is not a live aclTensor", name);
    if (!opdiff_double_itemsize(t->dtype)) return dbl_reject(api, "%s has unsupported dtype %d", name, t->dtype);
    if (!opdiff_double_contiguous(t)) return dbl_reject(api, "%s is not contiguous (the double's limit)", name);
    if (!dbl_still_on_device(t)) return dbl_reject(api, "%s data is not device memory", name);
    return ACLNN_SUCCESS;
}

int dbl_live_int_array(const aclIntArray *a) { return a && opdiff_double_is_live("int_array", a); }

static char *base(const aclTensor *t) { return (char *)t->data + t->offset * opdiff_double_itemsize(t->dtype); }

int dbl_still_on_device(const aclTensor *t) {
    size_t n = (size_t)opdiff_double_numel(t) * opdiff_double_itemsize(t->dtype);
    return n == 0 || (t->data && opdiff_double_is_device(base(t), n));
}

static float bf16_to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fff + ((u >> 16) & 1);                                         /* round to nearest even */
    return (uint16_t)(u >> 16);
}

double dbl_load(const aclTensor *t, int64_t i) {
    const char *p = base(t);
    switch (t->dtype) {
    case ACL_FLOAT: return ((const float *)p)[i];
    case ACL_DOUBLE: return ((const double *)p)[i];
    case ACL_FLOAT16: return (double)((const _Float16 *)p)[i];
    case ACL_BF16: return bf16_to_f(((const uint16_t *)p)[i]);
    case ACL_INT8: return ((const int8_t *)p)[i];
    case ACL_UINT8: return ((const uint8_t *)p)[i];
    case ACL_INT16: return ((const int16_t *)p)[i];
    case ACL_INT32: return ((const int32_t *)p)[i];
    case ACL_INT64: return (double)((const int64_t *)p)[i];
    case ACL_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return NAN;
    }
}

static double sat(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

void dbl_store(const aclTensor *t, int64_t i, double v) {
    char *p = base(t);
    switch (t->dtype) {
    case ACL_FLOAT: ((float *)p)[i] = (float)v; break;
    case ACL_DOUBLE: ((double *)p)[i] = v; break;
    case ACL_FLOAT16: ((_Float16 *)p)[i] = (_Float16)v; break; /* double -> half: one rounding (RNE) */
    case ACL_BF16: {
        /* double -> bf16 through float would round twice; exact for the double's inputs in practice but
         * go through the float only when it is exact */
        float f = (float)v;
        ((uint16_t *)p)[i] = f_to_bf16(f);
        break;
    }
    case ACL_INT8: ((int8_t *)p)[i] = (int8_t)sat(nearbyint(v), -128, 127); break;
    case ACL_UINT8: ((uint8_t *)p)[i] = (uint8_t)sat(nearbyint(v), 0, 255); break;
    case ACL_INT16: ((int16_t *)p)[i] = (int16_t)sat(nearbyint(v), -32768, 32767); break;
    case ACL_INT32: ((int32_t *)p)[i] = (int32_t)sat(nearbyint(v), -2147483648.0, 2147483647.0); break;
    case ACL_INT64: ((int64_t *)p)[i] = (int64_t)nearbyint(v); break;
    case ACL_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: break;
    }
}

aclTensor *dbl_snapshot(const aclTensor *t) {
    if (!t) return NULL;
    aclTensor *c = malloc(sizeof *c);
    *c = *t;
    return c;
}

aclnnStatus dbl_launch(const char *op, aclOpExecutor *executor, aclrtStream stream, void *workspace,
                       uint64_t workspaceSize, uint64_t needed, aclError (*run)(void *), void (*drop)(void *)) {
    void *payload = opdiff_double_executor_payload(executor, op);
    if (!payload) {
        opdiff_double_set_error("%s: executor is NULL, unknown, already consumed, or from another op", op);
        return ACLNN_ERR_INNER_NULLPTR;
    }
    opdiff_double_retire_executor(executor); /* phase 2 consumes a non-repeatable executor, even on failure */
    if (workspaceSize < needed || (needed && !opdiff_double_is_device(workspace, needed))) {
        drop(payload);
        opdiff_double_set_error("%s: workspace of %llu bytes needed (got %llu at %p)", op,
                                (unsigned long long)needed, (unsigned long long)workspaceSize, workspace);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (opdiff_double_take_fault("crash")) abort();
    if (opdiff_double_take_fault("launch")) {
        drop(payload);
        opdiff_double_set_error("%s: kernel launch failed (fault injected by the double)", op);
        return ACLNN_ERR_RUNTIME_ERROR;
    }
    aclError e = opdiff_double_enqueue(stream, run, payload, drop);
    return e == ACL_SUCCESS ? ACLNN_SUCCESS : ACLNN_ERR_RUNTIME_ERROR;
}
