/* tests/load/loadgen.c — a load generator on libtensord.
**
** N connections (one thread each) share M sessions (connection i resumes session i mod M) and
** run a mixed, self-checking workload for a fixed time: creates, elementwise ops, matmul, a
** reduction, backward and .grad, gets, frees. A few times a second one connection also runs a
** heavy round whose broadcast multiply and 512x256x256 matmul are above the daemon's heavy_work
** threshold, so they run on the worker pool and through BLAS. Every result is checked against
** the value worked out in advance, so a wrong answer under load counts as an error, not as
** throughput. It reports requests per second, latency percentiles over the whole run (a
** log-linear histogram per thread, merged at the end) and errors.
**
** Memory. With --rss-pid it samples the daemon's resident memory, and with --metrics the
** daemon's allocated_bytes (every byte the daemon holds for its work, from td_malloc's count) and
** buffer cache, printing `rss t=... kib=... allocated=... cached=... phase=...` lines (also
** written to --samples FILE). Twice the workers are stopped between rounds, every connection
** still open and every tensor freed: once after warm-up (20 % of the run) and once at the end.
** allocated_bytes must be equal at the two: what the daemon holds then is the store, the
** sessions (struct, RNG, handle table), the connections (struct, read buffer, rpc peer, write
** array) and the HTTP exchange that reads the number, the same objects both times; everything
** a request allocates (job, decode arena, tensors, autograd nodes, pinned replies, write
** requests) is gone when its reply has been read, and freed large buffers kept for reuse are
** counted apart (cached_bytes). One structure keeps a capacity it once needed: a session's
** handle table never shrinks, so each session's table is first grown past anything the
** workload can need (prefill_session). Any difference is then memory the workload leaked, and
** the run fails. RSS must also stay within --rss-slack of its warm value (plus 4 MiB), a looser
** check that also sees memory outside td_malloc.
**
**   loadgen --addr 127.0.0.1:7878 --connections 500 --sessions 100 --seconds 30
**           [--metrics 127.0.0.1:9100] [--rss-pid PID] [--samples FILE] [--heavy-rate 20]
**
** Hostile mode (--attack, see "hostile mode" below): four sessions replay issue 14's attacks
** while a canary session's tiny ops are timed; it fails on canary p99 >= 10 ms, RSS above
** --max-bytes + 64 MiB, or the data directory above --max-disk-bytes:
**
**   loadgen --attack --addr 127.0.0.1:7878 --seconds 300 --metrics 127.0.0.1:9100
**           --rss-pid PID --max-bytes 512M --data-dir DIR --max-disk-bytes 256M
**
** Exit status: 0 when every request succeeded and every check held (allocated_bytes back to its
** warm value, RSS flat), 1 otherwise, 2 for usage errors.
*/
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "proto/tensord.pb-c.h"
#include "tensord.h"

/* Latency histogram: values in nanoseconds, exact below 2*HIST_SUB, then HIST_SUB buckets per
** power of two, so a bucket is at most 1/128 of its lower bound wide and its midpoint is within
** 0.4 % of any value in it. Values from 2^HIST_BITS ns (68 s) up share the last bucket; the
** maximum is kept exactly beside it. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_BITS 36
#define HIST_BUCKETS ((HIST_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

/* The most handles one connection holds at once (a round holds 9, a heavy round 7), and how
** many times that each session's handle table is grown to before the warm-up checkpoint. */
#define ROUND_HANDLES 16
#define PREFILL_FACTOR 2

#define HEAVY_M 512 /* heavy round: C[M,N] = A[M,K] @ B[K,N] */
#define HEAVY_K 256
#define HEAVY_N 256
#define HEAVY_CHUNK_FLOATS 8192 /* C is read back and checked in 32 KiB chunks */

#define METRICS_CAP ((size_t)4 << 20)

struct opts {
    const char *addr;
    const char *token;
    const char *metrics_addr; /* the daemon's --metrics-listen, for allocated_bytes */
    const char *samples_path; /* the memory samples also go here */
    int connections, sessions;
    double seconds;
    double heavy_rate; /* heavy rounds per second over all connections; 0: none */
    long rss_pid;
    double rss_slack; /* allowed RSS growth after warm-up, as a fraction */
};

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, max_ns;
    double sum_ns;
};

struct worker {
    pthread_t th;
    int index;
    const struct opts *o;
    uint64_t requests, errors, rounds, heavy_rounds;
    struct hist *lat; /* this thread's latencies; merged by main at the end */
    char first_error[600];
};

/* What the daemon holds, at one moment. -1: not known. */
struct mem_sample {
    double t;      /* seconds since the start */
    double held_s; /* a checkpoint: how long the workers were held */
    long rss_kib;
    long long allocated, cached, tensors, sessions;
};

static atomic_bool stop_flag;
/* Each session's token and the address of the node that owns it (with an address list, the
** sessions are spread over the nodes by libtensord's placement; a connection sharing a session
** resumes it at its node). */
static char (*session_tokens)[TENSORD_TOKEN_MAX];
static char (*session_addrs)[TENSORD_ADDR_MAX];
static pthread_barrier_t sessions_ready;

/* Checkpoints: main bumps pause_gen, every worker finishes its round and waits at `quiet`; main
** measures, then waits at `quiet` again to let them go. At the end stop_flag does the same. */
static atomic_int pause_gen;
static pthread_barrier_t quiet;

static uint64_t heavy_period_ns; /* 0: no heavy rounds */
static _Atomic uint64_t heavy_next_ns;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double now_s(void)
{
    return (double)now_ns() / 1e9;
}

/* ---- latency histogram ---- */

static int hist_index(uint64_t v)
{
    if (v >= (uint64_t)1 << HIST_BITS) {
        return HIST_BUCKETS - 1;
    }
    if (v < HIST_SUB) {
        return (int)v;
    }
    int shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

/* The midpoint of bucket i, a value within 0.4 % of everything counted in it. */
static uint64_t hist_value(int i)
{
    if (i < HIST_SUB) {
        return (uint64_t)i;
    }
    int shift = i / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(i % HIST_SUB + HIST_SUB) << shift;
    return lo + (((uint64_t)1 << shift) - 1) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    h->sum_ns += (double)v;
    h->max_ns = v > h->max_ns ? v : h->max_ns;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (int i = 0; i < HIST_BUCKETS; i++) {
        into->count[i] += h->count[i];
    }
    into->n += h->n;
    into->sum_ns += h->sum_ns;
    into->max_ns = h->max_ns > into->max_ns ? h->max_ns : into->max_ns;
}

/* The q-quantile (0 < q < 1): the value with ceil(q * n) values at or below it. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)ceil(q * (double)h->n), seen = 0;
    rank = rank < 1 ? 1 : rank;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return v < h->max_ns ? v : h->max_ns;
        }
    }
    return h->max_ns;
}

/* ---- the workload ---- */

static void note_error(struct worker *w, const char *what, const struct tensord_error *err)
{
    w->errors++;
    if (w->first_error[0] == '\0') {
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", what,
                 err != NULL ? err->message : "wrong value");
    }
}

static void note_latency(struct worker *w, uint64_t t0)
{
    hist_add(w->lat, now_ns() - t0);
    w->requests++;
}

/* Runs one call, timing it; false (and counted) on failure. */
#define CALL(w, what, expr)                                                                        \
    do {                                                                                           \
        uint64_t t0_ = now_ns();                                                                   \
        int rc_ = (expr);                                                                          \
        note_latency((w), t0_);                                                                    \
        if (rc_ != 0) {                                                                            \
            note_error((w), (what), &err);                                                         \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static bool close_to(double got, double want)
{
    return fabs(got - want) <= 1e-4 * (1 + fabs(want));
}

/* One round of the workload; every value is known in advance. */
static bool round_once(struct worker *w, struct tensord *c, uint64_t round)
{
    struct tensord_error err;
    const int64_t sq[2] = {8, 8}, vec[1] = {4};
    float a_data[64], x_data[4];
    float v = (float)(1 + (w->index + round) % 7), u = 0.5f;
    for (int i = 0; i < 64; i++) {
        a_data[i] = v;
    }
    for (int i = 0; i < 4; i++) {
        x_data[i] = (float)(i + 1) * u;
    }
    uint64_t a = tensord_new_handle(c), b = tensord_new_handle(c), m = tensord_new_handle(c),
             p = tensord_new_handle(c), s = tensord_new_handle(c), x = tensord_new_handle(c),
             x2 = tensord_new_handle(c), l = tensord_new_handle(c), g = tensord_new_handle(c);
    CALL(w, "create", tensord_create(c, a, TENSORD_FLOAT32, sq, 2, a_data, sizeof a_data, &err));
    struct tensord_operand two = tensord_f(2.0);
    struct tensord_operand in[2] = {tensord_h(a), two};
    CALL(w, "mul", tensord_op(c, "mul", b, in, 2, false, NULL, &err)); /* 2v */
    struct tensord_operand mm[2] = {tensord_h(a), tensord_h(b)};
    CALL(w, "matmul", tensord_op(c, "matmul", m, mm, 2, false, NULL, &err)); /* 8 * v * 2v */
    struct tensord_operand ad[2] = {tensord_h(m), tensord_h(a)};
    CALL(w, "add", tensord_op(c, "add", p, ad, 2, false, NULL, &err)); /* 16v^2 + v */
    struct tensord_operand sm[1] = {tensord_h(p)};
    CALL(w, "sum", tensord_op(c, "sum", s, sm, 1, false, NULL, &err)); /* 64 (16v^2+v) */
    float total = 0;
    CALL(w, "get", tensord_get(c, s, NULL, &total, sizeof total, &err));
    if (!close_to(total, 64.0 * (16.0 * v * v + v))) {
        note_error(w, "sum", NULL);
        return false;
    }
    /* autograd: l = sum(x * x); dl/dx = 2x */
    CALL(w, "create", tensord_create(c, x, TENSORD_FLOAT32, vec, 1, x_data, sizeof x_data, &err));
    uint64_t id;
    struct tensord_reply r;
    CALL(w, "requires_grad",
         tensord_send_set_grad(c, x, true, false, false, &id, &err) || tensord_recv(c, &r, &err) ||
             r.status);
    struct tensord_operand xx[2] = {tensord_h(x), tensord_h(x)};
    CALL(w, "mul", tensord_op(c, "mul", x2, xx, 2, false, NULL, &err));
    struct tensord_operand xs[1] = {tensord_h(x2)};
    CALL(w, "sum", tensord_op(c, "sum", l, xs, 1, false, NULL, &err));
    CALL(w, "backward",
         tensord_send_backward(c, l, 0, false, &id, &err) || tensord_recv(c, &r, &err) || r.status);
    CALL(w, "grad", tensord_send_grad(c, x, g, &id, &err) || tensord_recv(c, &r, &err) || r.status);
    float grad[4];
    CALL(w, "get", tensord_get(c, g, NULL, grad, sizeof grad, &err));
    for (int i = 0; i < 4; i++) {
        if (!close_to(grad[i], 2.0 * x_data[i])) {
            note_error(w, "grad", NULL);
            return false;
        }
    }
    uint64_t all[9] = {a, b, m, p, s, x, x2, l, g};
    CALL(w, "free", tensord_free(c, all, 9, &err));
    return true;
}

/* Whether this connection runs the next heavy round: the first to see it due claims it, so heavy
** rounds run at heavy_rate over the whole run, however many connections there are. */
static bool heavy_due(void)
{
    if (heavy_period_ns == 0) {
        return false;
    }
    uint64_t due = atomic_load(&heavy_next_ns), now = now_ns();
    return now >= due &&
           atomic_compare_exchange_strong(&heavy_next_ns, &due, now + heavy_period_ns);
}

/* A round above the daemon's heavy_work threshold (65,536 elements of work): A = a * c
** broadcasts a column of M and a row of K into M*K = 131,072 elements, B = d * b is K*N, and
** C = A @ B is M*N*K multiply-adds, so the mul and the matmul run on the worker pool, the matmul
** in BLAS. A and B have rank one, so C[i][j] = a[i] * b[j] * sum_k c[k] d[k]: every element is
** known in O(M*N) and checked exactly (the values are integers below 2^24, exact in float32 in
** any order of summation). The inputs change with the round, so a stale result is caught. */
static bool heavy_once(struct worker *w, struct tensord *c, uint64_t round)
{
    struct tensord_error err;
    const int64_t col_m[2] = {HEAVY_M, 1}, row_k[2] = {1, HEAVY_K}, col_k[2] = {HEAVY_K, 1},
                  row_n[2] = {1, HEAVY_N};
    float av[HEAVY_M], cv[HEAVY_K], dv[HEAVY_K], bv[HEAVY_N];
    float chunk[HEAVY_CHUNK_FLOATS];
    int r = (int)((w->index + round) % 7);
    double dot = 0;
    for (int i = 0; i < HEAVY_M; i++) {
        av[i] = (float)((i + r) % 7 + 1);
    }
    for (int k = 0; k < HEAVY_K; k++) {
        cv[k] = (float)(k % 3 + 1);
        dv[k] = (float)((k + r) % 5 + 1);
        dot += (double)cv[k] * dv[k];
    }
    for (int j = 0; j < HEAVY_N; j++) {
        bv[j] = (float)(j % 4 + 1);
    }
    uint64_t ha = tensord_new_handle(c), hc = tensord_new_handle(c), hd = tensord_new_handle(c),
             hb = tensord_new_handle(c), ma = tensord_new_handle(c), mb = tensord_new_handle(c),
             mc = tensord_new_handle(c);
    CALL(w, "create", tensord_create(c, ha, TENSORD_FLOAT32, col_m, 2, av, sizeof av, &err));
    CALL(w, "create", tensord_create(c, hc, TENSORD_FLOAT32, row_k, 2, cv, sizeof cv, &err));
    CALL(w, "create", tensord_create(c, hd, TENSORD_FLOAT32, col_k, 2, dv, sizeof dv, &err));
    CALL(w, "create", tensord_create(c, hb, TENSORD_FLOAT32, row_n, 2, bv, sizeof bv, &err));
    struct tensord_operand ac[2] = {tensord_h(ha), tensord_h(hc)};
    CALL(w, "heavy mul", tensord_op(c, "mul", ma, ac, 2, false, NULL, &err));
    struct tensord_operand db[2] = {tensord_h(hd), tensord_h(hb)};
    CALL(w, "mul", tensord_op(c, "mul", mb, db, 2, false, NULL, &err));
    struct tensord_operand ab[2] = {tensord_h(ma), tensord_h(mb)};
    CALL(w, "heavy matmul", tensord_op(c, "matmul", mc, ab, 2, false, NULL, &err));
    for (size_t first = 0; first < (size_t)HEAVY_M * HEAVY_N; first += HEAVY_CHUNK_FLOATS) {
        CALL(w, "get",
             tensord_get_range(c, mc, first * sizeof(float), sizeof chunk, chunk, NULL, &err));
        for (size_t e = 0; e < HEAVY_CHUNK_FLOATS; e++) {
            size_t i = (first + e) / HEAVY_N, j = (first + e) % HEAVY_N;
            if (chunk[e] != (float)((double)av[i] * bv[j] * dot)) {
                note_error(w, "heavy matmul", NULL);
                return false;
            }
        }
    }
    uint64_t all[7] = {ha, hc, hd, hb, ma, mb, mc};
    CALL(w, "free", tensord_free(c, all, 7, &err));
    return true;
}

/* Grows the session's handle table to hold `n` handles, then frees them. The table keeps its
** capacity, so no round after this one grows it again (it doubles only when half full), and a
** checkpoint after this sees the table at the size it keeps to the end. */
static bool prefill_session(struct worker *w, struct tensord *c, int n)
{
    struct tensord_error err;
    const int64_t one[1] = {1};
    uint64_t *hs = calloc((size_t)n, sizeof *hs);
    bool ok = hs != NULL;
    for (int i = 0; ok && i < n; i++) {
        hs[i] = tensord_new_handle(c);
        ok = tensord_send_full(c, hs[i], TENSORD_FLOAT32, one, 1, tensord_f(0.0), NULL, &err) == 0;
    }
    struct tensord_reply r;
    while (ok && tensord_pending(c) > 0) {
        ok = tensord_recv(c, &r, &err) == 0 && r.status == 0;
    }
    ok = ok && tensord_free(c, hs, (size_t)n, &err) == 0;
    if (!ok) {
        note_error(w, "prefill", hs != NULL ? &err : NULL);
    }
    free(hs);
    return ok;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    struct tensord_error err;
    struct tensord *c = NULL;
    struct tensord_options co = {.auth_token = o->token, .client_name = "loadgen"};
    int slot = w->index % o->sessions;
    bool owner = w->index < o->sessions, healthy = false;
    if (owner) { /* the first M connections open the sessions ... */
        if (tensord_connect(&c, o->addr, &co, &err) != 0) {
            note_error(w, "connect", &err);
            c = NULL;
        } else {
            snprintf(session_tokens[slot], TENSORD_TOKEN_MAX, "%s", tensord_session_token(c));
            snprintf(session_addrs[slot], TENSORD_ADDR_MAX, "%s", tensord_address(c));
            int per_session = (o->connections + o->sessions - 1) / o->sessions;
            healthy = prefill_session(w, c, PREFILL_FACTOR * ROUND_HANDLES * per_session);
        }
    }
    pthread_barrier_wait(&sessions_ready);
    if (!owner) { /* ... the others resume them */
        co.session_token = session_tokens[slot];
        if (session_tokens[slot][0] == '\0') {
            note_error(w, "connect", NULL); /* its owner could not open it */
            c = NULL;
        } else if (tensord_connect(&c, session_addrs[slot], &co, &err) != 0) {
            note_error(w, "connect", &err);
            c = NULL;
        } else {
            healthy = true;
        }
    }
    int seen = 0;
    for (uint64_t round = 0; !atomic_load(&stop_flag);) {
        int gen = atomic_load(&pause_gen);
        if (gen != seen) { /* a checkpoint: wait between rounds until main has measured */
            seen = gen;
            pthread_barrier_wait(&quiet);
            pthread_barrier_wait(&quiet);
            continue;
        }
        if (!healthy) {
            usleep(10000); /* failed: stays out of the way, but still attends checkpoints */
            continue;
        }
        /* After a failure the connection's state is unknown: this worker stops working. */
        healthy = round_once(w, c, round);
        if (healthy && heavy_due()) {
            healthy = heavy_once(w, c, round);
            w->heavy_rounds += healthy;
        }
        w->rounds += healthy;
        round++;
    }
    pthread_barrier_wait(&quiet); /* the final checkpoint, with the connection still open */
    pthread_barrier_wait(&quiet);
    tensord_disconnect(c);
    return NULL;
}

/* ---- the daemon's memory ---- */

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

/* GET /metrics from HOST:PORT into buf (NUL-terminated). Returns 0, or -1 with a message. */
static int metrics_fetch(const char *addr, char *buf, size_t cap)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "loadgen: bad --metrics address %s\n", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", addr);
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    struct timeval tv = {.tv_sec = 5};
    int rc = -1;
    errno = 0;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        static const char req[] = "GET /metrics HTTP/1.1\r\nHost: loadgen\r\n"
                                  "Connection: close\r\n\r\n";
        size_t len = 0;
        ssize_t n = -1;
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1)) {
            while (len + 1 < cap && (n = recv(fd, buf + len, cap - 1 - len, 0)) > 0) {
                len += (size_t)n;
            }
        }
        buf[len] = '\0';
        rc = n == 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
    }
    if (rc != 0) {
        fprintf(stderr, "loadgen: GET http://%s/metrics failed: %s\n", addr,
                errno != 0 ? strerror(errno) : "bad reply");
    }
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(ai);
    return rc;
}

/* The value of unlabelled metric `name` in Prometheus text, or -1. */
static long long metric_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p != NULL; p = strstr(p + n, name)) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtoll(p + n + 1, NULL, 10);
        }
    }
    return -1;
}

static char *metrics_buf; /* METRICS_CAP bytes, used by main only */

static struct mem_sample mem_sample(const struct opts *o, double t0)
{
    struct mem_sample m = {.t = now_s() - t0,
                           .rss_kib = -1,
                           .allocated = -1,
                           .cached = -1,
                           .tensors = -1,
                           .sessions = -1};
    if (o->rss_pid > 0) {
        m.rss_kib = rss_kib(o->rss_pid);
    }
    if (o->metrics_addr != NULL && metrics_fetch(o->metrics_addr, metrics_buf, METRICS_CAP) == 0) {
        m.allocated = metric_value(metrics_buf, "tensord_allocated_bytes");
        m.cached = metric_value(metrics_buf, "tensord_buffer_cache_bytes");
        m.tensors = metric_value(metrics_buf, "tensord_tensors");
        m.sessions = metric_value(metrics_buf, "tensord_sessions");
    }
    return m;
}

static void mem_print(FILE *samples, const struct mem_sample *m, const char *phase)
{
    char line[200];
    snprintf(line, sizeof line, "rss t=%.0fs kib=%ld allocated=%lld cached=%lld phase=%s\n", m->t,
             m->rss_kib, m->allocated, m->cached, phase);
    fputs(line, stdout);
    fflush(stdout);
    if (samples != NULL) {
        fputs(line, samples);
        fflush(samples);
    }
}

/* Stops every worker between rounds and measures. allocated_bytes is read until it is steady:
** the reply a worker has just read may still be counted until the daemon's write callback frees
** it. At the end (want >= 0) it is read until it comes back to `want`, for at most 5 s. */
static struct mem_sample checkpoint(const struct opts *o, double t0, bool final, long long want)
{
    if (!final) {
        atomic_fetch_add(&pause_gen, 1);
    }
    pthread_barrier_wait(&quiet);
    double held = now_s();
    struct mem_sample m = mem_sample(o, t0);
    long long prev = -2;
    for (double deadline = held + 5; o->metrics_addr != NULL && now_s() < deadline;) {
        if (want >= 0 ? m.allocated == want : m.allocated == prev) {
            break;
        }
        prev = m.allocated;
        usleep(20000);
        m = mem_sample(o, t0);
    }
    m.held_s = now_s() - held;
    m.t = held - t0; /* when the workers stopped */
    pthread_barrier_wait(&quiet);
    return m;
}

/* ---- hostile mode (--attack) ----
**
** Four hostile sessions replay issue 14's attacks in a loop, each from a different starting
** point, on raw frames (so they can pipeline, never read, announce what they like and send Save,
** which libtensord has no call for), while a fifth session, the canary, sends tiny ops through
** libtensord and records each one's latency. The hostile sessions expect refusals: what they
** count is replies by status ("errors by kind"), connections lost and timeouts, never a crash.
** Every socket has 30 s send and receive timeouts (a request may run up to the daemon's
** --max-request-seconds, 10 s in attack.sh), so a daemon that stops answering shows up as
** timeouts, not as a hung load generator. Main samples the daemon's RSS and the data directory's
** size each second. The run fails if the canary's p99 is 10 ms or more, if any canary request
** fails or its tensor changes, if RSS passes --max-bytes + 64 MiB, if the data directory passes
** --max-disk-bytes, or if the daemon dies.
*/

#define ATTACK_HOSTILES 4
#define ATTACK_CODES 24 /* wire status codes 0..19, then the local kinds */
#define K_IO 20         /* connection lost (closed or reset by the daemon) */
#define K_TIMEOUT 21    /* no progress for ATTACK_IO_TIMEOUT_S */
#define K_HEALTHZ 22    /* /healthz did not answer 200 while HTTP was flooded */
#define BIG_CREATE_BYTES ((size_t)64 << 20)
#define ATTACK_IO_TIMEOUT_S 30 /* above attack.sh's --max-request-seconds 10 */

static const char *const attack_code_names[ATTACK_CODES] = {
    "OK",
    "INVALID_ARGUMENT",
    "SHAPE_MISMATCH",
    "DTYPE_ERROR",
    "UNKNOWN_HANDLE",
    "HANDLE_IN_USE",
    "INPUT_FAILED",
    "OUT_OF_MEMORY",
    "QUOTA_EXCEEDED",
    "LIMIT_EXCEEDED",
    "PROTOCOL_ERROR",
    "VERSION_MISMATCH",
    "UNAUTHENTICATED",
    "UNKNOWN_SESSION",
    "UNIMPLEMENTED",
    "IO_ERROR",
    "INTERNAL",
    "NO_SESSION",
    "UNKNOWN_OP",
    "CANCELLED",
    "connection lost",
    "timeout (30 s)",
    "healthz failed",
    "?",
};

struct attack_opts {
    const char *addr, *metrics_addr, *data_dir, *token;
    long long max_bytes, max_disk_bytes;
};

static const struct attack_opts *aopts;
static _Atomic uint64_t attack_codes[ATTACK_CODES];
static const uint8_t *big_zeros; /* BIG_CREATE_BYTES of zeros, shared read-only */

enum {
    AT_CAT,
    AT_REDUCE,
    AT_CREATES,
    AT_FORMAT,
    AT_MATMUL,
    AT_SAVE,
    AT_COLLIDE,
    AT_FACTORY,
    AT_HTTP,
    AT_PREHELLO,
    AT_COUNT
};
static const char *const attack_names[AT_COUNT] = {
    "cat/stack of huge expanded views",
    "reductions and matmul over expanded views",
    "8 pipelined 64 MiB creates behind a slow job",
    "Formats of 7/8-dim views never read",
    "matmul of [1,2^28]@[2^28,1] views",
    "Save of an expanded view under 4 names / disk quota",
    "colliding handles",
    "linspace/repeat/outer/mm big",
    "64 idle HTTP connections",
    "pre-Hello big frames and trickles",
};
static _Atomic uint64_t attack_runs[AT_COUNT];
static int attack_only = -1;    /* LOADGEN_ATTACK=N: only attack N */
static bool attack_debug;       /* LOADGEN_DEBUG=1: every hostile reply on stderr */
static atomic_int threads_done; /* hostile and canary threads that have finished */
static _Atomic uint64_t attack_max_ns[AT_COUNT]; /* the longest episode of each */

struct hostile {
    pthread_t th;
    int index;
    int fd;
    uint8_t token[TENSORD_TOKEN_MAX];
    size_t token_len;
    bool have_token;
    uint64_t next_id, next_handle;
    int pending; /* requests sent on this connection whose reply is unread */
    int attack;  /* the episode running now */
    uint64_t episodes;
};

static void tally(int k)
{
    atomic_fetch_add(&attack_codes[k >= 0 && k < ATTACK_CODES ? k : ATTACK_CODES - 1], 1);
}

/* Connects a TCP socket to HOST:PORT with ATTACK_IO_TIMEOUT_S send and receive timeouts; -1 on
** failure. */
static int tcp_connect(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    struct timeval tv = {.tv_sec = ATTACK_IO_TIMEOUT_S};
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
                    connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Sends all of buf; 0, or the kind of failure. */
static int send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? K_TIMEOUT : K_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? K_TIMEOUT : K_IO;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void hostile_drop(struct hostile *a)
{
    if (a->fd >= 0) {
        close(a->fd);
    }
    a->fd = -1;
    a->pending = 0;
}

/* Sends one request frame (id assigned here) with an optional data section. */
static int h_send(struct hostile *a, Tensord__Request *req, const void *data, size_t dl)
{
    if (a->fd < 0) {
        return K_IO;
    }
    req->id = a->next_id++;
    size_t ml = tensord__request__get_packed_size(req);
    uint8_t *f = malloc(12 + ml);
    if (f == NULL) {
        return K_IO;
    }
    uint64_t d = dl;
    f[0] = (uint8_t)(ml >> 24);
    f[1] = (uint8_t)(ml >> 16);
    f[2] = (uint8_t)(ml >> 8);
    f[3] = (uint8_t)ml;
    for (int i = 0; i < 8; i++) {
        f[4 + i] = (uint8_t)(d >> (56 - 8 * i));
    }
    tensord__request__pack(req, f + 12);
    int rc = send_all(a->fd, f, 12 + ml);
    free(f);
    if (rc == 0 && dl > 0) {
        rc = send_all(a->fd, data, dl);
    }
    a->pending += rc == 0;
    if (rc != 0) {
        tally(rc);
        hostile_drop(a);
    }
    return rc;
}

/* Reads one reply (its data section discarded); returns its status code, or K_IO / K_TIMEOUT
** (then the connection is dropped). Counts it. text_len, when not NULL, gets a Format's length. */
static int h_recv(struct hostile *a, size_t *text_len)
{
    uint8_t hdr[12];
    int rc = a->fd < 0 ? K_IO : recv_all(a->fd, hdr, sizeof hdr);
    uint32_t ml = 0;
    uint64_t dl = 0;
    uint8_t *meta = NULL;
    if (rc == 0) {
        ml = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        for (int i = 0; i < 8; i++) {
            dl = dl << 8 | hdr[4 + i];
        }
        meta = malloc(ml > 0 ? ml : 1);
        rc = meta == NULL ? K_IO : recv_all(a->fd, meta, ml);
    }
    static uint8_t sink[65536]; /* discarded bytes: shared, never read (TLS would come out of the
                                 ** workers' 256 KiB stacks) */
    while (rc == 0 && dl > 0) {
        size_t n = dl < sizeof sink ? (size_t)dl : sizeof sink;
        rc = recv_all(a->fd, sink, n);
        dl -= n;
    }
    int code = rc;
    a->pending--;
    if (rc == 0) {
        Tensord__Response *resp = tensord__response__unpack(NULL, ml, meta);
        code = resp == NULL ? K_IO : resp->status != NULL ? (int)resp->status->code : 0;
        if (resp != NULL && attack_debug) {
            fprintf(stderr, "hostile %d: reply id=%llu code=%d %s\n", a->index,
                    (unsigned long long)resp->id, code,
                    code != 0 && resp->status->message != NULL ? resp->status->message : "");
        }
        if (resp != NULL && text_len != NULL) {
            *text_len = resp->result_case == TENSORD__RESPONSE__RESULT_TEXT && resp->text != NULL
                            ? strlen(resp->text)
                            : 0;
        }
        if (resp != NULL) {
            tensord__response__free_unpacked(resp, NULL);
        }
    }
    free(meta);
    tally(code);
    if (code == K_TIMEOUT || code == K_IO) {
        /* Which attack the daemon left unanswered (or closed on), for the report. */
        fprintf(stderr, "loadgen: hostile %d: %s in attack '%s' with %d replies owed\n", a->index,
                code == K_TIMEOUT ? "no reply within 30 s" : "connection lost",
                attack_names[a->attack], a->pending + 1);
        hostile_drop(a);
    }
    return code;
}

static int h_call(struct hostile *a, Tensord__Request *req, const void *data, size_t dl)
{
    int rc = h_send(a, req, data, dl);
    return rc != 0 ? rc : h_recv(a, NULL);
}

/* (Re)connects and says Hello, resuming the hostile's session when it has one. */
static int hostile_connect(struct hostile *a)
{
    hostile_drop(a);
    a->fd = tcp_connect(aopts->addr);
    if (a->fd < 0) {
        tally(K_IO);
        return K_IO;
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 2;
    m.auth_token = (char *)(aopts->token != NULL ? aopts->token : "");
    m.client_name = "loadgen-attack";
    if (a->have_token) {
        m.session_token.data = a->token;
        m.session_token.len = a->token_len;
    }
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    int rc = h_send(a, &req, NULL, 0);
    if (rc != 0) {
        return rc;
    }
    uint8_t hdr[12];
    rc = recv_all(a->fd, hdr, sizeof hdr);
    uint32_t ml = rc == 0 ? (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                                (uint32_t)hdr[2] << 8 | hdr[3]
                          : 0;
    uint8_t *meta = rc == 0 ? malloc(ml > 0 ? ml : 1) : NULL;
    rc = rc != 0 ? rc : meta == NULL ? K_IO : recv_all(a->fd, meta, ml);
    int code = rc;
    if (rc == 0) {
        Tensord__Response *resp = tensord__response__unpack(NULL, ml, meta);
        code = resp == NULL ? K_IO : resp->status != NULL ? (int)resp->status->code : 0;
        if (code == 0 && resp->result_case == TENSORD__RESPONSE__RESULT_HELLO &&
            resp->hello->session_token.len <= sizeof a->token) {
            a->token_len = resp->hello->session_token.len;
            memcpy(a->token, resp->hello->session_token.data, a->token_len);
            a->have_token = true;
        } else if (code == TENSORD__STATUS_CODE__UNKNOWN_SESSION) {
            a->have_token = false; /* expired or closed: a new one next time */
        }
        if (resp != NULL) {
            tensord__response__free_unpacked(resp, NULL);
        }
    }
    free(meta);
    tally(code);
    a->pending = 0; /* the Hello was answered */
    if (code != 0) {
        hostile_drop(a);
    }
    return code;
}

/* ---- request builders ---- */

static Tensord__Request *rq_op(Tensord__Request *req, Tensord__RunOp *op, Tensord__OpArgs *args,
                               Tensord__Operand ops[4], Tensord__Operand *opp[4], const char *name,
                               uint64_t out, const uint64_t *in, int nin, const int64_t *dims,
                               int ndims)
{
    *req = (Tensord__Request)TENSORD__REQUEST__INIT;
    *op = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
    *args = (Tensord__OpArgs)TENSORD__OP_ARGS__INIT;
    op->op = (Tensord__Op)tensord_op_code(name);
    op->out = out;
    for (int i = 0; i < nin; i++) {
        ops[i] = (Tensord__Operand)TENSORD__OPERAND__INIT;
        ops[i].value_case = TENSORD__OPERAND__VALUE_HANDLE;
        ops[i].handle = in[i];
        opp[i] = &ops[i];
    }
    op->inputs = opp;
    op->n_inputs = (size_t)nin;
    if (ndims >= 0) {
        args->dims = (int64_t *)dims;
        args->n_dims = (size_t)ndims;
        args->has_dims = true;
    }
    op->args = args;
    req->body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req->run_op = op;
    return req;
}

/* Sends op `name` (pipelined: no reply read). dim >= -8 sets args.dim. */
static int h_op(struct hostile *a, const char *name, uint64_t out, const uint64_t *in, int nin,
                const int64_t *dims, int ndims, int64_t dim)
{
    Tensord__Request req;
    Tensord__RunOp op;
    Tensord__OpArgs args;
    Tensord__Operand ops[4], *opp[4];
    rq_op(&req, &op, &args, ops, opp, name, out, in, nin, dims, ndims);
    if (dim >= -8) {
        args.has_dim = true;
        args.dim = dim;
    }
    return h_send(a, &req, NULL, 0);
}

/* Sends full(shape, 1) of dtype into `out`. */
static int h_full(struct hostile *a, uint64_t out, int dtype, const int64_t *shape, int n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar one = TENSORD__SCALAR__INIT;
    one.value_case = TENSORD__SCALAR__VALUE_F;
    one.f = 1.0;
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)n;
    m.value = &one;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &m;
    return h_send(a, &req, NULL, 0);
}

/* Sends an expanded view: a full of ones of rank n into `base`, expanded to `shape` into `view`. */
static int h_view(struct hostile *a, uint64_t base, uint64_t view, int dtype, const int64_t *shape,
                  int n)
{
    const int64_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int rc = h_full(a, base, dtype, ones, n);
    return rc != 0 ? rc : h_op(a, "expand", view, &base, 1, shape, n, -9);
}

static int h_free(struct hostile *a, const uint64_t *hs, size_t n)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Free m = TENSORD__FREE__INIT;
    m.handles = (uint64_t *)hs;
    m.n_handles = n;
    req.body_case = TENSORD__REQUEST__BODY_FREE;
    req.free = &m;
    return h_send(a, &req, NULL, 0);
}

/* Reads every reply still owed (stops at a lost connection). */
static void h_drain(struct hostile *a)
{
    while (a->pending > 0 && a->fd >= 0) {
        h_recv(a, NULL);
    }
}

static uint64_t hnew(struct hostile *a)
{
    return a->next_handle++;
}

/* ---- the attacks; each is one episode on the hostile's session ---- */

#define P2(k) ((int64_t)1 << (k))

static void at_cat(struct hostile *a)
{
    const int64_t wrap[1] = {INT64_C(6148914691236517206)}, big2[2] = {P2(31), P2(31)};
    uint64_t b = hnew(a), v = hnew(a), c = hnew(a), s = hnew(a), b2 = hnew(a), v2 = hnew(a),
             c2 = hnew(a);
    h_view(a, b, v, TENSORD__DTYPE__BOOL, wrap, 1);
    uint64_t three[3] = {v, v, v};
    h_op(a, "cat", c, three, 3, NULL, -1, 0);
    h_op(a, "stack", s, three, 3, NULL, -1, 0);
    h_view(a, b2, v2, TENSORD__DTYPE__FLOAT32, big2, 2);
    uint64_t two[2] = {v2, v2};
    h_op(a, "cat", c2, two, 2, NULL, -1, 1);
    uint64_t all[7] = {b, v, c, s, b2, v2, c2};
    h_free(a, all, 7);
    h_drain(a);
}

static void at_reduce(struct hostile *a)
{
    const int64_t sq[2] = {P2(30), P2(30)}, wide[2] = {P2(20), P2(30)}, l[2] = {P2(10), P2(30)},
                  r[2] = {P2(30), P2(10)};
    uint64_t b = hnew(a), v = hnew(a), out[6], b2 = hnew(a), v2 = hnew(a), bl = hnew(a),
             vl = hnew(a), br = hnew(a), vr = hnew(a), mm = hnew(a);
    h_view(a, b, v, TENSORD__DTYPE__FLOAT32, sq, 2);
    static const char *const red[5] = {"sum", "mean", "max", "std", "logsumexp"};
    for (int i = 0; i < 5; i++) {
        out[i] = hnew(a);
        h_op(a, red[i], out[i], &v, 1, NULL, -1, -9);
    }
    h_view(a, b2, v2, TENSORD__DTYPE__FLOAT32, wide, 2);
    out[5] = hnew(a);
    h_op(a, "sum", out[5], &v2, 1, NULL, -1, 1); /* with dim: a large output, on the pool */
    h_view(a, bl, vl, TENSORD__DTYPE__INT64, l, 2);
    h_view(a, br, vr, TENSORD__DTYPE__INT64, r, 2);
    uint64_t lr[2] = {vl, vr};
    h_op(a, "matmul", mm, lr, 2, NULL, -1, -9);
    uint64_t all[15] = {b,  v,      b2,     v2,     bl,     vl,     br,    vr,
                        mm, out[0], out[1], out[2], out[3], out[4], out[5]};
    h_free(a, all, 15);
    h_drain(a);
}

static void at_creates(struct hostile *a)
{
    /* The slow job: a 1024^3 float matmul (2^30 multiply-adds), honest and on the pool. */
    const int64_t sq[2] = {1024, 1024}, flat[1] = {(int64_t)(BIG_CREATE_BYTES / 4)};
    uint64_t x = hnew(a), y = hnew(a), c[8];
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Rand rm = TENSORD__RAND__INIT;
    rm.out = x;
    rm.shape = (int64_t *)sq;
    rm.n_shape = 2;
    req.body_case = TENSORD__REQUEST__BODY_RAND;
    req.rand = &rm;
    h_send(a, &req, NULL, 0);
    uint64_t xx[2] = {x, x};
    h_op(a, "matmul", y, xx, 2, NULL, -1, -9);
    for (int i = 0; i < 8; i++) {
        c[i] = hnew(a);
        Tensord__Request cr = TENSORD__REQUEST__INIT;
        Tensord__Create m = TENSORD__CREATE__INIT;
        m.out = c[i];
        m.dtype = TENSORD__DTYPE__FLOAT32;
        m.shape = (int64_t *)flat;
        m.n_shape = 1;
        cr.body_case = TENSORD__REQUEST__BODY_CREATE;
        cr.create = &m;
        if (h_send(a, &cr, big_zeros, BIG_CREATE_BYTES) != 0) {
            return;
        }
    }
    uint64_t all[10] = {x, y, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
    h_free(a, all, 10);
    h_drain(a);
}

static void at_format(struct hostile *a)
{
    const int64_t s7[7] = {16, 16, 16, 16, 16, 16, 16}, s8[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    uint64_t b = hnew(a), v = hnew(a), b8 = hnew(a), v8 = hnew(a);
    h_view(a, b8, v8, TENSORD__DTYPE__FLOAT32, s8, 8);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format f = TENSORD__FORMAT__INIT;
    f.handle = v8;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &f;
    h_send(a, &req, NULL, 0);
    h_drain(a); /* one Format of an 8-dim view, read */
    h_view(a, b, v, TENSORD__DTYPE__FLOAT64, s7, 7);
    h_drain(a);
    f.handle = v;
    for (int i = 0; i < 60 && a->fd >= 0; i++) {
        h_send(a, &req, NULL, 0); /* 60 Formats of a 7-dim view, never read */
    }
    usleep(1000 * 1000);
    hostile_connect(a); /* the replies are abandoned with the connection */
    uint64_t all[4] = {b, v, b8, v8};
    h_free(a, all, 4);
    h_drain(a);
}

static void at_matmul(struct hostile *a)
{
    const int64_t l[2] = {1, P2(28)}, r[2] = {P2(28), 1};
    uint64_t bl = hnew(a), vl = hnew(a), br = hnew(a), vr = hnew(a), m = hnew(a), t = hnew(a),
             m2 = hnew(a);
    h_view(a, bl, vl, TENSORD__DTYPE__FLOAT32, l, 2);
    h_view(a, br, vr, TENSORD__DTYPE__FLOAT32, r, 2);
    uint64_t lr[2] = {vl, vr};
    h_op(a, "matmul", m, lr, 2, NULL, -1, -9);
    h_op(a, "t", t, &vl, 1, NULL, -1, -9); /* a view of a view: [2^28, 1] transposed */
    uint64_t tt[2] = {vr, t};
    h_op(a, "matmul", m2, tt, 2, NULL, -1, -9); /* [2^28,1] @ [1,2^28]: output 2^56 */
    uint64_t all[7] = {bl, vl, br, vr, m, t, m2};
    h_free(a, all, 7);
    h_drain(a);
}

static void at_save(struct hostile *a)
{
    const int64_t big[1] = {P2(22)}; /* 4 bytes expanded to 16 MiB */
    uint64_t b = hnew(a), v = hnew(a);
    h_view(a, b, v, TENSORD__DTYPE__FLOAT32, big, 1);
    h_drain(a);
    Tensord__NamedTensor nt[4], *ntp[4];
    static const char *const names[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        nt[i] = (Tensord__NamedTensor)TENSORD__NAMED_TENSOR__INIT;
        nt[i].name = (char *)names[i];
        nt[i].handle = v;
        ntp[i] = &nt[i];
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Save s = TENSORD__SAVE__INIT;
    char file[32];
    snprintf(file, sizeof file, "amp%d", a->index);
    s.file = file;
    s.tensors = ntp;
    s.n_tensors = 4;
    req.body_case = TENSORD__REQUEST__BODY_SAVE;
    req.save = &s;
    h_call(a, &req, NULL, 0); /* one handle under four names */
    s.n_tensors = 1;
    for (int i = 0; i < 12 && a->fd >= 0; i++) { /* 12 files of 16 MiB: past the disk quota */
        snprintf(file, sizeof file, "fill%d-%d", a->index, i);
        h_call(a, &req, NULL, 0);
    }
    uint64_t all[2] = {b, v};
    h_free(a, all, 2);
    h_drain(a);
}

/* The inverse of the splitmix64 finaliser the handle table used, so that handles
** unmix(i << 32) all hashed to one slot of any table up to 2^32 entries. */
static uint64_t mul_inverse(uint64_t c)
{
    uint64_t x = c;
    for (int i = 0; i < 6; i++) {
        x *= 2 - c * x;
    }
    return x;
}

static uint64_t unmix(uint64_t k)
{
    k ^= k >> 31 ^ k >> 62;
    k *= mul_inverse(0x94d049bb133111ebULL);
    k ^= k >> 27 ^ k >> 54;
    k *= mul_inverse(0xbf58476d1ce4e5b9ULL);
    k ^= k >> 30 ^ k >> 60;
    return k;
}

#define COLLIDE_N 20000

static void at_collide(struct hostile *a)
{
    /* On the heap: thread-local storage would come out of every worker's 256 KiB stack. */
    uint64_t *hs = malloc(COLLIDE_N * sizeof *hs);
    if (hs == NULL) {
        return;
    }
    const int64_t one[1] = {1};
    for (int i = 0; i < COLLIDE_N && a->fd >= 0; i++) {
        hs[i] = unmix(((uint64_t)(a->index * COLLIDE_N + i + 1)) << 32);
        h_full(a, hs[i], TENSORD__DTYPE__FLOAT32, one, 1);
        if (i % 256 == 255) { /* read as we go, so neither side's buffers fill */
            h_drain(a);
        }
    }
    h_drain(a);
    h_free(a, hs, COLLIDE_N);
    h_drain(a);
    free(hs);
}

static void at_factory(struct hostile *a)
{
    uint64_t ls = hnew(a), x = hnew(a), rp = hnew(a), u = hnew(a), w = hnew(a), o = hnew(a),
             c = hnew(a), r = hnew(a), mm = hnew(a);
    Tensord__Request req;
    Tensord__RunOp op;
    Tensord__OpArgs args;
    Tensord__Operand ops[4], *opp[4];
    Tensord__Scalar lo = TENSORD__SCALAR__INIT, hi = TENSORD__SCALAR__INIT;
    lo.value_case = hi.value_case = TENSORD__SCALAR__VALUE_F;
    hi.f = 1.0;
    rq_op(&req, &op, &args, ops, opp, "linspace", ls, NULL, 0, NULL, -1);
    args.min = &lo;
    args.max = &hi;
    args.has_dim = true;
    args.dim = P2(23); /* steps */
    h_send(a, &req, NULL, 0);
    const int64_t two[1] = {2}, rep[1] = {P2(22)}, col[2] = {P2(12), 1}, row[2] = {1, P2(11)},
                  nu[1] = {P2(11)}, nw[1] = {P2(12)};
    h_full(a, x, TENSORD__DTYPE__FLOAT32, two, 1);
    h_op(a, "repeat", rp, &x, 1, rep, 1, -9);
    h_full(a, u, TENSORD__DTYPE__FLOAT32, nu, 1);
    h_full(a, w, TENSORD__DTYPE__FLOAT32, nw, 1);
    uint64_t uw[2] = {u, w};
    h_op(a, "outer", o, uw, 2, NULL, -1, -9);
    h_full(a, c, TENSORD__DTYPE__FLOAT32, col, 2);
    h_full(a, r, TENSORD__DTYPE__FLOAT32, row, 2);
    uint64_t cr[2] = {c, r};
    h_op(a, "mm", mm, cr, 2, NULL, -1, -9);
    uint64_t all[9] = {ls, x, rp, u, w, o, c, r, mm};
    h_free(a, all, 9);
    h_drain(a);
}

/* GET /healthz: true when it answers 200. */
static bool healthz_ok(const char *addr)
{
    int fd = tcp_connect(addr);
    if (fd < 0) {
        return false;
    }
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n";
    char buf[64] = {0};
    bool ok = send_all(fd, req, sizeof req - 1) == 0 && recv(fd, buf, sizeof buf - 1, 0) >= 12 &&
              strncmp(buf, "HTTP/1.1 200", 12) == 0;
    close(fd);
    return ok;
}

static void at_http(struct hostile *a)
{
    (void)a;
    if (aopts->metrics_addr == NULL) {
        return;
    }
    int fds[64];
    for (int i = 0; i < 64; i++) {
        fds[i] = tcp_connect(aopts->metrics_addr);
        if (fds[i] >= 0 && i % 2 == 1) {
            send_all(fds[i], "GET /metr", 9); /* half of them start a request and stop */
        }
    }
    usleep(200 * 1000);
    if (!healthz_ok(aopts->metrics_addr)) {
        tally(K_HEALTHZ);
    }
    usleep(1300 * 1000);
    if (!healthz_ok(aopts->metrics_addr)) {
        tally(K_HEALTHZ);
    }
    for (int i = 0; i < 64; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
}

static void at_prehello(struct hostile *a)
{
    (void)a;
    /* (1) a header announcing a 1 MiB meta section, (2) a Hello-sized meta with a 512 MiB data
    ** section, each then trickled a byte per 50 ms for 1 s; (3) a big meta sent whole. */
    int fd[3];
    for (int k = 0; k < 3; k++) {
        fd[k] = tcp_connect(aopts->addr);
        uint32_t ml = k == 1 ? 64 : (uint32_t)1 << 20;
        uint64_t dl = k == 1 ? (uint64_t)512 << 20 : 0;
        uint8_t hdr[12] = {(uint8_t)(ml >> 24), (uint8_t)(ml >> 16), (uint8_t)(ml >> 8),
                           (uint8_t)ml};
        for (int i = 0; i < 8; i++) {
            hdr[4 + i] = (uint8_t)(dl >> (56 - 8 * i));
        }
        if (fd[k] >= 0 && send_all(fd[k], hdr, sizeof hdr) != 0) {
            close(fd[k]);
            fd[k] = -1;
        }
    }
    if (fd[2] >= 0) {
        send_all(fd[2], big_zeros, (size_t)1 << 20);
    }
    for (int t = 0; t < 20; t++) {
        for (int k = 0; k < 2; k++) {
            if (fd[k] >= 0 && send_all(fd[k], big_zeros, 1) != 0) {
                close(fd[k]);
                fd[k] = -1;
            }
        }
        usleep(50 * 1000);
    }
    for (int k = 0; k < 3; k++) {
        if (fd[k] >= 0) {
            close(fd[k]);
        }
    }
}

static void (*const attacks[AT_COUNT])(struct hostile *) = {
    at_cat,  at_reduce,  at_creates, at_format, at_matmul,
    at_save, at_collide, at_factory, at_http,   at_prehello,
};

static void *run_hostile(void *arg)
{
    struct hostile *a = arg;
    a->fd = -1;
    a->next_id = 1;
    a->next_handle = 1000;
    for (int k = a->index * 3; !atomic_load(&stop_flag); k++) {
        int at = attack_only >= 0 && attack_only < AT_COUNT ? attack_only : k % AT_COUNT;
        if (a->fd < 0 && hostile_connect(a) != 0) {
            usleep(100 * 1000);
            continue;
        }
        uint64_t t0 = now_ns();
        a->attack = at;
        attacks[at](a);
        uint64_t dt = now_ns() - t0, prev = atomic_load(&attack_max_ns[at]);
        while (dt > prev && !atomic_compare_exchange_weak(&attack_max_ns[at], &prev, dt)) {
        }
        atomic_fetch_add(&attack_runs[at], 1);
        a->episodes++;
    }
    hostile_drop(a);
    atomic_fetch_add(&threads_done, 1);
    return NULL;
}

/* ---- the canary ---- */

struct canary {
    pthread_t th;
    struct hist *lat;
    uint64_t requests, errors, reconnects;
    bool intact;
    char first_error[600];
};

static void canary_error(struct canary *cn, const char *what, const struct tensord_error *err)
{
    cn->errors++;
    if (cn->first_error[0] == '\0') {
        snprintf(cn->first_error, sizeof cn->first_error, "%s: %s", what,
                 err != NULL ? err->message : "wrong value");
    }
}

#define CANARY_TIMED(cn, what, expr)                                                               \
    do {                                                                                           \
        uint64_t t0_ = now_ns();                                                                   \
        int rc_ = (expr);                                                                          \
        hist_add((cn)->lat, now_ns() - t0_);                                                       \
        (cn)->requests++;                                                                          \
        if (rc_ != 0) {                                                                            \
            canary_error((cn), (what), &err);                                                      \
            ok = false;                                                                            \
        }                                                                                          \
    } while (0)

static void *run_canary(void *arg)
{
    struct canary *cn = arg;
    struct tensord_error err;
    struct tensord *c = NULL;
    struct tensord_options co = {.auth_token = aopts->token, .client_name = "loadgen-canary"};
    double keep[16], got[16];
    for (int i = 0; i < 16; i++) {
        keep[i] = i * 1.25 - 3;
    }
    const int64_t shape[1] = {16}, four[1] = {4};
    uint64_t kh = 0, ah = 0;
    if (tensord_connect(&c, aopts->addr, &co, &err) != 0 ||
        tensord_create(c, kh = tensord_new_handle(c), TENSORD_FLOAT64, shape, 1, keep, sizeof keep,
                       &err) != 0 ||
        tensord_ones(c, ah = tensord_new_handle(c), TENSORD_FLOAT32, four, 1, &err) != 0) {
        canary_error(cn, "canary setup", &err);
        tensord_disconnect(c);
        atomic_fetch_add(&threads_done, 1);
        return NULL;
    }
    char token[TENSORD_TOKEN_MAX];
    snprintf(token, sizeof token, "%s", tensord_session_token(c));
    while (!atomic_load(&stop_flag)) {
        bool ok = true;
        uint64_t out = tensord_new_handle(c);
        struct tensord_operand in[2] = {tensord_h(ah), tensord_f(2.0)};
        float v[4] = {0};
        CANARY_TIMED(cn, "add", tensord_op(c, "add", out, in, 2, false, NULL, &err));
        CANARY_TIMED(cn, "get", tensord_get(c, out, NULL, v, sizeof v, &err));
        if (ok && (v[0] != 3.0f || v[3] != 3.0f)) {
            canary_error(cn, "add", NULL);
        }
        CANARY_TIMED(cn, "free", tensord_free(c, &out, 1, &err));
        if (!ok) { /* the connection may be broken: resume the session */
            tensord_disconnect(c);
            co.session_token = token;
            cn->reconnects++;
            if (tensord_connect(&c, aopts->addr, &co, &err) != 0) {
                canary_error(cn, "reconnect", &err);
                c = NULL;
                break;
            }
        }
        usleep(2000);
    }
    cn->intact = c != NULL && tensord_get(c, kh, NULL, got, sizeof got, &err) == 0 &&
                 memcmp(got, keep, sizeof keep) == 0;
    tensord_disconnect(c);
    atomic_fetch_add(&threads_done, 1);
    return NULL;
}

/* ---- the data directory's size ---- */

static long long dir_bytes(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    long long total = 0;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            total += dir_bytes(p);
        } else if (S_ISREG(st.st_mode)) {
            total += (long long)st.st_size;
        }
    }
    closedir(d);
    return total;
}

static int attack_main(const struct opts *o, const struct attack_opts *ao)
{
    aopts = ao;
    attack_debug = getenv("LOADGEN_DEBUG") != NULL;
    const char *only = getenv("LOADGEN_ATTACK"); /* one attack by number, for debugging */
    attack_only = only != NULL ? atoi(only) : -1;
    big_zeros = calloc(1, BIG_CREATE_BYTES);
    struct hostile *hs = calloc(ATTACK_HOSTILES, sizeof *hs);
    struct canary cn = {.lat = calloc(1, sizeof(struct hist))};
    if (big_zeros == NULL || hs == NULL || cn.lat == NULL) {
        return 1;
    }
    FILE *samples = NULL;
    if (o->samples_path != NULL && (samples = fopen(o->samples_path, "w")) == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", o->samples_path, strerror(errno));
        return 1;
    }
    double t0 = now_s();
    if (pthread_create(&cn.th, NULL, run_canary, &cn) != 0) {
        return 1;
    }
    usleep(100 * 1000); /* the canary's session and tensors exist before the attacks start */
    for (int i = 0; i < ATTACK_HOSTILES; i++) {
        hs[i].index = i;
        if (pthread_create(&hs[i].th, NULL, run_hostile, &hs[i]) != 0) {
            return 1;
        }
    }
    long rss_max = -1, rss_first = -1, rss_last = -1;
    long long disk_max = 0;
    bool daemon_gone = false;
    while (now_s() - t0 < o->seconds) {
        usleep(1000 * 1000);
        long rss = o->rss_pid > 0 ? rss_kib(o->rss_pid) : -1;
        if (o->rss_pid > 0 && rss < 0) {
            daemon_gone = true;
            break;
        }
        long long disk = ao->data_dir != NULL ? dir_bytes(ao->data_dir) : -1;
        rss_first = rss_first < 0 ? rss : rss_first;
        rss_max = rss > rss_max ? rss : rss_max;
        rss_last = rss;
        disk_max = disk > disk_max ? disk : disk_max;
        char line[200];
        snprintf(line, sizeof line,
                 "sample t=%.0fs rss_kib=%ld disk_bytes=%lld canary_p99_us=%.0f\n", now_s() - t0,
                 rss, disk, (double)hist_quantile(cn.lat, 0.99) / 1e3);
        fputs(line, stdout);
        fflush(stdout);
        if (samples != NULL) {
            fputs(line, samples);
            fflush(samples);
        }
    }
    atomic_store(&stop_flag, true);
    /* The hostile sessions give up on a silent daemon after their socket timeouts; the canary's
    ** blocking calls have none, so a daemon that stopped answering is reported, not waited for. */
    for (double until = now_s() + 2 * ATTACK_IO_TIMEOUT_S + 5;
         atomic_load(&threads_done) < ATTACK_HOSTILES + 1 && now_s() < until;) {
        usleep(50 * 1000);
    }
    if (atomic_load(&threads_done) < ATTACK_HOSTILES + 1) {
        printf("FAIL: %d of %d attack threads still blocked on the daemon %d s after the end\n",
               ATTACK_HOSTILES + 1 - atomic_load(&threads_done), ATTACK_HOSTILES + 1,
               2 * ATTACK_IO_TIMEOUT_S + 5);
        return 1;
    }
    for (int i = 0; i < ATTACK_HOSTILES; i++) {
        pthread_join(hs[i].th, NULL);
    }
    pthread_join(cn.th, NULL);
    if (o->rss_pid > 0 && rss_kib(o->rss_pid) < 0) {
        daemon_gone = true;
    }
    double elapsed = now_s() - t0;
    printf("attack: %d hostile sessions and a canary for %.1f s\n", ATTACK_HOSTILES, elapsed);
    for (int i = 0; i < AT_COUNT; i++) {
        printf("  attack %-52s episodes %6" PRIu64 "  longest %.2f s\n", attack_names[i],
               atomic_load(&attack_runs[i]), (double)atomic_load(&attack_max_ns[i]) / 1e9);
    }
    printf("hostile replies by kind:");
    for (int k = 0; k < ATTACK_CODES; k++) {
        uint64_t n = atomic_load(&attack_codes[k]);
        if (n > 0) {
            printf(" %s=%" PRIu64, attack_code_names[k], n);
        }
    }
    printf("\n");
    double p50 = (double)hist_quantile(cn.lat, 0.50) / 1e6,
           p99 = (double)hist_quantile(cn.lat, 0.99) / 1e6,
           p999 = (double)hist_quantile(cn.lat, 0.999) / 1e6, mx = (double)cn.lat->max_ns / 1e6;
    printf("canary: %" PRIu64 " requests, %" PRIu64 " errors, %" PRIu64 " reconnects; latency ms "
           "p50 %.3f p99 %.3f p999 %.3f max %.3f; tensor %s\n",
           cn.requests, cn.errors, cn.reconnects, p50, p99, p999, mx,
           cn.intact ? "intact" : "CHANGED OR LOST");
    if (cn.first_error[0] != '\0') {
        printf("canary first error: %s\n", cn.first_error);
    }
    int status = 0;
    if (cn.requests == 0 || cn.errors > 0 || !cn.intact) {
        printf("FAIL: the canary session was not served intact\n");
        status = 1;
    }
    if (p99 >= 10.0) {
        printf("FAIL: canary p99 %.3f ms >= 10 ms\n", p99);
        status = 1;
    }
    if (o->rss_pid > 0) {
        long long bound = ao->max_bytes > 0 ? (ao->max_bytes >> 10) + (64 << 10) : -1;
        printf("rss KiB first %ld max %ld last %ld (bound: --max-bytes + 64 MiB = %lld KiB)\n",
               rss_first, rss_max, rss_last, bound);
        if (bound > 0 && rss_max > bound) {
            printf("FAIL: RSS passed --max-bytes + 64 MiB\n");
            status = 1;
        }
    }
    if (ao->data_dir != NULL) {
        long long end = dir_bytes(ao->data_dir);
        printf("data dir %s: max %lld bytes, end %lld bytes (quota %lld)\n", ao->data_dir, disk_max,
               end, ao->max_disk_bytes);
        if (ao->max_disk_bytes > 0 && disk_max > ao->max_disk_bytes) {
            printf("FAIL: the data directory passed its disk quota\n");
            status = 1;
        }
    }
    if (daemon_gone) {
        printf("FAIL: the daemon is gone\n");
        status = 1;
    }
    if (samples != NULL) {
        fclose(samples);
    }
    free(cn.lat);
    free(hs);
    free((void *)big_zeros);
    return status;
}

static int usage(void)
{
    fprintf(stderr, "usage: loadgen --addr HOST:PORT [--connections N] [--sessions M] "
                    "[--seconds S] [--token T] [--rss-pid PID] [--rss-slack FRACTION] "
                    "[--metrics HOST:PORT] [--samples FILE] [--heavy-rate PER_SECOND]\n"
                    "       loadgen --attack --addr HOST:PORT [--seconds S] [--token T] "
                    "[--rss-pid PID] [--metrics HOST:PORT] [--samples FILE]\n"
                    "               [--max-bytes BYTES] [--data-dir DIR] "
                    "[--max-disk-bytes BYTES]\n");
    return 2;
}

/* "512M", "2G", "65536": bytes, or -1. */
static long long parse_bytes(const char *v)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (end == v || n < 0 || (shift > 0 && end[1] != '\0') || (shift == 0 && *end != '\0')) {
        return -1;
    }
    return n << shift;
}

int main(int argc, char **argv)
{
    struct opts o = {.addr = NULL,
                     .connections = 50,
                     .sessions = 0,
                     .seconds = 10,
                     .heavy_rate = 20,
                     .rss_pid = 0,
                     .rss_slack = 0.10};
    struct attack_opts ao = {0};
    bool attack = false;
    for (int i = 1; i < argc; i += 2) { /* every flag but --attack takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--attack") == 0) {
            attack = true;
            i--;
            continue;
        }
        if (v == NULL) {
            return usage();
        }
        if (strcmp(a, "--max-bytes") == 0) {
            ao.max_bytes = parse_bytes(v);
        } else if (strcmp(a, "--max-disk-bytes") == 0) {
            ao.max_disk_bytes = parse_bytes(v);
        } else if (strcmp(a, "--data-dir") == 0) {
            ao.data_dir = v;
        } else if (strcmp(a, "--addr") == 0) {
            o.addr = v;
        } else if (strcmp(a, "--token") == 0) {
            o.token = v;
        } else if (strcmp(a, "--connections") == 0) {
            o.connections = atoi(v);
        } else if (strcmp(a, "--sessions") == 0) {
            o.sessions = atoi(v);
        } else if (strcmp(a, "--seconds") == 0) {
            o.seconds = atof(v);
        } else if (strcmp(a, "--rss-pid") == 0) {
            o.rss_pid = atol(v);
        } else if (strcmp(a, "--rss-slack") == 0) {
            o.rss_slack = atof(v);
        } else if (strcmp(a, "--metrics") == 0) {
            o.metrics_addr = v;
        } else if (strcmp(a, "--samples") == 0) {
            o.samples_path = v;
        } else if (strcmp(a, "--heavy-rate") == 0) {
            o.heavy_rate = atof(v);
        } else {
            return usage();
        }
    }
    if (attack) {
        if (o.addr == NULL || o.seconds <= 0 || ao.max_bytes < 0 || ao.max_disk_bytes < 0) {
            return usage();
        }
        ao.addr = o.addr;
        ao.metrics_addr = o.metrics_addr;
        ao.token = o.token;
        return attack_main(&o, &ao);
    }
    if (o.sessions <= 0 || o.sessions > o.connections) {
        o.sessions = o.connections;
    }
    if (o.addr == NULL || o.connections < 1 || o.connections > 5000 || o.seconds <= 0 ||
        o.heavy_rate < 0) {
        return usage();
    }
    FILE *samples = NULL;
    if (o.samples_path != NULL && (samples = fopen(o.samples_path, "w")) == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", o.samples_path, strerror(errno));
        return 1;
    }
    struct worker *ws = calloc((size_t)o.connections, sizeof *ws);
    struct hist *total = calloc(1, sizeof *total);
    session_tokens = calloc((size_t)o.sessions, sizeof *session_tokens);
    session_addrs = calloc((size_t)o.sessions, sizeof *session_addrs);
    metrics_buf = malloc(METRICS_CAP);
    if (ws == NULL || total == NULL || session_tokens == NULL || session_addrs == NULL ||
        metrics_buf == NULL) {
        return 1;
    }
    heavy_period_ns = o.heavy_rate > 0 ? (uint64_t)(1e9 / o.heavy_rate) : 0;
    pthread_barrier_init(&sessions_ready, NULL, (unsigned)o.connections);
    pthread_barrier_init(&quiet, NULL, (unsigned)o.connections + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    double t0 = now_s();
    atomic_store(&heavy_next_ns, now_ns());
    for (int i = 0; i < o.connections; i++) {
        ws[i].index = i;
        ws[i].o = &o;
        ws[i].lat = calloc(1, sizeof *ws[i].lat);
        if (ws[i].lat == NULL || pthread_create(&ws[i].th, &attr, run_worker, &ws[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start worker %d\n", i);
            return 1;
        }
    }
    bool sampling = o.rss_pid > 0 || o.metrics_addr != NULL;
    long rss_first = -1, rss_max = -1;
    struct mem_sample warm = {.rss_kib = -1, .allocated = -1};
    bool warm_done = false;
    double warm_at = t0 + o.seconds * 0.2, next = t0, every = o.seconds >= 60 ? 10 : 1;
    while (now_s() - t0 < o.seconds) {
        usleep(100000);
        if (!warm_done && now_s() >= warm_at) {
            warm = checkpoint(&o, t0, false, -1);
            warm_done = true;
            if (sampling) {
                mem_print(samples, &warm, "warm");
            }
        }
        if (sampling && now_s() >= next) {
            struct mem_sample m = mem_sample(&o, t0);
            rss_first = rss_first < 0 ? m.rss_kib : rss_first;
            rss_max = m.rss_kib > rss_max ? m.rss_kib : rss_max;
            mem_print(samples, &m, "load");
            next = now_s() + every;
        }
    }
    atomic_store(&stop_flag, true);
    /* Throughput counts the time the workers ran: from the start to the last round's end, less
    ** the warm-up checkpoint. */
    struct mem_sample end = checkpoint(&o, t0, true, warm.allocated);
    if (sampling) {
        mem_print(samples, &end, "end");
    }
    uint64_t requests = 0, errors = 0, rounds = 0, heavy = 0;
    for (int i = 0; i < o.connections; i++) {
        pthread_join(ws[i].th, NULL);
        requests += ws[i].requests;
        errors += ws[i].errors;
        rounds += ws[i].rounds;
        heavy += ws[i].heavy_rounds;
        hist_merge(total, ws[i].lat);
    }
    double elapsed = end.t - warm.held_s;
    printf("connections %d sessions %d seconds %.1f\n", o.connections, o.sessions, elapsed);
    printf("requests %" PRIu64 " (%.0f/s) rounds %" PRIu64 " heavy %" PRIu64 " errors %" PRIu64
           "\n",
           requests, (double)requests / elapsed, rounds, heavy, errors);
    printf("latency us p50 %.1f p99 %.1f p999 %.1f max %.1f mean %.1f (all %" PRIu64
           " requests, within 0.4%%)\n",
           (double)hist_quantile(total, 0.50) / 1e3, (double)hist_quantile(total, 0.99) / 1e3,
           (double)hist_quantile(total, 0.999) / 1e3, (double)total->max_ns / 1e3,
           total->n > 0 ? total->sum_ns / (double)total->n / 1e3 : 0, total->n);
    int status = errors == 0 && rounds > 0 && (heavy > 0 || o.heavy_rate == 0) ? 0 : 1;
    if (heavy == 0 && o.heavy_rate > 0) {
        printf("no heavy round ran\n");
    }
    for (int i = 0; i < o.connections; i++) {
        if (ws[i].first_error[0] != '\0') {
            printf("first error (connection %d): %s\n", i, ws[i].first_error);
            break;
        }
    }
    if (o.rss_pid > 0) {
        rss_max = end.rss_kib > rss_max ? end.rss_kib : rss_max;
        long limit = (long)((double)warm.rss_kib * (1 + o.rss_slack)) + 4096;
        printf("rss KiB first %ld warm %ld max %ld end %ld (limit %ld)\n", rss_first, warm.rss_kib,
               rss_max, end.rss_kib, limit);
        if (warm.rss_kib < 0 || end.rss_kib > limit) {
            printf("RSS grew after warm-up\n");
            status = 1;
        }
    }
    if (o.metrics_addr != NULL) {
        printf("allocated bytes warm %lld end %lld (%+lld), tensors %lld, sessions %lld -> %lld, "
               "cache %lld\n",
               warm.allocated, end.allocated, end.allocated - warm.allocated, end.tensors,
               warm.sessions, end.sessions, end.cached);
        if (warm.allocated < 0 || end.allocated != warm.allocated || end.tensors != 0 ||
            end.sessions != warm.sessions) {
            printf("allocated_bytes did not return to its warm value with every tensor freed\n");
            status = 1;
        }
    }
    for (int i = 0; i < o.connections; i++) {
        free(ws[i].lat);
    }
    if (samples != NULL) {
        fclose(samples);
    }
    free(metrics_buf);
    free(total);
    free(ws);
    free(session_tokens);
    free(session_addrs);
    return status;
}
