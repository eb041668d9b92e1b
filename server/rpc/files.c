/* server/rpc/files.c — the Save and Load requests: named tensors to and from files.
**
** rpc's side of persistence: where a session's files live (its own directory, or the shared
** one), the wire checks (file and tensor names, each handle once, how many tensors), the disk
** budget a Save is charged to, and the all-or-nothing creation of a Load's handles. The file
** format and its metadata convention (which tensors require grad) are session/persist.c's;
** this file never touches a tensor's autograd state. Save and Load run on the executor
** (requests.def: files block); removing a session's files runs on the loop thread.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cmp.h"
#include "base/log.h"
#include "rpc/internal.h"
#include "session/persist.h"

#define MAX_FILE_TENSORS 100000

/* Where a Save/Load file lives (persist.h has the layout): in the session's own directory,
** <files_dir>/<SHA-256 of its token, 64 hex digits>/<file>.safetensors, which no other session
** can name and which the session finds again after a restart or a resume; or, with
** --shared-files (an operator's choice), <files_dir>/<file>.safetensors, one namespace for all.
** `dir` gets the directory, `path` the file, `cap` bytes each. */
static int files_path(const struct td_rpc_server *srv, const struct td_session *s, const char *file,
                      char *dir, char *path, size_t cap, struct td_err *err)
{
    if (srv->files_dir == NULL) {
        return td_err_set(err, TD_EUNSUP, "persistence is off: start tensord with --data-dir");
    }
    int rc = td_persist_check_name(file != NULL ? file : "", err);
    if (rc != 0) {
        return rc;
    }
    if (srv->shared_files) {
        snprintf(dir, cap, "%s", srv->files_dir);
    } else {
        char tag[TD_PERSIST_DIR_NAME];
        td_persist_session_dir(s, tag);
        snprintf(dir, cap, "%s/%s", srv->files_dir, tag);
    }
    snprintf(path, cap, "%s/%s.safetensors", dir, file);
    return 0;
}

/* The disk a Save is charged to: the session's quota and the data dir's (rpc.h). */
static struct td_persist_budget files_budget(struct td_rpc_server *srv)
{
    return (struct td_persist_budget){
        .disk = &srv->disk,
        .root = srv->data_dir != NULL ? srv->data_dir : srv->files_dir,
        .max = srv->max_disk_bytes,
        .session_max = srv->session_max_disk_bytes,
        .files_dir = srv->files_dir,
        .shared = srv->shared_files,
    };
}

/* A session that ends for good (CloseSession, expiry) takes its Save directory with it: nobody
** can name those files any more, and they would hold the disk quota for ever. A session only
** disconnected keeps them (it may resume); shutdown snapshots keep them; with --shared-files no
** file is a session's. This runs on the loop thread, where the session's end must happen (it
** touches the store's map) and while no job of it runs: the directory holds at most
** TD_PERSIST_MAX_FILES files, so it is one readdir and at most that many unlinks, each paid
** for beforehand by the Save (a worker job) that wrote the file; one sweep's expiries stop at
** TD_STORE_SWEEP_MAX_WORK files. Returns how many files were removed. */
int td_rpc_remove_session_files(struct td_rpc_server *srv, const struct td_session *s)
{
    if (srv->files_dir == NULL || srv->shared_files) {
        return 0;
    }
    struct td_persist_budget budget = files_budget(srv);
    int n = td_persist_remove_session_files(&budget, s);
    if (n > 0) {
        td_log(TD_LOG_INFO, "session_files_removed", "session=%s files=%d", s->token_tag, n);
    }
    return n;
}

int td_rpc_session_expired(struct td_session *s, void *srv)
{
    return td_rpc_remove_session_files(srv, s);
}

/* Sorted once, so a request naming 100,000 tensors is checked in n log n, not n^2. */
static int check_unique_names(const char **names, size_t n, struct td_err *err)
{
    const char **sorted = td_calloc(n > 0 ? n : 1, sizeof *sorted);
    if (sorted == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, td_cmp_str);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            rc = td_err_set(err, TD_EINVAL, "tensor name '%s' appears twice", sorted[i]);
        }
    }
    td_free(sorted);
    return rc;
}

/* A handle listed twice in one request is refused: in a Save it would write the same bytes
** under several names (a 4-byte expanded view, once per name, at its logical size). */
static int check_unique_handles(Tensord__NamedTensor *const *nt, size_t n, const char *what,
                                struct td_err *err)
{
    uint64_t *sorted = td_calloc(n > 0 ? n : 1, sizeof *sorted);
    if (sorted == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = nt[i]->handle;
    }
    qsort(sorted, n, sizeof *sorted, td_cmp_u64);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (sorted[i - 1] == sorted[i]) {
            rc = td_err_set(err, TD_EINVAL, "handle %llu is listed twice in one %s",
                            (unsigned long long)sorted[i], what);
        }
    }
    td_free(sorted);
    return rc;
}

/* Save: every tensor named, each handle once, the file's exact size within the session's disk
** quota (its directory's files, less one this Save replaces, plus this file), the data dir's,
** and the session's file count, all checked before a byte is written. */
int td_rpc_run_save(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Save *m = j->req->save;
    struct td_rpc_server *srv = j->peer->srv;
    char dir[4096], path[4096];
    int rc = files_path(srv, s, m->file, dir, path, sizeof path, err);
    if (rc != 0) {
        return rc;
    }
    if (m->n_tensors > MAX_FILE_TENSORS) {
        return td_err_set(err, TD_ELIMIT, "too many tensors in one file: at most %d",
                          MAX_FILE_TENSORS);
    }
    if ((rc = check_unique_handles(m->tensors, m->n_tensors, "Save", err)) != 0) {
        return rc;
    }
    size_t n = m->n_tensors;
    struct td_tensor **ts = td_calloc(n > 0 ? n : 1, sizeof *ts);
    const char **names = td_calloc(n > 0 ? n : 1, sizeof *names);
    if (ts == NULL || names == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Tensord__NamedTensor *nt = m->tensors[i];
        names[i] = nt->name != NULL ? nt->name : "";
        if (names[i][0] == '\0' || strlen(names[i]) > TD_ST_NAME_MAX ||
            strcmp(names[i], "__metadata__") == 0) {
            rc = td_err_set(err, TD_EINVAL,
                            "tensor %zu: a name of 1..%d bytes, not "
                            "__metadata__, is needed",
                            i, TD_ST_NAME_MAX);
            break;
        }
        rc = td_session_lookup(s, nt->handle, &ts[i], err);
    }
    if (rc == 0) {
        rc = check_unique_names(names, n, err);
    }
    /* The session's bytes on disk: its directory, less the file this Save replaces (a
    ** session's jobs run one at a time, so nothing else writes there meanwhile). */
    int64_t used = 0;
    bool made_dir = false;
    if (rc == 0 && !srv->shared_files) {
        rc = td_persist_dir_open(dir, path, &used, &made_dir, err);
    }
    if (rc == 0) {
        struct td_persist_budget budget = files_budget(srv);
        rc = td_persist_save_named(path, ts, names, (int)n, s->quota.max_charge, &budget, used,
                                   err);
    }
    if (rc != 0 && made_dir) {
        td_persist_dir_drop(dir); /* a session that never saved a file leaves no directory */
    }
    td_free(ts);
    td_free(names);
    return rc;
}

int td_rpc_run_load(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Load *m = j->req->load;
    char dir[4096], path[4096];
    int rc = files_path(j->peer->srv, s, m->file, dir, path, sizeof path, err);
    if (rc != 0) {
        return rc;
    }
    if (m->n_tensors > MAX_FILE_TENSORS) {
        return td_err_set(err, TD_ELIMIT, "too many tensors in one file: at most %d",
                          MAX_FILE_TENSORS);
    }
    struct td_persist_file f;
    if ((rc = td_persist_open(path, &f, err)) != 0) {
        return rc;
    }
    /* Every name and handle checked before anything is created. */
    for (size_t i = 0; i < m->n_tensors && rc == 0; i++) {
        const Tensord__NamedTensor *nt = m->tensors[i];
        if (td_st_find(&f.h, nt->name != NULL ? nt->name : "") < 0) {
            rc = td_err_set(err, TD_EINVAL, "no tensor named '%s' in %s", nt->name, m->file);
        } else {
            rc = td_session_check_out(s, nt->handle, err);
        }
    }
    if (rc == 0) {
        rc = check_unique_handles(m->tensors, m->n_tensors, "Load", err);
    }
    size_t made = 0;
    for (; made < m->n_tensors && rc == 0; made++) {
        const Tensord__NamedTensor *nt = m->tensors[made];
        struct td_tensor *t = NULL;
        if ((rc = td_persist_load_named(&f, nt->name, &s->quota, &t, err)) != 0 ||
            (rc = td_session_put(s, nt->handle, t, err)) != 0) {
            break;
        }
    }
    size_t len = 1;
    for (int i = 0; i < f.h.n && rc == 0; i++) {
        len += strlen(f.h.e[i].name) + 1;
    }
    if (rc == 0 && (res->text = td_malloc(len)) == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
    }
    if (rc == 0) {
        size_t at = 0;
        for (int i = 0; i < f.h.n; i++) {
            size_t n = strlen(f.h.e[i].name);
            memcpy(res->text + at, f.h.e[i].name, n);
            at += n;
            res->text[at++] = '\n';
        }
        res->text[at] = '\0';
    }
    if (rc != 0) {
        /* All or nothing: a load that fails part way (quota, a short file) creates no handle. */
        for (size_t i = 0; i < made; i++) {
            td_session_free_handle(s, m->tensors[i]->handle);
        }
    }
    td_persist_close(&f);
    return rc;
}
