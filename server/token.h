/* server/token.h — the auth token file (--auth-token-file): read whole, checked, never logged.
**
** Read at start and again on SIGHUP. The rules (issue 14, finding 5): trailing whitespace (the
** newline an editor adds) is dropped; what is left must be TD_TOKEN_MIN_BYTES to
** TD_TOKEN_MAX_BYTES of UTF-8 with no NUL or other control byte, because the token travels as a
** protobuf string and an empty one would let every client in.
*/
#ifndef TD_TOKEN_H
#define TD_TOKEN_H

#include <stddef.h>

#define TD_TOKEN_MIN_BYTES 16
#define TD_TOKEN_MAX_BYTES 4096

/* Returns the token (td_malloc'd, taken by the caller), or NULL with the reason in why[cap]; the
** reason never quotes the token. */
char *td_token_read_file(const char *path, char *why, size_t cap);

#endif
