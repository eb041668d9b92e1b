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
** Exit status: 0 when every request succeeded and every check held (allocated_bytes back to its
** warm value, RSS flat), 1 otherwise, 2 for usage errors.
*/
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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

#define HEAVY_M 512               /* heavy round: C[M,N] = A[M,K] @ B[K,N] */
#define HEAVY_K 256
#define HEAVY_N 256
#define HEAVY_CHUNK_FLOATS 8192   /* C is read back and checked in 32 KiB chunks */

#define METRICS_CAP ((size_t)4 << 20)

struct opts {
    const char *addr;
    const char *token;
    const char *metrics_addr;     /* the daemon's --metrics-listen, for allocated_bytes */
    const char *samples_path;     /* the memory samples also go here */
    int connections, sessions;
    double seconds;
    double heavy_rate;            /* heavy rounds per second over all connections; 0: none */
    long rss_pid;
    double rss_slack;             /* allowed RSS growth after warm-up, as a fraction */
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
    struct hist *lat;             /* this thread's latencies; merged by main at the end */
    char first_error[320];
};

/* What the daemon holds, at one moment. -1: not known. */
struct mem_sample {
    double t;                     /* seconds since the start */
    double held_s;                /* a checkpoint: how long the workers were held */
    long rss_kib;
    long long allocated, cached, tensors, sessions;
};

static atomic_bool stop_flag;
static uint8_t (*session_tokens)[TENSORD_TOKEN_BYTES];
static pthread_barrier_t sessions_ready;

/* Checkpoints: main bumps pause_gen, every worker finishes its round and waits at `quiet`; main
** measures, then waits at `quiet` again to let them go. At the end stop_flag does the same. */
static atomic_int pause_gen;
static pthread_barrier_t quiet;

static uint64_t heavy_period_ns;  /* 0: no heavy rounds */
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
    CALL(w, "mul", tensord_op(c, "mul", b, in, 2, false, NULL, &err));       /* 2v */
    struct tensord_operand mm[2] = {tensord_h(a), tensord_h(b)};
    CALL(w, "matmul", tensord_op(c, "matmul", m, mm, 2, false, NULL, &err)); /* 8 * v * 2v */
    struct tensord_operand ad[2] = {tensord_h(m), tensord_h(a)};
    CALL(w, "add", tensord_op(c, "add", p, ad, 2, false, NULL, &err));       /* 16v^2 + v */
    struct tensord_operand sm[1] = {tensord_h(p)};
    CALL(w, "sum", tensord_op(c, "sum", s, sm, 1, false, NULL, &err));       /* 64 (16v^2+v) */
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
    CALL(w, "requires_grad", tensord_send_set_grad(c, x, true, false, false, &id, &err) ||
                             tensord_recv(c, &r, &err) || r.status);
    struct tensord_operand xx[2] = {tensord_h(x), tensord_h(x)};
    CALL(w, "mul", tensord_op(c, "mul", x2, xx, 2, false, NULL, &err));
    struct tensord_operand xs[1] = {tensord_h(x2)};
    CALL(w, "sum", tensord_op(c, "sum", l, xs, 1, false, NULL, &err));
    CALL(w, "backward", tensord_send_backward(c, l, 0, false, &id, &err) ||
                        tensord_recv(c, &r, &err) || r.status);
    CALL(w, "grad", tensord_send_grad(c, x, g, &id, &err) || tensord_recv(c, &r, &err) ||
                    r.status);
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
    return now >= due && atomic_compare_exchange_strong(&heavy_next_ns, &due,
                                                        now + heavy_period_ns);
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
        CALL(w, "get", tensord_get_range(c, mc, first * sizeof(float), sizeof chunk, chunk, NULL,
                                         &err));
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
        ok = tensord_send_full(c, hs[i], TENSORD_FLOAT32, one, 1, tensord_f(0.0), NULL,
                               &err) == 0;
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
    if (owner) {  /* the first M connections open the sessions ... */
        if (tensord_connect(&c, o->addr, &co, &err) != 0) {
            note_error(w, "connect", &err);
            c = NULL;
        } else {
            memcpy(session_tokens[slot], tensord_session_token(c), TENSORD_TOKEN_BYTES);
            int per_session = (o->connections + o->sessions - 1) / o->sessions;
            healthy = prefill_session(w, c, PREFILL_FACTOR * ROUND_HANDLES * per_session);
        }
    }
    pthread_barrier_wait(&sessions_ready);
    if (!owner) {  /* ... the others resume them */
        co.session_token = session_tokens[slot];
        if (tensord_connect(&c, o->addr, &co, &err) != 0) {
            note_error(w, "connect", &err);
            c = NULL;
        } else {
            healthy = true;
        }
    }
    int seen = 0;
    for (uint64_t round = 0; !atomic_load(&stop_flag);) {
        int gen = atomic_load(&pause_gen);
        if (gen != seen) {  /* a checkpoint: wait between rounds until main has measured */
            seen = gen;
            pthread_barrier_wait(&quiet);
            pthread_barrier_wait(&quiet);
            continue;
        }
        if (!healthy) {
            usleep(10000);  /* failed: stays out of the way, but still attends checkpoints */
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
    pthread_barrier_wait(&quiet);  /* the final checkpoint, with the connection still open */
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

static char *metrics_buf;  /* METRICS_CAP bytes, used by main only */

static struct mem_sample mem_sample(const struct opts *o, double t0)
{
    struct mem_sample m = {.t = now_s() - t0, .rss_kib = -1, .allocated = -1, .cached = -1,
                           .tensors = -1, .sessions = -1};
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
    m.t = held - t0;  /* when the workers stopped */
    pthread_barrier_wait(&quiet);
    return m;
}

static int usage(void)
{
    fprintf(stderr, "usage: loadgen --addr HOST:PORT [--connections N] [--sessions M] "
                    "[--seconds S] [--token T] [--rss-pid PID] [--rss-slack FRACTION] "
                    "[--metrics HOST:PORT] [--samples FILE] [--heavy-rate PER_SECOND]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct opts o = {.addr = NULL, .connections = 50, .sessions = 0, .seconds = 10,
                     .heavy_rate = 20, .rss_pid = 0, .rss_slack = 0.10};
    for (int i = 1; i < argc; i += 2) {  /* every flag takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            return usage();
        }
        if (strcmp(a, "--addr") == 0) {
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
    metrics_buf = malloc(METRICS_CAP);
    if (ws == NULL || total == NULL || session_tokens == NULL || metrics_buf == NULL) {
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
           "\n", requests, (double)requests / elapsed, rounds, heavy, errors);
    printf("latency us p50 %.1f p99 %.1f p999 %.1f max %.1f mean %.1f (all %" PRIu64
           " requests, within 0.4%%)\n", (double)hist_quantile(total, 0.50) / 1e3,
           (double)hist_quantile(total, 0.99) / 1e3, (double)hist_quantile(total, 0.999) / 1e3,
           (double)total->max_ns / 1e3, total->n > 0 ? total->sum_ns / (double)total->n / 1e3 : 0,
           total->n);
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
        printf("rss KiB first %ld warm %ld max %ld end %ld (limit %ld)\n", rss_first,
               warm.rss_kib, rss_max, end.rss_kib, limit);
        if (warm.rss_kib < 0 || end.rss_kib > limit) {
            printf("RSS grew after warm-up\n");
            status = 1;
        }
    }
    if (o.metrics_addr != NULL) {
        printf("allocated bytes warm %lld end %lld (%+lld), tensors %lld, sessions %lld -> %lld, "
               "cache %lld\n", warm.allocated, end.allocated, end.allocated - warm.allocated,
               end.tensors, warm.sessions, end.sessions, end.cached);
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
    return status;
}
