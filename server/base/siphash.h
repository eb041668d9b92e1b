/* server/base/siphash.h — SipHash (Aumasson & Bernstein, "SipHash: a fast short-input PRF",
** 2012), written from the paper, with the process's secret key for hash tables.
**
** Tables whose keys a client chooses (handle tables, the session index) must not let the client
** choose the slots too: with an unkeyed, invertible mix, 100,000 handles picked to collide turned
** linear probing quadratic (finding 6 of issue 14). SipHash keyed with 128 random bits per
** process makes the slots unpredictable to anyone outside the process. Maps use SipHash-1-3 (one
** compression round, three finalization rounds: what CPython and Rust's std use for the same
** job); the rounds are parameters so SipHash-2-4's published vectors test the same code.
** The key is set once at start, before any thread reads it; base depends on nothing but libc.
*/
#ifndef TD_BASE_SIPHASH_H
#define TD_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define TD_SIPHASH_KEY_BYTES 16

/* SipHash-c-d of `len` bytes at `data` (borrowed) under `key`, as the paper defines it: the
** 64-bit result, whose little-endian bytes are the reference implementation's output. */
uint64_t td_siphash(const uint8_t key[TD_SIPHASH_KEY_BYTES], const void *data, size_t len,
                    int c_rounds, int d_rounds);

/* Draws the process key from getrandom. Returns 0, or -1 when the kernel gives no randomness
** (the key then stays as it was: all zeros unless set). Call once at start, before threads. */
int td_siphash_key_init(void);

/* Sets the process key (tests: a fixed key makes slots reproducible). Before threads. */
void td_siphash_key_set(const uint8_t key[TD_SIPHASH_KEY_BYTES]);

/* SipHash-1-3 of x's 8 little-endian bytes under the process key: the maps' hash. Equal to
** td_siphash(key, le64(x), 8, 1, 3), unrolled for one block. */
uint64_t td_siphash13_u64(uint64_t x);

/* td_siphash13_u64(x), remembered for a few words this thread hashed recently (under the
** current key): the maps' hash, as a handle table looks the same few handles up many times in
** a row. Always equal to td_siphash13_u64(x). */
uint64_t td_siphash13_u64_recent(uint64_t x);

/* SipHash-1-3 of `len` bytes at `data` (borrowed) under the process key: the hash of a key a
** client chooses that is not one word (a session's tensor names), so it cannot pick collisions. */
uint64_t td_siphash13_bytes(const void *data, size_t len);

#endif
