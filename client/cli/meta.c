/* meta.c — the meta-commands: :ls, :save and :load (safetensors, through base's codec),
** :time, :session, :stats.
*/
#include "interp.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/safetensors.h"

/* ---- meta-commands ---- */

static int cmp_var(const void *a, const void *b)
{
    return strcmp(((const struct var *)a)->name, ((const struct var *)b)->name);
}

static void shape_str(const struct tensord_info *in, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < in->ndim && k < cap; i++) {
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", in->shape[i]);
    }
    if (k < cap) {
        snprintf(buf + k, cap - k, "]");
    }
}

static int meta_ls(struct tdx_env *e)
{
    int rc = tdx_need_sync(e);
    if (rc != 0) {
        return rc;
    }
    qsort(e->vars, (size_t)e->nvars, sizeof *e->vars, cmp_var);
    fprintf(e->cfg.out, "%-16s %-20s %-8s %12s  %s\n", "name", "shape", "dtype", "bytes",
            "requires_grad");
    uint64_t total = 0;
    int count = 0;
    for (int i = 0; i < e->nvars; i++) {
        struct value *v = &e->vars[i].v;
        if (v->k != V_TENSOR || v->t->none) {
            continue;
        }
        if ((rc = tdx_known(e, v->t, NULL)) != 0) {
            e->has_err = false;
            continue;
        }
        char shape[128];
        shape_str(&v->t->info, shape, sizeof shape);
        fprintf(e->cfg.out, "%-16s %-20s %-8s %12" PRIu64 "  %s\n", e->vars[i].name, shape,
                tdx_dtype_str(v->t->info.dtype), v->t->info.nbytes,
                v->t->requires_grad ? "True" : "False");
        total += v->t->info.nbytes;
        count++;
    }
    fprintf(e->cfg.out, "%d tensor%s, %" PRIu64 " bytes\n", count, count == 1 ? "" : "s", total);
    return 0;
}

/* The safetensors dtype of a tensord one, and back (-1 for none). */
static int st_dtype(enum tensord_dtype dt)
{
    switch (dt) {
    case TENSORD_FLOAT32: return TD_ST_F32;
    case TENSORD_FLOAT64: return TD_ST_F64;
    case TENSORD_INT32: return TD_ST_I32;
    case TENSORD_INT64: return TD_ST_I64;
    case TENSORD_BOOL: return TD_ST_BOOL;
    default: return -1;
    }
}

static enum tensord_dtype tensord_dtype_of_st(int st)
{
    switch (st) {
    case TD_ST_F32: return TENSORD_FLOAT32;
    case TD_ST_F64: return TENSORD_FLOAT64;
    case TD_ST_I32: return TENSORD_INT32;
    case TD_ST_I64: return TENSORD_INT64;
    default: return TENSORD_BOOL;
    }
}

/* Writes a safetensors file: the header (base/safetensors.c lays it out) and the tensors'
** bytes in order. 0, or -1 with a message in err. */
static int st_write_file(const char *path, struct td_st_entry *ents, void *const *data, int n,
                         struct td_err *err)
{
    static const char *const keys[] = {"format"}, *const vals[] = {"pt"};
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nbytes = ents[i].end;
        ents[i].begin = off;
        ents[i].end = off + nbytes;
        off += nbytes;
    }
    uint8_t *hdr;
    size_t hlen;
    if (td_st_header_build(ents, n, keys, vals, 1, &hdr, &hlen, err) != 0) {
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        td_free(hdr);
        td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    bool ok = fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++) {
        size_t nb = (size_t)(ents[i].end - ents[i].begin);
        ok = nb == 0 || fwrite(data[i], 1, nb, f) == nb;
    }
    td_free(hdr);
    if (fclose(f) != 0 || !ok) {
        td_err_set(err, TD_EIO, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads a whole file into *buf (malloc'd). 0, or -1 with a message in err. */
static int read_file(const char *path, uint8_t **buf, size_t *size, struct td_err *err)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f == NULL) {
        td_err_set(err, TD_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        n = ftell(f);
    }
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        td_err_set(err, TD_EIO, "%s: cannot read", path);
        return -1;
    }
    if ((*buf = malloc((size_t)n + 1)) == NULL) {
        fclose(f);
        td_err_set(err, TD_ENOMEM, "%s: out of memory", path);
        return -1;
    }
    size_t got = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(*buf);
        td_err_set(err, TD_EIO, "%s: read failed", path);
        return -1;
    }
    *size = (size_t)n;
    return 0;
}

/* A tensor name from another tool ("layer.weight", "0.bias") as a tensorctl name. */
static void st_var_name(const char *name, char *out, size_t cap)
{
    size_t k = 0;
    if (isdigit((unsigned char)name[0]) || name[0] == '\0') {
        out[k++] = '_';
    }
    for (const char *p = name; *p != '\0' && k + 1 < cap; p++) {
        out[k++] = isalnum((unsigned char)*p) || *p == '_' ? *p : '_';
    }
    out[k] = '\0';
}

static int meta_save(struct tdx_env *e, char **words, int n)
{
    if (n < 2) {
        fprintf(e->cfg.err, "usage: :save FILE [name ...]\n");
        return TDX_ERROR;
    }
    int rc = tdx_need_sync(e);
    if (rc != 0) {
        return rc;
    }
    struct td_st_entry *ts = calloc((size_t)e->nvars + (size_t)n, sizeof *ts);
    void **bufs = calloc((size_t)e->nvars + (size_t)n, sizeof *bufs);
    int nt = 0;
    if (ts == NULL || bufs == NULL) {
        free(ts);
        free(bufs);
        fprintf(e->cfg.err, "out of memory\n");
        return TDX_ERROR;
    }
    qsort(e->vars, (size_t)e->nvars, sizeof *e->vars, cmp_var);
    for (int i = 0; i < e->nvars && rc == 0; i++) {
        struct var *x = &e->vars[i];
        bool wanted = n == 2;
        for (int k = 2; k < n; k++) {
            wanted |= strcmp(words[k], x->name) == 0;
        }
        if (!wanted || x->v.k != V_TENSOR || x->v.t->none) {
            continue;
        }
        struct tref *t = x->v.t;
        struct tensord_error err;
        if ((rc = tdx_known(e, t, NULL)) != 0) {
            break;
        }
        if ((bufs[nt] = malloc(t->info.nbytes > 0 ? t->info.nbytes : 1)) == NULL) {
            rc = tdx_fail(e, NULL, "out of memory");
            break;
        }
        e->waits++;
        if (tensord_get(e->c, t->handle, &t->info, bufs[nt], t->info.nbytes, &err) != 0) {
            rc = tdx_lib_fail(e, NULL, &err);
            free(bufs[nt]);
            break;
        }
        /* end is the size until st_write_file lays the buffer out */
        ts[nt] = (struct td_st_entry){.name = x->name,
                                      .dtype = st_dtype(t->info.dtype),
                                      .ndim = t->info.ndim,
                                      .end = t->info.nbytes};
        memcpy(ts[nt].shape, t->info.shape, sizeof ts[nt].shape);
        nt++;
    }
    for (int k = 2; k < n && rc == 0; k++) {
        struct var *x = tdx_lookup(e, words[k]);
        if (x == NULL || x->v.k != V_TENSOR) {
            rc = tdx_fail(e, NULL, "%s: no tensor named '%s'", words[1], words[k]);
        }
    }
    struct td_err terr = {0};
    if (rc == 0 && st_write_file(words[1], ts, bufs, nt, &terr) != 0) {
        rc = tdx_fail(e, NULL, "%s", terr.msg);
    }
    if (rc == 0) {
        fprintf(e->cfg.out, "saved %d tensor%s to %s\n", nt, nt == 1 ? "" : "s", words[1]);
    }
    for (int i = 0; i < nt; i++) {
        free(bufs[i]);
    }
    free(bufs);
    free(ts);
    return rc;
}

static int meta_load(struct tdx_env *e, const char *path)
{
    struct td_st_header h;
    struct td_err terr = {0};
    uint8_t *buf;
    size_t size, data_off;
    if (read_file(path, &buf, &size, &terr) != 0) {
        return tdx_fail(e, NULL, "%s", terr.msg);
    }
    if (td_st_file_parse(buf, size, &h, &data_off, &terr) != 0) {
        free(buf);
        return tdx_fail(e, NULL, "%s: %s", path, terr.msg);
    }
    int rc = 0;
    for (int i = 0; i < h.n && rc == 0; i++) {
        const struct td_st_entry *s = &h.e[i];
        struct tref *t = tdx_tref_new(e);
        struct tensord_error err;
        uint64_t id;
        char name[TD_ST_NAME_MAX + 2];
        if (t == NULL) {
            rc = tdx_fail(e, NULL, "out of memory");
            break;
        }
        int lrc = tensord_send_create(e->c, t->handle, tensord_dtype_of_st(s->dtype), s->shape,
                                      s->ndim, buf + data_off + s->begin, s->end - s->begin, &id,
                                      &err);
        if ((rc = tdx_send_tensor_result(e, lrc, id, t, NULL, &err)) != 0) {
            tdx_tref_unref(e, t);
            break;
        }
        struct value v = vtensor(t);
        st_var_name(s->name, name, sizeof name);
        rc = tdx_bind(e, name, &v);
    }
    /* the data is borrowed until written */
    struct tensord_error err;
    if (rc == 0 && tensord_flush(e->c, &err) != 0) {
        rc = tdx_lib_fail(e, NULL, &err);
    }
    int src = tdx_sync(e);
    if (rc == 0 && src == 0) {
        fprintf(e->cfg.out, "loaded %d tensor%s from %s\n", h.n, h.n == 1 ? "" : "s", path);
    }
    td_st_header_free(&h);
    free(buf);
    return rc != 0 ? rc : src;
}

int tdx_meta(struct tdx_env *e, const char *line, const char *server_addr)
{
    char *copy = strdup(line);
    char *words[64];
    int n = 0, rc = 0;
    if (copy == NULL) {
        return TDX_ERROR;
    }
    for (char *p = strtok(copy, " \t\r\n"); p != NULL && n < 64; p = strtok(NULL, " \t\r\n")) {
        words[n++] = p;
    }
    const char *cmd = n > 0 ? words[0] : ":";
    if (strcmp(cmd, ":ls") == 0) {
        rc = meta_ls(e);
    } else if (strcmp(cmd, ":stats") == 0) {
        struct tensord_stats st;
        struct tensord_error err;
        if ((rc = tdx_need_sync(e)) == 0) {
            e->waits++;
            if (tensord_stats(e->c, &st, &err) != 0) {
                rc = tdx_lib_fail(e, NULL, &err);
            } else {
                fprintf(e->cfg.out,
                        "session_bytes    %" PRIu64 "\nsession_tensors  %" PRIu64
                        "\nsessions         %" PRIu64 "\nserver_bytes     %" PRIu64 "\n",
                        st.session_bytes, st.session_tensors, st.sessions, st.server_bytes);
            }
        }
    } else if (strcmp(cmd, ":session") == 0) {
        struct tensord_limits lim;
        const char *tok = tensord_session_token(e->c), *node = tensord_node(e->c);
        tensord_limits(e->c, &lim);
        fprintf(e->cfg.out,
                "server   %s (%s)\nnode     %s\ntoken    %s%s\nlimits   max_frame_bytes=%" PRIu64
                " max_tensor_bytes=%" PRIu64 " session_max_bytes=%" PRIu64 "\n",
                tensord_address(e->c), tensord_server_version(e->c), node[0] ? node : "-", tok,
                tensord_resumed(e->c) ? " (resumed)" : "", lim.max_frame_bytes,
                lim.max_tensor_bytes, lim.session_max_bytes);
        fprintf(e->cfg.out, "resume   tensorctl --addr %s --resume %s\n", server_addr, tok);
    } else if (strcmp(cmd, ":time") == 0) {
        if (n == 2 && (strcmp(words[1], "on") == 0 || strcmp(words[1], "off") == 0)) {
            e->timing = words[1][1] == 'n';
        } else if (n == 1) {
            fprintf(e->cfg.out, "time %s\n", e->timing ? "on" : "off");
        } else {
            fprintf(e->cfg.err, "usage: :time on|off\n");
            rc = TDX_ERROR;
        }
    } else if (strcmp(cmd, ":save") == 0) {
        rc = meta_save(e, words, n);
    } else if (strcmp(cmd, ":load") == 0) {
        if (n != 2) {
            fprintf(e->cfg.err, "usage: :load FILE\n");
            rc = TDX_ERROR;
        } else {
            rc = meta_load(e, words[1]);
        }
    } else {
        fprintf(e->cfg.err, "unknown command %s (try :help)\n", cmd);
        rc = TDX_ERROR;
    }
    if (e->has_err) {
        fprintf(e->cfg.err, "%s: %s\n", cmd, e->err_msg);
        e->has_err = false;
    }
    free(copy);
    return e->broken ? TDX_FATAL : rc;
}
