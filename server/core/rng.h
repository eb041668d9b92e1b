/* server/core/rng.h — the per-session, counter-based random number generator.
**
** Philox4x32-10 keyed by the seed: value i of a draw depends only on (seed, offset + i), so
** results do not depend on threading or chunking. Each draw advances the offset by the counters
** it used. Pure C.
*/
#ifndef TD_CORE_RNG_H
#define TD_CORE_RNG_H

#include <stdint.h>

#include "tensor.h"

struct td_rng {
    uint64_t seed;
    uint64_t offset; /* next unused counter */
};

/* torch.manual_seed(seed): restarts the sequence. */
void td_rng_seed(struct td_rng *r, uint64_t seed);

/* Philox4x32-10 block for counter `ctr` under key `seed`: four 32-bit outputs. */
void td_philox(uint64_t seed, uint64_t ctr, uint32_t out[4]);

/* torch.rand / torch.randn: new contiguous float tensor (dt float32 or float64; integer and
** bool dtypes fail with PyTorch's message), uniform on [0, 1) / standard normal. */
int td_tensor_rand(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                   struct td_rng *rng, struct td_quota *q, struct td_err *err);
int td_tensor_randn(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    struct td_rng *rng, struct td_quota *q, struct td_err *err);

#endif
