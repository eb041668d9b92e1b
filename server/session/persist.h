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
** The session's names are metadata too ("tensord_names" and its chunks, see save_session): a
** name of a handle's tensor refers to the handle; a tensor only a name holds is saved as
** "n<i>" (its .grad "m<i>").
** Autograd graphs are not kept: a restored tensor is a leaf. Views are restored as copies.
**
** Where files live under --data-dir:
**   files/<sha>/<name>.safetensors   a session's Save files (the default). <sha> is the 64 hex
**                                    digits of the SHA-256 of the session token, the digits
**                                    that name its snapshot: a session finds its files again
**                                    after a restart or a resume, and no other session can name
**                                    them (the token never leaves its client, and the hash
**                                    cannot be turned back into it).
**   files/<name>.safetensors         with --shared-files: one namespace that every session reads
**                                    and overwrites, an operator's explicit choice.
**   sessions/<sha>.safetensors       snapshots written at shutdown, removed once restored.
**   .<name>.safetensors.tmp.<pid>.<n> beside any of them: a write in progress (or one a crash
**                                    interrupted, removed at the next start).
**
** Disk quotas. A file is charged at its exact size (8 + header + every tensor's logical bytes:
** an expanded view counts at the size it is written at), computed with checked arithmetic
** before a byte is written. Two limits hold: a session's Save files plus its snapshot stay
** within session_max_disk_bytes, and everything tensord keeps under the data dir within
** max_disk_bytes. A session's usage is its directory's, listed when it writes (at most
** TD_PERSIST_MAX_FILES entries); the data dir's total is one counter (struct td_disk) shared by
** every thread that writes, counted from the files already there on first use (so a restart
** keeps it) and kept exact across overwrites, failed writes and concurrent writers.
*/
#ifndef TD_SESSION_PERSIST_H
#define TD_SESSION_PERSIST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/safetensors.h"
#include "base/sha256.h"
#include "session/session.h"

/* A Save/Load file name: 1..128 of [A-Za-z0-9._-], not starting with '.', so it can only name a
** file directly inside the data dir. TD_EINVAL with the reason otherwise. */
int td_persist_check_name(const char *name, struct td_err *err);

/* A session's Save directory holds at most this many files: a new name beyond it is refused
** (TD_ELIMIT), an overwrite is not. It bounds the listing a Save does to find its session's
** usage, and the inodes a session can take (each tiny file costs a disk block). */
#define TD_PERSIST_MAX_FILES 1024

/* The name of s's Save directory under files/: the SHA-256 of its token in 64 hex digits, as
** for its snapshot (a restored session knows only that hash, which is the same). `s` is
** borrowed. */
#define TD_PERSIST_DIR_NAME (2 * TD_SHA256_BYTES + 1)
void td_persist_session_dir(const struct td_session *s, char out[TD_PERSIST_DIR_NAME]);

/* Bytes of the files tensord keeps under the data dir, shared by every thread that writes
** there (Saves of different sessions run at once on workers). A zeroed td_disk is valid and
** means "not counted yet": the first write charged to it counts the files already under the
** budget's root. Needs no close. */
struct td_disk {
    _Atomic int64_t used; /* bytes, once counted */
    _Atomic int state;    /* 0 not counted, 1 being counted, 2 counted */
};

/* What a write is charged to and held within. */
struct td_persist_budget {
    struct td_disk *disk;  /* borrowed; the daemon's counter */
    const char *root;      /* borrowed: the tree whose regular files disk counts
                                        ** (the data dir, three levels deep) */
    int64_t max;           /* max_disk_bytes: disk's total; <= 0 unlimited */
    int64_t session_max;   /* session_max_disk_bytes: a session's Save files plus
                                        ** its snapshot; <= 0 unlimited */
    const char *files_dir; /* borrowed: the Save directory, or NULL */
    bool shared;           /* files_dir is one shared namespace (--shared-files):
                                        ** no file in it is a session's, and each Save file is
                                        ** held to session_max on its own */
};

/* The exact size of the file td_persist_write would write for these arguments (the header is
** built and dropped). TD_ELIMIT when it does not fit in int64 (views of huge logical size). */
int td_persist_file_size(struct td_tensor *const *t, const char *const *names, int n,
                         const char *const *keys, const char *const *vals, int nmeta, int64_t *size,
                         struct td_err *err);

/* Bytes and count of the regular files directly in dir, except one named `skip` (NULL: none);
** a missing dir holds nothing. Saturates rather than wraps. */
void td_persist_dir_usage(const char *dir, const char *skip, int64_t *bytes, int *files);

/* Readies a session's Save directory `dir` for a write of `path` inside it: *used gets the
** bytes of its other files (a file at `path` is about to be replaced, so it is left out). A
** new name when dir already holds TD_PERSIST_MAX_FILES files is TD_ELIMIT. dir is created
** when missing, and *created says so (a write that then fails can td_persist_dir_drop it). */
int td_persist_dir_open(const char *dir, const char *path, int64_t *used, bool *created,
                        struct td_err *err);

/* Removes dir if it is empty. */
void td_persist_dir_drop(const char *dir);

/* Removes s's Save directory and its files, and takes their bytes off the budget's counter
** (budget borrowed; its files_dir must be set and not shared, or nothing happens). For a
** session that is gone for good (CloseSession, expiry), whose files nobody can name any more:
** left behind, they would hold the data dir's quota for ever. Call only when no job of s runs.
** Returns how many files were removed. */
int td_persist_remove_session_files(const struct td_persist_budget *budget,
                                    const struct td_session *s);

/* Writes tensors t[0..n) named names[i] (plus metadata pairs) to `path`, atomically. A tensor
** of more than max_bytes bytes (> 0; a large expanded view, say) is refused with TD_ELIMIT.
** With a budget (borrowed; NULL: nothing counted or limited) the file's exact size is checked
** first, refused with TD_EQUOTA ("disk quota exceeded: session_max_disk_bytes 33554432") when
** owner_used (the writer's bytes on disk, not counting a file at `path` this write replaces)
** plus the file exceed budget->session_max, or when the data dir's total, with the file in
** place of the one it replaces, would exceed budget->max; the total is then updated exactly
** (the replaced file's bytes leave it, a failed write's never enter). Tensors are laid out in
** the order given, except empty ones, which sit at the end of the data ([size, size]): between
** two others an empty range starts where the next tensor does, which a reader that orders by
** start alone (tensord's before it broke that tie) takes for an overlap. */
int td_persist_write(const char *path, struct td_tensor *const *t, const char *const *names, int n,
                     const char *const *keys, const char *const *vals, int nmeta, int64_t max_bytes,
                     const struct td_persist_budget *budget, int64_t owner_used,
                     struct td_err *err);

struct td_persist_names;

/* An open file whose header has been checked. */
struct td_persist_file {
    int fd;
    uint64_t data_start;
    struct td_st_header h;
    struct td_persist_names *grad_names; /* owned: the file's requires_grad list, parsed on
                                            ** first use by td_persist_load_named, or NULL */
};

int td_persist_open(const char *path, struct td_persist_file *f, struct td_err *err);

/* Reads entry i into a new tensor charged to q. */
int td_persist_read(struct td_persist_file *f, int i, struct td_quota *q, struct td_tensor **out,
                    struct td_err *err);

void td_persist_close(struct td_persist_file *f);

/* ---- grad flags in a file's metadata ----
** Both kinds of file say which tensors require grad under the metadata key "requires_grad"
** (TD_PERSIST_KEY_REQUIRES_GRAD), and a snapshot which retain it under "retains_grad"; reading
** one back, the flags go through core (td_autograd_restore_flags), whose rule drops
** requires_grad from a tensor that is not floating point. A Save file lists names, one per
** line ("a\nb\n"); a snapshot lists handles, comma-separated ("1,5,9", "-" for none). */
#define TD_PERSIST_KEY_REQUIRES_GRAD "requires_grad"
#define TD_PERSIST_KEY_RETAINS_GRAD "retains_grad"

/* Writes a Save file: t[i] (borrowed) under names[i] (1..TD_ST_NAME_MAX bytes, distinct, no
** control characters: the caller has checked), with metadata "format": "pt" and, when any of
** them requires grad, their names under "requires_grad". The other arguments and the errors
** are td_persist_write's. */
int td_persist_save_named(const char *path, struct td_tensor *const *t, const char *const *names,
                          int n, int64_t max_bytes, const struct td_persist_budget *budget,
                          int64_t owner_used, struct td_err *err);

/* Reads the tensor named `name` from an open Save file into a new tensor (*out) charged to q,
** requiring grad when the file lists it. TD_EINVAL when the file has no such tensor. */
int td_persist_load_named(struct td_persist_file *f, const char *name, struct td_quota *q,
                          struct td_tensor **out, struct td_err *err);

/* Writes every live session to <dir>/<token hash>.safetensors. Returns how many were written;
** failures are logged and counted in *failed. Call on the loop thread. A session whose job is
** still out on the executor (`running`: set before submit, cleared by td_session_job_complete
** once the job has returned) is not written, and counts as failed: the job owns its table.
** With a budget (borrowed, or NULL), a session whose snapshot would take its Save files past
** budget->session_max, or the data dir past budget->max, is skipped with a warning (and
** counted in *failed): nothing is written past a quota. */
int td_store_save_all(struct td_store *st, const char *dir, const struct td_persist_budget *budget,
                      int *failed);

/* Removes the temporary files of writes that a crash interrupted (.<name>.safetensors.tmp.*:
** a name no client can give, as Save names never start with '.'), in dir and in each of its
** subdirectories (the per-session Save directories); run at start, before anything writes.
** Returns how many were removed. */
int td_persist_remove_temporaries(const char *dir);

/* Restores every session snapshot in dir and removes each file once its session is back. A file
** that is itself bad is renamed *.unreadable; one that failed for another reason (memory, I/O)
** stays, to be tried at the next start; both are logged. Restored sessions count their TTL from
** now_ms. Returns how many came back. */
int td_store_restore_all(struct td_store *st, const char *dir, uint64_t now_ms, int *failed);

#endif
