/* server/base/node.c — node ids, host:port addresses and session tokens' form (base/node.h).
**
** String checks only: no I/O, no allocation, every read bounded by the length given.
*/
#include "base/node.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

bool td_node_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > TD_NODE_ID_MAX || s[0] == '-' || s[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

/* A DNS name: dot-separated labels of 1-63 [A-Za-z0-9-] not starting or ending with '-', at
** most 253 bytes, and not made of digits and dots alone (that would be a bad IPv4 address). */
static bool dns_name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 253) {
        return false;
    }
    bool alpha = false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        bool digit = c >= '0' && c <= '9';
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!digit && !letter && c != '-') {
            return false;
        }
        alpha |= letter || c == '-';
        label++;
    }
    return alpha;
}

bool td_hostport_parse(const char *s, bool port_zero_ok, char *host, size_t hostcap,
                       uint16_t *port)
{
    char h[256];
    const char *colon;
    size_t hn;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= 64) {
            return false;
        }
        hn = (size_t)(end - s - 1);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof h) {
            return false;
        }
        hn = (size_t)(colon - s);
    }
    memcpy(h, v6 ? s + 1 : s, hn);
    h[hn] = '\0';
    unsigned char buf[16];
    bool ok;
    if (v6) {
        ok = inet_pton(AF_INET6, h, buf) == 1;
    } else {
        ok = inet_pton(AF_INET, h, buf) == 1 || dns_name_valid(h, hn);
    }
    const char *d = colon + 1;
    size_t dn = strlen(d);
    if (!ok || dn == 0 || dn > 5) {
        return false;
    }
    long p = 0;
    for (size_t i = 0; i < dn; i++) {
        if (d[i] < '0' || d[i] > '9') {
            return false;
        }
        p = p * 10 + (d[i] - '0');
    }
    if (p > 65535 || (p == 0 && !port_zero_ok)) {
        return false;
    }
    if (host != NULL) {
        if (hostcap <= hn) {
            return false;
        }
        memcpy(host, h, hn + 1);
    }
    if (port != NULL) {
        *port = (uint16_t)p;
    }
    return true;
}

enum td_token_form td_token_split(const uint8_t *tok, size_t len, char node[TD_NODE_ID_MAX + 1])
{
    node[0] = '\0';
    if (len == TD_SECRET_BYTES) {
        return TD_TOKEN_LEGACY; /* the new form is at least 34 bytes: never 16 */
    }
    const uint8_t *dot = len > 0 ? memchr(tok, '.', len) : NULL;
    if (dot == NULL) {
        return TD_TOKEN_BAD;
    }
    size_t n = (size_t)(dot - tok);
    if (!td_node_id_valid((const char *)tok, n)) {
        return TD_TOKEN_BAD;
    }
    memcpy(node, tok, n);
    node[n] = '\0';
    if (len - n - 1 != TD_SECRET_HEX) {
        return TD_TOKEN_BAD;
    }
    for (size_t i = n + 1; i < len; i++) {
        uint8_t c = tok[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return TD_TOKEN_BAD;
        }
    }
    return TD_TOKEN_NODE;
}

size_t td_token_format(const char *node, const uint8_t secret[TD_SECRET_BYTES],
                       uint8_t out[TD_NODE_TOKEN_MAX])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(node);
    if (n > TD_NODE_ID_MAX) {
        n = TD_NODE_ID_MAX; /* callers pass valid ids; never write past out */
    }
    memcpy(out, node, n);
    out[n++] = '.';
    for (int i = 0; i < TD_SECRET_BYTES; i++) {
        out[n++] = (uint8_t)hex[secret[i] >> 4];
        out[n++] = (uint8_t)hex[secret[i] & 15];
    }
    return n;
}
