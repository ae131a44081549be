/* sgshm: the compiled hot loop of sagellm-comm's shared-memory engine (comm-cxl-ub).
 *
 * The region layout, the step protocol and the step tags are the ones of the Python engine (layout.py, engine.py):
 * this library runs them with C11-style atomics (acquire/release), so it is correct on any architecture, not only
 * under x86-64's total store order. Python hands it one `sg_group` per group and calls it once per collective. */
#ifndef SGSHM_H
#define SGSHM_H

#include <stdint.h>

#define SG_ABI_VERSION 2

/* status codes returned by every blocking call */
enum {
    SG_OK = 0,
    SG_TIMEOUT = 1,     /* a peer did not reach the step within the limit (err_step) */
    SG_EXITED = 2,      /* peer err_peer's process is gone (err_step) */
    SG_ABORTED = 3,     /* abort was set while waiting (the group is being destroyed) */
    SG_MISMATCH = 4,    /* a peer's step tag differs (err_step): the ranks run different collectives */
    SG_UNSUPPORTED = 5, /* dtype/op combination not compiled here; nothing was done, use the Python path */
    SG_INTERRUPTED = 6  /* interrupted() said stop (a Python signal handler raised, e.g. Ctrl-C) */
};

/* dtype codes: position in sagellm_comm.ops.WIRE_DTYPES plus one */
enum { SG_F32 = 1, SG_F16, SG_BF16, SG_F64, SG_I8, SG_U8, SG_I16, SG_I32, SG_I64, SG_BOOL };
/* reduce ops: position in tuple(sagellm_protocol.ReduceOp) */
enum { SG_SUM = 0, SG_MAX, SG_MIN, SG_PROD, SG_BAND, SG_BOR, SG_BXOR, SG_AVG };
/* all_reduce algorithms */
enum { SG_AUTO = 0, SG_DIRECT = 1, SG_SPLIT = 2 };

/* One group's view of its region; mirrored by a ctypes.Structure in native.py (keep the order). */
typedef struct sg_group {
    uint8_t *base;          /* start of the group's region in this process */
    const int64_t *pids;    /* n pids (0: unknown) */
    int64_t slot;           /* bytes per rank per parity */
    int64_t parity_off[2];  /* offset of each parity's n slots */
    int64_t flags_off;      /* rank r's step word at flags_off + r * 2 * 128 */
    int64_t step;           /* the last step this rank used */
    int64_t chunk;          /* all_reduce bytes per step (<= slot) */
    int64_t split_min;      /* all_reduce uses split when n > 2 and (n - 2) x chunk bytes reach this */
    double spin_s;          /* spin this long before yielding */
    double yield_s;         /* then poll with sched_yield this long before sleeping on the futex */
    double timeout_s;       /* default wait limit (the group timeout) */
    int32_t n;
    int32_t rank;
    int32_t host_local;     /* peers are processes of this host: their liveness can be checked */
    int32_t abort;          /* set from Python: waits give up */
    int64_t err_step;       /* out: the step an error happened at */
    int32_t err_peer;       /* out: the peer an error is about */
    int32_t tag_len;        /* bytes of a step tag */
    int (*interrupted)(void); /* optional: polled while sleeping (and on EINTR); non-zero aborts the wait */
} sg_group;

/* sync.c */
int sg_abi_version(void);
void sg_signal(sg_group *g, int64_t step);
int sg_wait(sg_group *g, int64_t step, double timeout_s, int32_t only);
int sg_sync(sg_group *g, int64_t step, const uint8_t *tag, double timeout_s);
void sg_fence_release(void);
void sg_fence_acquire(void);

/* reduce.c: out = op(rows[0], ..., rows[n-1]) elementwise, folded in rank order; fp16/bf16 in fp32 */
int sg_reduce_supported(int dtype, int op);
int sg_dtype_size(int dtype);
int sg_reduce(int dtype, int op, void *out, const void *const *rows, int n, int64_t count);

/* allreduce.c */
int sg_all_reduce(sg_group *g, void *data, int64_t numel, int dtype, int op, const uint8_t *tag, int algo);

#endif
