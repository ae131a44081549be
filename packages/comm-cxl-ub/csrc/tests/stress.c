/* stress: the native engine's protocol without Python -- forked ranks over one MAP_SHARED region run thousands of
 * all_reduces of varying sizes (direct and split, multi-chunk, float32 sum and int32 max) and check every element.
 * Built and run by tests/test_native_c.py natively, and cross-compiled for aarch64 and run under qemu-user where
 * aarch64-linux-gnu-gcc and qemu-aarch64 exist. Exit status 0: every result right. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../sgshm.h"

#define SLOT (64 << 10)
#define LINE 128

static int run_rank(uint8_t *base, int n, int rank, int iters, int64_t *pids) {
    sg_group g;
    memset(&g, 0, sizeof g);
    g.base = base;
    g.pids = pids;
    g.slot = SLOT;
    g.flags_off = 4096;
    int64_t slots = (4096 + n * 2 * LINE + 4095) / 4096 * 4096;
    g.parity_off[0] = slots;
    g.parity_off[1] = slots + (int64_t)n * SLOT;
    g.chunk = SLOT;
    g.split_min = 16 << 10;
    g.spin_s = 5e-6;
    g.yield_s = 500e-6;
    g.timeout_s = 60;
    g.n = n;
    g.rank = rank;
    g.host_local = 1;
    g.tag_len = 24;
    static const int64_t sizes[] = {1, 7, 1024, 4099, 16384, 40000, 70000};
    const int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
    float *f = malloc(70000 * sizeof(float));
    int32_t *x = malloc(70000 * sizeof(int32_t));
    uint8_t tag[24];
    for (int it = 0; it < iters; it++) {
        int64_t m = sizes[it % nsizes];
        memset(tag, 0, sizeof tag);
        memcpy(tag, &m, sizeof m);
        tag[8] = (uint8_t)(it & 1);
        int algo = it % 3;  /* auto, direct, split */
        if (it & 1) {
            for (int64_t j = 0; j < m; j++) f[j] = (float)(rank + it % 11 + j % 7);
            int st = sg_all_reduce(&g, f, m, SG_F32, SG_SUM, tag, algo);
            if (st) { fprintf(stderr, "rank %d iter %d: status %d\n", rank, it, st); return 2; }
            for (int64_t j = 0; j < m; j++) {
                float want = (float)(n * (it % 11 + j % 7) + n * (n - 1) / 2);
                if (f[j] != want) {
                    fprintf(stderr, "rank %d iter %d f32 sum [%lld] = %g, want %g\n", rank, it, (long long)j, f[j], want);
                    return 1;
                }
            }
        } else {
            for (int64_t j = 0; j < m; j++) x[j] = (int32_t)((rank * 31 + j + it) % 97) - 40;
            int st = sg_all_reduce(&g, x, m, SG_I32, SG_MAX, tag, algo);
            if (st) { fprintf(stderr, "rank %d iter %d: status %d\n", rank, it, st); return 2; }
            for (int64_t j = 0; j < m; j++) {
                int32_t want = -1000;
                for (int r = 0; r < n; r++) {
                    int32_t v = (int32_t)((r * 31 + j + it) % 97) - 40;
                    if (v > want) want = v;
                }
                if (x[j] != want) {
                    fprintf(stderr, "rank %d iter %d i32 max [%lld] = %d, want %d\n", rank, it, (long long)j, x[j], want);
                    return 1;
                }
            }
        }
    }
    free(f);
    free(x);
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3, iters = argc > 2 ? atoi(argv[2]) : 2000;
    size_t size = (size_t)(4096 + n * 2 * LINE + 4095) / 4096 * 4096 + 2 * (size_t)n * SLOT;
    uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int64_t *pids = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || pids == MAP_FAILED) { perror("mmap"); return 3; }
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        if (pid == 0) _exit(run_rank(base, n, r, iters, pids));
        pids[r] = pid;
    }
    int bad = 0;
    for (int r = 0; r < n; r++) {
        int status;
        wait(&status);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bad = 1;
    }
    printf("%s: %d ranks x %d all_reduces\n", bad ? "FAILED" : "ok", n, iters);
    return bad;
}
