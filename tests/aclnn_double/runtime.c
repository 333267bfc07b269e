/*
 * The double's libascendcl.so: aclInit/aclFinalize, aclGetRecentErrMsg, devices, streams, device memory,
 * events; plus the double's shared internals (handle registry, counters, fault injection, error text).
 *
 * Device memory is host memory, registered so that copies can check their kind against the addresses.
 * Streams are task queues: work launched on a stream runs at aclrtSynchronizeStream (so a caller that
 * copies results back before synchronizing reads stale data, as on a device). Events are timestamped with
 * CLOCK_MONOTONIC when their record task runs. aclrtMemsetAsync is a stream task too; the order in which
 * tasks run is kept as a trace (opdiff_double_take_trace) so tests can see where a cache flush ran relative
 * to the timing events.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opdiff_double.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
#define LOCK() pthread_mutex_lock(&g_lock)
#define UNLOCK() pthread_mutex_unlock(&g_lock)

/* ---- error text: thread-level, read-and-clear (acl_abi.md: aclGetRecentErrMsg) ------------------------- */
static __thread char t_err[1024];
static __thread char t_err_out[1024];
static __thread int t_has_err;

void opdiff_double_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
    t_has_err = 1;
}

const char *aclGetRecentErrMsg(void) {
    if (!t_has_err) return NULL;
    memcpy(t_err_out, t_err, sizeof t_err_out);
    t_has_err = 0;
    return t_err_out;
}

/* ---- handle registry and counters ---------------------------------------------------------------------- */
typedef struct { const char *kind; const void *handle; } Entry;
static Entry *g_live;
static size_t g_nlive, g_caplive;
typedef struct { char kind[32]; int64_t created, destroyed; } Counter;
static Counter g_counters[32];
static int g_ncounters;
static int64_t g_bad_calls;

static Counter *counter(const char *kind) { /* caller holds the lock */
    for (int i = 0; i < g_ncounters; i++)
        if (strcmp(g_counters[i].kind, kind) == 0) return &g_counters[i];
    if (g_ncounters == 32) abort();
    Counter *c = &g_counters[g_ncounters++];
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    c->created = c->destroyed = 0;
    return c;
}

void opdiff_double_track(const char *kind, const void *handle) {
    LOCK();
    if (g_nlive == g_caplive) {
        g_caplive = g_caplive ? 2 * g_caplive : 256;
        g_live = realloc(g_live, g_caplive * sizeof *g_live);
    }
    g_live[g_nlive].kind = kind;
    g_live[g_nlive++].handle = handle;
    counter(kind)->created++;
    UNLOCK();
}

static long find_live(const char *kind, const void *handle) { /* caller holds the lock */
    for (size_t i = g_nlive; i-- > 0;)
        if (g_live[i].handle == handle && strcmp(g_live[i].kind, kind) == 0) return (long)i;
    return -1;
}

int opdiff_double_untrack(const char *kind, const void *handle) {
    LOCK();
    long i = find_live(kind, handle);
    if (i >= 0) {
        g_live[i] = g_live[--g_nlive];
        counter(kind)->destroyed++;
    }
    UNLOCK();
    return i >= 0;
}

int opdiff_double_is_live(const char *kind, const void *handle) {
    LOCK();
    long i = find_live(kind, handle);
    UNLOCK();
    return i >= 0;
}

int64_t opdiff_double_live(const char *kind) {
    LOCK();
    Counter *c = counter(kind);
    int64_t n = c->created - c->destroyed;
    UNLOCK();
    return n;
}

int64_t opdiff_double_created(const char *kind) {
    LOCK();
    int64_t n = counter(kind)->created;
    UNLOCK();
    return n;
}

int64_t opdiff_double_bad_calls(void) { return g_bad_calls; }

void opdiff_double_bad_call(const char *what) {
    LOCK();
    g_bad_calls++;
    UNLOCK();
    opdiff_double_set_error("double: bad call: %s", what);
}

void opdiff_double_reset_counters(void) {
    LOCK();
    for (int i = 0; i < g_ncounters; i++) g_counters[i].created = g_counters[i].destroyed = 0;
    g_bad_calls = 0;
    /* handles still live keep counting as created */
    for (size_t i = 0; i < g_nlive; i++) counter(g_live[i].kind)->created++;
    UNLOCK();
}

/* ---- fault injection ----------------------------------------------------------------------------------- */
static char g_fault[64];
static long g_fault_countdown; /* for malloc:N */
static int g_fault_loaded;

static void load_fault_env(void) { /* caller holds the lock */
    if (g_fault_loaded) return;
    g_fault_loaded = 1;
    const char *env = getenv("OPDIFF_ACLNN_DOUBLE_FAULT");
    if (env) {
        snprintf(g_fault, sizeof g_fault, "%s", env);
        g_fault_countdown = strncmp(g_fault, "malloc:", 7) == 0 ? atol(g_fault + 7) : 0;
    }
}

void opdiff_double_set_fault(const char *spec) {
    LOCK();
    g_fault_loaded = 1;
    snprintf(g_fault, sizeof g_fault, "%s", spec ? spec : "");
    g_fault_countdown = strncmp(g_fault, "malloc:", 7) == 0 ? atol(g_fault + 7) : 0;
    UNLOCK();
}

const char *opdiff_double_fault(void) {
    LOCK();
    load_fault_env();
    UNLOCK();
    return g_fault;
}

int opdiff_double_take_fault(const char *name) {
    int hit = 0;
    LOCK();
    load_fault_env();
    size_t n = strlen(name);
    if (strncmp(g_fault, name, n) == 0 && (g_fault[n] == '\0' || g_fault[n] == ':')) {
        if (g_fault[n] == ':') {
            if (--g_fault_countdown <= 0) hit = 1;
        } else {
            hit = 1;
        }
        if (hit) g_fault[0] = '\0'; /* one-shot: the run can continue after the fault */
    }
    UNLOCK();
    return hit;
}

/* ---- call counters and the stream trace (what the timing tests watch) ---------------------------------- */
typedef struct { char api[32]; int64_t n; } CallCount;
static CallCount g_calls[8];
static int g_ncalls;
static uint64_t g_last_memset_bytes;

static void count_call(const char *api) {
    LOCK();
    int i = 0;
    while (i < g_ncalls && strcmp(g_calls[i].api, api) != 0) i++;
    if (i == g_ncalls) {
        if (g_ncalls == 8) abort();
        snprintf(g_calls[g_ncalls++].api, sizeof g_calls[0].api, "%s", api);
    }
    g_calls[i].n++;
    UNLOCK();
}

int64_t opdiff_double_calls(const char *api) {
    int64_t n = 0;
    LOCK();
    for (int i = 0; i < g_ncalls; i++)
        if (strcmp(g_calls[i].api, api) == 0) n = g_calls[i].n;
    UNLOCK();
    return n;
}

uint64_t opdiff_double_last_memset_bytes(void) { return g_last_memset_bytes; }

static char g_trace[1 << 16];
static size_t g_ntrace;

static void trace(char c) { /* caller holds the lock */
    if (g_ntrace < sizeof g_trace) g_trace[g_ntrace] = c;
    g_ntrace++;
}

size_t opdiff_double_take_trace(char *out, size_t cap) {
    LOCK();
    size_t n = g_ntrace, k = n < sizeof g_trace ? n : sizeof g_trace;
    if (out && cap) {
        if (k > cap - 1) k = cap - 1;
        memcpy(out, g_trace, k);
        out[k] = '\0';
    }
    g_ntrace = 0;
    UNLOCK();
    return n;
}

/* ---- init, device (per thread) ------------------------------------------------------------------------- */
static int g_inited;
static __thread int t_device = -1;

aclError aclInit(const char *configPath) {
    (void)configPath;
    LOCK();
    int again = g_inited;
    g_inited = 1;
    UNLOCK();
    if (again) {
        opdiff_double_set_error("aclInit: repeat initialize");
        return ACL_ERROR_REPEAT_INITIALIZE;
    }
    return ACL_SUCCESS;
}

aclError aclFinalize(void) {
    LOCK();
    int was = g_inited;
    g_inited = 0;
    UNLOCK();
    return was ? ACL_SUCCESS : ACL_ERROR_REPEAT_FINALIZE;
}

aclError aclrtSetDevice(int32_t deviceId) {
    if (!g_inited) {
        opdiff_double_set_error("aclrtSetDevice: aclInit was not called");
        return ACL_ERROR_UNINITIALIZE;
    }
    if (deviceId != 0) { /* the double has one device */
        opdiff_double_set_error("aclrtSetDevice: invalid device id %d (1 device)", deviceId);
        return ACL_ERROR_RT_INVALID_DEVICEID;
    }
    t_device = deviceId;
    return ACL_SUCCESS;
}

aclError aclrtResetDevice(int32_t deviceId) {
    if (deviceId != t_device) return ACL_ERROR_RT_INVALID_DEVICEID;
    t_device = -1;
    return ACL_SUCCESS;
}

const char *aclrtGetSocName(void) { return "Ascend910B1"; } /* an Atlas A2 training SoC */

aclError aclrtGetDeviceCount(uint32_t *count) {
    if (!count) return ACL_ERROR_INVALID_PARAM;
    *count = 1;
    return ACL_SUCCESS;
}

static int need_device(const char *api) {
    if (t_device < 0) {
        opdiff_double_set_error("%s: no device set in this thread (call aclrtSetDevice)", api);
        return 0;
    }
    return 1;
}

/* ---- device memory ------------------------------------------------------------------------------------- */
typedef struct Block { char *base; size_t size; struct Block *next; } Block;
static Block *g_blocks;

int opdiff_double_is_device(const void *p, size_t nbytes) {
    const char *c = p;
    int ok = 0;
    LOCK();
    for (Block *b = g_blocks; b; b = b->next)
        if (c >= b->base && c + nbytes <= b->base + b->size) { ok = 1; break; }
    UNLOCK();
    return ok;
}

aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy) {
    if (!need_device("aclrtMalloc")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (!devPtr || size == 0 || (unsigned)policy > ACL_MEM_MALLOC_NORMAL_ONLY_P2P) {
        opdiff_double_set_error("aclrtMalloc: invalid argument (size %zu must be > 0, policy %d)", size, policy);
        return ACL_ERROR_INVALID_PARAM;
    }
    if (opdiff_double_take_fault("malloc")) {
        opdiff_double_set_error("aclrtMalloc: out of device memory (fault injected by the double)");
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    size_t rounded = (size + 31) / 32 * 32 + 32; /* acl_abi.md: rounded up to 32 B, +32 B padding */
    Block *b = malloc(sizeof *b);
    b->base = aligned_alloc(64, (rounded + 63) / 64 * 64);
    if (rounded <= ((size_t)64 << 20)) memset(b->base, 0xA5, rounded); /* device memory is not zeroed (big
                                                                    blocks stay lazy: untouched pages cost nothing) */
    b->size = size;
    LOCK();
    b->next = g_blocks;
    g_blocks = b;
    UNLOCK();
    opdiff_double_track("device_mem", b->base);
    *devPtr = b->base;
    return ACL_SUCCESS;
}

aclError aclrtFree(void *devPtr) {
    Block *found = NULL;
    LOCK();
    for (Block **pp = &g_blocks; *pp; pp = &(*pp)->next)
        if ((*pp)->base == devPtr) { found = *pp; *pp = found->next; break; }
    UNLOCK();
    if (!found) {
        opdiff_double_bad_call("aclrtFree of an address aclrtMalloc did not return (or freed twice)");
        return ACL_ERROR_INVALID_PARAM;
    }
    opdiff_double_untrack("device_mem", devPtr);
    free(found->base);
    free(found);
    return ACL_SUCCESS;
}

aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind) {
    if (!need_device("aclrtMemcpy")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (!dst || !src || count > destMax) {
        opdiff_double_set_error("aclrtMemcpy: invalid argument (count %zu, destMax %zu)", count, destMax);
        return ACL_ERROR_INVALID_PARAM;
    }
    if (count == 0) return ACL_SUCCESS;
    int dst_dev = opdiff_double_is_device(dst, count), src_dev = opdiff_double_is_device(src, count);
    int want_dst = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    int want_src = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    if (kind != ACL_MEMCPY_DEFAULT && (kind > ACL_MEMCPY_DEVICE_TO_DEVICE || dst_dev != want_dst || src_dev != want_src)) {
        opdiff_double_set_error("aclrtMemcpy: kind %d does not match the addresses (dst %s, src %s, %zu bytes)",
                                kind, dst_dev ? "device" : "host", src_dev ? "device" : "host", count);
        return ACL_ERROR_INVALID_PARAM;
    }
    memmove(dst, src, count);
    return ACL_SUCCESS;
}

aclError aclrtMemset(void *devPtr, size_t maxCount, int32_t value, size_t count) {
    count_call("aclrtMemset");
    if (!need_device("aclrtMemset")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (count > maxCount || !opdiff_double_is_device(devPtr, count)) {
        opdiff_double_set_error("aclrtMemset: not %zu bytes of device memory", count);
        return ACL_ERROR_INVALID_PARAM;
    }
    memset(devPtr, value, count);
    return ACL_SUCCESS;
}

/* ---- streams: task queues ------------------------------------------------------------------------------ */
static aclError memset_task(void *ctx);
static aclError stamp(void *ctx);
typedef struct Task {
    aclError (*run)(void *);
    void *ctx;
    void (*drop)(void *);
    struct Task *next;
} Task;
typedef struct { Task *head, *tail; } Stream;
static Stream g_default_stream;

static Stream *stream_of(aclrtStream s) {
    if (s == NULL) return &g_default_stream;
    return opdiff_double_is_live("stream", s) ? (Stream *)s : NULL;
}

aclError aclrtCreateStream(aclrtStream *stream) {
    if (!need_device("aclrtCreateStream")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (!stream) return ACL_ERROR_INVALID_PARAM;
    Stream *s = calloc(1, sizeof *s);
    opdiff_double_track("stream", s);
    *stream = s;
    return ACL_SUCCESS;
}

static void drop_tasks(Stream *s) {
    Task *t = s->head;
    s->head = s->tail = NULL;
    while (t) {
        Task *n = t->next;
        if (t->drop) t->drop(t->ctx);
        free(t);
        t = n;
    }
}

aclError aclrtDestroyStream(aclrtStream stream) {
    if (!opdiff_double_untrack("stream", stream)) {
        opdiff_double_bad_call("aclrtDestroyStream of an unknown stream");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    drop_tasks((Stream *)stream);
    free(stream);
    return ACL_SUCCESS;
}

aclError opdiff_double_enqueue(aclrtStream stream, aclError (*run)(void *), void *ctx, void (*drop)(void *)) {
    Stream *s = stream_of(stream);
    if (!s) {
        opdiff_double_set_error("launch on an unknown stream %p", stream);
        if (drop) drop(ctx);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    Task *t = calloc(1, sizeof *t);
    t->run = run;
    t->ctx = ctx;
    t->drop = drop;
    LOCK();
    if (s->tail) s->tail->next = t; else s->head = t;
    s->tail = t;
    UNLOCK();
    return ACL_SUCCESS;
}

aclError aclrtSynchronizeStream(aclrtStream stream) {
    if (!need_device("aclrtSynchronizeStream")) return ACL_ERROR_RT_CONTEXT_NULL;
    Stream *s = stream_of(stream);
    if (!s) {
        opdiff_double_set_error("aclrtSynchronizeStream: unknown stream %p", stream);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (opdiff_double_take_fault("sync_timeout")) {
        drop_tasks(s);
        opdiff_double_set_error("aclrtSynchronizeStream: stream sync timeout (fault injected by the double)");
        return ACL_ERROR_RT_STREAM_SYNC_TIMEOUT;
    }
    aclError first = ACL_SUCCESS;
    for (;;) {
        LOCK();
        Task *t = s->head;
        if (t) {
            s->head = t->next;
            if (!s->head) s->tail = NULL;
        }
        if (t) trace(t->run == memset_task ? 'M' : t->run == stamp ? 'R' : 'K');
        UNLOCK();
        if (!t) break;
        aclError e = t->run(t->ctx);
        if (e != ACL_SUCCESS && first == ACL_SUCCESS) first = e;
        if (t->drop) t->drop(t->ctx);
        free(t);
    }
    return first;
}

aclError aclrtSynchronizeDevice(void) {
    aclError e = aclrtSynchronizeStream(NULL);
    return e;
}

/* aclrtMemsetAsync: queued on the stream like a kernel; the bytes are written when the stream runs it. */
typedef struct { void *ptr; int32_t value; size_t count; } MemsetTask;

static aclError memset_task(void *ctx) {
    MemsetTask *m = ctx;
    if (!opdiff_double_is_device(m->ptr, m->count)) { /* freed while the memset was still queued */
        opdiff_double_bad_call("aclrtMemsetAsync ran on memory freed before the stream was synchronized");
        return ACL_ERROR_RT_MEMORY_FREE;
    }
    memset(m->ptr, m->value, m->count);
    return ACL_SUCCESS;
}

aclError aclrtMemsetAsync(void *devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream) {
    count_call("aclrtMemsetAsync");
    if (!need_device("aclrtMemsetAsync")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (count > maxCount || !opdiff_double_is_device(devPtr, count)) {
        opdiff_double_set_error("aclrtMemsetAsync: not %zu bytes of device memory (maxCount %zu)", count, maxCount);
        return ACL_ERROR_INVALID_PARAM;
    }
    MemsetTask *m = malloc(sizeof *m);
    m->ptr = devPtr;
    m->value = value;
    m->count = count;
    g_last_memset_bytes = count;
    return opdiff_double_enqueue(stream, memset_task, m, free);
}

/* ---- events -------------------------------------------------------------------------------------------- */
typedef struct { uint32_t flags; int recorded; int64_t ns; } Event;

static aclError create_event(aclrtEvent *event, uint32_t flags) {
    if (!need_device("aclrtCreateEvent")) return ACL_ERROR_RT_CONTEXT_NULL;
    if (!event) return ACL_ERROR_INVALID_PARAM;
    Event *e = calloc(1, sizeof *e);
    e->flags = flags;
    opdiff_double_track("event", e);
    *event = e;
    return ACL_SUCCESS;
}

aclError aclrtCreateEvent(aclrtEvent *event) { return create_event(event, ACL_EVENT_TIME_LINE); }
aclError aclrtCreateEventWithFlag(aclrtEvent *event, uint32_t flag) { return create_event(event, flag); }

aclError aclrtDestroyEvent(aclrtEvent event) {
    if (!opdiff_double_untrack("event", event)) {
        opdiff_double_bad_call("aclrtDestroyEvent of an unknown event");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    free(event);
    return ACL_SUCCESS;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static aclError stamp(void *ctx) {
    Event *e = ctx;
    if (opdiff_double_is_live("event", e)) {
        e->ns = now_ns();
        e->recorded = 2; /* completed */
    }
    return ACL_SUCCESS;
}

aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream) {
    if (!opdiff_double_is_live("event", event)) {
        opdiff_double_set_error("aclrtRecordEvent: unknown event");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    ((Event *)event)->recorded = 1; /* pending until the stream reaches it */
    return opdiff_double_enqueue(stream, stamp, event, NULL);
}

aclError aclrtSynchronizeEvent(aclrtEvent event) {
    if (!opdiff_double_is_live("event", event)) return ACL_ERROR_RT_PARAM_INVALID;
    return ((Event *)event)->recorded == 2 ? ACL_SUCCESS : ACL_ERROR_RT_EVENT_NOT_COMPLETE;
}

aclError aclrtEventElapsedTime(float *ms, aclrtEvent startEvent, aclrtEvent endEvent) {
    if (!ms || !opdiff_double_is_live("event", startEvent) || !opdiff_double_is_live("event", endEvent))
        return ACL_ERROR_INVALID_PARAM;
    Event *a = startEvent, *b = endEvent;
    if (!(a->flags & ACL_EVENT_TIME_LINE) || !(b->flags & ACL_EVENT_TIME_LINE)) {
        opdiff_double_set_error("aclrtEventElapsedTime: events created without ACL_EVENT_TIME_LINE");
        return ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID;
    }
    if (a->recorded != 2 || b->recorded != 2) {
        opdiff_double_set_error("aclrtEventElapsedTime: an event has not completed (synchronize first)");
        return ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID;
    }
    if (b->ns < a->ns) return ACL_ERROR_RT_EVENT_TIMESTAMP_REVERSAL;
    *ms = (float)((double)(b->ns - a->ns) / 1e6);
    return ACL_SUCCESS;
}

/* ---- executors ----------------------------------------------------------------------------------------- */
aclOpExecutor *opdiff_double_new_executor(const char *op, void *payload, void (*free_payload)(void *)) {
    aclOpExecutor *e = calloc(1, sizeof *e);
    e->op = op;
    e->payload = payload;
    e->free_payload = free_payload;
    opdiff_double_track("executor", e);
    return e;
}

void *opdiff_double_executor_payload(aclOpExecutor *e, const char *op) {
    if (!e || !opdiff_double_is_live("executor", e) || strcmp(e->op, op) != 0) return NULL;
    return e->payload;
}

void opdiff_double_retire_executor(aclOpExecutor *e) {
    if (opdiff_double_untrack("executor", e)) free(e); /* the payload now belongs to the stream task */
}
