/* server/session/persist.h — tensors in safetensors files: Save/Load of named tensors, and whole
** sessions written at shutdown and restored at start (--data-dir).
**
** Files are written atomically: a temporary file in the same directory, fsync, rename over the
** final name, fsync of the directory. Reads trust nothing in a file: the header is checked by
** base/safetensors before any tensor is allocated, and allocations are charged to the quota.
**
** A session snapshot is a safetensors file named after the SHA-256 of the session token (the
** token itself is never written). Tensor "h<N>" is handle N and "g<N>" its .grad; metadata holds
** the token hash, which handles require grad or retain it, the RNG position and the grad mode.
** Autograd graphs are not kept: a restored tensor is a leaf. Views are restored as copies.
*/
#ifndef TD_SESSION_PERSIST_H
#define TD_SESSION_PERSIST_H

#include <stdint.h>

#include "base/err.h"
#include "base/safetensors.h"
#include "session/session.h"

/* A Save/Load file name: 1..128 of [A-Za-z0-9._-], not starting with '.', so it can only name a
** file directly inside the data dir. TD_EINVAL with the reason otherwise. */
int td_persist_check_name(const char *name, struct td_err *err);

/* Writes tensors t[0..n) named names[i] (plus metadata pairs) to `path`, atomically. A tensor
** of more than max_bytes bytes (> 0; a large expanded view, say) is refused with TD_ELIMIT. */
int td_persist_write(const char *path, struct td_tensor *const *t, const char *const *names, int n,
                     const char *const *keys, const char *const *vals, int nmeta,
                     int64_t max_bytes, struct td_err *err);

/* An open file whose header has been checked. */
struct td_persist_file {
    int fd;
    uint64_t data_start;
    struct td_st_header h;
};

int td_persist_open(const char *path, struct td_persist_file *f, struct td_err *err);

/* Reads entry i into a new tensor charged to q. */
int td_persist_read(struct td_persist_file *f, int i, struct td_quota *q, struct td_tensor **out,
                    struct td_err *err);

void td_persist_close(struct td_persist_file *f);

/* Writes every live session to <dir>/<token hash>.safetensors. Returns how many were written;
** failures are logged and counted in *failed. Jobs must have drained. */
int td_store_save_all(struct td_store *st, const char *dir, int *failed);

/* Removes the temporary files of writes that a crash interrupted (.<name>.safetensors.tmp.*:
** a name no client can give, as Save names never start with '.'); run at start, before
** anything writes. Returns how many were removed. */
int td_persist_remove_temporaries(const char *dir);

/* Restores every session snapshot in dir and removes each file once its session is back. A file
** that is itself bad is renamed *.unreadable; one that failed for another reason (memory, I/O)
** stays, to be tried at the next start; both are logged. Restored sessions count their TTL from
** now_ms. Returns how many came back. */
int td_store_restore_all(struct td_store *st, const char *dir, uint64_t now_ms, int *failed);

#endif
