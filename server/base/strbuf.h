/* server/base/strbuf.h — the one growable string buffer, for the daemon and tensorctl alike.
**
** A buffer grows by doubling (td_realloc, so its bytes count toward the process's memory
** accounting) and is always NUL-terminated once anything is in it. Failure is sticky: after an
** allocation fails or an append would pass the buffer's limit, every later append is a no-op and
** td_strbuf_failed() says so, so a writer checks once at the end instead of after every piece.
** Size arithmetic is checked (base/checked.h): no append can wrap.
**
**     struct td_strbuf b;
**     td_strbuf_init(&b, 0);
**     td_strbuf_printf(&b, "tensor(%d)", 3);
**     if (td_strbuf_failed(&b)) { td_strbuf_free(&b); return TD_ENOMEM; }
**     char *text = td_strbuf_take(&b, &len);   // the caller owns it now (td_free)
*/
#ifndef TD_BASE_STRBUF_H
#define TD_BASE_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct td_strbuf {
    char *p;      /* NULL until the first append; then NUL-terminated at p[len] */
    size_t len;   /* bytes written, not counting the NUL */
    size_t cap;   /* bytes allocated */
    size_t limit; /* most bytes len may reach; 0: no limit */
    bool failed;  /* an append failed (out of memory, or past limit); sticky */
    bool over;    /* ... and it was the limit that failed it */
};

/* An empty buffer that may hold up to `limit` bytes (0: as many as memory allows). */
void td_strbuf_init(struct td_strbuf *b, size_t limit);

/* Makes room for `more` further bytes (and the NUL). Returns 0, or -1 (now failed). */
int td_strbuf_reserve(struct td_strbuf *b, size_t more);

/* Appends n bytes / a C string / one character / n copies of c. Return 0, or -1 (failed). */
int td_strbuf_append(struct td_strbuf *b, const void *s, size_t n);
int td_strbuf_puts(struct td_strbuf *b, const char *s);
int td_strbuf_putc(struct td_strbuf *b, char c);
int td_strbuf_repeat(struct td_strbuf *b, char c, size_t n);

/* printf into the buffer. Returns 0, or -1 (failed). */
int td_strbuf_printf(struct td_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int td_strbuf_vprintf(struct td_strbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Forgets the contents (keeps the allocation and the limit; clears failure). */
void td_strbuf_reset(struct td_strbuf *b);

static inline bool td_strbuf_failed(const struct td_strbuf *b)
{
    return b->failed;
}

/* The contents, "" when empty; valid until the next append. */
static inline const char *td_strbuf_str(const struct td_strbuf *b)
{
    return b->p != NULL ? b->p : "";
}

/* Hands the contents to the caller (free with td_free; never NULL unless allocation fails on an
** empty buffer) and leaves b empty. *len (if not NULL) gets the length. */
char *td_strbuf_take(struct td_strbuf *b, size_t *len);

/* Frees the contents; b is empty and reusable afterwards. */
void td_strbuf_free(struct td_strbuf *b);

#endif
