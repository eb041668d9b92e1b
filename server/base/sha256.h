/* server/base/sha256.h — SHA-256 (FIPS 180-4), for storing session tokens as hashes. */
#ifndef TD_BASE_SHA256_H
#define TD_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define TD_SHA256_BYTES 32

void td_sha256(const void *data, size_t len, uint8_t out[TD_SHA256_BYTES]);

/* out gets 64 lowercase hex digits and a NUL. */
void td_sha256_hex(const void *data, size_t len, char out[2 * TD_SHA256_BYTES + 1]);

#endif
