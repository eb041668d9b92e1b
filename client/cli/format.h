/* format.h — Python's number and string formatting: the format-spec mini-language of f-strings
** (`f"{x:>10,.2f}"`) and round(x, n).
**
** The rules are CPython's (Python/formatter_unicode.c and Python/pystrtod.c): fill, align
** (< > ^ =), sign (+ - space), z, #, 0, width, grouping (, or _), precision, and the types
** b c d o x X n for ints, e E f F g G n % and none for floats (ints take those too), s and none
** for strings. Digits come from the C library's correctly rounded printf, so every digit is
** Python's. A spec Python refuses is refused here with Python's message; nothing is printed
** approximately. This file knows text, not tensors or servers.
*/
#ifndef TENSORCTL_FORMAT_H
#define TENSORCTL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* format(v, spec) for an int (a bool when `is_bool`: only its type name in messages differs;
** an empty spec is the caller's business, since str(True) is "True"). Returns 0 with a
** NUL-terminated string in *out (free with td_free, base/alloc.h), or -1 with Python's error
** message in msg. */
int tdx_format_int(int64_t v, bool is_bool, const char *spec, char **out, char *msg, size_t cap);

/* format(v, spec) for a float. As tdx_format_int. */
int tdx_format_float(double v, const char *spec, char **out, char *msg, size_t cap);

/* format(s, spec) for a string of n bytes of UTF-8 (width and precision count characters).
** As tdx_format_int. */
int tdx_format_str(const char *s, size_t n, const char *spec, char **out, char *msg, size_t cap);

/* Python's round(x, ndigits) for a float: the double nearest to x correctly rounded to ndigits
** decimal places (half to even on the exact binary value, so round(2.675, 2) is 2.67). */
double tdx_round_float(double x, int64_t ndigits);

/* Python's round(i, ndigits) for an int with ndigits < 0 (half to even). Returns 0, or -1 when
** the result does not fit in 64 bits. */
int tdx_round_int(int64_t i, int64_t ndigits, int64_t *out);

/* repr(x) for a float: the shortest digits that read back as x, laid out as Python does. */
void tdx_float_repr(double x, char *buf, size_t cap);

#endif
