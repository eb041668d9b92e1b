/* server/token.c — reads and checks the auth token file (see token.h). */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"

/* Is p[0..n) well-formed UTF-8? (The token travels as a protobuf string, which clients such as
** Python's protobuf refuse to build from anything else.) */
static bool valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        size_t len = b < 0x80             ? 1
                     : (b & 0xe0) == 0xc0 ? 2
                     : (b & 0xf0) == 0xe0 ? 3
                     : (b & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (len == 0 || i + len > n || (len == 2 && b < 0xc2) || (len == 4 && b > 0xf4)) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        uint32_t cp = len == 1   ? b
                      : len == 2 ? (uint32_t)(b & 0x1f)
                      : len == 3 ? (uint32_t)(b & 0x0f)
                                 : (uint32_t)(b & 7);
        for (size_t k = 1; k < len; k++) {
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false; /* overlong, out of range, or a surrogate */
        }
        i += len;
    }
    return true;
}

/* Reads the token file whole, in binary (finding 5 of issue 14: a NUL used to end the token
** early, and an empty file meant no authentication at all). Trailing whitespace (the newline an
** editor adds) is dropped; what is left must be 16 to 4096 bytes of UTF-8 with no NUL or other
** control byte. Returns the token (td_malloc'd), or NULL with the reason in `why`; the reason
** never quotes the token. */
char *td_token_read_file(const char *path, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "cannot read it: %s", strerror(errno));
        return NULL;
    }
    uint8_t buf[TD_TOKEN_MAX_BYTES + 2];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(why, cap, "cannot read it: %s", strerror(errno));
            close(fd);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) == sizeof buf) {
            break;
        }
    }
    close(fd);
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        snprintf(why, cap, "the token is empty (an empty token would let every client in)");
        return NULL;
    }
    if (n > TD_TOKEN_MAX_BYTES) {
        snprintf(why, cap, "the token is longer than %d bytes", TD_TOKEN_MAX_BYTES);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == 0) {
            snprintf(why, cap, "the token contains a NUL byte (at offset %zu)", i);
            return NULL;
        }
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            snprintf(why, cap, "the token contains a control byte 0x%02x (at offset %zu)", buf[i],
                     i);
            return NULL;
        }
    }
    if (!valid_utf8(buf, n)) {
        snprintf(why, cap, "the token is not valid UTF-8");
        return NULL;
    }
    if (n < TD_TOKEN_MIN_BYTES) {
        snprintf(why, cap, "the token is shorter than %d bytes", TD_TOKEN_MIN_BYTES);
        return NULL;
    }
    char *token = td_malloc(n + 1);
    if (token == NULL) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    memcpy(token, buf, n);
    token[n] = '\0';
    return token;
}
