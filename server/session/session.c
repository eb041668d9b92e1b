/* server/session/session.c — the session store, handle tables and per-session FIFOs.
**
** Everything here runs on the loop thread except a job's run(), which the executor may move to a
** worker; while it runs, the session is marked `running` and nothing else touches its table.
**
** Cancellation: td_session_cancel marks queued jobs cancelled and raises the running job's
** struct td_cancel; the pump then finishes cancelled jobs with done() alone, in FIFO order and
** only once nothing runs, so replies keep request order and a dropped job never races the one
** before it. A running job stops only where its code checks the flag (core's chunk
** boundaries): an in-place op or a backward cancelled mid-way may leave its tensors partly
** written, which its client cannot rely on anyway (it never got an acknowledgement).
** Backpressure: td_session_hold stops new jobs from starting; the last release pumps again.
**
** The turn budget: each job run inline adds its work (plus TD_JOB_BASE_WORK) to
** store->turn_spent. Once that reaches cfg.turn_work, the pump starts no more jobs (cancelled
** ones are still finished: they cost nothing) and puts the session on the deferred list, which
** holds a reference, so a session closed or cancelled meanwhile is never pumped after it is
** freed. td_store_turn refills the budget and pumps the listed sessions in order; those it does
** not reach stay first in line, and those it pumps go to the back if they defer again.
*/
#include "session/session.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "base/checked.h"
#include "base/sha256.h"
#include "base/siphash.h"

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
    st->stopping = false;
    st->on_expire = NULL;
    st->on_expire_arg = NULL;
    st->turn_spent = 0;
    st->defer_head = NULL;
    st->defer_tail = NULL;
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

/* A short tag for logs that does not reveal the token: the first 8 hex digits of its SHA-256,
** the same digits that begin its snapshot's file name, so a session keeps its tag across a
** restart (restored sessions know only the hash). */
static void tag_from_sha(const uint8_t *sha, char out[9])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 4; i++) {
        out[2 * i] = hex[sha[i] >> 4];
        out[2 * i + 1] = hex[sha[i] & 15];
    }
    out[8] = '\0';
}

/* Every session sits in by_key under the first 8 bytes of its token's SHA-256: a restored
** session knows nothing else, and a token's first bytes (its node id) are the same for every
** session of a node. */
static uint64_t session_key(const struct td_session *s)
{
    return token_key(s->token_sha);
}

/* A zeroed session, with its table, quota and a seeded RNG; not yet in the store. */
static int session_new(struct td_store *st, struct td_session **out, struct td_err *err)
{
    if (st->cfg.max_sessions > 0 && (int64_t)st->by_key.len >= st->cfg.max_sessions) {
        return td_err_set(err, TD_ELIMIT, "session limit reached: max_sessions %lld",
                          (long long)st->cfg.max_sessions);
    }
    struct td_session *s = td_calloc(1, sizeof *s);
    if (s == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    s->id = st->next_id++;
    s->store = st;
    td_map_init(&s->handles);
    td_map_init(&s->names);
    td_quota_init(&s->quota, "session memory", st->cfg.session_max_bytes, &st->global);
    s->quota.max_charge = st->cfg.max_tensor_bytes;
    s->entry_bytes = st->cfg.entry_bytes > 0 ? st->cfg.entry_bytes : 0;
    *out = s;
    return 0;
}

int td_store_add_restored(struct td_store *st, const uint8_t sha[32], struct td_session **out,
                          struct td_err *err)
{
    struct td_session *s;
    int rc = session_new(st, &s, err);
    if (rc != 0) {
        return rc;
    }
    s->restored = true;
    memcpy(s->token_sha, sha, sizeof s->token_sha);
    uint64_t key = session_key(s);
    if (key == 0 || key == UINT64_MAX || td_map_get(&st->by_key, key) != NULL ||
        td_map_put(&st->by_key, key, s) != 0) {
        td_map_close(&s->handles);
        td_free(s);
        return td_err_set(err, TD_EEXIST, "a session with this key is already live");
    }
    s->refs = 1; /* the store's */
    tag_from_sha(sha, s->token_tag);
    *out = s;
    return 0;
}

static void session_pump(struct td_session *s);

/* Puts s at the back of the deferred list, with a reference, unless it is already listed. */
static void store_defer(struct td_store *st, struct td_session *s)
{
    if (s->deferred) {
        return;
    }
    s->deferred = true;
    s->defer_next = NULL;
    td_session_ref(s);
    if (st->defer_tail != NULL) {
        st->defer_tail->defer_next = s;
    } else {
        st->defer_head = s;
    }
    st->defer_tail = s;
}

static bool turn_budget_spent(const struct td_store *st)
{
    return st != NULL && st->cfg.turn_work > 0 && st->turn_spent >= st->cfg.turn_work;
}

void td_store_turn(struct td_store *st)
{
    st->turn_spent = 0;
    /* This turn's batch is the list as it stands; sessions that defer again while it is
    ** worked go onto a fresh list behind whatever the batch leaves. */
    struct td_session *batch = st->defer_head, *batch_tail = st->defer_tail;
    st->defer_head = NULL;
    st->defer_tail = NULL;
    while (batch != NULL && !turn_budget_spent(st)) {
        struct td_session *s = batch;
        batch = s->defer_next;
        s->defer_next = NULL;
        s->deferred = false;
        session_pump(s);
        td_session_unref(s); /* the list's reference */
    }
    if (batch != NULL) {
        /* Not reached this turn: first in line for the next. */
        batch_tail->defer_next = st->defer_head;
        if (st->defer_head == NULL) {
            st->defer_tail = batch_tail;
        }
        st->defer_head = batch;
    }
}

bool td_store_has_deferred(const struct td_store *st)
{
    return st->defer_head != NULL;
}

void td_store_stop(struct td_store *st)
{
    st->stopping = true;
    /* Idle sessions (a held one, say) drop their queued jobs now; a running job's session drops
    ** them when it completes. Dropping only finishes jobs, so the walk is safe. */
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&st->by_key, &it, &key, &val);) {
        session_pump(val);
    }
}

bool td_store_busy(const struct td_store *st)
{
    size_t iter = 0;
    uint64_t key;
    void *val;
    while (td_map_next(&st->by_key, &iter, &key, &val)) {
        if (td_session_busy(val)) {
            return true;
        }
    }
    return false;
}

int td_store_open(struct td_store *st, struct td_session **out, struct td_err *err)
{
    struct td_session *s;
    int rc = session_new(st, &s, err);
    if (rc != 0) {
        return rc;
    }
    uint64_t seed;
    uint8_t secret[TD_TOKEN_BYTES];
    bool named = st->cfg.node_id != NULL && st->cfg.node_id[0] != '\0';
    /* Keys 0 and UINT64_MAX are reserved by the map, and a collision on the first 8 bytes is
    ** astronomically rare but cheap to rule out: draw again. */
    do {
        if (fill_random(secret, sizeof secret) != 0 || fill_random(&seed, sizeof seed) != 0) {
            td_map_close(&s->handles);
            td_free(s);
            return td_err_set(err, TD_EIO, "could not read randomness for a session token");
        }
        if (named) {
            s->token_len = (uint8_t)td_token_format(st->cfg.node_id, secret, s->token);
        } else {
            memcpy(s->token, secret, sizeof secret);
            s->token_len = TD_TOKEN_BYTES;
        }
        td_sha256(s->token, s->token_len, s->token_sha);
    } while (session_key(s) == 0 || session_key(s) == UINT64_MAX ||
             td_map_get(&st->by_key, session_key(s)) != NULL);
    if (td_map_put(&st->by_key, session_key(s), s) != 0) {
        td_map_close(&s->handles);
        td_free(s);
        return td_err_code(err, TD_ENOMEM);
    }
    s->refs = 2; /* the store's and the caller's */
    tag_from_sha(s->token_sha, s->token_tag);
    s->rng_seed = seed;
    *out = s;
    return 0;
}

int td_store_resume(struct td_store *st, const uint8_t *token, size_t len, struct td_session **out,
                    struct td_err *err)
{
    if (len == 0 || len > TD_TOKEN_MAX) {
        return td_err_set(err, TD_ESESSION, "unknown or expired session");
    }
    uint8_t sha[TD_SHA256_BYTES];
    td_sha256(token, len, sha);
    struct td_session *s = td_map_get(&st->by_key, token_key(sha));
    /* Compare every byte whatever the outcome, so timing tells nothing about the token. A live
    ** session compares its token; a restored one, which knows only the hash, the hash. */
    uint8_t diff = (s == NULL);
    if (s != NULL && s->restored) {
        for (size_t i = 0; i < sizeof sha; i++) {
            diff |= (uint8_t)(s->token_sha[i] ^ sha[i]);
        }
    } else if (s != NULL) {
        diff |= (uint8_t)(s->token_len != len);
        for (size_t i = 0; i < TD_TOKEN_MAX; i++) {
            diff |= (uint8_t)(s->token[i] ^ (i < len ? token[i] : 0));
        }
    }
    if (diff != 0 || s->closed) {
        return td_err_set(err, TD_ESESSION, "unknown or expired session");
    }
    if (s->restored) {
        /* It learns its token, as if it had never left; its key (the hash) stays. */
        memcpy(s->token, token, len);
        s->token_len = (uint8_t)len;
        s->restored = false;
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
    int64_t work = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0;
         work < TD_STORE_SWEEP_MAX_WORK && td_map_next(&st->by_key, &it, &key, &val);) {
        struct td_session *s = val;
        if (s->nconns == 0 && !td_session_busy(s) && now_ms >= s->idle_since_ms &&
            now_ms - s->idle_since_ms >= st->cfg.session_ttl_ms) {
            if (st->on_expire != NULL) {
                int w = st->on_expire(s, st->on_expire_arg);
                work += w > 0 ? w : 0;
            }
            td_session_close(s); /* deletes the current key, which iteration allows */
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
    /* Closed sessions have nothing left to run: the list only gives its references back. */
    while (st->defer_head != NULL) {
        struct td_session *s = st->defer_head;
        st->defer_head = s->defer_next;
        s->defer_next = NULL;
        s->deferred = false;
        td_session_unref(s);
    }
    st->defer_tail = NULL;
}

/* ---- sessions ---- */

/* Debug builds check the handle table's invariants around every change and lookup, on what the
** table itself made (never on a handle or value from the wire): an entry holds a tensor or a
** failure, never both or neither, and the session's quota holds at least every entry's charge.
** O(1) each; compiled out with NDEBUG. */
static void table_check(const struct td_session *s, void *e)
{
    assert(e == NULL || (td_entry_tensor(e) == NULL) != (td_entry_failure(e) == NULL));
    assert(atomic_load(&s->quota.used) >= (int64_t)s->handles.len * s->entry_bytes);
    (void)s;
    (void)e;
}

/* Frees an entry taken out of s's table and gives back its charge. */
static void entry_free(struct td_session *s, void *e)
{
    if (e != NULL) {
        td_tensor_unref(td_entry_tensor(e));
        td_free(td_entry_failure(e));
        td_quota_release(&s->quota, s->entry_bytes);
    }
}

static void names_clear(struct td_session *s);

static void session_clear(struct td_session *s)
{
    names_clear(s);
    while (s->nwalks > 0) {
        td_backward_free(s->walks[--s->nwalks].b);
    }
    td_free(s->walks);
    s->walks = NULL;
    td_free(s->rng);
    s->rng = NULL;
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&s->handles, &it, &key, &val);) {
        entry_free(s, val);
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

struct td_rng *td_session_rng(struct td_session *s)
{
    if (s->rng == NULL && (s->rng = td_malloc(sizeof *s->rng)) != NULL) {
        td_rng_seed(s->rng, s->rng_seed);
    }
    return s->rng;
}

void td_session_seed(struct td_session *s, uint64_t seed)
{
    s->rng_seed = seed;
    if (s->rng != NULL) {
        td_rng_seed(s->rng, seed);
    }
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
    if (s->current == NULL && s->head != NULL) {
        /* Closed from outside any job (the store's own teardown): nothing queued may run on a
        ** closed session. From a job (CloseSession), later jobs stay: they fail with "session
        ** is closed" (rpc refuses a second Hello on a connection, so none opens another
        ** session behind them). */
        td_session_cancel(s, NULL, NULL, TD_CANCEL_SESSION_CLOSED);
    }
    session_clear(s);
    struct td_store *st = s->store;
    s->store = NULL;
    if (st != NULL && td_map_get(&st->by_key, session_key(s)) == s) {
        td_map_del(&st->by_key, session_key(s));
        td_session_unref(s); /* the store's reference */
    }
}

int td_session_lookup(struct td_session *s, uint64_t handle, struct td_tensor **t,
                      struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    void *e = (handle == 0 || handle == UINT64_MAX) ? NULL : td_map_get(&s->handles, handle);
    if (e == NULL) {
        return td_err_set(err, TD_EHANDLE, "unknown handle %llu", (unsigned long long)handle);
    }
    table_check(s, e);
    if (td_entry_failed(e)) {
        return td_err_set(err, TD_EINPUT, "input %llu failed: %s", (unsigned long long)handle,
                          td_entry_failure(e)->msg);
    }
    *t = td_entry_tensor(e);
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
    int rc = td_quota_charge_bytes(&s->quota, s->entry_bytes, err);
    if (rc != 0) {
        td_tensor_unref(t);
        return rc;
    }
    if (td_map_put(&s->handles, handle, t) != 0) {
        td_tensor_unref(t);
        td_quota_release(&s->quota, s->entry_bytes);
        return td_err_code(err, TD_ENOMEM);
    }
    table_check(s, t);
    return 0;
}

void td_session_put_failure(struct td_session *s, uint64_t handle, const struct td_err *cause)
{
    if (td_session_check_out(s, handle, NULL) != 0) {
        return; /* reserved, in use, or the table is full: nothing is recorded */
    }
    if (td_quota_charge_bytes(&s->quota, s->entry_bytes, NULL) != 0) {
        return; /* as when memory is short: later uses report "unknown handle", still an error */
    }
    struct td_err *f = td_malloc(sizeof *f);
    void *e = (void *)((uintptr_t)f | 1);
    if (f == NULL || td_map_put(&s->handles, handle, e) != 0) {
        /* The failure goes unrecorded; later uses then report "unknown handle", still an error. */
        td_free(f);
        td_quota_release(&s->quota, s->entry_bytes);
        return;
    }
    td_err_copy(f, cause);
    table_check(s, e);
}

void td_session_free_handle(struct td_session *s, uint64_t handle)
{
    if (handle != 0 && handle != UINT64_MAX) {
        void *e = td_map_del(&s->handles, handle);
        table_check(s, e);
        entry_free(s, e);
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

/* ---- named tensors ----
**
** The map is keyed by a SipHash of the name under the process key (so a client cannot choose
** names that share a key), remapped off the map's two reserved keys; names whose keys still
** coincide share a chain. Each entry is one allocation: the list links, the chain link, the
** tensor reference and the name's bytes. */

/* What a name costs its session's quota: the entry (struct, bytes, map slot, allocator header),
** estimated as a handle table entry, plus its length. */
static int64_t name_charge(const struct td_session *s, size_t len)
{
    return s->entry_bytes + (int64_t)len;
}

static uint64_t name_key(const char *name, size_t len)
{
    uint64_t k = td_siphash13_bytes(name, len);
    return k == 0 || k == UINT64_MAX ? 1 : k;
}

int td_session_name_check(const char *name, size_t len, struct td_err *err)
{
    if (len == 0) {
        return td_err_set(err, TD_EINVAL, "a tensor name must not be empty");
    }
    if (len > TD_NAME_MAX_BYTES) {
        return td_err_set(err, TD_EINVAL, "a tensor name is at most %d bytes, not %zu",
                          TD_NAME_MAX_BYTES, len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
        if (!ok) {
            return td_err_set(err, TD_EINVAL,
                              "a tensor name may hold only A-Z a-z 0-9 _ . : / -, not byte 0x%02x "
                              "at offset %zu",
                              c, i);
        }
    }
    return 0;
}

/* The entry named name, or NULL; *prevp (when not NULL) gets its predecessor in the chain. */
static struct td_name *name_find(const struct td_session *s, const char *name, size_t len,
                                 uint64_t key, struct td_name **prevp)
{
    struct td_name *prev = NULL;
    for (struct td_name *n = td_map_get(&s->names, key); n != NULL; prev = n, n = n->chain) {
        if (n->len == len && memcmp(n->name, name, len) == 0) {
            if (prevp != NULL) {
                *prevp = prev;
            }
            return n;
        }
    }
    return NULL;
}

int td_session_set_name(struct td_session *s, const char *name, size_t len, struct td_tensor *t,
                        struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    uint64_t key = name_key(name, len);
    struct td_name *n = name_find(s, name, len, key, NULL);
    if (n != NULL) {
        /* Rebinding: the same entry, the same place, the same charge. */
        struct td_tensor *old = n->t;
        n->t = td_tensor_ref(t);
        td_tensor_unref(old);
        return 0;
    }
    if (s->nnames >= TD_SESSION_MAX_NAMES) {
        return td_err_set(err, TD_ELIMIT, "session name limit reached: %d names",
                          TD_SESSION_MAX_NAMES);
    }
    int rc = td_quota_charge_bytes(&s->quota, name_charge(s, len), err);
    if (rc != 0) {
        return rc;
    }
    n = td_malloc(sizeof *n + len + 1);
    if (n == NULL) {
        td_quota_release(&s->quota, name_charge(s, len));
        return td_err_code(err, TD_ENOMEM);
    }
    n->key = key;
    n->len = len;
    memcpy(n->name, name, len);
    n->name[len] = '\0';
    n->chain = td_map_get(&s->names, key);
    if (td_map_put(&s->names, key, n) != 0) {
        td_free(n);
        td_quota_release(&s->quota, name_charge(s, len));
        return td_err_code(err, TD_ENOMEM);
    }
    n->t = td_tensor_ref(t);
    n->next = NULL;
    n->prev = s->names_tail;
    if (s->names_tail != NULL) {
        s->names_tail->next = n;
    } else {
        s->names_head = n;
    }
    s->names_tail = n;
    s->nnames++;
    s->names_len += (int64_t)len;
    return 0;
}

/* A missing name, in the words Python's dict uses for a missing key (a name holds no quote, so
** '...' is its repr). */
static int name_missing(const char *name, size_t len, struct td_err *err)
{
    return td_err_set(err, TD_EHANDLE, "KeyError: '%.*s'", (int)len, name);
}

int td_session_get_name(struct td_session *s, const char *name, size_t len, struct td_tensor **t,
                        struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    struct td_name *n = name_find(s, name, len, name_key(name, len), NULL);
    if (n == NULL) {
        return name_missing(name, len, err);
    }
    *t = n->t;
    return 0;
}

/* Takes n out of the list (not the map) and frees it, giving back its charge. */
static void name_free(struct td_session *s, struct td_name *n)
{
    if (n->prev != NULL) {
        n->prev->next = n->next;
    } else {
        s->names_head = n->next;
    }
    if (n->next != NULL) {
        n->next->prev = n->prev;
    } else {
        s->names_tail = n->prev;
    }
    s->nnames--;
    s->names_len -= (int64_t)n->len;
    td_quota_release(&s->quota, name_charge(s, n->len));
    td_tensor_unref(n->t);
    td_free(n);
}

int td_session_del_name(struct td_session *s, const char *name, size_t len, struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    struct td_name *prev = NULL;
    uint64_t key = name_key(name, len);
    struct td_name *n = name_find(s, name, len, key, &prev);
    if (n == NULL) {
        return name_missing(name, len, err);
    }
    if (prev != NULL) {
        prev->chain = n->chain;
    } else if (n->chain != NULL) {
        td_map_put(&s->names, key, n->chain); /* replaces the value: the slot exists, no alloc */
    } else {
        td_map_del(&s->names, key);
    }
    name_free(s, n);
    return 0;
}

static void names_clear(struct td_session *s)
{
    while (s->names_head != NULL) {
        name_free(s, s->names_head);
    }
    td_map_close(&s->names);
}

const struct td_name *td_session_names(const struct td_session *s)
{
    return s->names_head;
}

size_t td_session_name_count(const struct td_session *s)
{
    return s->nnames;
}

/* ---- the job queue ---- */

bool td_session_busy(const struct td_session *s)
{
    return s->running || s->current != NULL || s->head != NULL;
}

/* Pops the head of s's FIFO. */
static struct td_job *queue_pop(struct td_session *s)
{
    struct td_job *job = s->head;
    s->head = job->next;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    job->next = NULL;
    return job;
}

/* Runs queued jobs in order until the queue is empty, a heavy job goes to the executor, or a
** hold stops it. Cancelled jobs at the head are finished without running (done() alone), even
** while held: they add nothing to the backlog a hold waits on, and their replies keep their
** places in line. Jobs start, and are dropped, only while no job runs, so done() of a dropped
** job also sees the session idle. */
static void session_pump(struct td_session *s)
{
    /* Each job's reference goes when it is done, and a job may drop the others (a Hello on a
    ** closed session moves its connection to a new one): hold one while the loop reads s. */
    td_session_ref(s);
    while (!s->running && s->current == NULL && s->head != NULL) {
        struct td_job *job = s->head;
        if (s->store != NULL && s->store->stopping && !job->cancelled) {
            /* Nobody will read its reply: finish it unrun. */
            job->cancelled = true;
            td_cancel_raise(&job->cancel, TD_CANCEL_SHUTDOWN);
        }
        if (!job->cancelled && s->holds > 0) {
            break; /* backpressure: td_session_release pumps again */
        }
        struct td_store *st = s->store;
        if (!job->cancelled && turn_budget_spent(st)) {
            store_defer(st, s); /* this turn's inline budget is spent: td_store_turn resumes */
            break;
        }
        queue_pop(s);
        if (job->cancelled) {
            job->done(job);
            td_session_unref(s); /* the job's reference */
            continue;
        }
        struct td_executor *ex = s->store != NULL ? s->store->ex : &td_executor_inline;
        s->current = job;
        if (job->is_heavy != NULL && job->is_heavy(job) && ex != &td_executor_inline) {
            s->running = true;
            ex->submit(ex, job);
            break;
        }
        job->run(job);
        s->current = NULL;
        if (st != NULL) {
            st->turn_spent = td_sat_add(st->turn_spent, td_sat_add(job->work > 0 ? job->work : 0,
                                                                   TD_JOB_BASE_WORK));
        }
        job->done(job);
        td_session_unref(s); /* the job's reference */
    }
    td_session_unref(s);
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
    s->current = NULL;
    job->done(job);
    /* Hold the session across the pump: the job's reference may have been the last. */
    session_pump(s);
    td_session_unref(s);
}

void td_session_cancel(struct td_session *s, bool (*match)(struct td_job *job, void *arg),
                       void *arg, enum td_cancel_reason reason)
{
    if (s->current != NULL && (match == NULL || match(s->current, arg))) {
        td_cancel_raise(&s->current->cancel, reason);
    }
    for (struct td_job *job = s->head; job != NULL; job = job->next) {
        if (!job->cancelled && (match == NULL || match(job, arg))) {
            job->cancelled = true;
            td_cancel_raise(&job->cancel, reason);
        }
    }
    /* Nothing running: the cancelled jobs at the head are finished now. Otherwise they wait for
    ** the running one, so replies keep request order. */
    session_pump(s);
}

void td_store_cancel_all(struct td_store *st)
{
    uint64_t key;
    void *val;
    /* The sessions are listed first: a dropped job's reply can close a connection, whose peer
    ** may then let another session's queue run, and a job that runs could close its session
    ** (and leave by_key) in the middle of a walk. */
    size_t n = 0, cap = st->by_key.len;
    struct td_session **list = td_calloc(cap > 0 ? cap : 1, sizeof *list);
    if (list == NULL) {
        /* No memory for the list: walk the map itself (nothing is usually running). */
        for (size_t it = 0; td_map_next(&st->by_key, &it, &key, &val);) {
            td_session_cancel(val, NULL, NULL, TD_CANCEL_SHUTDOWN);
        }
        return;
    }
    for (size_t it = 0; n < cap && td_map_next(&st->by_key, &it, &key, &val);) {
        list[n++] = td_session_ref(val);
    }
    for (size_t i = 0; i < n; i++) {
        td_session_cancel(list[i], NULL, NULL, TD_CANCEL_SHUTDOWN);
    }
    for (size_t i = 0; i < n; i++) {
        td_session_unref(list[i]);
    }
    td_free(list);
}

void td_session_hold(struct td_session *s)
{
    s->holds++;
}

void td_session_release(struct td_session *s)
{
    if (s->holds > 0 && --s->holds == 0) {
        session_pump(s);
    }
}
