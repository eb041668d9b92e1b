/* server/core/rng.c — torch's CPU generator (mt19937) and the uniform and normal fills on it.
**
** Follows PyTorch 1.13's sources as facts (written afresh here): ATen/core/MT19937RNGEngine.h
** (the engine), CPUGeneratorImpl.cpp (seeding, random64, the state layout),
** core/DistributionsHelper.h and TransformationHelper.h (uniform_real, normal_distribution),
** native/cpu/DistributionTemplates.h (normal_fill: 16-sample Box-Muller chunks; the float32
** chunk as its AVX2 build computes it, with avx_mathfun.h's Cephes log and sincos and the fused
** multiply-adds its compiler forms; uniform_kernel). torch compiles these kernels for AVX2 with
** FMA, and its compiler fuses a * b + c: the same fusions are written out here as fma() (so
** this file's results do not depend on its own compiler's contraction). Draws are sequential.
*/
#include "rng.h"

#include "cancel.h"

#include <math.h>
#include <string.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UMASK 0x80000000u
#define MT_LMASK 0x7fffffffu

void td_rng_seed(struct td_rng *r, uint64_t seed)
{
    r->seed = seed;
    r->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t j = 1; j < TD_MT_N; j++) {
        r->state[j] = 1812433253u * (r->state[j - 1] ^ (r->state[j - 1] >> 30)) + j;
    }
    r->left = 1;
    r->next = 0;
    r->has_double_normal = r->has_float_normal = false;
    r->double_normal = 0;
    r->float_normal = 0;
}

static uint32_t twist(uint32_t u, uint32_t v)
{
    return (((u & MT_UMASK) | (v & MT_LMASK)) >> 1) ^ ((v & 1u) ? MT_MATRIX_A : 0u);
}

static void next_state(struct td_rng *r)
{
    uint32_t *p = r->state;
    r->left = TD_MT_N;
    r->next = 0;
    for (int j = TD_MT_N - MT_M + 1; --j; p++) {
        *p = p[MT_M] ^ twist(p[0], p[1]);
    }
    for (int j = MT_M; --j; p++) {
        *p = p[MT_M - TD_MT_N] ^ twist(p[0], p[1]);
    }
    *p = p[MT_M - TD_MT_N] ^ twist(p[0], r->state[0]);
}

uint32_t td_rng_u32(struct td_rng *r)
{
    /* torch's test is --left == 0; a state whose next word lies past the end (which torch's
    ** is_valid lets through with a large left, and would read out of bounds) or a zeroed struct
    ** twists here instead */
    if (--r->left <= 0 || r->next >= TD_MT_N) {
        next_state(r);
    }
    uint32_t y = r->state[r->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t td_rng_u64(struct td_rng *r)
{
    uint32_t hi = td_rng_u32(r);
    uint32_t lo = td_rng_u32(r);
    return (uint64_t)hi << 32 | lo;
}

float td_rng_uniform_f32(struct td_rng *r, float from, float to)
{
    float x = (float)(td_rng_u32(r) & ((1u << 24) - 1)) * (1.0f / 16777216.0f);
    return fmaf(x, to - from, from);
}

double td_rng_uniform_f64(struct td_rng *r, double from, double to)
{
    double x = (double)(td_rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
    return fma(x, to - from, from);
}

double td_rng_normal_f64(struct td_rng *r, double mean, double std)
{
    if (r->has_double_normal) {
        r->has_double_normal = false;
        return fma(r->double_normal, std, mean);
    }
    double u1 = td_rng_uniform_f64(r, 0.0, 1.0);
    double u2 = td_rng_uniform_f64(r, 0.0, 1.0);
    double rad = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * M_PI * u1;
    r->double_normal = rad * sin(theta);
    r->has_double_normal = true;
    return fma(rad * cos(theta), std, mean);
}

/* ---- torch's state bytes: CPUGeneratorImplState {legacy_pod {uint64 the_initial_seed; int
** left; int seeded; uint64 next; uint64 state[624]; double normal_x, normal_y, normal_rho; int
** normal_is_valid;} float next_float_normal_sample; bool is_next_float_normal_sample_valid;},
** x86-64 little-endian layout ---- */

enum {
    ST_SEED = 0,
    ST_LEFT = 8,
    ST_SEEDED = 12,
    ST_NEXT = 16,
    ST_STATE = 24,
    ST_NORMAL_X = ST_STATE + 8 * TD_MT_N, /* 5016 */
    ST_NORMAL_Y = ST_NORMAL_X + 8,
    ST_NORMAL_RHO = ST_NORMAL_Y + 8,
    ST_NORMAL_VALID = ST_NORMAL_RHO + 8, /* 5040; the legacy struct pads to 5048 */
    ST_FLOAT_NORMAL = 5048,
    ST_FLOAT_VALID = 5052,
};

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void td_rng_get_state(const struct td_rng *r, uint8_t out[TD_RNG_STATE_BYTES])
{
    memset(out, 0, TD_RNG_STATE_BYTES);
    put_u64(out + ST_SEED, r->seed);
    put_u32(out + ST_LEFT, (uint32_t)r->left);
    put_u32(out + ST_SEEDED, 1);
    put_u64(out + ST_NEXT, r->next);
    for (int i = 0; i < TD_MT_N; i++) {
        put_u64(out + ST_STATE + 8 * i, r->state[i]);
    }
    if (r->has_double_normal) {
        uint64_t bits;
        memcpy(&bits, &r->double_normal, 8);
        put_u64(out + ST_NORMAL_Y, bits);
        put_u32(out + ST_NORMAL_VALID, 1);
    }
    if (r->has_float_normal) {
        uint32_t bits;
        memcpy(&bits, &r->float_normal, 4);
        put_u32(out + ST_FLOAT_NORMAL, bits);
        out[ST_FLOAT_VALID] = 1;
    }
}

static double get_f64(const uint8_t *p)
{
    uint64_t bits = get_u64(p);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

int td_rng_set_state(struct td_rng *r, const uint8_t *in, size_t len, struct td_err *err)
{
    if (len != TD_RNG_STATE_BYTES && len != TD_RNG_STATE_LEGACY_BYTES) {
        return td_err_set(err, TD_EINVAL,
                          "Expected either a CPUGeneratorImplStateLegacy of size %d or a "
                          "CPUGeneratorImplState of size %d but found the input RNG state size "
                          "to be %zu",
                          TD_RNG_STATE_LEGACY_BYTES, TD_RNG_STATE_BYTES, len);
    }
    struct td_rng n;
    n.seed = get_u64(in + ST_SEED);
    n.left = (int32_t)get_u32(in + ST_LEFT);
    int32_t seeded = (int32_t)get_u32(in + ST_SEEDED);
    n.next = (uint32_t)get_u64(in + ST_NEXT);
    for (int i = 0; i < TD_MT_N; i++) {
        n.state[i] = (uint32_t)get_u64(in + ST_STATE + 8 * i);
    }
    n.has_double_normal = get_u32(in + ST_NORMAL_VALID) != 0;
    n.double_normal = 0;
    n.has_float_normal = false;
    n.float_normal = 0;
    if (n.has_double_normal) {
        if (len == TD_RNG_STATE_LEGACY_BYTES) {
            /* the legacy state keeps the uniforms: its cached sample is rho * sin(2 pi x) */
            n.double_normal = get_f64(in + ST_NORMAL_RHO) *
                              sin(2.0 * M_PI * get_f64(in + ST_NORMAL_X));
        } else {
            n.double_normal = get_f64(in + ST_NORMAL_Y);
        }
    }
    if (len == TD_RNG_STATE_BYTES && in[ST_FLOAT_VALID] != 0) {
        uint32_t bits = get_u32(in + ST_FLOAT_NORMAL);
        n.has_float_normal = true;
        memcpy(&n.float_normal, &bits, 4);
    }
    /* mt19937::is_valid (seeded_ is a bool: any nonzero byte pattern of its int is true) */
    if (seeded == 0 || n.left <= 0 || n.left > TD_MT_N || n.next > TD_MT_N) {
        return td_err_set(err, TD_EINVAL, "Invalid mt19937 state");
    }
    *r = n;
    return 0;
}

/* ---- draw order ---- */

void td_rng_walk_order(const struct td_tensor *t, int perm[TD_MAX_DIMS])
{
    /* TensorIterator::reorder_dimensions with one operand: dims start innermost first and an
    ** insertion sort moves a dim outward past any with a smaller stride (equal strides: the
    ** larger size goes outward; a stride-0 pair is ambiguous and stays). */
    int nd = t->ndim, p[TD_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        p[i] = nd - 1 - i;
    }
    for (int i = 1; i < nd; i++) {
        int d1 = i;
        for (int d0 = i - 1; d0 >= 0; d0--) {
            int64_t s0 = t->strides[p[d0]], s1 = t->strides[p[d1]];
            int cmp = 0;
            if (t->shape[p[d0]] == 1 || t->shape[p[d1]] == 1) {
                cmp = 0; /* torch gives size-1 dims stride 0 for this comparison */
            } else if (s0 == 0 || s1 == 0) {
                cmp = 0;
            } else if (s0 < s1) {
                cmp = -1;
            } else if (s0 > s1) {
                cmp = 1;
            } else if (t->shape[p[d0]] > t->shape[p[d1]]) {
                cmp = 1;
            }
            if (cmp > 0) {
                int tmp = p[d0];
                p[d0] = p[d1];
                p[d1] = tmp;
                d1 = d0;
            } else if (cmp < 0) {
                break;
            }
        }
    }
    for (int i = 0; i < nd; i++) {
        perm[i] = p[nd - 1 - i]; /* outermost first */
    }
}

struct td_tensor td_rng_permuted(const struct td_tensor *t, const int perm[TD_MAX_DIMS])
{
    struct td_tensor v = *t;
    for (int i = 0; i < t->ndim; i++) {
        v.shape[i] = t->shape[perm[i]];
        v.strides[i] = t->strides[perm[i]];
    }
    return v;
}

/* ---- uniform_ ---- */

struct uni_ctx {
    struct td_rng *r;
    enum td_dtype dt;
    float f0, f1;
    double d0, d1;
};

static void uni_one(void *elem, void *ctx, int64_t i)
{
    (void)i;
    struct uni_ctx *u = ctx;
    if (u->dt == TD_DTYPE_F32) {
        *(float *)elem = td_rng_uniform_f32(u->r, u->f0, u->f1);
    } else {
        *(double *)elem = td_rng_uniform_f64(u->r, u->d0, u->d1);
    }
}

int td_rng_fill_uniform(struct td_tensor *t, const int *order, double from, double to,
                        struct td_rng *r, struct td_err *err)
{
    int perm[TD_MAX_DIMS];
    if (order == NULL) {
        td_rng_walk_order(t, perm);
        order = perm;
    }
    struct td_tensor v = td_rng_permuted(t, order);
    struct uni_ctx u =
        {.r = r, .dt = t->dtype, .f0 = (float)from, .f1 = (float)to, .d0 = from, .d1 = to};
    return td_tensor_each(&v, uni_one, &u, err);
}

/* ---- normal_ ---- */

/* avx_mathfun.h's log256_ps for one lane (x > 0), with the fused multiply-adds GCC forms from
** its separate multiplies and adds under -mfma. */
static float cephes_logf(float x)
{
    const float min_norm = 1.17549435e-38f;
    if (!(x > min_norm)) {
        x = min_norm; /* _mm256_max_ps(x, min_norm_pos) */
    }
    uint32_t bits;
    memcpy(&bits, &x, 4);
    int32_t imm0 = (int32_t)(bits >> 23);
    bits = (bits & ~0x7f800000u) | 0x3f000000u; /* | 0.5f */
    memcpy(&x, &bits, 4);
    imm0 -= 0x7f;
    float e = (float)imm0;
    e = e + 1.0f;
    bool lt = x < 0.707106781186547524f;
    float tmp = lt ? x : 0.0f;
    x = x - 1.0f;
    e = e - (lt ? 1.0f : 0.0f);
    x = x + tmp;
    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, +1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, +2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, +3.3333331174E-1f);
    y = y * x;
    tmp = e * -2.12194440e-4f;
    y = fmaf(y, z, tmp);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, 0.693359375f, x);
    return x;
}

/* avx_mathfun.h's sincos256_ps for one lane. */
static void cephes_sincosf(float xin, float *s, float *c)
{
    float x = fabsf(xin);
    bool neg = signbit(xin);
    float y = x * 1.27323954473516f;
    int32_t imm2 = (int32_t)y; /* truncation; theta is in [0, 2 pi) */
    imm2 = (imm2 + 1) & ~1;
    y = (float)imm2;
    int32_t imm4 = imm2;
    bool swap_sin = (imm2 & 4) != 0;
    bool poly2 = (imm2 & 2) == 0; /* the sine polynomial for the sine */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    imm4 = imm4 - 2;
    bool swap_cos = (~imm4 & 4) != 0;
    bool sin_neg = neg != swap_sin;
    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    float tmp = z * 0.5f;
    yc = fmaf(yc, z, -tmp);
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    float sv = poly2 ? ys : yc, cv = poly2 ? yc : ys;
    *s = sin_neg ? -sv : sv;
    *c = swap_cos ? -cv : cv;
}

/* normal_fill_16_AVX2 on data[0..16): float32 uniforms in, normals out. */
static void fill16_f32(float *d, float mean, float std)
{
    const float two_pi = (float)(2.0 * M_PI);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j], u2 = d[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float theta = two_pi * u2, st, ct;
        cephes_sincosf(theta, &st, &ct);
        d[j] = fmaf(radius * ct, std, mean);
        d[j + 8] = fmaf(radius * st, std, mean);
    }
}

/* normal_fill_16<double> */
static void fill16_f64(double *d, double mean, double std)
{
    for (int j = 0; j < 8; j++) {
        double u1 = 1 - d[j], u2 = d[j + 8];
        double radius = sqrt(-2 * log(u1));
        double theta = 2.0f * M_PI * u2;
        d[j] = fma(radius * cos(theta), std, mean);
        d[j + 8] = fma(radius * sin(theta), std, mean);
    }
}

static void fill_uniforms(void *d, enum td_dtype dt, int64_t from, int64_t to, struct td_rng *r)
{
    for (int64_t i = from; i < to; i++) {
        if (dt == TD_DTYPE_F32) {
            ((float *)d)[i] = td_rng_uniform_f32(r, 0.0f, 1.0f);
        } else {
            ((double *)d)[i] = td_rng_uniform_f64(r, 0.0, 1.0);
        }
    }
}

static void fill16(void *d, enum td_dtype dt, int64_t at, double mean, double std)
{
    if (dt == TD_DTYPE_F32) {
        fill16_f32((float *)d + at, (float)mean, (float)std);
    } else {
        fill16_f64((double *)d + at, mean, std);
    }
}

struct norm_ctx {
    struct td_rng *r;
    enum td_dtype dt;
    double mean, std;
};

static void norm_one(void *elem, void *ctx, int64_t i)
{
    (void)i;
    struct norm_ctx *c = ctx;
    double v = td_rng_normal_f64(c->r, c->mean, c->std);
    if (c->dt == TD_DTYPE_F32) {
        *(float *)elem = (float)v;
    } else {
        *(double *)elem = v;
    }
}

int td_rng_fill_normal(struct td_tensor *t, const int *order, double mean, double std,
                       struct td_rng *r, struct td_err *err)
{
    int64_t n = t->numel;
    int rc;
    if (n >= 16 && order == NULL && td_tensor_is_contiguous(t)) {
        void *d = td_tensor_data(t);
        for (int64_t c = 0, end; c < n; c = end) {
            end = td_cancel_chunk_end(c, n);
            fill_uniforms(d, t->dtype, c, end, r);
            if ((rc = td_cancel_check(err)) != 0) {
                return rc;
            }
        }
        for (int64_t k = 0; k < n / 16; k++) {
            fill16(d, t->dtype, 16 * k, mean, std);
            if (k % (TD_CANCEL_CHUNK / 16) == TD_CANCEL_CHUNK / 16 - 1 &&
                (rc = td_cancel_check(err)) != 0) {
                return rc;
            }
        }
        if (n % 16 != 0) {
            fill_uniforms(d, t->dtype, n - 16, n, r);
            fill16(d, t->dtype, n - 16, mean, std);
        }
        return 0;
    }
    int perm[TD_MAX_DIMS];
    if (order == NULL) {
        td_rng_walk_order(t, perm);
        order = perm;
    }
    struct td_tensor v = td_rng_permuted(t, order);
    struct norm_ctx c = {.r = r, .dt = t->dtype, .mean = mean, .std = std};
    return td_tensor_each(&v, norm_one, &c, err);
}

/* ---- torch.rand / torch.randn ---- */

static int check_float(enum td_dtype dt, const char *kernel, struct td_err *err)
{
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", kernel,
                          td_dtype_cname(dt));
    }
    return 0;
}

static int draw(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                struct td_rng *rng, bool normal, struct td_quota *q, struct td_err *err)
{
    int rc;
    if ((rc = check_float(dt, normal ? "normal_kernel_cpu" : "check_uniform_bounds", err)) != 0 ||
        (rc = td_tensor_empty(out, dt, shape, ndim, q, err)) != 0) {
        return rc;
    }
    rc = normal ? td_rng_fill_normal(*out, NULL, 0.0, 1.0, rng, err)
                : td_rng_fill_uniform(*out, NULL, 0.0, 1.0, rng, err);
    if (rc != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

int td_tensor_rand(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                   struct td_rng *rng, struct td_quota *q, struct td_err *err)
{
    return draw(out, dt, shape, ndim, rng, false, q, err);
}

int td_tensor_randn(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    struct td_rng *rng, struct td_quota *q, struct td_err *err)
{
    return draw(out, dt, shape, ndim, rng, true, q, err);
}
