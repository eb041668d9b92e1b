/* server/base/safetensors.c — see safetensors.h. */
#include "base/safetensors.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/strbuf.h"

static const char *const dtype_names[TD_ST_NDTYPES] = {"F32", "F64", "I32", "I64", "BOOL"};
static const size_t dtype_sizes[TD_ST_NDTYPES] = {4, 8, 4, 8, 1};

size_t td_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < TD_ST_NDTYPES ? dtype_sizes[dtype] : 0;
}

/* ---- building ---- */

/* A JSON string, with quotes, backslashes and control characters escaped. */
static int put_str(struct td_strbuf *b, const char *s, size_t max, struct td_err *err)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        return td_err_set(err, TD_EINVAL, "name or metadata of %zu bytes (want 1..%zu)", n, max);
    }
    td_strbuf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            td_strbuf_append(b, esc, 6);
            continue;
        }
        if (c == '"' || c == '\\') {
            td_strbuf_append(b, "\\", 1);
        }
        td_strbuf_append(b, (const char *)&s[i], 1);
    }
    td_strbuf_append(b, "\"", 1);
    return 0;
}

int td_st_header_build(const struct td_st_entry *e, int n, const char *const *keys,
                       const char *const *vals, int nmeta, uint8_t **out, size_t *len,
                       struct td_err *err)
{
    struct td_strbuf b;
    int rc = 0;
    char num[64];
    td_strbuf_init(&b, 0);
    td_strbuf_append(&b, "\0\0\0\0\0\0\0\0{", 9);
    if (nmeta > 0) {
        td_strbuf_puts(&b, "\"__metadata__\":{");
        for (int i = 0; i < nmeta && rc == 0; i++) {
            if ((rc = put_str(&b, keys[i], TD_ST_NAME_MAX, err)) == 0) {
                td_strbuf_append(&b, ":", 1);
                rc = put_str(&b, vals[i], TD_ST_MAX_META_VALUE, err);
            }
            td_strbuf_append(&b, i + 1 < nmeta ? "," : "", i + 1 < nmeta);
        }
        td_strbuf_append(&b, n > 0 ? "}," : "}", n > 0 ? 2 : 1);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        if (e[i].dtype < 0 || e[i].dtype >= TD_ST_NDTYPES) {
            rc = td_err_set(err, TD_EINVAL, "unknown dtype %d", e[i].dtype);
            break;
        }
        if ((rc = put_str(&b, e[i].name, TD_ST_NAME_MAX, err)) != 0) {
            break;
        }
        snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", dtype_names[e[i].dtype]);
        td_strbuf_puts(&b, num);
        for (int d = 0; d < e[i].ndim; d++) {
            snprintf(num, sizeof num, d + 1 < e[i].ndim ? "%lld," : "%lld",
                     (long long)e[i].shape[d]);
            td_strbuf_puts(&b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}%s",
                 (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                 i + 1 < n ? "," : "");
        td_strbuf_puts(&b, num);
    }
    td_strbuf_append(&b, "}", 1);
    while (!td_strbuf_failed(&b) && (b.len - 8) % 8 != 0) {
        td_strbuf_append(&b, " ", 1);
    }
    if (rc == 0 && td_strbuf_failed(&b)) {
        rc = td_err_code(err, TD_ENOMEM);
    }
    if (rc != 0) {
        td_strbuf_free(&b);
        return rc;
    }
    size_t n8;
    char *p = td_strbuf_take(&b, &n8); /* never NULL: b holds at least 16 bytes */
    uint64_t hl = n8 - 8;
    for (int i = 0; i < 8; i++) {
        p[i] = (char)(hl >> (8 * i));
    }
    *out = (uint8_t *)p;
    *len = n8;
    return 0;
}

/* ---- parsing ---- */

struct parser {
    const char *start, *p, *end;
    struct td_err *err;
};

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

static int fail(struct parser *ps, const char *what)
{
    return td_err_set(ps->err, TD_EINVAL, "bad safetensors header: %s at byte %zu", what,
                      (size_t)(ps->p - ps->start));
}

static int expect(struct parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return fail(ps, what);
    }
    ps->p++;
    return 0;
}

static bool peek(struct parser *ps, char c)
{
    skip_ws(ps);
    return ps->p < ps->end && *ps->p == c;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A string of at most max bytes into *out (td_malloc'd). \uXXXX is encoded as UTF-8. */
static int parse_str(struct parser *ps, size_t max, char **out)
{
    int rc;
    if ((rc = expect(ps, '"')) != 0) {
        return rc;
    }
    const char *start = ps->p;
    size_t cap = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        ps->p += *ps->p == '\\' && ps->p + 1 < ps->end ? 2 : 1;
        cap++;
    }
    if (ps->p >= ps->end) {
        return fail(ps, "unterminated string");
    }
    char *s = td_malloc(cap * 3 + 1);
    if (s == NULL) {
        return td_err_code(ps->err, TD_ENOMEM);
    }
    size_t n = 0;
    for (const char *q = start; q < ps->p; q++) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) {
            td_free(s);
            return fail(ps, "control character in string");
        }
        if (c != '\\') {
            s[n++] = (char)c;
            continue;
        }
        char e = *++q;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple != NULL) {
            s[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
        } else if (e == 'u' && ps->p - q > 4) {
            int v = 0;
            for (int i = 1; i <= 4; i++) {
                int h = hexval(q[i]);
                if (h < 0) {
                    td_free(s);
                    return fail(ps, "bad \\u escape");
                }
                v = v * 16 + h;
            }
            q += 4;
            if (v < 0x80) {
                s[n++] = (char)v;
            } else if (v < 0x800) {
                s[n++] = (char)(0xc0 | v >> 6);
                s[n++] = (char)(0x80 | (v & 0x3f));
            } else {
                s[n++] = (char)(0xe0 | v >> 12);
                s[n++] = (char)(0x80 | (v >> 6 & 0x3f));
                s[n++] = (char)(0x80 | (v & 0x3f));
            }
        } else {
            td_free(s);
            return fail(ps, "bad escape");
        }
    }
    ps->p++;
    s[n] = '\0';
    if (n > max || n == 0) {
        td_free(s);
        return fail(ps, n == 0 ? "empty name" : "string too long");
    }
    *out = s;
    return 0;
}

static int parse_u64(struct parser *ps, uint64_t *out)
{
    skip_ws(ps);
    uint64_t v = 0;
    const char *start = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return fail(ps, "number too large");
        }
        v = v * 10 + d;
        ps->p++;
    }
    if (ps->p == start) {
        return fail(ps, "expected a non-negative integer");
    }
    *out = v;
    return 0;
}

/* [n, n, ...] of at most max entries. */
static int parse_u64_list(struct parser *ps, uint64_t *v, int max, int *count)
{
    int rc, n = 0;
    if ((rc = expect(ps, '[')) != 0) {
        return rc;
    }
    if (!peek(ps, ']')) {
        for (;;) {
            if (n == max) {
                return fail(ps, "too many entries in a list");
            }
            if ((rc = parse_u64(ps, &v[n++])) != 0) {
                return rc;
            }
            if (!peek(ps, ',')) {
                break;
            }
            ps->p++;
        }
    }
    *count = n;
    return expect(ps, ']');
}

static int parse_entry(struct parser *ps, struct td_st_entry *e)
{
    int rc, seen = 0;
    if ((rc = expect(ps, '{')) != 0) {
        return rc;
    }
    while (!peek(ps, '}')) {
        char *key = NULL;
        if ((seen != 0 && (rc = expect(ps, ',')) != 0) || (rc = parse_str(ps, 64, &key)) != 0 ||
            (rc = expect(ps, ':')) != 0) {
            td_free(key);
            return rc;
        }
        if (strcmp(key, "dtype") == 0) {
            char *dt = NULL;
            if ((rc = parse_str(ps, 16, &dt)) == 0) {
                e->dtype = -1;
                for (int i = 0; i < TD_ST_NDTYPES; i++) {
                    if (strcmp(dt, dtype_names[i]) == 0) {
                        e->dtype = i;
                    }
                }
                if (e->dtype < 0) {
                    rc = td_err_set(ps->err, TD_EINVAL,
                                    "unsupported safetensors dtype '%s' "
                                    "(tensord has F32, F64, I32, I64, BOOL)",
                                    dt);
                }
                seen |= 1;
            }
            td_free(dt);
        } else if (strcmp(key, "shape") == 0) {
            uint64_t dims[TD_ST_MAX_DIMS];
            if ((rc = parse_u64_list(ps, dims, TD_ST_MAX_DIMS, &e->ndim)) == 0) {
                for (int d = 0; d < e->ndim; d++) {
                    if (dims[d] > (uint64_t)INT64_MAX) {
                        rc = fail(ps, "dimension too large");
                    }
                    e->shape[d] = (int64_t)dims[d];
                }
                seen |= 2;
            }
        } else if (strcmp(key, "data_offsets") == 0) {
            uint64_t off[2];
            int n = 0;
            if ((rc = parse_u64_list(ps, off, 2, &n)) == 0) {
                if (n != 2) {
                    rc = fail(ps, "data_offsets needs [begin, end]");
                }
                e->begin = off[0];
                e->end = off[1];
                seen |= 4;
            }
        } else {
            rc = fail(ps, "unknown key in a tensor entry");
        }
        td_free(key);
        if (rc != 0) {
            return rc;
        }
        seen |= 8;
    }
    ps->p++;
    return (seen & 7) == 7 ? 0 : fail(ps, "a tensor entry lacks dtype, shape or data_offsets");
}

static int parse_meta(struct parser *ps, struct td_st_header *h)
{
    int rc;
    if ((rc = expect(ps, '{')) != 0) {
        return rc;
    }
    while (!peek(ps, '}')) {
        if (h->nmeta > 0 && (rc = expect(ps, ',')) != 0) {
            return rc;
        }
        char **k = td_realloc(h->keys, (size_t)(h->nmeta + 1) * sizeof *k);
        if (k == NULL) {
            return td_err_code(ps->err, TD_ENOMEM);
        }
        h->keys = k;
        char **v = td_realloc(h->vals, (size_t)(h->nmeta + 1) * sizeof *v);
        if (v == NULL) {
            return td_err_code(ps->err, TD_ENOMEM);
        }
        h->vals = v;
        h->keys[h->nmeta] = h->vals[h->nmeta] = NULL;
        h->nmeta++;
        if ((rc = parse_str(ps, TD_ST_NAME_MAX, &h->keys[h->nmeta - 1])) != 0 ||
            (rc = expect(ps, ':')) != 0 ||
            (rc = parse_str(ps, TD_ST_MAX_META_VALUE, &h->vals[h->nmeta - 1])) != 0) {
            return rc;
        }
    }
    ps->p++;
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const struct td_st_entry *x = *(const struct td_st_entry *const *)a;
    const struct td_st_entry *y = *(const struct td_st_entry *const *)b;
    /* An empty tensor starts where the next one does: ties go by end, so it sorts first and
    ** the walk below sees no hole (with the keyed handle table, snapshots list tensors in a
    ** random order, and a tie broken the other way refused a good file). */
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
    const struct td_st_entry *x = *(const struct td_st_entry *const *)a;
    const struct td_st_entry *y = *(const struct td_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

/* Each entry's range matches its shape and dtype; together they cover the buffer exactly. */
static int check_layout(struct td_st_header *h, uint64_t data_len, struct td_err *err)
{
    struct td_st_entry **order = td_calloc((size_t)(h->n > 0 ? h->n : 1), sizeof *order);
    if (order == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    int rc = 0;
    for (int i = 0; i < h->n && rc == 0; i++) {
        struct td_st_entry *e = &h->e[i];
        uint64_t bytes = td_st_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            uint64_t dim = (uint64_t)e->shape[d];
            if (dim != 0 && bytes > UINT64_MAX / dim) {
                rc = td_err_set(err, TD_EINVAL, "tensor '%s': shape overflows", e->name);
                break;
            }
            bytes *= dim;
        }
        if (rc == 0 && (e->end < e->begin || e->end - e->begin != bytes)) {
            rc = td_err_set(err, TD_EINVAL,
                            "tensor '%s': data_offsets [%llu, %llu] do not "
                            "hold its %llu bytes (its shape and dtype need %llu bytes)",
                            e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                            (unsigned long long)bytes, (unsigned long long)bytes);
        }
        order[i] = e;
    }
    /* Names sorted once: duplicates are neighbours, and lookups are binary searches (a header
    ** may name millions of tensors; pairwise checks would take hours). */
    if (rc == 0 &&
        (h->by_name = td_calloc((size_t)(h->n > 0 ? h->n : 1), sizeof *h->by_name)) == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
    }
    if (rc == 0) {
        qsort(order, (size_t)h->n, sizeof *order, by_name);
        for (int i = 0; i < h->n; i++) {
            h->by_name[i] = (int)(order[i] - h->e);
            if (i > 0 && strcmp(order[i - 1]->name, order[i]->name) == 0 && rc == 0) {
                rc = td_err_set(err, TD_EINVAL, "tensor name '%s' appears twice", order[i]->name);
            }
        }
    }
    if (rc == 0) {
        qsort(order, (size_t)h->n, sizeof *order, by_begin);
        uint64_t at = 0;
        for (int i = 0; i < h->n && rc == 0; i++) {
            if (order[i]->begin != at) {
                rc = td_err_set(err, TD_EINVAL,
                                "tensor '%s' starts at byte %llu, not %llu: "
                                "the buffer has a hole or an overlap",
                                order[i]->name, (unsigned long long)order[i]->begin,
                                (unsigned long long)at);
            }
            at = order[i]->end;
        }
        if (rc == 0 && at != data_len) {
            rc = td_err_set(err, TD_EINVAL, "the tensors cover %llu bytes of a %llu-byte buffer",
                            (unsigned long long)at, (unsigned long long)data_len);
        }
    }
    td_free(order);
    return rc;
}

int td_st_header_parse(const char *json, size_t len, uint64_t data_len, struct td_st_header *out,
                       struct td_err *err)
{
    struct parser ps = {json, json, json + len, err};
    struct td_st_header h = {0};
    int cap = 0;
    int rc = expect(&ps, '{');
    while (rc == 0 && !peek(&ps, '}')) {
        char *name = NULL;
        if ((h.n > 0 || h.nmeta > 0) && (rc = expect(&ps, ',')) != 0) {
            break;
        }
        if ((rc = parse_str(&ps, TD_ST_NAME_MAX, &name)) != 0 || (rc = expect(&ps, ':')) != 0) {
            td_free(name);
            break;
        }
        if (strcmp(name, "__metadata__") == 0) {
            td_free(name);
            if (h.keys != NULL) {
                rc = fail(&ps, "__metadata__ twice");
            } else {
                rc = parse_meta(&ps, &h);
            }
            continue;
        }
        if (h.n == cap) {
            /* Doubling: a header may hold millions of entries. */
            int ncap = cap > 0 ? 2 * cap : 16;
            struct td_st_entry *e = td_realloc(h.e, (size_t)ncap * sizeof *e);
            if (e == NULL) {
                td_free(name);
                rc = td_err_code(err, TD_ENOMEM);
                break;
            }
            h.e = e;
            cap = ncap;
        }
        memset(&h.e[h.n], 0, sizeof h.e[h.n]);
        h.e[h.n].name = name;
        h.n++;
        rc = parse_entry(&ps, &h.e[h.n - 1]);
    }
    if (rc == 0) {
        ps.p++;
        skip_ws(&ps);
        if (ps.p != ps.end) {
            rc = fail(&ps, "bytes after the header object");
        }
    }
    if (rc == 0) {
        rc = check_layout(&h, data_len, err);
    }
    if (rc != 0) {
        td_st_header_free(&h);
        return rc;
    }
    *out = h;
    return 0;
}

int td_st_find(const struct td_st_header *h, const char *name)
{
    int lo = 0, hi = h->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(h->e[h->by_name[mid]].name, name);
        if (c == 0) {
            return h->by_name[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

const char *td_st_meta(const struct td_st_header *h, const char *key)
{
    for (int i = 0; i < h->nmeta; i++) {
        if (h->keys[i] != NULL && strcmp(h->keys[i], key) == 0) {
            return h->vals[i];
        }
    }
    return NULL;
}

void td_st_header_free(struct td_st_header *h)
{
    for (int i = 0; i < h->n; i++) {
        td_free(h->e[i].name);
    }
    for (int i = 0; i < h->nmeta; i++) {
        td_free(h->keys[i]);
        td_free(h->vals[i]);
    }
    td_free(h->e);
    td_free(h->by_name);
    td_free(h->keys);
    td_free(h->vals);
    *h = (struct td_st_header){0};
}

int td_st_file_parse(const uint8_t *buf, size_t size, struct td_st_header *out, size_t *data_off,
                     struct td_err *err)
{
    if (size < 8) {
        return td_err_set(err, TD_EINVAL, "not a safetensors file: shorter than 8 bytes");
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) {
        hl = hl << 8 | buf[i];
    }
    if (hl > TD_ST_MAX_HEADER || hl > (uint64_t)size - 8) {
        return td_err_set(err, TD_EINVAL,
                          "not a safetensors file: header length %llu does not "
                          "fit the file's %llu bytes",
                          (unsigned long long)hl, (unsigned long long)size);
    }
    int rc = td_st_header_parse((const char *)buf + 8, (size_t)hl, (uint64_t)size - 8 - hl, out,
                                err);
    if (rc == 0 && data_off != NULL) {
        *data_off = 8 + (size_t)hl;
    }
    return rc;
}
