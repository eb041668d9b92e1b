/* server/core/rng.c — Philox4x32-10 and the random fills built on it.
**
** Element i of a draw uses counter (offset + i) and nothing else, so a draw gives the same values
** however it is split across threads. Uniform float32 takes 24 bits of one output word, float64
** 53 bits of two; a normal takes two uniforms through Box–Muller.
*/
#include "rng.h"

#include "cancel.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void td_rng_seed(struct td_rng *r, uint64_t seed)
{
    r->seed = seed;
    r->offset = 0;
}

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void td_philox(uint64_t seed, uint64_t ctr, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static int check_float(enum td_dtype dt, const char *kernel, struct td_err *err)
{
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", kernel,
                          td_dtype_cname(dt));
    }
    return 0;
}

/* Fills a new float tensor: element i from counter offset + i; normal draws use Box-Muller. */
static int draw(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                struct td_rng *rng, bool normal, struct td_quota *q, struct td_err *err)
{
    int rc;
    if ((rc = check_float(dt, normal ? "normal_kernel_cpu" : "check_uniform_bounds", err)) != 0 ||
        (rc = td_tensor_empty(out, dt, shape, ndim, q, err)) != 0) {
        return rc;
    }
    int64_t n = (*out)->numel;
    void *d = td_tensor_data(*out);
    uint32_t w[4];
    for (int64_t c = 0, end; c < n; c = end) {
        end = td_cancel_chunk_end(c, n);
        for (int64_t i = c; i < end; i++) {
            td_philox(rng->seed, rng->offset + (uint64_t)i, w);
            double v;
            if (normal) {
                /* u1 in (0, 1] so the log is finite; u2 in [0, 1). */
                double u1 = ((double)(((uint64_t)w[0] << 32 | w[1]) >> 11) + 1.0) *
                            (1.0 / 9007199254740992.0);
                double u2 = (double)(((uint64_t)w[2] << 32 | w[3]) >> 11) *
                            (1.0 / 9007199254740992.0);
                v = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
            } else if (dt == TD_DTYPE_F32) {
                v = (double)((float)(w[0] >> 8) * (1.0f / 16777216.0f));
            } else {
                v = (double)(((uint64_t)w[0] << 32 | w[1]) >> 11) * (1.0 / 9007199254740992.0);
            }
            if (dt == TD_DTYPE_F32) {
                ((float *)d)[i] = (float)v;
            } else {
                ((double *)d)[i] = v;
            }
        }
        if ((rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(*out);
            *out = NULL;
            return rc;
        }
    }
    rng->offset += (uint64_t)n;
    return 0;
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
