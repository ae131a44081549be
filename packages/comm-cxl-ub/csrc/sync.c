/* Step words: "my data for step s is in place", with acquire/release ordering, spin -> yield -> futex sleep.
 *
 * Rank r's line (128 bytes at flags_off + r * 256): its step counter (int32, written by r only), a sleepers count
 * (int32: peers asleep on the counter's futex, so a signal makes the wake-up syscall only when someone sleeps), the
 * two step tags. Data stores come before the counter's release store; the acquire load of a peer's counter comes
 * before the loads of its data. */
#define _GNU_SOURCE
#include "sgshm.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE 128
#define SLEEP_SLICE_NS 2000000L    /* longest single futex sleep: bounds a wake-up missed across hosts */
#define LIVENESS_EVERY_S 0.05

static inline int32_t *counter(const sg_group *g, int r) { return (int32_t *)(g->base + g->flags_off + r * 2 * LINE); }
static inline int32_t *sleepers(const sg_group *g, int r) { return counter(g, r) + 1; }
static inline uint8_t *tag_at(const sg_group *g, int r, int parity) {
    return g->base + g->flags_off + r * 2 * LINE + 8 + parity * 32;
}
static inline int reached(uint32_t value, uint32_t target) { return (uint32_t)(value - target) < 0x80000000u; }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sg_abi_version(void) { return SG_ABI_VERSION; }

void sg_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
void sg_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

void sg_signal(sg_group *g, int64_t step) {
    int32_t *c = counter(g, g->rank);
    /* seq_cst: the store and the sleepers load below must not be reordered (a sleeper increments, then re-reads) */
    __atomic_store_n(c, (int32_t)(uint32_t)step, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(sleepers(g, g->rank), __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, c, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

static int exited(const sg_group *g, int j) {
    if (!g->host_local || g->pids[j] <= 0) return 0;
    return kill((pid_t)g->pids[j], 0) == -1 && errno == ESRCH;
}

static int wait_one(sg_group *g, int j, uint32_t target, int64_t step, double limit) {
    int32_t *c = counter(g, j);
    if (reached((uint32_t)__atomic_load_n(c, __ATOMIC_ACQUIRE), target)) return SG_OK;
    if (g->spin_s > 0) {
        double end = now_s() + g->spin_s;
        do {
            for (int i = 0; i < 64; i++) {
                if (reached((uint32_t)__atomic_load_n(c, __ATOMIC_ACQUIRE), target)) return SG_OK;
                cpu_relax();
            }
        } while (now_s() < end);
    }
    if (g->yield_s > 0) {
        double end = now_s() + g->yield_s;
        do {
            if (reached((uint32_t)__atomic_load_n(c, __ATOMIC_ACQUIRE), target)) return SG_OK;
            sched_yield();
        } while (now_s() < end);
    }
    double start = now_s(), next_check = start + LIVENESS_EVERY_S;
    struct timespec slice = {0, SLEEP_SLICE_NS};
    for (;;) {
        __atomic_fetch_add(sleepers(g, j), 1, __ATOMIC_SEQ_CST);
        int32_t v = __atomic_load_n(c, __ATOMIC_SEQ_CST);
        long rc = 0;
        if (!reached((uint32_t)v, target)) rc = syscall(SYS_futex, c, FUTEX_WAIT, v, &slice, NULL, 0);
        int eintr = rc == -1 && errno == EINTR;
        __atomic_fetch_sub(sleepers(g, j), 1, __ATOMIC_SEQ_CST);
        if (reached((uint32_t)__atomic_load_n(c, __ATOMIC_ACQUIRE), target)) return SG_OK;
        if (__atomic_load_n(&g->abort, __ATOMIC_RELAXED)) {
            g->err_step = step;
            return SG_ABORTED;
        }
        double t = now_s();
        if (eintr || t >= next_check) {
            if (g->interrupted != NULL && g->interrupted()) {
                g->err_step = step;
                return SG_INTERRUPTED;
            }
        }
        if (t >= next_check) {
            next_check = t + LIVENESS_EVERY_S;
            /* every peer short of the step, not only the one waited for: that one may wait for a dead rank */
            for (int k = 0; k < g->n; k++) {
                if (k == g->rank) continue;
                if ((k == j || !reached((uint32_t)__atomic_load_n(counter(g, k), __ATOMIC_ACQUIRE), target)) &&
                    exited(g, k)) {
                    g->err_step = step;
                    g->err_peer = k;
                    return SG_EXITED;
                }
            }
            if (t - start > limit) {
                g->err_step = step;
                g->err_peer = j;
                return SG_TIMEOUT;
            }
        }
    }
}

int sg_wait(sg_group *g, int64_t step, double timeout_s, int32_t only) {
    double limit = timeout_s > 0 ? timeout_s : g->timeout_s;
    uint32_t target = (uint32_t)step;
    for (int j = 0; j < g->n; j++) {
        if (j == g->rank || (only >= 0 && j != only)) continue;
        int st = wait_one(g, j, target, step, limit);
        if (st != SG_OK) return st;
    }
    return SG_OK;
}

int sg_sync(sg_group *g, int64_t step, const uint8_t *tag, double timeout_s) {
    int parity = (int)(step & 1);
    memcpy(tag_at(g, g->rank, parity), tag, (size_t)g->tag_len);
    sg_signal(g, step);
    int st = sg_wait(g, step, timeout_s, -1);
    if (st != SG_OK) return st;
    for (int j = 0; j < g->n; j++) {
        if (j != g->rank && memcmp(tag_at(g, j, parity), tag, (size_t)g->tag_len) != 0) {
            g->err_step = step;
            g->err_peer = j;
            return SG_MISMATCH;
        }
    }
    return SG_OK;
}
