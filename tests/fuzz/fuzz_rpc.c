/* tests/fuzz/fuzz_rpc.c — libFuzzer target for rpc decode-and-dispatch (server/rpc/rpc.c).
**
** Each input runs against a fresh in-memory td_store with the inline executor, one rpc peer and
** a Save/Load directory in a private temp dir. The harness sends a valid Hello first (unless the
** input says not to), so the fuzzer starts inside a session; the input is then a sequence of
** records, each one of:
**
**   byte 0        flags: bit 0 no automatic Hello; bit 1 the server requires an auth token
**                 (the automatic Hello carries it); bit 2 keep each reply's data section
**                 pinned until after the next request; bit 3 a deferring executor: heavy
**                 jobs wait until a kind-3 record (or the end) runs one, as the thread pool would
**                 let them, so requests pile up behind them and connections go away meanwhile
**   then records: u8 kind, u16 meta_len (little-endian), u16 data_len, meta_len + data_len bytes
**     kind % 8 == 0..3: a frame (meta, data) handed to td_rpc_handle (with the deferring
**                       executor, kind 3 instead finishes the oldest heavy job)
**     kind % 8 == 4:    the connection goes away and a new one resumes the session by its token
**     kind % 8 == 5:    the same, but the session's TTL passes (a sweep) before the new one comes
**     kind % 8 == 6:    `data` becomes the file "f.safetensors" in the Save/Load dir
**     kind % 8 == 7:    a new connection that opens a new session (the old one detaches)
**
** Every request must be answered exactly once (with the inline executor, at once), with a
** well-formed frame whose header matches its Response and data section, in request order (a
** request that cannot be decoded is answered with id 0, still in its turn);
** a connection that went away gets no reply at all; a pinned data section must still hold the bytes it held when it was queued
** (in-place writes copy on write); and once the peer and store close every byte is returned.
*/
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "core/parallel.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_rpc: check failed at line %d: %s\n", __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define AUTH_TOKEN "fuzz-secret"
#define TTL_MS 60000

void openblas_set_num_threads(int num_threads);

struct held {
    struct td_rpc_reply r;
    uint8_t *copy; /* the data section as it was when queued */
};

#define MAX_OUTSTANDING 1024
#define MAX_DEFERRED 16

struct harness {
    struct td_store store;
    struct td_rpc_server srv;
    struct td_rpc_peer *peer;
    int replies;                    /* since the last request was sent */
    uint64_t want[MAX_OUTSTANDING]; /* ids of requests not yet answered, in order;
                                    ** UINT64_MAX: one that could not be decoded */
    int nwant;
    bool deferred;                     /* the deferring executor is in use */
    struct td_job *jobs[MAX_DEFERRED]; /* heavy jobs handed to it, oldest first */
    int njobs;
    bool closed; /* a reply said close_after: no more requests on this peer */
    bool hold;
    struct held held[4];
    int nheld;
    uint8_t token[16];
    bool have_token;
};

static struct harness hs;
static char files_dir[64];
static uint64_t now = 1000;
static int64_t base_live;
static bool debug; /* FUZZ_DEBUG=1: print every reply */

static uint64_t fake_now(void)
{
    return now;
}

static void defer_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    CHECK(hs.njobs < MAX_DEFERRED);
    hs.jobs[hs.njobs++] = job;
}

static struct td_executor executor_deferred = {.submit = defer_submit};

/* The "worker" runs the oldest heavy job; its completion comes back as the loop would see it. */
static void finish_one_job(struct harness *h)
{
    if (h->njobs == 0) {
        return;
    }
    struct td_job *job = h->jobs[0];
    memmove(h->jobs, h->jobs + 1, (size_t)(h->njobs - 1) * sizeof h->jobs[0]);
    h->njobs--;
    job->run(job);
    td_session_job_complete(job);
}

static void release_held(struct harness *h)
{
    for (int i = 0; i < h->nheld; i++) {
        struct held *x = &h->held[i];
        /* Copy on write: whatever ran since, the queued bytes are the bytes that were read. */
        CHECK(x->r.data_len == 0 || memcmp(x->r.data, x->copy, x->r.data_len) == 0);
        if (x->r.release != NULL) {
            x->r.release(x->r.release_arg);
        }
        free(x->copy);
    }
    h->nheld = 0;
}

static void on_reply(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct harness *h = user;
    CHECK(p == h->peer);
    h->replies++;
    if (r->close_after) {
        h->closed = true;
    }
    if (r->frame == NULL) {
        CHECK(r->close_after);
        CHECK(r->release == NULL && r->data_len == 0);
        return;
    }
    CHECK(r->frame_len >= TD_FRAME_HEADER_BYTES);
    const uint8_t *f = r->frame;
    uint32_t ml = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | f[4 + i];
    }
    CHECK(ml == r->frame_len - TD_FRAME_HEADER_BYTES);
    CHECK(dl == r->data_len);
    CHECK((r->data_len == 0) || r->data != NULL);
    Tensord__Response *resp = tensord__response__unpack(NULL, ml, f + TD_FRAME_HEADER_BYTES);
    CHECK(resp != NULL);
    int code = resp->status != NULL ? (int)resp->status->code : 0;
    /* In request order, errors found before a request could be queued included (a request that
    ** could not be decoded is answered with id 0). */
    CHECK(h->nwant > 0);
    int k = 0;
    if (h->want[k] != resp->id && !(h->want[k] == UINT64_MAX && resp->id == 0)) {
        fprintf(stderr, "reply id %llu (status %d: %s) arrived when %llu was expected\n",
                (unsigned long long)resp->id, code, code != 0 ? resp->status->message : "",
                (unsigned long long)h->want[k]);
    }
    CHECK(h->want[k] == resp->id || (h->want[k] == UINT64_MAX && resp->id == 0));
    memmove(h->want + k, h->want + k + 1, (size_t)(h->nwant - k - 1) * sizeof h->want[0]);
    h->nwant--;
    if (debug && code != 0) {
        fprintf(stderr, "reply id=%llu code=%d %s\n", (unsigned long long)resp->id, code,
                resp->status->message != NULL ? resp->status->message : "(no message)");
    }
    CHECK(code >= 0 && code <= TENSORD__STATUS_CODE__UNKNOWN_NODE); /* the last code */
    CHECK(code == 0 || resp->status->message != NULL);
    if (debug) {
        fprintf(stderr, "reply id=%llu code=%d %s%s\n", (unsigned long long)resp->id, code,
                code != 0 ? resp->status->message : "", r->data_len > 0 ? " +data" : "");
    }
    if (r->data_len > 0) {
        /* Only a Get answered OK carries data: the range its TensorInfo names. */
        CHECK(code == 0);
        CHECK(resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR);
        CHECK(resp->tensor->length == r->data_len);
        CHECK(resp->tensor->offset + resp->tensor->length <= resp->tensor->nbytes);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        CHECK(resp->tensor->n_shape <= 8);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_HELLO && code == 0) {
        CHECK(resp->hello->session_token.len == sizeof h->token);
        memcpy(h->token, resp->hello->session_token.data, sizeof h->token);
        h->have_token = true;
    }
    tensord__response__free_unpacked(resp, NULL);
    CHECK(r->release != NULL); /* every frame has one, and it frees the frame */
    if (h->hold && r->data_len > 0 && h->nheld < (int)(sizeof h->held / sizeof h->held[0])) {
        struct held *x = &h->held[h->nheld++];
        x->r = *r;
        x->copy = malloc(r->data_len);
        CHECK(x->copy != NULL);
        memcpy(x->copy, r->data, r->data_len);
        return;
    }
    /* Read every byte, so a section pointing at freed memory is caught here. */
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < r->data_len; i++) {
        sum += ((const uint8_t *)r->data)[i];
    }
    (void)sum;
    if (r->release != NULL) {
        r->release(r->release_arg);
    }
}

/* Hands one frame to the peer; meta and data are copied to exact-size buffers so an overread
** is caught. */
static void send_frame(struct harness *h, const uint8_t *meta, size_t ml, const uint8_t *data,
                       size_t dl)
{
    uint8_t *m = malloc(ml > 0 ? ml : 1);
    CHECK(m != NULL);
    memcpy(m, meta, ml);
    void *d = NULL;
    if (dl > 0) {
        d = td_malloc(dl);
        CHECK(d != NULL);
        memcpy(d, data, dl);
    }
    uint64_t id = UINT64_MAX;
    if (ml > 0) {
        Tensord__Request *req = tensord__request__unpack(NULL, ml, meta);
        if (req != NULL) {
            id = req->id;
            tensord__request__free_unpacked(req, NULL);
        }
    }
    CHECK(h->nwant < MAX_OUTSTANDING);
    h->want[h->nwant++] = id;
    int before = h->nheld;
    h->replies = 0;
    td_rpc_handle(h->peer, m, ml, d, dl);
    free(m);
    /* The inline executor runs everything at once: exactly one reply. */
    CHECK(h->deferred || h->replies == 1);
    /* Pins taken before this request are checked and let go after it ran. */
    if (before > 0) {
        struct held keep[4];
        int nkeep = h->nheld - before;
        memcpy(keep, h->held + before, (size_t)nkeep * sizeof keep[0]);
        h->nheld = before;
        release_held(h);
        memcpy(h->held, keep, (size_t)nkeep * sizeof keep[0]);
        h->nheld = nkeep;
    }
}

static void send_hello(struct harness *h, bool resume)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 1;
    m.auth_token = h->srv.auth_token != NULL ? (char *)h->srv.auth_token : "";
    m.client_name = "fuzz_rpc";
    if (resume && h->have_token) {
        m.session_token.data = h->token;
        m.session_token.len = sizeof h->token;
    }
    req.id = 1;
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    uint8_t buf[256];
    size_t n = tensord__request__get_packed_size(&req);
    CHECK(n <= sizeof buf);
    tensord__request__pack(&req, buf);
    send_frame(h, buf, n, NULL, 0);
}

static void new_peer(struct harness *h)
{
    CHECK(td_rpc_peer_new(&h->peer, &h->srv, on_reply, h) == 0);
    td_rpc_peer_set_addr(h->peer, "127.0.0.1:4242", 1);
    h->closed = false;
    h->nwant = 0; /* the old connection's unanswered requests stay unanswered */
}

static void clear_files(void)
{
    DIR *d = opendir(files_dir);
    CHECK(d != NULL);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", files_dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static void remove_files_dir(void)
{
    clear_files();
    rmdir(files_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    td_log_min_level = TD_LOG_OFF;
    debug = getenv("FUZZ_DEBUG") != NULL;
    openblas_set_num_threads(1);
    td_parallel_set_threads(1);
    snprintf(files_dir, sizeof files_dir, "/tmp/td_fuzz_rpc.XXXXXX");
    CHECK(mkdtemp(files_dir) != NULL);
    atexit(remove_files_dir);
    base_live = td_alloc_live_bytes();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t flags = data[0];
    struct harness *h = &hs;
    memset(h, 0, sizeof *h);
    h->deferred = (flags & 8) != 0;
    now = 1000;
    struct td_store_config cfg = {
        .max_bytes = 16 << 20,
        .session_max_bytes = 4 << 20,
        .max_tensor_bytes = 256 << 10,
        .max_sessions = 4,
        .session_max_handles = 256,
        .session_ttl_ms = TTL_MS,
    };
    td_store_init(&h->store, &cfg, h->deferred ? &executor_deferred : &td_executor_inline);
    h->srv.store = &h->store;
    h->srv.max_frame_bytes = 1u << 20;
    h->srv.heavy_work = 1 << 16;
    h->srv.now_ms = fake_now;
    h->srv.started_ms = now;
    h->srv.files_dir = files_dir;
    h->srv.shared_files = true; /* one flat directory, which case 6 plants files in */
    h->srv.auth_token = (flags & 2) != 0 ? AUTH_TOKEN : NULL;
    memset(h->srv.instance_id, 7, sizeof h->srv.instance_id);
    h->hold = (flags & 4) != 0;
    td_map_init(&h->srv.auth_penalty);
    new_peer(h);
    if ((flags & 1) == 0) {
        send_hello(h, false);
    }

    size_t at = 1;
    while (at + 5 <= size && !h->closed) {
        uint8_t kind = data[at];
        size_t ml = (size_t)data[at + 1] | (size_t)data[at + 2] << 8;
        size_t dl = (size_t)data[at + 3] | (size_t)data[at + 4] << 8;
        at += 5;
        ml = ml < size - at ? ml : size - at;
        const uint8_t *meta = data + at;
        at += ml;
        dl = dl < size - at ? dl : size - at;
        const uint8_t *body = data + at;
        at += dl;
        switch (kind % 8) {
        case 4:
        case 5:
        case 7:
            td_rpc_peer_close(h->peer);
            if (kind % 8 == 5) {
                now += TTL_MS + 1;
                td_store_sweep(&h->store, now);
            }
            new_peer(h);
            send_hello(h, kind % 8 != 7);
            break;
        case 6: {
            char path[512];
            snprintf(path, sizeof path, "%s/f.safetensors", files_dir);
            FILE *fp = fopen(path, "wb");
            CHECK(fp != NULL);
            CHECK(fwrite(body, 1, dl, fp) == dl);
            CHECK(fclose(fp) == 0);
            break;
        }
        case 3:
            if (h->deferred) {
                finish_one_job(h);
                break;
            }
            /* fall through */
        default: send_frame(h, meta, ml, body, dl); break;
        }
    }

    while (h->njobs > 0) {
        finish_one_job(h);
    }
    CHECK(h->closed || h->nwant == 0); /* every request was answered */
    release_held(h);
    td_rpc_peer_close(h->peer);
    CHECK(!td_store_busy(&h->store));
    td_store_close(&h->store);
    td_rpc_server_close(&h->srv);
    clear_files();
    CHECK(td_alloc_live_bytes() == base_live);
    return 0;
}
