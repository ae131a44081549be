/* Reductions across ranks: out = op(rows[0], ..., rows[n-1]) elementwise, every dtype and reduce op of the contract.
 *
 * Two rows go in one pass; more are folded a row at a time into an accumulator block that stays in L1. Every inner
 * loop is a contiguous one the compiler vectorises (x86-64: a second clone for x86-64-v3 / AVX2, picked at load
 * time; fp16 conversions use F16C where the CPU has it). fp16 and bf16 accumulate in fp32 and round once. Rows are folded in rank order 0..n-1 on every rank, so
 * all ranks get bit-identical results; `out` may be one of the rows (a block is read whole before it is written).
 * Integer sums and products wrap like torch's (computed unsigned); bool sum/max is "or", prod/min is "and". */
#include "sgshm.h"

#include <string.h>

#define BLK 512

#if defined(__FLT16_MAX__)
typedef _Float16 sg_half;
static inline float h2f(uint16_t h) { sg_half x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f2h(float f) { sg_half x = (sg_half)f; uint16_t h; memcpy(&h, &x, 2); return h; }
#else
static inline float h2f(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0x1f) u = s | 0x7f800000u | (m << 13);
    else if (e) u = s | ((e + 112) << 23) | (m << 13);
    else if (m) { float f = (float)m * 5.9604644775390625e-8f; memcpy(&u, &f, 4); u |= s; }
    else u = s;
    float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t f2h(float f) {  /* round to nearest even */
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t s = (u >> 16) & 0x8000, a = u & 0x7fffffff;
    if (a >= 0x7f800000u) return (uint16_t)(s | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00);
    if (a < 0x38800000u) {  /* subnormal or zero */
        float r; float af; memcpy(&af, &a, 4); r = af * 16777216.0f;  /* / 2^-24 */
        uint32_t q = (uint32_t)r; float frac = r - (float)q;
        if (frac > 0.5f || (frac == 0.5f && (q & 1))) q++;
        return (uint16_t)(s | q);
    }
    uint32_t h = ((a - 0x38000000u) >> 13), rem = a & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(s | h);
}
#endif

static inline float b2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t f2b(float f) {  /* round to nearest even, like torch */
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx,f16c"))) static void h2f_f16c(float *dst, const uint16_t *src, int64_t m) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < m; i++) dst[i] = _cvtsh_ss(src[i]);
}
__attribute__((target("avx,f16c"))) static void f2h_f16c(uint16_t *dst, const float *src, int64_t m) {
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < m; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
#endif
static void h2f_scalar(float *dst, const uint16_t *src, int64_t m) { for (int64_t i = 0; i < m; i++) dst[i] = h2f(src[i]); }
static void f2h_scalar(uint16_t *dst, const float *src, int64_t m) { for (int64_t i = 0; i < m; i++) dst[i] = f2h(src[i]); }
static void b2f_block(float *dst, const uint16_t *src, int64_t m) { for (int64_t i = 0; i < m; i++) dst[i] = b2f(src[i]); }
static void f2b_block(uint16_t *dst, const float *src, int64_t m) { for (int64_t i = 0; i < m; i++) dst[i] = f2b(src[i]); }

/* fp16 <-> fp32 of a block: F16C where the CPU has it (chosen once), else the portable conversion */
static void (*h2f_block)(float *, const uint16_t *, int64_t) = h2f_scalar;
static void (*f2h_block)(uint16_t *, const float *, int64_t) = f2h_scalar;
__attribute__((constructor)) static void pick_half_conversions(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) {
        h2f_block = h2f_f16c;
        f2h_block = f2h_f16c;
    }
#endif
}

#define OP_SUM(a, b) ((a) + (b))
#define OP_PROD(a, b) ((a) * (b))
#define OP_FMAX(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))  /* NaN propagates, like torch.maximum */
#define OP_FMIN(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))
#define OP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define OP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OP_AND(a, b) ((a) & (b))
#define OP_OR(a, b) ((a) | (b))
#define OP_XOR(a, b) ((a) ^ (b))
#define INLINE static inline __attribute__((always_inline))

/* rows of the accumulator type itself: two rows in one pass straight into out, more through an L1 block */
#define SAME_KERNEL(name, T, F, DIV)                                                            \
    INLINE void name(void *out_, const void *const *rows_, int n, int64_t count) {              \
        T *out = (T *)out_;                                                                     \
        const T *const *rows = (const T *const *)rows_;                                         \
        const T dn = (T)n;                                                                      \
        (void)dn;                                                                               \
        if (n == 1) {                                                                           \
            if ((const void *)out != rows[0]) memmove(out, rows[0], (size_t)count * sizeof(T)); \
            return;                                                                             \
        }                                                                                       \
        if (n == 2) {                                                                           \
            const T *a = rows[0], *b = rows[1];                                                 \
            for (int64_t i = 0; i < count; i++) {                                               \
                T v = F(a[i], b[i]);                                                            \
                out[i] = DIV ? v / dn : v;                                                      \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        T acc[BLK];                                                                             \
        for (int64_t s = 0; s < count; s += BLK) {                                              \
            int64_t m = count - s < BLK ? count - s : BLK;                                      \
            const T *a = rows[0] + s, *b = rows[1] + s;                                         \
            for (int64_t i = 0; i < m; i++) acc[i] = F(a[i], b[i]);                             \
            for (int j = 2; j < n; j++) {                                                       \
                const T *r = rows[j] + s;                                                       \
                for (int64_t i = 0; i < m; i++) acc[i] = F(acc[i], r[i]);                       \
            }                                                                                   \
            T *o = out + s;                                                                     \
            for (int64_t i = 0; i < m; i++) o[i] = DIV ? acc[i] / dn : acc[i];                  \
        }                                                                                       \
    }

/* 16-bit floats: each block converted to fp32, folded there, rounded once */
#define HALF_KERNEL(name, LDB, STB, F, DIV)                                                     \
    INLINE void name(void *out_, const void *const *rows_, int n, int64_t count) {              \
        uint16_t *out = (uint16_t *)out_;                                                       \
        const uint16_t *const *rows = (const uint16_t *const *)rows_;                           \
        float acc[BLK], tmp[BLK], dn = (float)n;                                                \
        for (int64_t s = 0; s < count; s += BLK) {                                              \
            int64_t m = count - s < BLK ? count - s : BLK;                                      \
            LDB(acc, rows[0] + s, m);                                                           \
            for (int j = 1; j < n; j++) {                                                       \
                LDB(tmp, rows[j] + s, m);                                                       \
                for (int64_t i = 0; i < m; i++) acc[i] = F(acc[i], tmp[i]);                     \
            }                                                                                   \
            if (DIV)                                                                            \
                for (int64_t i = 0; i < m; i++) acc[i] /= dn;                                   \
            STB(out + s, acc, m);                                                               \
        }                                                                                       \
    }

#define FLOAT_KERNELS(p, T)                       \
    SAME_KERNEL(p##_sum, T, OP_SUM, 0)            \
    SAME_KERNEL(p##_avg, T, OP_SUM, 1)            \
    SAME_KERNEL(p##_prod, T, OP_PROD, 0)          \
    SAME_KERNEL(p##_max, T, OP_FMAX, 0)           \
    SAME_KERNEL(p##_min, T, OP_FMIN, 0)

#define HALF_KERNELS(p, LDB, STB)                 \
    HALF_KERNEL(p##_sum, LDB, STB, OP_SUM, 0)     \
    HALF_KERNEL(p##_avg, LDB, STB, OP_SUM, 1)     \
    HALF_KERNEL(p##_prod, LDB, STB, OP_PROD, 0)   \
    HALF_KERNEL(p##_max, LDB, STB, OP_FMAX, 0)    \
    HALF_KERNEL(p##_min, LDB, STB, OP_FMIN, 0)

/* signed type S for max/min, unsigned U for the rest (wrapping sums and products, same bits) */
#define INT_KERNELS(p, S, U)                      \
    SAME_KERNEL(p##_sum, U, OP_SUM, 0)            \
    SAME_KERNEL(p##_prod, U, OP_PROD, 0)          \
    SAME_KERNEL(p##_max, S, OP_MAX, 0)            \
    SAME_KERNEL(p##_min, S, OP_MIN, 0)            \
    SAME_KERNEL(p##_and, U, OP_AND, 0)            \
    SAME_KERNEL(p##_or, U, OP_OR, 0)              \
    SAME_KERNEL(p##_xor, U, OP_XOR, 0)

FLOAT_KERNELS(f32, float)
FLOAT_KERNELS(f64, double)
HALF_KERNELS(f16, h2f_block, f2h_block)
HALF_KERNELS(bf16, b2f_block, f2b_block)
INT_KERNELS(i8, int8_t, uint8_t)
INT_KERNELS(u8, uint8_t, uint8_t)
INT_KERNELS(i16, int16_t, uint16_t)
INT_KERNELS(i32, int32_t, uint32_t)
INT_KERNELS(i64, int64_t, uint64_t)

int sg_dtype_size(int dtype) {
    switch (dtype) {
    case SG_F32: case SG_I32: return 4;
    case SG_F16: case SG_BF16: case SG_I16: return 2;
    case SG_F64: case SG_I64: return 8;
    case SG_I8: case SG_U8: case SG_BOOL: return 1;
    default: return 0;
    }
}

static int is_float(int dtype) { return dtype == SG_F32 || dtype == SG_F16 || dtype == SG_BF16 || dtype == SG_F64; }

int sg_reduce_supported(int dtype, int op) {
    if (sg_dtype_size(dtype) == 0 || op < SG_SUM || op > SG_AVG) return 0;
    if (is_float(dtype)) return op == SG_SUM || op == SG_AVG || op == SG_PROD || op == SG_MAX || op == SG_MIN;
    return op != SG_AVG;  /* the contract averages floats only */
}

#define FLOAT_CASE(code, p)                                              \
    case code:                                                           \
        switch (op) {                                                    \
        case SG_SUM: p##_sum(out, rows, n, count); return SG_OK;         \
        case SG_AVG: p##_avg(out, rows, n, count); return SG_OK;         \
        case SG_PROD: p##_prod(out, rows, n, count); return SG_OK;       \
        case SG_MAX: p##_max(out, rows, n, count); return SG_OK;         \
        case SG_MIN: p##_min(out, rows, n, count); return SG_OK;         \
        default: return SG_UNSUPPORTED;                                  \
        }

#define INT_CASE(code, p)                                                \
    case code:                                                           \
        switch (op) {                                                    \
        case SG_SUM: p##_sum(out, rows, n, count); return SG_OK;         \
        case SG_PROD: p##_prod(out, rows, n, count); return SG_OK;       \
        case SG_MAX: p##_max(out, rows, n, count); return SG_OK;         \
        case SG_MIN: p##_min(out, rows, n, count); return SG_OK;         \
        case SG_BAND: p##_and(out, rows, n, count); return SG_OK;        \
        case SG_BOR: p##_or(out, rows, n, count); return SG_OK;          \
        case SG_BXOR: p##_xor(out, rows, n, count); return SG_OK;        \
        default: return SG_UNSUPPORTED;                                  \
        }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
int sg_reduce(int dtype, int op, void *out, const void *const *rows, int n, int64_t count) {
    if (n < 1 || count < 0) return SG_UNSUPPORTED;
    if (dtype == SG_BOOL) {  /* 0/1 bytes: sum and max are "or", prod and min are "and" */
        switch (op) {
        case SG_SUM: case SG_MAX: case SG_BOR: u8_or(out, rows, n, count); return SG_OK;
        case SG_PROD: case SG_MIN: case SG_BAND: u8_and(out, rows, n, count); return SG_OK;
        case SG_BXOR: u8_xor(out, rows, n, count); return SG_OK;
        default: return SG_UNSUPPORTED;
        }
    }
    switch (dtype) {
        FLOAT_CASE(SG_F32, f32)
        FLOAT_CASE(SG_F64, f64)
        FLOAT_CASE(SG_F16, f16)
        FLOAT_CASE(SG_BF16, bf16)
        INT_CASE(SG_I8, i8)
        INT_CASE(SG_U8, u8)
        INT_CASE(SG_I16, i16)
        INT_CASE(SG_I32, i32)
        INT_CASE(SG_I64, i64)
    default: return SG_UNSUPPORTED;
    }
}
