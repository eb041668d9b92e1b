/* server/base/siphash.c — SipHash-c-d and the process key. See siphash.h.
**
** From the paper: the 128-bit key k0||k1 (little-endian words) initialises
**   v0 = k0 ^ "somepseu", v1 = k1 ^ "dorandom", v2 = k0 ^ "lygenera", v3 = k1 ^ "tedbytes";
** each 8-byte little-endian message word m is absorbed as v3 ^= m, c SipRounds, v0 ^= m; the last
** word holds the remaining 0-7 bytes with (len mod 256) in its top byte; then v2 ^= 0xff, d
** SipRounds, and the result is v0 ^ v1 ^ v2 ^ v3.
*/
#include "siphash.h"

#include <string.h>
#include <sys/random.h>

static uint64_t sip_key[2]; /* k0, k1 */
static uint64_t key_gen;    /* bumped by every td_siphash_key_set */

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* One SipRound: the ARX network of the paper's figure 2. */
#define SIPROUND(v0, v1, v2, v3)                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) {
        x = x << 8 | p[i];
    }
    return x;
}

uint64_t td_siphash(const uint8_t key[TD_SIPHASH_KEY_BYTES], const void *data, size_t len,
                    int c_rounds, int d_rounds)
{
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    const uint8_t *p = data;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        for (int r = 0; r < c_rounds; r++) {
            SIPROUND(v0, v1, v2, v3);
        }
        v0 ^= m;
    }
    uint64_t b = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++) {
        b |= (uint64_t)p[whole + i] << (8 * i);
    }
    v3 ^= b;
    for (int r = 0; r < c_rounds; r++) {
        SIPROUND(v0, v1, v2, v3);
    }
    v0 ^= b;
    v2 ^= 0xff;
    for (int r = 0; r < d_rounds; r++) {
        SIPROUND(v0, v1, v2, v3);
    }
    return v0 ^ v1 ^ v2 ^ v3;
}

int td_siphash_key_init(void)
{
    uint8_t key[TD_SIPHASH_KEY_BYTES];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
        return -1;
    }
    td_siphash_key_set(key);
    memset(key, 0, sizeof key);
    return 0;
}

void td_siphash_key_set(const uint8_t key[TD_SIPHASH_KEY_BYTES])
{
    sip_key[0] = load_le64(key);
    sip_key[1] = load_le64(key + 8);
    key_gen++; /* every thread's memo of recent hashes is stale now */
}

uint64_t td_siphash13_u64(uint64_t x)
{
    uint64_t v0 = sip_key[0] ^ 0x736f6d6570736575ULL, v1 = sip_key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = sip_key[0] ^ 0x6c7967656e657261ULL, v3 = sip_key[1] ^ 0x7465646279746573ULL;
    v3 ^= x; /* the one whole word */
    SIPROUND(v0, v1, v2, v3);
    v0 ^= x;
    const uint64_t b = (uint64_t)8 << 56; /* no bytes left; the length in the top byte */
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t td_siphash13_bytes(const void *data, size_t len)
{
    uint8_t key[TD_SIPHASH_KEY_BYTES];
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < 8; i++) {
            key[8 * w + i] = (uint8_t)(sip_key[w] >> (8 * i));
        }
    }
    return td_siphash(key, data, len, 1, 3);
}

/* A memo of words hashed on this thread, direct-mapped (RECENT_N slots, the slot from the
** word's low bits): a tiny op looks its two operand handles up again and again, and the handle
** it creates is checked, inserted, and later freed, usually within a window of a few hundred
** requests. A memo changes no hash, so a client's control over the maps' slots stays what
** SipHash gives it; words that share a memo slot only cost each other a hash again. 12 KiB
** per thread that hashes. */
#define RECENT_N 512

static _Thread_local struct {
    uint64_t x, h;
    uint64_t tag; /* key_gen + 1 when filled under the current key; 0 (or stale): empty */
} recent[RECENT_N];

uint64_t td_siphash13_u64_recent(uint64_t x)
{
    unsigned i = (unsigned)(x ^ x >> 9) & (RECENT_N - 1);
    uint64_t tag = key_gen + 1;
    if (recent[i].tag == tag && recent[i].x == x) {
        return recent[i].h;
    }
    uint64_t h = td_siphash13_u64(x);
    recent[i].x = x;
    recent[i].h = h;
    recent[i].tag = tag;
    return h;
}
