/* tdbench — the C-client side of `make bench`: each subcommand takes one sample of one workload
** against a running tensord and prints it as one JSON object on stdout. bench/run.py starts the
** servers, alternates these with their anchors, repeats and summarises.
**
**   tdbench sizes    ADDR                      wire bytes of a 2x2 mul and a get (from /proc/self/io)
**   tdbench rtt      ADDR N                    workload 1: N x (blocking mul, blocking get)
**   tdbench pipe     ADDR DEPTH N              workload 2: N muls, DEPTH in flight per flush
**   tdbench many     ADDR CONNS DEPTH N        workload 3: CONNS connections in one event loop
**   tdbench mm       ADDR n K                  workload 5: K pipelined n x n float32 matmuls
**   tdbench ew       ADDR OP NUMEL K           workload 6: K pipelined add|mul|sum on NUMEL floats
**   tdbench hol      ADDR SECONDS BUSY         workload 9: tiny-op latencies, BUSY=1: while another
**                                              session runs 4096x4096 matmuls back to back
**   tdbench sessions ADDR N                    workload 10: N empty sessions (connect, disconnect)
**   tdbench tensors  ADDR N                    workload 10: N one-element tensors in one session
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/tcp.h>

#include "tensord.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const struct tensord_error *err)
{
    fprintf(stderr, "tdbench: %s: %s (code %d)\n", what, err ? err->message : "",
            err ? err->code : 0);
    exit(1);
}

static struct tensord *conn(const char *addr)
{
    struct tensord *c;
    struct tensord_error err;
    if (tensord_connect(&c, addr, NULL, &err) != 0) {
        die("connect", &err);
    }
    return c;
}

static void close_conn(struct tensord *c)
{
    struct tensord_error err;
    tensord_close_session(c, &err);
    tensord_disconnect(c);
}

/* Collects every outstanding reply, failing on any error status. */
static void drain(struct tensord *c, const char *what)
{
    struct tensord_error err;
    struct tensord_reply r;
    if (tensord_flush(c, &err) != 0) {
        die(what, &err);
    }
    while (tensord_pending(c) > 0) {
        if (tensord_recv(c, &r, &err) != 0) {
            die(what, &err);
        }
        if (r.status != TENSORD_OK) {
            fprintf(stderr, "tdbench: %s: server: %s\n", what, r.message);
            exit(1);
        }
    }
}

static const int64_t SHAPE22[] = {2, 2};

/* Creates the two 2x2 float32 inputs of the tiny ops. */
static void make_pair(struct tensord *c, uint64_t *ha, uint64_t *hb)
{
    struct tensord_error err;
    const float a[] = {1, 2, 3, 4}, b[] = {1, 1, 1, 1};
    *ha = tensord_new_handle(c);
    *hb = tensord_new_handle(c);
    if (tensord_create(c, *ha, TENSORD_FLOAT32, SHAPE22, 2, a, sizeof a, &err) != 0 ||
        tensord_create(c, *hb, TENSORD_FLOAT32, SHAPE22, 2, b, sizeof b, &err) != 0) {
        die("create", &err);
    }
}

/* One blocking 2x2 mul into a fresh handle; returns that handle. */
static uint64_t tiny_mul(struct tensord *c, uint64_t ha, uint64_t hb)
{
    struct tensord_error err;
    struct tensord_operand in[] = {tensord_h(ha), tensord_h(hb)};
    uint64_t out = tensord_new_handle(c);
    if (tensord_op(c, "mul", out, in, 2, false, NULL, &err) != 0) {
        die("mul", &err);
    }
    return out;
}

static void tiny_get(struct tensord *c, uint64_t h)
{
    struct tensord_error err;
    float v[4];
    if (tensord_get(c, h, NULL, v, sizeof v, &err) != 0) {
        die("get", &err);
    }
}

static void free_handles(struct tensord *c, uint64_t *hs, size_t n)
{
    struct tensord_error err;
    if (n > 0 && tensord_free(c, hs, n, &err) != 0) {
        die("free", &err);
    }
}

/* Bytes this process's TCP connections have sent (acked) and received so far, from TCP_INFO of
** every socket it holds: libtensord's socket is opaque, and send/recv don't count in /proc/self/io. */
static void io_bytes(uint64_t *rchar, uint64_t *wchar)
{
    *rchar = *wchar = 0;
    for (int fd = 3; fd < 256; fd++) {
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        memset(&ti, 0, sizeof ti);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
            *rchar += ti.tcpi_bytes_received;
            *wchar += ti.tcpi_bytes_acked;
        }
    }
}

static int cmd_sizes(const char *addr)
{
    struct tensord *c = conn(addr);
    uint64_t ha, hb, r0, w0, r1, w1, r2, w2;
    make_pair(c, &ha, &hb);
    enum { N = 64 };
    uint64_t hs[N];
    io_bytes(&r0, &w0);
    for (int i = 0; i < N; i++) {
        hs[i] = tiny_mul(c, ha, hb);
    }
    io_bytes(&r1, &w1);
    for (int i = 0; i < N; i++) {
        tiny_get(c, hs[i]);
    }
    io_bytes(&r2, &w2);
    free_handles(c, hs, N);
    printf("{\"mul_req\": %" PRIu64 ", \"mul_resp\": %" PRIu64 ", \"get_req\": %" PRIu64
           ", \"get_resp\": %" PRIu64 "}\n",
           (w1 - w0) / N, (r1 - r0) / N, (w2 - w1) / N, (r2 - r1) / N);
    close_conn(c);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Workload 1: each iteration is a blocking mul (one round trip) then a blocking get of its
** result (another). The frees, batched every 512 iterations, are outside the timed sections. */
static int cmd_rtt(const char *addr, long n)
{
    struct tensord *c = conn(addr);
    uint64_t ha, hb;
    make_pair(c, &ha, &hb);
    enum { BATCH = 512 };
    uint64_t hs[BATCH];
    double *lat = malloc(sizeof(double) * (size_t)n);
    double total = 0;
    for (long warm = 0; warm < 200; warm++) {
        uint64_t h = tiny_mul(c, ha, hb);
        tiny_get(c, h);
        free_handles(c, &h, 1);
    }
    size_t nh = 0;
    for (long i = 0; i < n; i++) {
        double t0 = now_s();
        uint64_t h = tiny_mul(c, ha, hb);
        tiny_get(c, h);
        double dt = now_s() - t0;
        lat[i] = dt;
        total += dt;
        hs[nh++] = h;
        if (nh == BATCH) {
            free_handles(c, hs, nh);
            nh = 0;
        }
    }
    free_handles(c, hs, nh);
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    /* us_per_rt: the mean time of one round trip (a pair is two). */
    printf("{\"us_per_rt\": %.3f, \"pair_p50_us\": %.3f, \"pair_p99_us\": %.3f, \"n\": %ld}\n",
           total / (double)(2 * n) * 1e6, pct(lat, (size_t)n, 0.5) * 1e6,
           pct(lat, (size_t)n, 0.99) * 1e6, n);
    free(lat);
    close_conn(c);
    return 0;
}

/* Queues one window: `depth` muls into fresh handles, recorded in hs. */
static void send_window(struct tensord *c, uint64_t ha, uint64_t hb, uint64_t *hs, int depth)
{
    struct tensord_error err;
    struct tensord_operand in[] = {tensord_h(ha), tensord_h(hb)};
    for (int j = 0; j < depth; j++) {
        hs[j] = tensord_new_handle(c);
        if (tensord_send_op(c, "mul", hs[j], in, 2, false, NULL, &err) != 0) {
            die("send_op", &err);
        }
    }
    /* The window's results are freed in the same flush, as a client that only wanted the
    ** side effect would; a Free costs one more tiny request per window. */
    if (tensord_send_free(c, hs, (size_t)depth, NULL, &err) != 0) {
        die("send_free", &err);
    }
}

/* Workload 2: windows of `depth` muls (+ one free), each written by one flush and its replies
** read before the next window, like redis-benchmark -P depth. */
static int cmd_pipe(const char *addr, int depth, long n)
{
    struct tensord *c = conn(addr);
    uint64_t ha, hb;
    make_pair(c, &ha, &hb);
    uint64_t *hs = malloc(sizeof(uint64_t) * (size_t)depth);
    long windows = n / depth;
    for (long w = 0; w < 20; w++) {
        send_window(c, ha, hb, hs, depth);
        drain(c, "pipe warm-up");
    }
    double t0 = now_s();
    for (long w = 0; w < windows; w++) {
        send_window(c, ha, hb, hs, depth);
        drain(c, "pipe");
    }
    double dt = now_s() - t0;
    printf("{\"ops_per_s\": %.1f, \"depth\": %d, \"ops\": %ld}\n", (double)(windows * depth) / dt,
           depth, windows * depth);
    free(hs);
    close_conn(c);
    return 0;
}

/* One connection of workload 3: its inputs, the handles of its window in flight, and how many
** of that window's replies are still to come. */
struct many_conn {
    struct tensord *c;
    uint64_t ha, hb;
    uint64_t *hs;
    bool active;    /* a window is in flight */
    size_t waiting; /* ... and this many of its replies are still out */
};

/* Takes connection m's replies that are in (without waiting); returns how many are still out. */
static size_t many_take(struct many_conn *m)
{
    struct tensord_error err;
    struct tensord_reply r;
    size_t ready;
    if (tensord_recv_ready(m->c, &ready, &err) != 0) {
        die("recv_ready", &err);
    }
    for (; ready > 0; ready--) {
        if (tensord_recv(m->c, &r, &err) != 0) {
            die("many", &err);
        }
        if (r.status != TENSORD_OK) {
            fprintf(stderr, "tdbench: many: server: %s\n", r.message);
            exit(1);
        }
        m->waiting--;
    }
    return m->waiting;
}

/* Sends connection m's next window and flushes it. A flush that found the socket full has read
** the replies that arrived meanwhile, which the socket then no longer signals: those are taken
** here (tensord_ready counts them without a system call). */
static void many_send(struct many_conn *m, int depth)
{
    struct tensord_error err;
    send_window(m->c, m->ha, m->hb, m->hs, depth);
    if (tensord_flush(m->c, &err) != 0) {
        die("flush", &err);
    }
    m->waiting = (size_t)depth + 1;
    if (tensord_ready(m->c) > 0) {
        (void)many_take(m);
    }
}

/* Runs windows on all connections until `windows` more have completed, one event loop over
** them (epoll): a connection's next window goes out as soon as its last one's replies are all
** in, as long as fewer than `windows` have been started; redis-benchmark -c keeps its clients
** going the same way. */
struct many_count {
    long started, done, windows;
};

/* While m's window is complete (all its replies taken), counts it and starts the next. */
static void many_advance(struct many_conn *m, int depth, struct many_count *n)
{
    while (m->active && m->waiting == 0) {
        m->active = false;
        n->done++;
        if (n->started < n->windows) {
            n->started++;
            m->active = true;
            many_send(m, depth);
        }
    }
}

static void many_run(struct many_conn *ms, int nconn, int depth, int ep, long windows)
{
    struct many_count n = {.windows = windows};
    for (int i = 0; i < nconn && n.started < windows; i++) {
        n.started++;
        ms[i].active = true;
        many_send(&ms[i], depth);
        many_advance(&ms[i], depth, &n);
    }
    struct epoll_event ev[64];
    while (n.done < windows) {
        int ne = epoll_wait(ep, ev, 64, -1);
        if (ne < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("tdbench: epoll_wait");
            exit(1);
        }
        for (int k = 0; k < ne; k++) {
            struct many_conn *m = ev[k].data.ptr;
            if (m->active) {
                (void)many_take(m);
                many_advance(m, depth, &n);
            }
        }
    }
}

/* Workload 3: `nconn` connections (sessions) in one thread, each with at most one window of
** `depth` muls (+ free) in flight, driven by an event loop (many_run). */
static int cmd_many(const char *addr, int nconn, int depth, long n)
{
    struct many_conn *ms = calloc((size_t)nconn, sizeof *ms);
    uint64_t *hs = calloc((size_t)nconn * (size_t)depth, sizeof *hs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ms == NULL || hs == NULL || ep < 0) {
        perror("tdbench: many");
        return 1;
    }
    for (int i = 0; i < nconn; i++) {
        ms[i].c = conn(addr);
        ms[i].hs = hs + (size_t)i * (size_t)depth;
        make_pair(ms[i].c, &ms[i].ha, &ms[i].hb);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ms[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, tensord_fd(ms[i].c), &ev) != 0) {
            perror("tdbench: epoll_ctl");
            return 1;
        }
    }
    long windows = n / depth;
    if (windows < nconn) {
        windows = nconn;
    }
    many_run(ms, nconn, depth, ep, 5L * nconn); /* warm-up: five windows a connection */
    double t0 = now_s();
    many_run(ms, nconn, depth, ep, windows);
    double dt = now_s() - t0;
    printf("{\"ops_per_s\": %.1f, \"conns\": %d, \"depth\": %d, \"ops\": %ld}\n",
           (double)(windows * depth) / dt, nconn, depth, windows * depth);
    for (int i = 0; i < nconn; i++) {
        close_conn(ms[i].c);
    }
    close(ep);
    free(ms);
    free(hs);
    return 0;
}

/* Workload 5 (server side): A and B made on the server (randn), then K matmuls pipelined and
** their replies awaited; the one round trip is amortised over K. One untimed warm-up matmul
** first, except at n >= 4096. */
static int cmd_mm(const char *addr, int64_t n, int k)
{
    struct tensord *c = conn(addr);
    struct tensord_error err;
    const int64_t shape[] = {n, n};
    uint64_t a = tensord_new_handle(c), b = tensord_new_handle(c);
    if (tensord_randn(c, a, TENSORD_FLOAT32, shape, 2, &err) != 0 ||
        tensord_randn(c, b, TENSORD_FLOAT32, shape, 2, &err) != 0) {
        die("randn", &err);
    }
    struct tensord_operand in[] = {tensord_h(a), tensord_h(b)};
    uint64_t *outs = malloc(sizeof(uint64_t) * (size_t)(k + 1));
    int warm = n < 4096; /* at 4096 one matmul takes seconds: no warm-up there */
    double t0 = now_s();
    for (int i = 1 - warm; i <= k; i++) {
        if (i == 1 && warm) {
            drain(c, "mm warm-up");
            t0 = now_s();
        }
        outs[i] = tensord_new_handle(c);
        if (tensord_send_op(c, "matmul", outs[i], in, 2, false, NULL, &err) != 0) {
            die("send matmul", &err);
        }
        if (tensord_send_free(c, &outs[i], 1, NULL, &err) != 0) {
            die("send free", &err);
        }
    }
    drain(c, "mm");
    double dt = now_s() - t0;
    double flop = 2.0 * (double)n * (double)n * (double)n * k;
    printf("{\"gflops\": %.3f, \"n\": %" PRId64 ", \"k\": %d, \"s_per_mm\": %.6f}\n",
           flop / dt * 1e-9, n, k, dt / k);
    free(outs);
    close_conn(c);
    return 0;
}

/* Workload 6 (server side): K pipelined `op` (add, mul: out of place; sum: to a scalar) on
** NUMEL float32; GB/s counts the bytes the kernel must move (inputs read + output written). */
static int cmd_ew(const char *addr, const char *op, int64_t numel, int k)
{
    struct tensord *c = conn(addr);
    struct tensord_error err;
    const int64_t shape[] = {numel};
    uint64_t a = tensord_new_handle(c), b = tensord_new_handle(c);
    if (tensord_rand(c, a, TENSORD_FLOAT32, shape, 1, &err) != 0 ||
        tensord_rand(c, b, TENSORD_FLOAT32, shape, 1, &err) != 0) {
        die("rand", &err);
    }
    bool unary = strcmp(op, "sum") == 0;
    struct tensord_operand in[] = {tensord_h(a), tensord_h(b)};
    double t0 = 0;
    for (int i = 0; i <= k; i++) {
        if (i == 1) {
            drain(c, "ew warm-up");
            t0 = now_s();
        }
        uint64_t out = tensord_new_handle(c);
        if (tensord_send_op(c, op, out, in, unary ? 1 : 2, false, NULL, &err) != 0 ||
            tensord_send_free(c, &out, 1, NULL, &err) != 0) {
            die("send op", &err);
        }
    }
    drain(c, "ew");
    double dt = now_s() - t0;
    double bytes = (double)numel * 4.0 * (unary ? 1.0 : 3.0) * k;
    printf("{\"gbps\": %.3f, \"op\": \"%s\", \"numel\": %" PRId64
           ", \"k\": %d, \"ms_per_op\": %.4f}\n",
           bytes / dt * 1e-9, op, numel, k, dt / k * 1e3);
    close_conn(c);
    return 0;
}

/* ---- workload 9 ---- */
struct hol_busy {
    const char *addr;
    atomic_int stop;
    atomic_int started;
    int done;
};

/* Another session: 4096x4096 float32 matmuls back to back, two in flight so the server never
** waits for this client. */
static void *hol_busy_main(void *arg)
{
    struct hol_busy *hb = arg;
    struct tensord *c = conn(hb->addr);
    struct tensord_error err;
    struct tensord_reply r;
    const int64_t shape[] = {4096, 4096};
    uint64_t a = tensord_new_handle(c), b = tensord_new_handle(c);
    if (tensord_randn(c, a, TENSORD_FLOAT32, shape, 2, &err) != 0 ||
        tensord_randn(c, b, TENSORD_FLOAT32, shape, 2, &err) != 0) {
        die("randn", &err);
    }
    struct tensord_operand in[] = {tensord_h(a), tensord_h(b)};
    int inflight = 0;
    while (!atomic_load(&hb->stop) || inflight > 0) {
        while (!atomic_load(&hb->stop) && inflight < 2) {
            uint64_t out = tensord_new_handle(c);
            if (tensord_send_op(c, "matmul", out, in, 2, false, NULL, &err) != 0 ||
                tensord_send_free(c, &out, 1, NULL, &err) != 0 || tensord_flush(c, &err) != 0) {
                die("busy send", &err);
            }
            inflight++;
            atomic_store(&hb->started, 1);
        }
        for (int j = 0; j < 2; j++) { /* the matmul's reply, then its free's */
            if (tensord_recv(c, &r, &err) != 0) {
                die("busy recv", &err);
            }
        }
        inflight--;
        hb->done++;
    }
    close_conn(c);
    return NULL;
}

static int cmd_hol(const char *addr, double seconds, int busy)
{
    struct hol_busy hb = {.addr = addr};
    pthread_t th;
    struct tensord *c = conn(addr);
    uint64_t ha, hb2;
    make_pair(c, &ha, &hb2);
    for (int i = 0; i < 100; i++) {
        uint64_t h = tiny_mul(c, ha, hb2);
        free_handles(c, &h, 1);
    }
    if (busy) {
        pthread_create(&th, NULL, hol_busy_main, &hb);
        while (!atomic_load(&hb.started)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        struct timespec ts = {0, 200000000}; /* let the first matmul get going */
        nanosleep(&ts, NULL);
    }
    size_t cap = 1 << 20, n = 0;
    double *lat = malloc(sizeof(double) * cap);
    enum { BATCH = 512 };
    uint64_t hs[BATCH];
    size_t nh = 0;
    double end = now_s() + seconds;
    while (now_s() < end && n < cap) {
        double t0 = now_s();
        uint64_t h = tiny_mul(c, ha, hb2);
        lat[n++] = now_s() - t0;
        hs[nh++] = h;
        if (nh == BATCH) {
            free_handles(c, hs, nh);
            nh = 0;
        }
    }
    free_handles(c, hs, nh);
    if (busy) {
        atomic_store(&hb.stop, 1);
        pthread_join(th, NULL);
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("{\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
           "\"n\": %zu, \"matmuls\": %d}\n",
           pct(lat, n, 0.5) * 1e6, pct(lat, n, 0.99) * 1e6, pct(lat, n, 0.999) * 1e6,
           lat[n - 1] * 1e6, n, hb.done);
    free(lat);
    close_conn(c);
    return 0;
}

/* Workload 10: empty sessions left on the server (disconnect keeps a session for its TTL). */
static int cmd_sessions(const char *addr, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        tensord_disconnect(conn(addr));
    }
    printf("{\"sessions\": %ld, \"s\": %.3f}\n", n, now_s() - t0);
    return 0;
}

/* Workload 10: N one-element float32 tensors in one session, which is left on the server. */
static int cmd_tensors(const char *addr, long n)
{
    struct tensord *c = conn(addr);
    struct tensord_error err;
    const int64_t shape[] = {1};
    const float v = 1.0f;
    for (long i = 0; i < n; i++) {
        if (tensord_send_create(c, tensord_new_handle(c), TENSORD_FLOAT32, shape, 1, &v, sizeof v,
                                NULL, &err) != 0) {
            die("send_create", &err);
        }
        if (i % 4096 == 4095) {
            drain(c, "tensors");
        }
    }
    drain(c, "tensors");
    tensord_disconnect(c);
    printf("{\"tensors\": %ld}\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tdbench CMD ADDR ... (see bench/tdbench.c)\n");
        return 2;
    }
    const char *cmd = argv[1], *addr = argv[2];
    if (strcmp(cmd, "sizes") == 0) {
        return cmd_sizes(addr);
    }
    if (strcmp(cmd, "rtt") == 0 && argc == 4) {
        return cmd_rtt(addr, atol(argv[3]));
    }
    if (strcmp(cmd, "pipe") == 0 && argc == 5) {
        return cmd_pipe(addr, atoi(argv[3]), atol(argv[4]));
    }
    if (strcmp(cmd, "many") == 0 && argc == 6) {
        return cmd_many(addr, atoi(argv[3]), atoi(argv[4]), atol(argv[5]));
    }
    if (strcmp(cmd, "mm") == 0 && argc == 5) {
        return cmd_mm(addr, atoll(argv[3]), atoi(argv[4]));
    }
    if (strcmp(cmd, "ew") == 0 && argc == 6) {
        return cmd_ew(addr, argv[3], atoll(argv[4]), atoi(argv[5]));
    }
    if (strcmp(cmd, "hol") == 0 && argc == 5) {
        return cmd_hol(addr, atof(argv[3]), atoi(argv[4]));
    }
    if (strcmp(cmd, "sessions") == 0 && argc == 4) {
        return cmd_sessions(addr, atol(argv[3]));
    }
    if (strcmp(cmd, "tensors") == 0 && argc == 4) {
        return cmd_tensors(addr, atol(argv[3]));
    }
    fprintf(stderr, "tdbench: bad command line\n");
    return 2;
}
