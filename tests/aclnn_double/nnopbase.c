/*
 * The double's libnnopbase.so: aclTensor / aclIntArray / aclTensorList as real structs, with the documented
 * semantics (acl_abi.md section 3): NULL only for NULL dims with a non-zero count, NULL stride = contiguous,
 * arrays copy the host buffer, destroy(NULL) = 0, a tensor list owns (and destroys) its tensors, a tensor
 * inside a list must not be destroyed on its own. Every create/destroy is counted; destroying a handle that
 * is not live (twice, or a list member) is a "bad call" the tests assert never happens.
 */
#include <stdlib.h>
#include <string.h>

#include "opdiff_double.h"

size_t opdiff_double_itemsize(aclDataType dt) {
    switch (dt) {
    case ACL_FLOAT: case ACL_INT32: case ACL_UINT32: return 4;
    case ACL_FLOAT16: case ACL_BF16: case ACL_INT16: case ACL_UINT16: return 2;
    case ACL_INT8: case ACL_UINT8: case ACL_BOOL: return 1;
    case ACL_INT64: case ACL_UINT64: case ACL_DOUBLE: return 8;
    default: return 0;
    }
}

int64_t opdiff_double_numel(const aclTensor *t) {
    int64_t n = 1;
    for (uint64_t i = 0; i < t->ndim; i++) n *= t->dims[i];
    return n;
}

int opdiff_double_contiguous(const aclTensor *t) {
    int64_t s = 1;
    for (uint64_t i = t->ndim; i-- > 0;) {
        if (t->dims[i] != 1 && t->strides[i] != s) return 0;
        s *= t->dims[i];
    }
    return 1;
}

aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t *stride,
                           int64_t offset, aclFormat format, const int64_t *storageDims, uint64_t storageDimsNum,
                           void *tensorData) {
    if ((viewDims == NULL && viewDimsNum > 0) || (storageDims == NULL && storageDimsNum > 0)) return NULL;
    if (viewDimsNum > 8 || storageDimsNum > 8) return NULL; /* the double's limit */
    aclTensor *t = calloc(1, sizeof *t);
    t->dtype = dataType;
    t->format = format;
    t->ndim = viewDimsNum;
    memcpy(t->dims, viewDims, viewDimsNum * sizeof(int64_t));
    if (stride) {
        memcpy(t->strides, stride, viewDimsNum * sizeof(int64_t));
    } else {
        int64_t s = 1;
        for (uint64_t i = viewDimsNum; i-- > 0;) { t->strides[i] = s; s *= t->dims[i]; }
    }
    t->offset = offset;
    t->storage_ndim = storageDimsNum;
    if (storageDimsNum) memcpy(t->storage_dims, storageDims, storageDimsNum * sizeof(int64_t));
    t->data = tensorData;
    opdiff_double_track("tensor", t);
    return t;
}

aclnnStatus aclDestroyTensor(const aclTensor *tensor) {
    if (!tensor) return ACLNN_SUCCESS;
    if (!opdiff_double_is_live("tensor", tensor)) {
        opdiff_double_bad_call("aclDestroyTensor of a tensor that is not live (destroyed twice?)");
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (tensor->in_list) {
        opdiff_double_bad_call("aclDestroyTensor of a tensor owned by an aclTensorList");
        return ACLNN_ERR_PARAM_INVALID;
    }
    opdiff_double_untrack("tensor", tensor);
    free((void *)tensor);
    return ACLNN_SUCCESS;
}

aclIntArray *aclCreateIntArray(const int64_t *value, uint64_t size) {
    if (value == NULL && size > 0) return NULL;
    aclIntArray *a = calloc(1, sizeof *a);
    a->size = size;
    a->values = calloc(size ? size : 1, sizeof(int64_t));
    if (size) memcpy(a->values, value, size * sizeof(int64_t)); /* copies: the caller's buffer may go away */
    opdiff_double_track("int_array", a);
    return a;
}

aclnnStatus aclDestroyIntArray(const aclIntArray *array) {
    if (!array) return ACLNN_SUCCESS;
    if (!opdiff_double_untrack("int_array", array)) {
        opdiff_double_bad_call("aclDestroyIntArray of an array that is not live");
        return ACLNN_ERR_PARAM_INVALID;
    }
    free(array->values);
    free((void *)array);
    return ACLNN_SUCCESS;
}

aclTensorList *aclCreateTensorList(const aclTensor *const *value, uint64_t size) {
    if (value == NULL && size > 0) return NULL;
    for (uint64_t i = 0; i < size; i++)
        if (!value[i] || !opdiff_double_is_live("tensor", value[i]) || value[i]->in_list) return NULL;
    aclTensorList *l = calloc(1, sizeof *l);
    l->size = size;
    l->items = calloc(size ? size : 1, sizeof(aclTensor *));
    for (uint64_t i = 0; i < size; i++) {
        l->items[i] = (aclTensor *)value[i];
        l->items[i]->in_list = 1;
    }
    opdiff_double_track("tensor_list", l);
    return l;
}

aclnnStatus aclDestroyTensorList(const aclTensorList *array) {
    if (!array) return ACLNN_SUCCESS;
    if (!opdiff_double_untrack("tensor_list", array)) {
        opdiff_double_bad_call("aclDestroyTensorList of a list that is not live");
        return ACLNN_ERR_PARAM_INVALID;
    }
    for (uint64_t i = 0; i < array->size; i++) { /* the list owns its tensors */
        opdiff_double_untrack("tensor", array->items[i]);
        free(array->items[i]);
    }
    free(array->items);
    free((void *)array);
    return ACLNN_SUCCESS;
}

aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor *executor) {
    if (!executor) return ACLNN_ERR_INNER_NULLPTR;
    if (!opdiff_double_untrack("executor", executor)) {
        opdiff_double_bad_call("aclDestroyAclOpExecutor of an executor that is not live (consumed by phase 2?)");
        return ACLNN_ERR_INNER;
    }
    if (executor->free_payload) executor->free_payload(executor->payload);
    free(executor);
    return ACLNN_SUCCESS;
}

aclnnStatus aclnnInit(const char *configPath) {
    (void)configPath;
    return ACLNN_SUCCESS;
}
