/* server/base/node.h — the words of scale-out that every layer reads: node ids, host:port
** addresses and the session token's form (docs/DESIGN.md, "Many daemons").
**
** Pure string checks, no I/O: config (the top layer) validates --node-id, --advertise and
** --peers with them, session writes tokens in the form checked here, and rpc splits a Hello's
** token to route it. Nothing here trusts its input: every function takes a length and reads no
** further.
*/
#ifndef TD_BASE_NODE_H
#define TD_BASE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_NODE_ID_MAX 63     /* a DNS label */
#define TD_SECRET_BYTES 16    /* a token's secret: 128 bits from the OS */
#define TD_SECRET_HEX 32      /* ... as lowercase hex in the token */
#define TD_HOSTPORT_MAX 261   /* a DNS name (253) or [IPv6] (47), ':' and a port */
#define TD_NODE_TOKEN_MAX (TD_NODE_ID_MAX + 1 + TD_SECRET_HEX) /* "<node id>.<32 hex>" */

/* True when s[0..n) is a node id: 1-63 bytes of [a-z0-9-], neither first nor last a '-'. */
bool td_node_id_valid(const char *s, size_t n);

/* True when s (NUL-terminated) is HOST:PORT with HOST a DNS name (labels of [A-Za-z0-9-] of at
** most 63, 253 in all, not all digits and dots), a dotted IPv4 address or a bracketed IPv6
** one, and PORT 1-65535 (port_zero_ok: 0 too). On success host (hostcap bytes, at least 254)
** holds the host without brackets and *port the port; both may be NULL. */
bool td_hostport_parse(const char *s, bool port_zero_ok, char *host, size_t hostcap,
                       uint16_t *port);

/* What a session token is, by its form alone. */
enum td_token_form {
    TD_TOKEN_LEGACY, /* 16 raw bytes: a session saved before scale-out */
    TD_TOKEN_NODE,   /* "<node id>.<32 lowercase hex>": node holds the id */
    TD_TOKEN_BAD,    /* anything else; node holds the part before the first '.' when that
                     ** is a well-formed id, else "" */
};

/* Classifies tok[0..len) and copies its node id (NUL-terminated) into node. */
enum td_token_form td_token_split(const uint8_t *tok, size_t len, char node[TD_NODE_ID_MAX + 1]);

/* Writes "<node>.<hex of secret>" (no NUL) into out, which has room for TD_NODE_TOKEN_MAX
** bytes; returns its length. node must be valid (td_node_id_valid). */
size_t td_token_format(const char *node, const uint8_t secret[TD_SECRET_BYTES],
                       uint8_t out[TD_NODE_TOKEN_MAX]);

#endif
