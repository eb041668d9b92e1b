/* server/session/session.c — the session store, handle tables and per-session FIFOs.
**
** Everything here runs on the loop thread except a job's run(), which the executor may move to a
** worker; while it runs, the session is marked `running` and nothing else touches its table.
*/
#include "session/session.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static void inline_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    job->run(job);
    td_session_job_complete(job);
}

struct td_executor td_executor_inline = {.submit = inline_submit};

/* ---- store ---- */

void td_store_init(struct td_store *st, const struct td_store_config *cfg, struct td_executor *ex)
{
    td_map_init(&st->by_key);
    st->cfg = *cfg;
    td_quota_init(&st->global, "server memory", cfg->max_bytes, NULL);
    st->ex = ex;
    st->next_id = 1;
    st->closing = false;
}

static uint64_t token_key(const uint8_t *token)
{
    uint64_t k;
    memcpy(&k, token, sizeof k);
    return k;
}

static int fill_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* FNV-1a over the token: a short tag for logs that does not reveal the token. */
static void token_tag(const uint8_t *token, char out[9])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < TD_TOKEN_BYTES; i++) {
        h = (h ^ token[i]) * 16777619u;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[i] = hex[(h >> (28 - 4 * i)) & 0xf];
    }
    out[8] = '\0';
}

int td_store_open(struct td_store *st, struct td_session **out, struct td_err *err)
{
    if (st->cfg.max_sessions > 0 && (int64_t)st->by_key.len >= st->cfg.max_sessions) {
        return td_err_set(err, TD_ELIMIT, "session limit reached: max_sessions %lld",
                          (long long)st->cfg.max_sessions);
    }
    struct td_session *s = td_calloc(1, sizeof *s);
    if (s == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    uint64_t seed;
    /* Keys 0 and UINT64_MAX are reserved by the map, and a collision on the first 8 bytes is
    ** astronomically rare but cheap to rule out: draw again. */
    do {
        if (fill_random(s->token, sizeof s->token) != 0 || fill_random(&seed, sizeof seed) != 0) {
            td_free(s);
            return td_err_set(err, TD_EIO, "could not read randomness for a session token");
        }
    } while (token_key(s->token) == 0 || token_key(s->token) == UINT64_MAX ||
             td_map_get(&st->by_key, token_key(s->token)) != NULL);
    if (td_map_put(&st->by_key, token_key(s->token), s) != 0) {
        td_free(s);
        return td_err_code(err, TD_ENOMEM);
    }
    s->refs = 2;  /* the store's and the caller's */
    s->id = st->next_id++;
    token_tag(s->token, s->token_tag);
    s->store = st;
    td_map_init(&s->handles);
    td_quota_init(&s->quota, "session memory", st->cfg.session_max_bytes, &st->global);
    s->quota.max_charge = st->cfg.max_tensor_bytes;
    td_rng_seed(&s->rng, seed);
    *out = s;
    return 0;
}

int td_store_resume(struct td_store *st, const uint8_t *token, size_t len,
                    struct td_session **out, struct td_err *err)
{
    struct td_session *s = NULL;
    if (len == TD_TOKEN_BYTES) {
        s = td_map_get(&st->by_key, token_key(token));
    }
    /* Compare every byte whatever the outcome, so timing tells nothing about the token. */
    uint8_t diff = (s == NULL);
    if (s != NULL) {
        for (size_t i = 0; i < TD_TOKEN_BYTES; i++) {
            diff |= (uint8_t)(s->token[i] ^ token[i]);
        }
    }
    if (diff != 0 || s->closed) {
        return td_err_set(err, TD_ESESSION, "unknown or expired session");
    }
    *out = td_session_ref(s);
    return 0;
}

size_t td_store_count(const struct td_store *st)
{
    return st->by_key.len;
}

size_t td_store_tensor_count(const struct td_store *st)
{
    size_t iter = 0, n = 0;
    uint64_t key;
    void *val;
    while (td_map_next(&st->by_key, &iter, &key, &val)) {
        n += td_session_count(val);
    }
    return n;
}

int td_store_sweep(struct td_store *st, uint64_t now_ms)
{
    int n = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&st->by_key, &it, &key, &val);) {
        struct td_session *s = val;
        if (s->nconns == 0 && !td_session_busy(s) && now_ms >= s->idle_since_ms &&
            now_ms - s->idle_since_ms >= st->cfg.session_ttl_ms) {
            td_session_close(s);  /* deletes the current key, which iteration allows */
            n++;
        }
    }
    return n;
}

void td_store_close(struct td_store *st)
{
    st->closing = true;
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&st->by_key, &it, &key, &val);) {
        td_session_close(val);
    }
    td_map_close(&st->by_key);
}

/* ---- sessions ---- */

static void entry_free(struct td_entry *e)
{
    if (e != NULL) {
        td_tensor_unref(e->t);
        td_free(e->failure);
        td_free(e);
    }
}

static void session_clear(struct td_session *s)
{
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&s->handles, &it, &key, &val);) {
        entry_free(val);
    }
    td_map_close(&s->handles);
}

struct td_session *td_session_ref(struct td_session *s)
{
    s->refs++;
    return s;
}

void td_session_unref(struct td_session *s)
{
    if (s == NULL || --s->refs > 0) {
        return;
    }
    session_clear(s);
    td_free(s);
}

void td_session_attach(struct td_session *s)
{
    s->nconns++;
}

void td_session_detach(struct td_session *s, uint64_t now_ms)
{
    if (--s->nconns == 0) {
        s->idle_since_ms = now_ms;
    }
}

void td_session_close(struct td_session *s)
{
    if (s->closed) {
        return;
    }
    s->closed = true;
    session_clear(s);
    struct td_store *st = s->store;
    s->store = NULL;
    if (st != NULL && td_map_del(&st->by_key, token_key(s->token)) == s) {
        td_session_unref(s);  /* the store's reference */
    }
}

int td_session_lookup(struct td_session *s, uint64_t handle, struct td_tensor **t,
                      struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    struct td_entry *e = (handle == 0 || handle == UINT64_MAX) ? NULL
                                                               : td_map_get(&s->handles, handle);
    if (e == NULL) {
        return td_err_set(err, TD_EHANDLE, "unknown handle %llu", (unsigned long long)handle);
    }
    if (e->t == NULL) {
        return td_err_set(err, TD_EINPUT, "input %llu failed: %s", (unsigned long long)handle,
                          e->failure->msg);
    }
    *t = e->t;
    return 0;
}

int td_session_check_out(struct td_session *s, uint64_t handle, struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    if (handle == 0 || handle == UINT64_MAX) {
        return td_err_set(err, TD_EINVAL, "output handle %llu is reserved; use 1 to 2^64-2",
                          (unsigned long long)handle);
    }
    if (td_map_get(&s->handles, handle) != NULL) {
        return td_err_set(err, TD_EEXIST, "handle %llu is already in use",
                          (unsigned long long)handle);
    }
    /* Handles cost memory even when their tensors are empty: bound how many a session holds. */
    int64_t max = s->store != NULL ? s->store->cfg.session_max_handles : 0;
    if (max > 0 && (int64_t)s->handles.len >= max) {
        return td_err_set(err, TD_ELIMIT, "session handle limit reached: %lld handles",
                          (long long)max);
    }
    return 0;
}

int td_session_put(struct td_session *s, uint64_t handle, struct td_tensor *t, struct td_err *err)
{
    struct td_entry *e = td_malloc(sizeof *e);
    if (e == NULL || td_map_put(&s->handles, handle, e) != 0) {
        td_free(e);
        td_tensor_unref(t);
        return td_err_code(err, TD_ENOMEM);
    }
    e->t = t;
    e->failure = NULL;
    return 0;
}

void td_session_put_failure(struct td_session *s, uint64_t handle, const struct td_err *cause)
{
    if (td_session_check_out(s, handle, NULL) != 0) {
        return;  /* reserved, in use, or the table is full: nothing is recorded */
    }
    struct td_entry *e = td_malloc(sizeof *e);
    struct td_err *f = td_malloc(sizeof *f);
    if (e == NULL || f == NULL || td_map_put(&s->handles, handle, e) != 0) {
        /* The failure goes unrecorded; later uses then report "unknown handle", still an error. */
        td_free(e);
        td_free(f);
        return;
    }
    td_err_copy(f, cause);
    e->t = NULL;
    e->failure = f;
}

void td_session_free_handle(struct td_session *s, uint64_t handle)
{
    if (handle != 0 && handle != UINT64_MAX) {
        entry_free(td_map_del(&s->handles, handle));
    }
}

size_t td_session_count(const struct td_session *s)
{
    return s->handles.len;
}

int64_t td_session_bytes(const struct td_session *s)
{
    return atomic_load(&s->quota.used);
}

/* ---- the job queue ---- */

bool td_session_busy(const struct td_session *s)
{
    return s->running || s->head != NULL;
}

/* Runs queued jobs in order until the queue is empty or a heavy job goes to the executor. */
static void session_pump(struct td_session *s)
{
    while (!s->running && s->head != NULL) {
        struct td_job *job = s->head;
        s->head = job->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        job->next = NULL;
        struct td_executor *ex = s->store != NULL ? s->store->ex : &td_executor_inline;
        if (job->is_heavy != NULL && job->is_heavy(job) && ex != &td_executor_inline) {
            s->running = true;
            ex->submit(ex, job);
            return;
        }
        job->run(job);
        job->done(job);
        td_session_unref(s);  /* the job's reference */
    }
}

void td_session_submit(struct td_session *s, struct td_job *job)
{
    job->session = td_session_ref(s);
    job->next = NULL;
    if (s->tail != NULL) {
        s->tail->next = job;
    } else {
        s->head = job;
    }
    s->tail = job;
    session_pump(s);
}

void td_session_job_complete(struct td_job *job)
{
    struct td_session *s = job->session;
    s->running = false;
    job->done(job);
    /* Hold the session across the pump: the job's reference may have been the last. */
    session_pump(s);
    td_session_unref(s);
}
