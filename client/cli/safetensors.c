/* safetensors.c — the safetensors format (see the header), with a small JSON reader that
** accepts exactly what a header may hold: one object of objects, strings, integers and arrays
** of integers. Every length and offset comes from the file, so each is checked before use.
*/
#include "safetensors.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensord.h"

#define MAX_HEADER (100u << 20)   /* the reference implementation's limit */

static const struct {
    const char *code;
    int dtype;
    uint64_t size;
} CODES[] = {
    {"F32", TENSORD_FLOAT32, 4}, {"F64", TENSORD_FLOAT64, 8}, {"I32", TENSORD_INT32, 4},
    {"I64", TENSORD_INT64, 8}, {"BOOL", TENSORD_BOOL, 1},
};

static uint64_t size_of(int dtype)
{
    for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++) {
        if (CODES[i].dtype == dtype) {
            return CODES[i].size;
        }
    }
    return 0;
}

static int err(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int err(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *code_of(int dtype)
{
    for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++) {
        if (CODES[i].dtype == dtype) {
            return CODES[i].code;
        }
    }
    return NULL;
}

int st_write(const char *path, const struct st_tensor *t, int n, char *msg, size_t cap)
{
    size_t hcap = 64 + (size_t)n * 256, len = 0;
    for (int i = 0; i < n; i++) {
        hcap += strlen(t[i].name) * 6;
    }
    char *h = malloc(hcap + 8);
    if (h == NULL) {
        return err(msg, cap, "out of memory");
    }
    uint64_t off = 0;
    len += (size_t)snprintf(h + len, hcap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        const char *code = code_of(t[i].dtype);
        if (code == NULL) {
            free(h);
            return err(msg, cap, "%s: unknown dtype", t[i].name);
        }
        len += (size_t)snprintf(h + len, hcap - len, ",\"");
        for (const char *p = t[i].name; *p != '\0'; p++) {
            unsigned char c = (unsigned char)*p;
            len += (size_t)(c == '"' || c == '\\' ? snprintf(h + len, hcap - len, "\\%c", c) :
                            c < 0x20 ? snprintf(h + len, hcap - len, "\\u%04x", c) :
                            snprintf(h + len, hcap - len, "%c", c));
        }
        len += (size_t)snprintf(h + len, hcap - len, "\":{\"dtype\":\"%s\",\"shape\":[", code);
        for (int d = 0; d < t[i].ndim; d++) {
            len += (size_t)snprintf(h + len, hcap - len, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        }
        len += (size_t)snprintf(h + len, hcap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off,
                                (unsigned long long)(off + t[i].nbytes));
        off += t[i].nbytes;
    }
    len += (size_t)snprintf(h + len, hcap - len, "}");
    while (len % 8 != 0) {
        h[len++] = ' ';  /* the byte buffer starts 8-byte aligned, as the reference pads */
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        free(h);
        return err(msg, cap, "%s: %s", path, strerror(errno));
    }
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) {
        n8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    bool ok = fwrite(n8, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    for (int i = 0; ok && i < n; i++) {
        ok = t[i].nbytes == 0 || fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    }
    free(h);
    if (fclose(f) != 0 || !ok) {
        return err(msg, cap, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

/* ---- reading ---- */

struct js {
    const char *p, *end;
    char *msg;
    size_t cap;
};

static void ws(struct js *j)
{
    while (j->p < j->end && isspace((unsigned char)*j->p)) {
        j->p++;
    }
}

static bool lit(struct js *j, char c)
{
    ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

/* A JSON string into a new malloc'd buffer (\uXXXX below 0x80 only). */
static char *jstring(struct js *j)
{
    ws(j);
    if (j->p >= j->end || *j->p != '"') {
        err(j->msg, j->cap, "header: expected a string");
        return NULL;
    }
    j->p++;
    size_t n = 0;
    char *s = malloc((size_t)(j->end - j->p) + 1);
    if (s == NULL) {
        err(j->msg, j->cap, "out of memory");
        return NULL;
    }
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\' && j->p < j->end) {
            char e = *j->p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned v = 0;
                for (int k = 0; k < 4 && j->p < j->end; k++) {
                    char h = *j->p++;
                    v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' :
                                            (tolower((unsigned char)h) - 'a' + 10) & 15);
                }
                c = v < 0x80 ? (char)v : '?';
                break;
            }
            default: c = e; break;
            }
        }
        s[n++] = c;
    }
    if (j->p >= j->end) {
        free(s);
        err(j->msg, j->cap, "header: unterminated string");
        return NULL;
    }
    j->p++;
    s[n] = '\0';
    return s;
}

static int juint(struct js *j, uint64_t *out)
{
    ws(j);
    if (j->p >= j->end || !isdigit((unsigned char)*j->p)) {
        return err(j->msg, j->cap, "header: expected a non-negative integer");
    }
    uint64_t v = 0;
    while (j->p < j->end && isdigit((unsigned char)*j->p)) {
        unsigned d = (unsigned)(*j->p++ - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return err(j->msg, j->cap, "header: integer too large");
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Skips any JSON value (for __metadata__ and unknown keys). */
static int jskip(struct js *j, int depth)
{
    ws(j);
    if (depth > 32 || j->p >= j->end) {
        return err(j->msg, j->cap, "header: malformed JSON");
    }
    if (*j->p == '"') {
        char *s = jstring(j);
        free(s);
        return s != NULL ? 0 : -1;
    }
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        bool obj = close == '}';
        j->p++;
        if (lit(j, close)) {
            return 0;
        }
        do {
            if (obj) {
                char *k = jstring(j);
                free(k);
                if (k == NULL || !lit(j, ':')) {
                    return err(j->msg, j->cap, "header: malformed JSON object");
                }
            }
            if (jskip(j, depth + 1) != 0) {
                return -1;
            }
        } while (lit(j, ','));
        return lit(j, close) ? 0 : err(j->msg, j->cap, "header: malformed JSON");
    }
    while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p) != NULL)) {
        j->p++;
    }
    return 0;
}

/* By start, then by size: an empty tensor starts where the next one does and must sort before
** it (qsort's order among equal keys is unspecified), or a valid file reads as an overlap. */
static int cmp_begin(const void *a, const void *b)
{
    const struct st_tensor *x = a, *y = b;
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int one_tensor(struct js *j, struct st_tensor *t)
{
    bool have_dtype = false, have_shape = false, have_off = false;
    uint64_t off[2] = {0, 0};
    if (!lit(j, '{')) {
        return err(j->msg, j->cap, "%s: expected an object", t->name);
    }
    do {
        char *k = jstring(j);
        if (k == NULL || !lit(j, ':')) {
            free(k);
            return err(j->msg, j->cap, "header: malformed entry for %s", t->name);
        }
        int rc = 0;
        if (strcmp(k, "dtype") == 0) {
            char *code = jstring(j);
            rc = code == NULL ? -1 : 0;
            t->dtype = 0;
            for (size_t i = 0; code != NULL && i < sizeof CODES / sizeof CODES[0]; i++) {
                if (strcmp(code, CODES[i].code) == 0) {
                    t->dtype = CODES[i].dtype;
                }
            }
            if (code != NULL && t->dtype == 0) {
                rc = err(j->msg, j->cap, "%s: dtype %s is not supported (tensord has F32, F64, "
                         "I32, I64, BOOL)", t->name, code);
            }
            free(code);
            have_dtype = true;
        } else if (strcmp(k, "shape") == 0 || strcmp(k, "data_offsets") == 0) {
            bool shape = k[0] == 's';
            int n = 0;
            if (!lit(j, '[')) {
                rc = err(j->msg, j->cap, "%s: %s must be a list", t->name, k);
            } else if (!lit(j, ']')) {
                do {
                    uint64_t v = 0;
                    if ((rc = juint(j, &v)) != 0) {
                        break;
                    }
                    if (shape) {
                        if (n >= TENSORD_MAX_DIMS || v > INT64_MAX) {
                            rc = err(j->msg, j->cap, "%s: shape has too many dims or too "
                                     "large a dim", t->name);
                            break;
                        }
                        t->shape[n] = (int64_t)v;
                    } else if (n < 2) {
                        off[n] = v;
                    }
                    n++;
                } while (lit(j, ','));
                if (rc == 0 && !lit(j, ']')) {
                    rc = err(j->msg, j->cap, "%s: malformed %s", t->name, k);
                }
            }
            if (shape) {
                t->ndim = n;
                have_shape = true;
            } else {
                if (rc == 0 && n != 2) {
                    rc = err(j->msg, j->cap, "%s: data_offsets must have two entries", t->name);
                }
                have_off = true;
            }
        } else {
            rc = jskip(j, 0);
        }
        free(k);
        if (rc != 0) {
            return -1;
        }
    } while (lit(j, ','));
    if (!lit(j, '}')) {
        return err(j->msg, j->cap, "header: malformed entry for %s", t->name);
    }
    if (!have_dtype || !have_shape || !have_off) {
        return err(j->msg, j->cap, "%s: needs dtype, shape and data_offsets", t->name);
    }
    if (off[1] < off[0]) {
        return err(j->msg, j->cap, "%s: data_offsets [%llu, %llu] are reversed", t->name,
                   (unsigned long long)off[0], (unsigned long long)off[1]);
    }
    uint64_t bytes = size_of(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim != 0 && bytes > UINT64_MAX / dim) {
            return err(j->msg, j->cap, "%s: shape overflows", t->name);
        }
        bytes *= dim;
    }
    if (bytes != off[1] - off[0]) {
        return err(j->msg, j->cap, "%s: shape and dtype need %llu bytes, data_offsets give "
                   "%llu", t->name, (unsigned long long)bytes,
                   (unsigned long long)(off[1] - off[0]));
    }
    t->begin = off[0];
    t->nbytes = bytes;
    return 0;
}

int st_parse_header(const char *json, size_t len, uint64_t data_len, struct st_file *out,
                    char *msg, size_t cap)
{
    struct js j = {.p = json, .end = json + len, .msg = msg, .cap = cap};
    memset(out, 0, sizeof *out);
    int capt = 0;
    if (!lit(&j, '{')) {
        return err(msg, cap, "header: not a JSON object");
    }
    if (!lit(&j, '}')) {
        do {
            char *name = jstring(&j);
            if (name == NULL || !lit(&j, ':')) {
                free(name);
                st_file_free(out);
                return err(msg, cap, "header: malformed JSON object");
            }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if (jskip(&j, 0) != 0) {
                    st_file_free(out);
                    return -1;
                }
                continue;
            }
            if (out->n == capt) {
                capt = capt ? capt * 2 : 8;
                struct st_tensor *nt = realloc(out->t, (size_t)capt * sizeof *nt);
                if (nt == NULL) {
                    free(name);
                    st_file_free(out);
                    return err(msg, cap, "out of memory");
                }
                out->t = nt;
            }
            struct st_tensor *t = &out->t[out->n++];
            memset(t, 0, sizeof *t);
            t->name = name;
            if (one_tensor(&j, t) != 0) {
                st_file_free(out);
                return -1;
            }
        } while (lit(&j, ','));
        if (!lit(&j, '}')) {
            st_file_free(out);
            return err(msg, cap, "header: malformed JSON object");
        }
    }
    ws(&j);
    if (j.p != j.end) {
        st_file_free(out);
        return err(msg, cap, "header: trailing bytes after the JSON object");
    }
    /* The byte buffer must be covered exactly: sorted ranges, no holes, no overlaps. */
    struct st_tensor *sorted = malloc((size_t)(out->n > 0 ? out->n : 1) * sizeof *sorted);
    if (sorted == NULL) {
        st_file_free(out);
        return err(msg, cap, "out of memory");
    }
    if (out->n > 0) {
        memcpy(sorted, out->t, (size_t)out->n * sizeof *sorted);  /* out->t is NULL when n is 0 */
    }
    qsort(sorted, (size_t)out->n, sizeof *sorted, cmp_begin);
    uint64_t at = 0;
    int rc = 0;
    for (int i = 0; i < out->n && rc == 0; i++) {
        if (sorted[i].begin != at) {
            rc = err(msg, cap, "%s: data starts at byte %llu, expected %llu (hole or overlap)",
                     sorted[i].name, (unsigned long long)sorted[i].begin,
                     (unsigned long long)at);
        }
        at = sorted[i].begin + sorted[i].nbytes;
    }
    if (rc == 0 && at != data_len) {
        rc = err(msg, cap, "the tensors cover %llu bytes; the file has %llu after the header",
                 (unsigned long long)at, (unsigned long long)data_len);
    }
    free(sorted);
    if (rc != 0) {
        st_file_free(out);
    }
    return rc;
}

int st_read(const char *path, struct st_file *out, char *msg, size_t cap)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return err(msg, cap, "%s: %s", path, strerror(errno));
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        size = ftell(f);
    }
    if (size < 8 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return err(msg, cap, "%s: not a safetensors file (too short)", path);
    }
    uint8_t *buf = malloc((size_t)size);
    if (buf == NULL) {
        fclose(f);
        return err(msg, cap, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return err(msg, cap, "%s: read failed", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = n << 8 | buf[i];
    }
    if (n > MAX_HEADER || n > (uint64_t)size - 8) {
        free(buf);
        return err(msg, cap, "%s: header length %llu does not fit the file", path,
                   (unsigned long long)n);
    }
    char m2[200];
    if (st_parse_header((const char *)buf + 8, (size_t)n, (uint64_t)size - 8 - n, out, m2,
                        sizeof m2) != 0) {
        free(buf);
        return err(msg, cap, "%s: %s", path, m2);
    }
    out->buf = buf;
    for (int i = 0; i < out->n; i++) {
        out->t[i].data = buf + 8 + n + out->t[i].begin;
        /* names from other tools ("layer.weight") become valid tensorctl names */
        for (char *p = out->t[i].name; *p != '\0'; p++) {
            if (!isalnum((unsigned char)*p) && *p != '_') {
                *p = '_';
            }
        }
        if (isdigit((unsigned char)out->t[i].name[0]) || out->t[i].name[0] == '\0') {
            char *nn = malloc(strlen(out->t[i].name) + 2);
            if (nn == NULL) {
                st_file_free(out);
                return err(msg, cap, "out of memory");
            }
            sprintf(nn, "_%s", out->t[i].name);
            free(out->t[i].name);
            out->t[i].name = nn;
        }
    }
    return 0;
}

void st_file_free(struct st_file *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->t[i].name);
    }
    free(f->t);
    free(f->buf);
    memset(f, 0, sizeof *f);
}
