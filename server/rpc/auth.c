/* server/rpc/auth.c — authentication of a Hello: the token check and the penalty table.
**
** A Hello's auth_token is compared with --auth-token in constant time, at its length as sent on
** the wire (td_rpc_token_wire_len scans the raw Request: protobuf-c's string stops at a
** NUL). Addresses that keep failing are slowed down by a bounded table of penalties keyed by a
** hash of the peer's host (td_rpc_peer_set_addr). Opening or resuming the session is rpc.c's
** (td_rpc_run_hello); this file knows nothing of sessions. Loop thread only.
*/
#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "rpc/internal.h"


/* Authentication failures from one address: after AUTH_FREE_TRIES, each further Hello from it is
** refused without looking at the token until a penalty of 2^(n - AUTH_FREE_TRIES) seconds
** (at most AUTH_MAX_PENALTY_MS) has passed since the last failure. A success clears it. */
#define AUTH_FREE_TRIES 3
#define AUTH_MAX_PENALTY_MS 60000u
#define AUTH_TABLE_MAX 4096

struct auth_record {
    uint32_t failures;
    uint64_t until_ms;
};

void td_rpc_peer_set_addr(struct td_rpc_peer *p, const char *addr, uint64_t conn_id)
{
    p->conn_id = conn_id;
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    size_t n = strlen(addr);
    const char *colon = strrchr(addr, ':');
    if (colon != NULL) {
        n = (size_t)(colon - addr); /* the port changes per connection; the host does not */
    }
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)addr[i]) * 1099511628211u;
    }
    p->addr_key = h != 0 ? h : 1;
}

static int auth_check_penalty(struct td_rpc_server *srv, uint64_t key, struct td_err *err)
{
    struct auth_record *r = key != 0 ? td_map_get(&srv->auth_penalty, key) : NULL;
    uint64_t now = srv->now_ms();
    if (r != NULL && r->until_ms > now) {
        return td_err_set(err, TD_EAUTH,
                          "too many failed authentication attempts from this "
                          "address; retry in %llu ms",
                          (unsigned long long)(r->until_ms - now));
    }
    return 0;
}

/* The table is full: forget addresses whose penalty has run out, or failing that the one
** whose penalty ends first. (Forgetting everyone would let an attacker with many addresses
** wipe its own record.) Rare, so a scan will do. */
static void auth_make_room(struct td_rpc_server *srv)
{
    uint64_t now = srv->now_ms(), key, first_key = 0, first_until = UINT64_MAX;
    void *val;
    uint64_t expired[64];
    size_t nexp = 0;
    for (size_t it = 0; td_map_next(&srv->auth_penalty, &it, &key, &val);) {
        const struct auth_record *r = val;
        if (r->until_ms <= now && nexp < sizeof expired / sizeof expired[0]) {
            expired[nexp++] = key;
        }
        if (r->until_ms < first_until) {
            first_until = r->until_ms;
            first_key = key;
        }
    }
    if (nexp == 0 && first_key != 0) {
        expired[nexp++] = first_key;
    }
    for (size_t i = 0; i < nexp; i++) {
        td_free(td_map_del(&srv->auth_penalty, expired[i]));
    }
}

static void auth_note(struct td_rpc_server *srv, uint64_t key, bool ok)
{
    if (key == 0) {
        return;
    }
    struct auth_record *r = td_map_get(&srv->auth_penalty, key);
    if (ok) {
        td_free(td_map_del(&srv->auth_penalty, key));
        return;
    }
    if (r == NULL) {
        if (srv->auth_penalty.len >= AUTH_TABLE_MAX) {
            auth_make_room(srv);
        }
        r = td_calloc(1, sizeof *r);
        if (r == NULL || td_map_put(&srv->auth_penalty, key, r) != 0) {
            td_free(r);
            return;
        }
    }
    r->failures++;
    if (r->failures > AUTH_FREE_TRIES) {
        uint32_t shift = r->failures - AUTH_FREE_TRIES - 1;
        uint64_t ms = shift >= 6 ? AUTH_MAX_PENALTY_MS : 1000u << shift;
        r->until_ms = srv->now_ms() + (ms < AUTH_MAX_PENALTY_MS ? ms : AUTH_MAX_PENALTY_MS);
    }
}

void td_rpc_server_close(struct td_rpc_server *srv)
{
    size_t iter = 0;
    uint64_t key;
    void *val;
    while (td_map_next(&srv->auth_penalty, &iter, &key, &val)) {
        td_free(val);
    }
    td_map_close(&srv->auth_penalty);
    td_map_init(&srv->auth_penalty);
    td_rpc_job_cache_empty(srv);
}

/* ---- the Hello's token as sent ---- */


/* Reads a varint at *pos of b[0..n); false when it is truncated or longer than 10 bytes. */
static bool pb_varint(const uint8_t *b, size_t n, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int i = 0; i < 10 && *pos < n; i++) {
        uint8_t c = b[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << (7 * i);
        if ((c & 0x80) == 0) {
            return true;
        }
    }
    return false;
}

/* Steps over the value of a field of wire type wt at *pos; a length-delimited one's bytes are
** left in *sub and *sub_len. False for a truncated value or a wire type protobuf-c refuses. */
static bool pb_skip(const uint8_t *b, size_t n, size_t *pos, unsigned wt, size_t *sub,
                    size_t *sub_len)
{
    uint64_t v;
    switch (wt) {
    case 0: return pb_varint(b, n, pos, &v);
    case 1:
    case 5: v = wt == 1 ? 8 : 4; break;
    case 2:
        if (!pb_varint(b, n, pos, &v)) {
            return false;
        }
        break;
    default: return false;
    }
    if (v > n - *pos) {
        return false;
    }
    *sub = *pos;
    *sub_len = (size_t)v;
    *pos += (size_t)v;
    return true;
}

/* The length on the wire of a Hello's or NodeInfo's auth_token (body_field, token_field), NUL
** bytes included, or -1 when the request does not scan. protobuf-c hands a string over
** NUL-terminated, so strlen() of a token with a NUL in it stops short: td_rpc_auth_check compares
** this length too. Occurrences merge as protobuf-c merges them (the last token wins; another body
** member in between replaces the Hello); where they might not agree the check refuses, because
** both lengths must equal the expected token's. */
int64_t td_rpc_token_wire_len(const uint8_t *meta, size_t n, unsigned body_field,
                              unsigned token_field)
{
    size_t pos = 0, sub, sub_len;
    int64_t len = 0;
    while (pos < n) {
        uint64_t key;
        if (!pb_varint(meta, n, &pos, &key) ||
            !pb_skip(meta, n, &pos, (unsigned)(key & 7), &sub, &sub_len)) {
            return -1;
        }
        uint64_t field = key >> 3;
        if (field == body_field && (key & 7) == 2) {
            const uint8_t *h = meta + sub;
            size_t q = 0, tok, tok_len;
            while (q < sub_len) {
                uint64_t hkey;
                if (!pb_varint(h, sub_len, &q, &hkey) ||
                    !pb_skip(h, sub_len, &q, (unsigned)(hkey & 7), &tok, &tok_len)) {
                    return -1;
                }
                if ((hkey >> 3) == token_field && (hkey & 7) == 2) {
                    len = (int64_t)tok_len;
                }
            }
        } else if (field != body_field && field <= INT_MAX &&
                   td_rpc_request_of((int)field) != NULL) {
            len = 0; /* another member of the body oneof: the Hello so far is dropped */
        }
    }
    return len;
}


/* ---- the token check ---- */

int td_rpc_auth_check(struct td_rpc_server *srv, uint64_t addr_key, const char *given,
                      int64_t wire_len, struct td_err *err)
{
    if (srv->auth_token == NULL) {
        return 0;
    }
    /* Only NULL means no auth: an empty expected token refuses every Hello. Constant time
    ** over the expected token's length; the token as sent is its full wire length, so one
    ** with a NUL in it is not cut short at the NUL. */
    int prc = auth_check_penalty(srv, addr_key, err);
    if (prc != 0) {
        return prc;
    }
    if (given == NULL) {
        given = "";
    }
    size_t want = strlen(srv->auth_token), got = strlen(given);
    uint8_t diff = (uint8_t)(want == 0) | (uint8_t)(want != got) |
                   (uint8_t)(wire_len < 0 || (uint64_t)wire_len != got);
    for (size_t i = 0; i < want; i++) {
        diff |= (uint8_t)(srv->auth_token[i] ^ (i < got ? given[i] : 0));
    }
    auth_note(srv, addr_key, diff == 0);
    if (diff != 0) {
        return td_err_set(err, TD_EAUTH, "authentication failed");
    }
    return 0;
}
