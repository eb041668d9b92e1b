/* server/core/rng.h — the random number generator: torch's CPU generator (CPUGeneratorImpl).
**
** An mt19937 engine with torch's seeding (the low 32 bits of the 64-bit seed; initial_seed keeps
** all 64), its 32- and 64-bit draws, and its cached second Box-Muller sample, so that a seed
** gives the values torch gives. Draws are sequential: a kernel that draws walks its elements in
** the order torch's TensorIterator does (td_rng_walk_order) on one thread, and a failed or
** cancelled draw leaves the caller's copy of the state to be thrown away (rpc writes a state
** back only when the op succeeded). The state serialises to torch's CPUGeneratorImplState
** bytes (TD_RNG_STATE_BYTES), which torch.Generator.set_state accepts and the other way round.
** Values are those of torch's AVX2 kernels (its x86-64 default; fused multiply-adds, the Cephes
** float32 normal); torch run with ATEN_CPU_CAPABILITY=default rounds a * b + c twice and may
** differ in the last bit of float results (integers and the draws themselves do not).
** The struct is plain data, owned by whoever embeds it (a session, a stack copy). Pure C.
*/
#ifndef TD_CORE_RNG_H
#define TD_CORE_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define TD_MT_N 624
#define TD_RNG_DEFAULT_SEED 67280421310721ULL /* torch's default_rng_seed_val */
#define TD_RNG_STATE_BYTES 5056               /* sizeof(CPUGeneratorImplState) */
#define TD_RNG_STATE_LEGACY_BYTES 5048        /* sizeof(CPUGeneratorImplStateLegacy) */

struct td_rng {
    uint64_t seed; /* initial_seed() */
    uint32_t state[TD_MT_N];
    int32_t left;  /* mt19937's left_: draws until the next twist, plus one */
    uint32_t next; /* index of the next state word */
    bool has_double_normal, has_float_normal;
    double double_normal; /* the cached sin-side Box-Muller sample (normal_distribution) */
    float float_normal;
};

/* torch.manual_seed(seed): restarts the engine, drops the cached normal samples. */
void td_rng_seed(struct td_rng *r, uint64_t seed);

/* CPUGeneratorImpl::random() and random64() (two draws, the first the high word). */
uint32_t td_rng_u32(struct td_rng *r);
uint64_t td_rng_u64(struct td_rng *r);

/* uniform_real_distribution<float> / <double>(from, to): 24 low bits of one draw / 53 low bits
** of random64(), times 2^-24 / 2^-53, times (to - from), plus from. */
float td_rng_uniform_f32(struct td_rng *r, float from, float to);
double td_rng_uniform_f64(struct td_rng *r, double from, double to);

/* normal_distribution<double>(mean, std): Box-Muller on two double uniforms, the sine sample
** cached for the next call. */
double td_rng_normal_f64(struct td_rng *r, double mean, double std);

/* The generator's state as torch's get_state() bytes (padding zero). */
void td_rng_get_state(const struct td_rng *r, uint8_t out[TD_RNG_STATE_BYTES]);

/* torch's set_state: `len` is TD_RNG_STATE_BYTES or TD_RNG_STATE_LEGACY_BYTES; an invalid engine
** (not seeded, left or next out of range) is refused with torch's messages. r unchanged on error.
** Errors: TD_EINVAL. */
int td_rng_set_state(struct td_rng *r, const uint8_t *in, size_t len, struct td_err *err);

/* perm[0..t->ndim) gets t's dims in the order torch's TensorIterator walks a lone output of t's
** strides, outermost first (innermost: the smallest stride); walking t with its dims so
** permuted visits elements in torch's draw order. */
void td_rng_walk_order(const struct td_tensor *t, int perm[TD_MAX_DIMS]);

/* A view of t (same storage, no reference taken) with its dims permuted by perm. */
struct td_tensor td_rng_permuted(const struct td_tensor *t, const int perm[TD_MAX_DIMS]);

/* uniform_(from, to) and normal_(mean, std) of torch's CPU kernels on a float tensor t, in
** place. order NULL: t is torch's tensor, walked in torch's order, and a normal draw of 16 or
** more elements into a contiguous t takes torch's 16-sample Box-Muller path (float32 as its AVX2
** kernel computes it). order given: torch's tensor is a non-contiguous layout of t's shape
** (rand_like of a transposed tensor), t's dims are walked in that order (outermost first) and
** a normal draw goes element by element, as torch's does then. Checks cancellation; the caller
** checks dtype and bounds. */
int td_rng_fill_uniform(struct td_tensor *t, const int *order, double from, double to,
                        struct td_rng *r, struct td_err *err);
int td_rng_fill_normal(struct td_tensor *t, const int *order, double mean, double std,
                       struct td_rng *r, struct td_err *err);

/* torch.rand / torch.randn: new contiguous float tensor (dt float32 or float64; integer and
** bool dtypes fail with PyTorch's message), uniform on [0, 1) / standard normal. */
int td_tensor_rand(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                   struct td_rng *rng, struct td_quota *q, struct td_err *err);
int td_tensor_randn(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    struct td_rng *rng, struct td_quota *q, struct td_err *err);

#endif
