/* server/base/safetensors.h — the safetensors header, written and checked from its specification.
**
** A file is: an 8-byte little-endian u64 N; N bytes of JSON (here padded with spaces to a multiple
** of 8), an object mapping each tensor name to {"dtype": "F32"|"F64"|"I32"|"I64"|"BOOL",
** "shape": [...], "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
** string values; then the byte buffer, in which each tensor's little-endian C-order bytes sit at
** [begin, end) relative to the buffer's start. The buffer is covered exactly: no holes, no
** overlaps. This file knows headers and bytes, not tensors or files: the session layer and
** tensorctl read and write the files, and both use this one codec.
**
** Everything read is untrusted: the parser bounds nesting, string and header lengths, checks
** every number for overflow and every range against the buffer, and fails with a message.
*/
#ifndef TD_BASE_SAFETENSORS_H
#define TD_BASE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define TD_ST_MAX_DIMS 8
#define TD_ST_NAME_MAX 256                     /* bytes of a tensor name or metadata key/value */
#define TD_ST_MAX_HEADER ((uint64_t)100 << 20) /* the reference implementation's limit */
#define TD_ST_MAX_META_VALUE (1 << 20)         /* metadata values may be long lists */

enum td_st_dtype { TD_ST_F32, TD_ST_F64, TD_ST_I32, TD_ST_I64, TD_ST_BOOL, TD_ST_NDTYPES };

struct td_st_entry {
    char *name; /* reading: owned by the header */
    int dtype;  /* enum td_st_dtype */
    int ndim;
    int64_t shape[TD_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range in the buffer */
};

struct td_st_header {
    struct td_st_entry *e;
    int n;
    int *by_name;        /* entry indices sorted by name */
    char **keys, **vals; /* __metadata__, nmeta pairs */
    int nmeta;
};

/* Element size of a dtype. */
size_t td_st_dtype_size(int dtype);

/* Builds the 8-byte length and the JSON header for entries e[0..n) (their begin/end already
** laid out) and metadata pairs: *out (td_malloc'd) holds `*len` bytes, a multiple of 8. Names
** and metadata are escaped as JSON needs; empty or over-long ones are TD_EINVAL. */
int td_st_header_build(const struct td_st_entry *e, int n, const char *const *keys,
                       const char *const *vals, int nmeta, uint8_t **out, size_t *len,
                       struct td_err *err);

/* Parses and checks the JSON of `len` bytes describing a buffer of `data_len` bytes. */
int td_st_header_parse(const char *json, size_t len, uint64_t data_len, struct td_st_header *out,
                       struct td_err *err);

/* Parses a whole file held in memory, `size` bytes at buf: the 8-byte length, a header that
** fits the file (at most TD_ST_MAX_HEADER bytes), and the layout of the byte buffer after it,
** whose offset in buf goes to *data_off (when not NULL). Free *out with td_st_header_free. */
int td_st_file_parse(const uint8_t *buf, size_t size, struct td_st_header *out, size_t *data_off,
                     struct td_err *err);

/* The index of the entry named `name`, or -1 (a binary search). */
int td_st_find(const struct td_st_header *h, const char *name);

/* A metadata value by key, or NULL. */
const char *td_st_meta(const struct td_st_header *h, const char *key);

void td_st_header_free(struct td_st_header *h);

#endif
