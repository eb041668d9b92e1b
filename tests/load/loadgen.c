/* tests/load/loadgen.c — a load generator on libtensord.
**
** N connections (one thread each) share M sessions (connection i resumes session i mod M) and
** run a mixed, self-checking workload for a fixed time: creates, elementwise ops, matmul, a
** reduction, backward and .grad, gets, frees. Every result is checked against the value worked
** out by hand, so a wrong answer under load counts as an error, not as throughput. It reports
** requests per second, latency percentiles and errors; with --rss-pid it samples the daemon's
** resident memory every few seconds (a soak: it must stay flat once warm).
**
**   loadgen --addr 127.0.0.1:7878 --connections 500 --sessions 100 --seconds 30
**
** Exit status: 0 when every request succeeded and every check held (and RSS stayed flat), 1
** otherwise, 2 for usage errors.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensord.h"

#define LAT_CAP 200000            /* latencies kept per thread (a ring beyond that) */

struct opts {
    const char *addr;
    const char *token;
    int connections, sessions;
    double seconds;
    long rss_pid;
    double rss_slack;             /* allowed RSS growth after warm-up, as a fraction */
};

struct worker {
    pthread_t th;
    int index;
    const struct opts *o;
    uint8_t session_token[TENSORD_TOKEN_BYTES];
    bool resume;
    uint64_t requests, errors, wrong, rounds;
    uint32_t *lat;                /* microseconds */
    size_t nlat;
    char first_error[320];
};

static atomic_bool stop_flag;
static uint8_t (*session_tokens)[TENSORD_TOKEN_BYTES];
static pthread_barrier_t sessions_ready;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note_error(struct worker *w, const char *what, const struct tensord_error *err)
{
    w->errors++;
    if (w->first_error[0] == '\0') {
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", what,
                 err != NULL ? err->message : "wrong value");
    }
}

static void note_latency(struct worker *w, double t0)
{
    double us = (now_s() - t0) * 1e6;
    w->lat[w->nlat % LAT_CAP] = us > 4e9 ? 4000000000u : (uint32_t)us;
    w->nlat++;
    w->requests++;
}

/* Runs one call, timing it; false (and counted) on failure. */
#define CALL(w, what, expr)                                                                        \
    do {                                                                                           \
        double t0_ = now_s();                                                                      \
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

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    struct tensord_error err;
    struct tensord *c = NULL;
    struct tensord_options co = {.auth_token = o->token, .client_name = "loadgen"};
    int slot = w->index % o->sessions;
    bool owner = w->index < o->sessions;
    if (owner) {  /* the first M connections open the sessions ... */
        if (tensord_connect(&c, o->addr, &co, &err) != 0) {
            note_error(w, "connect", &err);
        } else {
            memcpy(session_tokens[slot], tensord_session_token(c), TENSORD_TOKEN_BYTES);
        }
    }
    pthread_barrier_wait(&sessions_ready);
    if (!owner) {  /* ... the others resume them */
        co.session_token = session_tokens[slot];
        if (tensord_connect(&c, o->addr, &co, &err) != 0) {
            note_error(w, "connect", &err);
            c = NULL;
        }
    }
    for (uint64_t round = 0; c != NULL && !atomic_load(&stop_flag); round++) {
        if (!round_once(w, c, round)) {
            break;  /* the connection's state is unknown after a failure: stop this worker */
        }
        w->rounds++;
    }
    tensord_disconnect(c);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

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

static int usage(void)
{
    fprintf(stderr, "usage: loadgen --addr HOST:PORT [--connections N] [--sessions M] "
                    "[--seconds S] [--token T] [--rss-pid PID] [--rss-slack FRACTION]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct opts o = {.addr = NULL, .connections = 50, .sessions = 0, .seconds = 10,
                     .rss_pid = 0, .rss_slack = 0.10};
    for (int i = 1; i < argc; i++) {
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
        } else {
            return usage();
        }
        i++;
    }
    if (o.sessions <= 0 || o.sessions > o.connections) {
        o.sessions = o.connections;
    }
    if (o.addr == NULL || o.connections < 1 || o.connections > 5000 || o.seconds <= 0) {
        return usage();
    }
    struct worker *ws = calloc((size_t)o.connections, sizeof *ws);
    session_tokens = calloc((size_t)o.sessions, sizeof *session_tokens);
    if (ws == NULL || session_tokens == NULL) {
        return 1;
    }
    pthread_barrier_init(&sessions_ready, NULL, (unsigned)o.connections);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    double t0 = now_s();
    for (int i = 0; i < o.connections; i++) {
        ws[i].index = i;
        ws[i].o = &o;
        ws[i].lat = calloc(LAT_CAP, sizeof *ws[i].lat);
        if (ws[i].lat == NULL || pthread_create(&ws[i].th, &attr, run_worker, &ws[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start worker %d\n", i);
            return 1;
        }
    }
    long rss_first = -1, rss_warm = -1, rss_max = -1, rss_last = -1;
    double warm_at = t0 + o.seconds * 0.2, next = t0;
    while (now_s() - t0 < o.seconds) {
        usleep(100000);
        if (o.rss_pid > 0 && now_s() >= next) {
            long kib = rss_kib(o.rss_pid);
            rss_first = rss_first < 0 ? kib : rss_first;
            if (rss_warm < 0 && now_s() >= warm_at) {
                rss_warm = kib;
            }
            rss_max = kib > rss_max ? kib : rss_max;
            rss_last = kib;
            next = now_s() + (o.seconds >= 60 ? 10 : 1);
            if (o.seconds >= 60) {
                printf("rss t=%.0fs %ld KiB\n", now_s() - t0, kib);
                fflush(stdout);
            }
        }
    }
    atomic_store(&stop_flag, true);
    uint64_t requests = 0, errors = 0, rounds = 0;
    size_t nlat = 0;
    for (int i = 0; i < o.connections; i++) {
        pthread_join(ws[i].th, NULL);
        requests += ws[i].requests;
        errors += ws[i].errors;
        rounds += ws[i].rounds;
        nlat += ws[i].nlat < LAT_CAP ? ws[i].nlat : LAT_CAP;
    }
    double elapsed = now_s() - t0;
    uint32_t *all = malloc((nlat > 0 ? nlat : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < o.connections && all != NULL; i++) {
        size_t n = ws[i].nlat < LAT_CAP ? ws[i].nlat : LAT_CAP;
        memcpy(all + k, ws[i].lat, n * sizeof *all);
        k += n;
    }
    if (all != NULL && k > 0) {
        qsort(all, k, sizeof *all, cmp_u32);
    }
#define PCT(q) (k > 0 ? all[(size_t)((double)(k - 1) * (q))] : 0)
    printf("connections %d sessions %d seconds %.1f\n", o.connections, o.sessions, elapsed);
    printf("requests %" PRIu64 " (%.0f/s) rounds %" PRIu64 " errors %" PRIu64 "\n", requests,
           (double)requests / elapsed, rounds, errors);
    printf("latency us p50 %u p99 %u p999 %u max %u\n", PCT(0.50), PCT(0.99), PCT(0.999),
           PCT(1.0));
    int status = errors == 0 && rounds > 0 ? 0 : 1;
    for (int i = 0; i < o.connections; i++) {
        if (ws[i].first_error[0] != '\0') {
            printf("first error (connection %d): %s\n", i, ws[i].first_error);
            break;
        }
    }
    if (o.rss_pid > 0) {
        long limit = (long)((double)rss_warm * (1 + o.rss_slack)) + 4096;
        printf("rss KiB first %ld warm %ld max %ld last %ld (limit %ld)\n", rss_first, rss_warm,
               rss_max, rss_last, limit);
        if (rss_warm < 0 || rss_last > limit) {
            printf("RSS grew after warm-up\n");
            status = 1;
        }
    }
    for (int i = 0; i < o.connections; i++) {
        free(ws[i].lat);
    }
    free(all);
    free(ws);
    free(session_tokens);
    return status;
}
