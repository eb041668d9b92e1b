/* safetensors.h — reading and writing the safetensors format, from its specification.
**
** A file is: 8 bytes, little-endian u64 N; N bytes of JSON, an object mapping each tensor name
** to {"dtype": "F32"|"F64"|"I32"|"I64"|"BOOL", "shape": [..], "data_offsets": [begin, end]}
** plus an optional "__metadata__" object of strings; then the byte buffer, in which each
** tensor's little-endian, C-contiguous bytes sit at [begin, end). This file knows files and
** JSON, not servers.
*/
#ifndef TENSORCTL_SAFETENSORS_H
#define TENSORCTL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

struct st_tensor {
    char *name;           /* writing: borrowed; reading: owned by the st_file */
    int dtype;            /* enum tensord_dtype */
    int ndim;
    int64_t shape[8];
    uint64_t nbytes;
    const void *data;     /* writing: borrowed; reading: points into the st_file's buffer */
    uint64_t begin;       /* reading: offsets in the byte buffer */
};

struct st_file {
    struct st_tensor *t;
    int n;
    uint8_t *buf;         /* the whole file */
};

/* Writes the tensors (in the order given) to `path`. 0, or -1 with a message. */
int st_write(const char *path, const struct st_tensor *t, int n, char *msg, size_t cap);

/* Reads and checks a file: every dtype known, shapes matching byte ranges, ranges inside the
** buffer, no overlaps or holes. 0, or -1 with a message; free with st_file_free. */
int st_read(const char *path, struct st_file *out, char *msg, size_t cap);
void st_file_free(struct st_file *f);

/* The header check alone: `json` of `len` bytes describing a buffer of `data_len` bytes. On
** success *out holds the tensors (data NULL, names owned: free with st_file_free). */
int st_parse_header(const char *json, size_t len, uint64_t data_len, struct st_file *out,
                    char *msg, size_t cap);

#endif
