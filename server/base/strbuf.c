/* server/base/strbuf.c — the growable string buffer (see strbuf.h). */
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "checked.h"

void td_strbuf_init(struct td_strbuf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
}

static int fail(struct td_strbuf *b, bool over)
{
    b->failed = true;
    b->over = b->over || over;
    return -1;
}

int td_strbuf_reserve(struct td_strbuf *b, size_t more)
{
    size_t need;
    if (b->failed) {
        return -1;
    }
    if (!td_add_size(b->len, more, &need)) {
        return fail(b, true);
    }
    if (b->limit != 0 && need > b->limit) {
        return fail(b, true);
    }
    if (!td_add_size(need, 1, &need)) {
        return fail(b, true);
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t ncap = b->cap != 0 ? b->cap : 64;
    while (ncap < need) {
        if (!td_mul_size(ncap, 2, &ncap)) {
            ncap = need;
            break;
        }
    }
    char *np = td_realloc(b->p, ncap);
    if (np == NULL) {
        return fail(b, false);
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int td_strbuf_append(struct td_strbuf *b, const void *s, size_t n)
{
    if (td_strbuf_reserve(b, n) != 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->p + b->len, s, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int td_strbuf_puts(struct td_strbuf *b, const char *s)
{
    return td_strbuf_append(b, s, strlen(s));
}

int td_strbuf_putc(struct td_strbuf *b, char c)
{
    return td_strbuf_append(b, &c, 1);
}

int td_strbuf_repeat(struct td_strbuf *b, char c, size_t n)
{
    if (td_strbuf_reserve(b, n) != 0) {
        return -1;
    }
    memset(b->p + b->len, c, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int td_strbuf_vprintf(struct td_strbuf *b, const char *fmt, va_list ap)
{
    if (b->failed) {
        return -1;
    }
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return fail(b, false);
    }
    if ((size_t)n < sizeof small) {
        return td_strbuf_append(b, small, (size_t)n);
    }
    if (td_strbuf_reserve(b, (size_t)n) != 0) {
        return -1;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int td_strbuf_printf(struct td_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = td_strbuf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void td_strbuf_reset(struct td_strbuf *b)
{
    b->len = 0;
    b->failed = false;
    b->over = false;
    if (b->p != NULL) {
        b->p[0] = '\0';
    }
}

char *td_strbuf_take(struct td_strbuf *b, size_t *len)
{
    if (b->p == NULL) {
        b->p = td_malloc(1);
        if (b->p != NULL) {
            b->p[0] = '\0';
        }
    }
    char *p = b->p;
    if (len != NULL) {
        *len = b->len;
    }
    size_t limit = b->limit;
    td_strbuf_init(b, limit);
    return p;
}

void td_strbuf_free(struct td_strbuf *b)
{
    td_free(b->p);
    size_t limit = b->limit;
    td_strbuf_init(b, limit);
}
