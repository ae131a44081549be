/* all_reduce in one call: the Python engine's step protocol (engine.py), every chunk and every wait in C.
 *
 * direct (one step per chunk): copy the chunk into this rank's slot, sync, reduce the n slots into the tensor (this
 * rank's own row is read from the tensor itself, which holds the same bytes). split (two steps per chunk, n > 2):
 * rank r reduces piece r of the chunk into its slot of the next parity, sync, everyone copies the n reduced pieces:
 * each rank reads about two chunks whatever n is, and the n ranks reduce their pieces at once. */
#include "sgshm.h"

#include <string.h>

#define MAX_ROWS 512

static inline uint8_t *slot_at(const sg_group *g, int64_t step, int r) {
    return g->base + g->parity_off[step & 1] + (int64_t)r * g->slot;
}

static int direct(sg_group *g, uint8_t *chunk, int64_t count, int esize, int dtype, int op, const uint8_t *tag) {
    int64_t step = ++g->step, bytes = count * esize;
    if (bytes) memcpy(slot_at(g, step, g->rank), chunk, (size_t)bytes);
    int st = sg_sync(g, step, tag, 0);
    if (st != SG_OK || !bytes) return st;
    const void *rows[MAX_ROWS];
    for (int j = 0; j < g->n; j++) rows[j] = j == g->rank ? chunk : slot_at(g, step, j);
    return sg_reduce(dtype, op, chunk, rows, g->n, count);
}

static int split(sg_group *g, uint8_t *chunk, int64_t count, int esize, int dtype, int op, const uint8_t *tag) {
    int n = g->n;
    int64_t step = ++g->step, bytes = count * esize;
    if (bytes) memcpy(slot_at(g, step, g->rank), chunk, (size_t)bytes);
    int st = sg_sync(g, step, tag, 0);
    if (st != SG_OK) return st;
    int64_t piece = (count + n - 1) / n;
    int64_t lo = g->rank * piece < count ? g->rank * piece : count;
    int64_t hi = (g->rank + 1) * piece < count ? (g->rank + 1) * piece : count;
    int64_t step2 = ++g->step;
    if (hi > lo) {
        const void *rows[MAX_ROWS];
        for (int j = 0; j < n; j++) rows[j] = slot_at(g, step, j) + lo * esize;
        st = sg_reduce(dtype, op, slot_at(g, step2, g->rank), rows, n, hi - lo);
        if (st != SG_OK) return st;
    }
    st = sg_sync(g, step2, tag, 0);
    if (st != SG_OK) return st;
    for (int j = 0; j < n; j++) {
        int64_t jl = j * piece < count ? j * piece : count, jh = (j + 1) * piece < count ? (j + 1) * piece : count;
        if (jh > jl) memcpy(chunk + jl * esize, slot_at(g, step2, j), (size_t)((jh - jl) * esize));
    }
    return SG_OK;
}

int sg_all_reduce(sg_group *g, void *data, int64_t numel, int dtype, int op, const uint8_t *tag, int algo) {
    int esize = sg_dtype_size(dtype);
    if (!sg_reduce_supported(dtype, op) || g->n > MAX_ROWS || numel < 0 || g->chunk > g->slot) return SG_UNSUPPORTED;
    int64_t per = g->chunk / esize;
    if (per < 1) per = 1;
    if (algo == SG_AUTO) {
        /* direct reads n chunks per rank, split about two plus one more sync: split once the (n - 2) extra chunks
         * direct would read reach split_min bytes */
        int64_t chunk_bytes = (numel < per ? numel : per) * esize;
        algo = g->n > 2 && (int64_t)(g->n - 2) * chunk_bytes >= g->split_min ? SG_SPLIT : SG_DIRECT;
    }
    int (*run)(sg_group *, uint8_t *, int64_t, int, int, int, const uint8_t *) =
        algo == SG_SPLIT && g->n > 1 ? split : direct;
    uint8_t *p = (uint8_t *)data;
    int64_t a = 0;
    do {
        int64_t count = numel - a < per ? numel - a : per;
        int st = run(g, p + a * esize, count, esize, dtype, op, tag);
        if (st != SG_OK) return st;
        a += per;
    } while (a < numel);
    return SG_OK;
}
