/* tests/client/test_client.c — libtensord's own behaviour: its guards and its failure modes.
**
** Two kinds of peer. A real daemon checks what the library does with a well-behaved server:
** pipelining that would deadlock a write-only client, blocking calls refused mid-pipeline,
** buffers too small, the frame limit checked before sending, Unix sockets, handles after a
** resume. A fake server on a thread (it says Hello properly, then sends one scripted reply)
** checks that every malformed reply is a local protocol error, never a crash, and that the
** connection then stays broken.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "daemon.h"
#include "proto/tensord.pb-c.h"
#include "tensord.h"

static struct td_test_daemon daemon_;

static int setup(void **state)
{
    (void)state;
    return td_test_daemon_start(&daemon_, "client", NULL);
}

static int teardown(void **state)
{
    (void)state;
    return td_test_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

static struct tensord *open_session(const char *addr)
{
    struct tensord *c = NULL;
    struct tensord_error err;
    if (tensord_connect(&c, addr, NULL, &err) != 0) {
        fail_msg("connect %s: %s", addr, err.message);
    }
    return c;
}

/* Requests of 40 MiB and replies of 160 MiB in one batch. The daemon stops reading once 64 MiB
** of replies wait to be written; a client that only wrote would then block forever. */
static void test_pipeline_large_both_ways(void **state)
{
    (void)state;
    struct tensord *c = open_session(daemon_.addr);
    struct tensord_error err;
    enum { GETS = 40, BIG = 1 << 20, UP = 1 << 18 }; /* floats */
    const int64_t sbig[] = {BIG}, sup[] = {UP};
    assert_int_equal(tensord_full(c, 1, TENSORD_FLOAT32, sbig, 1, tensord_f(2.5), &err), 0);
    float *down = malloc((size_t)BIG * 4), *up = malloc((size_t)UP * 4);
    assert_non_null(down);
    assert_non_null(up);
    for (int i = 0; i < UP; i++) {
        up[i] = (float)i;
    }
    for (int i = 0; i < GETS; i++) {
        assert_int_equal(tensord_send_get(c, 1, down, (size_t)BIG * 4, NULL, &err), 0);
        assert_int_equal(tensord_send_create(c, 100 + (uint64_t)i, TENSORD_FLOAT32, sup, 1, up,
                                             (size_t)UP * 4, NULL, &err),
                         0);
    }
    assert_int_equal(tensord_flush(c, &err), 0);
    for (int i = 0; i < 2 * GETS; i++) {
        struct tensord_reply r;
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.status, 0);
    }
    assert_true(down[0] == 2.5f && down[BIG - 1] == 2.5f);
    float back[2];
    assert_int_equal(tensord_get_range(c, 100 + GETS - 1, (UP - 2) * 4, 8, back, NULL, &err), 0);
    assert_true(back[0] == (float)(UP - 2) && back[1] == (float)(UP - 1));
    free(down);
    free(up);
    tensord_disconnect(c);
}

static void test_blocking_refused_while_pipelined(void **state)
{
    (void)state;
    struct tensord *c = open_session(daemon_.addr);
    struct tensord_error err;
    uint64_t id1, id2;
    assert_int_equal(tensord_send_ping(c, &id1, &err), 0);
    assert_int_equal(tensord_send_ping(c, &id2, &err), 0);
    assert_true(id2 == id1 + 1);
    assert_int_equal(tensord_pending(c), 2);
    assert_int_equal(tensord_ping(c, &err), TENSORD_E_USAGE);
    assert_non_null(strstr(err.message, "outstanding"));
    struct tensord_reply r;
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.id, id1);
    assert_int_equal(tensord_ping(c, &err), TENSORD_E_USAGE);
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.id, id2);
    assert_int_equal(tensord_recv(c, &r, &err), TENSORD_E_USAGE); /* nothing pending */
    assert_int_equal(tensord_ping(c, &err), 0);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.message, "");
    /* refused locally: not queued, no reply owed */
    assert_int_equal(tensord_send_op(c, "no_such_op", 5, NULL, 0, false, NULL, &err),
                     TENSORD_E_USAGE);
    assert_int_equal(tensord_pending(c), 0);
    assert_int_equal(tensord_ping(c, &err), 0);
    tensord_disconnect(c);
}

static void test_buffer_too_small(void **state)
{
    (void)state;
    struct tensord *c = open_session(daemon_.addr);
    struct tensord_error err;
    const int64_t s[] = {4};
    const int32_t v[] = {1, 2, 3, 4};
    int32_t small[2], back[4];
    struct tensord_info info;
    assert_int_equal(tensord_create(c, 1, TENSORD_INT32, s, 1, v, sizeof v, &err), 0);
    assert_int_equal(tensord_get(c, 1, &info, small, sizeof small, &err), TENSORD_E_BUFFER);
    assert_int_equal(info.nbytes, 16); /* the caller learns how much to allocate */
    /* pipelined: the short buffer's reply is consumed, the next one is intact */
    uint64_t ids[2];
    assert_int_equal(tensord_send_get(c, 1, small, sizeof small, &ids[0], &err), 0);
    assert_int_equal(tensord_send_get(c, 1, back, sizeof back, &ids[1], &err), 0);
    struct tensord_reply r;
    assert_int_equal(tensord_recv(c, &r, &err), TENSORD_E_BUFFER);
    assert_int_equal(r.id, ids[0]);
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.id, ids[1]);
    assert_memory_equal(back, v, sizeof v);
    /* metadata only */
    assert_int_equal(tensord_get_meta(c, 1, &info, &err), 0);
    assert_int_equal(info.dtype, TENSORD_INT32);
    assert_int_equal(info.ndim, 1);
    assert_int_equal(info.shape[0], 4);
    assert_int_equal(info.length, 0);
    assert_int_equal(tensord_ping(c, &err), 0);
    tensord_disconnect(c);
}

static void test_frame_limit_checked_before_sending(void **state)
{
    (void)state;
    struct td_test_daemon d;
    const char *args[] = {"--max-frame-bytes", "1048576", NULL};
    assert_int_equal(td_test_daemon_start(&d, "client_limit", args), 0);
    struct tensord *c = open_session(d.addr);
    struct tensord_error err;
    struct tensord_limits lim;
    tensord_limits(c, &lim);
    assert_int_equal(lim.max_frame_bytes, 1048576);
    const int64_t s[] = {1 << 19}; /* 2 MiB of float32 */
    float *big = calloc(1 << 19, sizeof *big);
    assert_non_null(big);
    assert_int_equal(tensord_create(c, 1, TENSORD_FLOAT32, s, 1, big, (size_t)4 << 19, &err),
                     TENSORD_LIMIT_EXCEEDED);
    assert_non_null(strstr(err.message, "max_frame_bytes 1048576"));
    assert_int_equal(tensord_pending(c), 0);
    assert_int_equal(tensord_ping(c, &err), 0); /* the connection was never at risk */
    free(big);
    tensord_disconnect(c);
    assert_int_equal(td_test_daemon_stop(&d), 0);
}

static void test_addresses(void **state)
{
    (void)state;
    struct td_test_daemon d;
    char path[128], addr[160];
    snprintf(path, sizeof path, "/tmp/tensord-test-%d.sock", (int)getpid());
    unlink(path);
    const char *args[] = {"--unix", path, NULL};
    assert_int_equal(td_test_daemon_start(&d, "client_unix", args), 0);
    snprintf(addr, sizeof addr, "unix:%s", path);
    struct tensord *c = open_session(addr);
    struct tensord_error err;
    assert_int_equal(tensord_ping(c, &err), 0);
    tensord_disconnect(c);
    assert_int_equal(td_test_daemon_stop(&d), 0);
    unlink(path);

    struct tensord *x = (struct tensord *)&err; /* must be reset to NULL on failure */
    const char *bad[] = {"127.0.0.1", "127.0.0.1:",  ":7878", "[::1]7878",
                         "::1:7878",  "127.0.0.1:x", "unix:", "no.such.host.invalid:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tensord_connect(&x, bad[i], NULL, &err), TENSORD_E_CONNECT);
        assert_null(x);
    }
    assert_int_equal(tensord_connect(&x, addr, NULL, &err), TENSORD_E_CONNECT); /* gone */
    tensord_disconnect(NULL);
}

static void test_handles_after_resume_do_not_collide(void **state)
{
    (void)state;
    struct tensord *c = open_session(daemon_.addr);
    struct tensord_error err;
    const int64_t s[] = {1};
    const int64_t v = 42;
    uint64_t h1 = tensord_new_handle(c);
    assert_int_equal(h1, 1);
    assert_int_equal(tensord_create(c, h1, TENSORD_INT64, s, 1, &v, 8, &err), 0);
    char token[TENSORD_TOKEN_MAX];
    snprintf(token, sizeof token, "%s", tensord_session_token(c));
    tensord_disconnect(c);
    struct tensord_options o = {.session_token = token};
    assert_int_equal(tensord_connect(&c, daemon_.addr, &o, &err), 0);
    assert_true(tensord_resumed(c));
    uint64_t h2 = tensord_new_handle(c);
    assert_true(h2 > UINT32_MAX);
    assert_int_equal(tensord_create(c, h2, TENSORD_INT64, s, 1, &v, 8, &err), 0);
    int64_t back;
    assert_int_equal(tensord_get(c, h1, NULL, &back, 8, &err), 0);
    assert_int_equal(back, 42);
    assert_int_equal(tensord_close_session(c, &err), 0);
    tensord_disconnect(c);
}

static void test_op_codes_and_args(void **state)
{
    (void)state;
    assert_int_equal(tensord_op_code("add"), TENSORD__OP__OP_ADD);
    assert_int_equal(tensord_op_code("log_softmax"), TENSORD__OP__OP_LOG_SOFTMAX);
    assert_int_equal(tensord_op_code("ADD"), -1);
    assert_int_equal(tensord_op_code("unspecified"), -1);
    assert_int_equal(tensord_op_code(""), -1);
    assert_int_equal(tensord_op_code(NULL), -1);
    struct tensord *c = open_session(daemon_.addr);
    struct tensord_error err;
    struct tensord_info info;
    /* torch.arange(6).reshape(2, 3).sum(1, keepdim=True) == [[3], [12]] */
    assert_int_equal(tensord_arange(c, 1, TENSORD_DTYPE_INFER, tensord_i(0), tensord_i(6),
                                    tensord_i(1), &err),
                     0);
    struct tensord_op_args ra = {.dims = {2, 3}, .ndims = 2};
    struct tensord_operand in1[] = {tensord_h(1)};
    assert_int_equal(tensord_op_ex(c, "reshape", 2, in1, 1, &ra, false, NULL, &err), 0);
    struct tensord_op_args sa = {.dims = {1}, .ndims = 1, .keepdim = true};
    struct tensord_operand in2[] = {tensord_h(2)};
    assert_int_equal(tensord_op_ex(c, "sum", 3, in2, 1, &sa, false, &info, &err), 0);
    assert_int_equal(info.dtype, TENSORD_INT64);
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.shape[0], 2);
    assert_int_equal(info.shape[1], 1);
    int64_t sums[2];
    assert_int_equal(tensord_get(c, 3, NULL, sums, sizeof sums, &err), 0);
    assert_int_equal(sums[0], 3);
    assert_int_equal(sums[1], 12);
    /* the same seed, the same numbers, pipelined or not */
    const int64_t s4[] = {4};
    float r1[4], r2[4];
    assert_int_equal(tensord_manual_seed(c, 7, &err), 0);
    assert_int_equal(tensord_randn(c, 4, TENSORD_DTYPE_INFER, s4, 1, &err), 0);
    assert_int_equal(tensord_get(c, 4, NULL, r1, sizeof r1, &err), 0);
    assert_int_equal(tensord_send_manual_seed(c, 7, NULL, &err), 0);
    assert_int_equal(tensord_send_randn(c, 5, TENSORD_DTYPE_INFER, s4, 1, NULL, &err), 0);
    assert_int_equal(tensord_send_get(c, 5, r2, sizeof r2, NULL, &err), 0);
    for (int i = 0; i < 3; i++) {
        struct tensord_reply r;
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.status, 0);
    }
    assert_memory_equal(r1, r2, sizeof r1);
    tensord_disconnect(c);
}

/* ---- a fake server that misbehaves ---- */

/* What the fake server sends after a proper Hello reply, for the client's next request. */
struct script {
    const char *name;
    uint32_t meta_len_override; /* nonzero: announce this many protobuf bytes instead */
    bool garbage;               /* send 8 bytes of 0xff as the protobuf section */
    bool wrong_id;
    bool bad_nbytes;      /* TensorInfo nbytes disagrees with its shape */
    uint64_t data_len;    /* data bytes to send (the info says 16) */
    bool close_mid_reply; /* send half the reply, then close */
};

struct fake {
    int lfd;
    int port;
    const struct script *s;
    pthread_t thread;
};

static int read_full(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Reads one request frame; returns its decoded Request (caller frees) or NULL. */
static Tensord__Request *fake_read(int fd)
{
    uint8_t h[12];
    if (read_full(fd, h, 12) != 0) {
        return NULL;
    }
    uint32_t ml = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | h[4 + i];
    }
    uint8_t *buf = malloc(ml + dl + 1);
    if (buf == NULL || read_full(fd, buf, ml + dl) != 0) {
        free(buf);
        return NULL;
    }
    Tensord__Request *r = tensord__request__unpack(NULL, ml, buf);
    free(buf);
    return r;
}

static void fake_send(int fd, const Tensord__Response *r, uint32_t meta_len_override,
                      uint64_t data_len, size_t cut)
{
    uint8_t buf[4096];
    size_t ml = tensord__response__get_packed_size(r);
    uint32_t announced = meta_len_override != 0 ? meta_len_override : (uint32_t)ml;
    for (int i = 0; i < 4; i++) {
        buf[i] = (uint8_t)(announced >> (24 - 8 * i)); /* u32 meta_len, big-endian */
    }
    for (int i = 0; i < 8; i++) {
        buf[4 + i] = (uint8_t)(data_len >> (56 - 8 * i)); /* u64 data_len, big-endian */
    }
    tensord__response__pack(r, buf + 12);
    size_t n = 12 + ml + (size_t)data_len;
    memset(buf + 12 + ml, 0x5a, (size_t)data_len); /* the data section */
    if (cut != 0 && cut < n) {
        n = cut;
    }
    if (write(fd, buf, n) != (ssize_t)n) {
        return;
    }
}

/* Reads the client's Hello on fd and answers it with a fixed session token. */
static void fake_hello(int fd)
{
    Tensord__Request *req = fake_read(fd);
    if (req == NULL) {
        return;
    }
    Tensord__Response r = TENSORD__RESPONSE__INIT;
    Tensord__HelloResult h = TENSORD__HELLO_RESULT__INIT;
    uint8_t token[16] = {1, 2, 3};
    h.session_token.data = token;
    h.session_token.len = 16;
    h.version = 1;
    r.id = req->id;
    r.result_case = TENSORD__RESPONSE__RESULT_HELLO;
    r.hello = &h;
    fake_send(fd, &r, 0, 0, 0);
    tensord__request__free_unpacked(req, NULL);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    const struct script *s = f->s;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    fake_hello(fd);
    Tensord__Request *req = fake_read(fd);
    if (req != NULL) {
        Tensord__Response r = TENSORD__RESPONSE__INIT;
        Tensord__TensorInfo t = TENSORD__TENSOR_INFO__INIT;
        int64_t shape[] = {4};
        t.handle = 1;
        t.dtype = TENSORD__DTYPE__FLOAT32;
        t.shape = shape;
        t.n_shape = 1;
        t.nbytes = s->bad_nbytes ? 17 : 16;
        t.length = 16;
        r.id = s->wrong_id ? req->id + 1 : req->id;
        r.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
        r.tensor = &t;
        if (s->garbage) {
            const uint8_t junk[] = {0,    0,    0,    8,    0,    0,    0,    0,
                                    0,    0,    0,    0, /* meta 8, data 0 */
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
            ssize_t w = write(fd, junk, sizeof junk);
            (void)w;
        } else {
            size_t full = 12 + tensord__response__get_packed_size(&r) + (size_t)s->data_len;
            fake_send(fd, &r, s->meta_len_override, s->data_len, s->close_mid_reply ? full / 2 : 0);
        }
        tensord__request__free_unpacked(req, NULL);
    }
    /* Hold the connection until the client is done with it, unless the script says to hang
    ** up mid-reply. */
    char b;
    while (!s->close_mid_reply && read(fd, &b, 1) > 0) {
    }
    close(fd);
    return NULL;
}

/* A listener on a free loopback port, for one fake server's thread. */
static void fake_listen(struct fake *f)
{
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 1), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
}

static void fake_start(struct fake *f, const struct script *s)
{
    f->s = s;
    fake_listen(f);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void test_malformed_replies_are_protocol_errors(void **state)
{
    (void)state;
    static const struct script scripts[] = {
        {.name = "meta_len 1 GiB", .meta_len_override = 1u << 30},
        {.name = "garbage protobuf", .garbage = true},
        {.name = "wrong id", .wrong_id = true, .data_len = 16},
        {.name = "nbytes vs shape", .bad_nbytes = true, .data_len = 16},
        {.name = "data length vs info", .data_len = 12},
        {.name = "closed mid-reply", .data_len = 16, .close_mid_reply = true},
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        struct fake f;
        fake_start(&f, &scripts[i]);
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
        struct tensord *c = open_session(addr);
        struct tensord_error err;
        float back[4];
        int rc = tensord_get(c, 1, NULL, back, sizeof back, &err);
        print_message("  %-20s -> %d %s\n", scripts[i].name, rc, err.message);
        int want = scripts[i].close_mid_reply ? TENSORD_E_IO : TENSORD_E_PROTOCOL;
        assert_int_equal(rc, want);
        /* the stream is out of step: everything after fails fast, naming the cause */
        assert_int_equal(tensord_ping(c, &err), TENSORD_E_IO);
        assert_non_null(strstr(err.message, "connection is broken"));
        assert_int_equal(tensord_send_ping(c, NULL, &err), TENSORD_E_IO);
        tensord_disconnect(c);
        pthread_join(f.thread, NULL);
        close(f.lfd);
    }
}

/* ---- tensord_recv_ready: replies taken without waiting ---- */

/* A fake server for tensord_recv_ready: after Hello it reads three Pings, sends the first two
** replies whole and half of the third, tells the test (a byte on `staged`), waits for the test's
** word (a byte on `go`), sends the rest; then reads one more request and hangs up. */
struct staged {
    struct fake f;
    int staged[2], go[2];
};

static void *staged_main(void *arg)
{
    struct staged *st = arg;
    int fd = accept(st->f.lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    fake_hello(fd);
    Tensord__Request *req;
    uint64_t ids[3] = {0};
    for (int i = 0; i < 3; i++) {
        req = fake_read(fd);
        ids[i] = req != NULL ? req->id : 0;
        tensord__request__free_unpacked(req, NULL);
    }
    Tensord__Response pong = TENSORD__RESPONSE__INIT;
    pong.id = ids[0];
    fake_send(fd, &pong, 0, 0, 0);
    pong.id = ids[1];
    fake_send(fd, &pong, 0, 0, 0);
    pong.id = ids[2]; /* 12 header bytes + 2: its first 7 bytes now, the rest on the word */
    uint8_t third[14] = {0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, (uint8_t)ids[2]};
    char b = 1;
    if (write(fd, third, 7) != 7 || write(st->staged[1], &b, 1) != 1 ||
        read(st->go[0], &b, 1) != 1 || write(fd, third + 7, 7) != 7) {
        close(fd);
        return NULL;
    }
    req = fake_read(fd);
    tensord__request__free_unpacked(req, NULL);
    close(fd); /* no reply: the client sees the end of the stream */
    return NULL;
}

/* Calls tensord_recv_ready until it reports `want` replies, waiting for the socket in between
** (no time limit here: the test binary's own bounds a hang). */
static void ready_until(struct tensord *c, size_t want)
{
    struct tensord_error err;
    size_t ready = 0;
    for (;;) {
        assert_int_equal(tensord_recv_ready(c, &ready, &err), 0);
        assert_true(ready <= want);
        if (ready == want) {
            return;
        }
        struct pollfd pfd = {.fd = tensord_fd(c), .events = POLLIN};
        assert_true(poll(&pfd, 1, -1) >= 0);
    }
}

/* Starts a staged fake server running fn and opens a session on it. */
static struct tensord *staged_open(struct staged *st, void *(*fn)(void *))
{
    assert_int_equal(pipe(st->staged), 0);
    assert_int_equal(pipe(st->go), 0);
    fake_listen(&st->f);
    assert_int_equal(pthread_create(&st->f.thread, NULL, fn, st), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", st->f.port);
    return open_session(addr);
}

static void test_recv_ready_takes_only_whole_replies(void **state)
{
    (void)state;
    struct staged st;
    struct tensord *c = staged_open(&st, staged_main);
    struct tensord_error err;
    struct tensord_reply r;
    uint64_t ids[3];
    size_t ready = 7;
    assert_int_equal(tensord_recv_ready(c, &ready, &err), 0); /* nothing pending */
    assert_int_equal(ready, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tensord_send_ping(c, &ids[i], &err), 0);
    }
    assert_true(ids[2] < 128); /* the fake writes the third reply's id as one byte */
    assert_int_equal(tensord_recv_ready(c, &ready, &err), 0); /* flushes them */
    char b;
    assert_int_equal(read(st.staged[0], &b, 1), 1);
    ready_until(c, 2); /* the third is cut off: never ready before the word */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tensord_ready(c), 2 - (size_t)i);
        assert_int_equal(tensord_recv(c, &r, &err), 0);
        assert_int_equal(r.id, ids[i]);
        assert_int_equal(r.status, TENSORD_OK);
    }
    assert_int_equal(tensord_recv_ready(c, &ready, &err), 0);
    assert_int_equal(ready, 0);
    assert_int_equal(tensord_ready(c), 0);
    assert_int_equal(tensord_pending(c), 1);
    assert_int_equal(write(st.go[1], &b, 1), 1);
    ready_until(c, 1);
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.id, ids[2]);
    /* The server hangs up without answering: a broken connection, named. */
    assert_int_equal(tensord_send_ping(c, NULL, &err), 0);
    int rc;
    do {
        rc = tensord_recv_ready(c, &ready, &err);
        struct pollfd pfd = {.fd = tensord_fd(c), .events = POLLIN};
        if (rc == 0) {
            assert_int_equal(ready, 0);
            assert_true(poll(&pfd, 1, -1) >= 0);
        }
    } while (rc == 0);
    assert_int_equal(rc, TENSORD_E_IO);
    assert_non_null(strstr(err.message, "closed"));
    assert_int_equal(tensord_recv_ready(c, &ready, &err), TENSORD_E_IO);
    tensord_disconnect(c);
    pthread_join(st.f.thread, NULL);
    close(st.f.lfd);
    for (int i = 0; i < 2; i++) {
        close(st.staged[i]);
        close(st.go[i]);
    }
}

/* A fake server that trickles a 1 MiB Get reply: after Hello it reads one Get, then sends the
** reply frame in PIECES pieces (the first is 5 bytes, inside the header; the second ends inside
** the protobuf section; the rest split the data), each followed by a byte on `staged` and a wait
** for the test's byte on `go`; the last piece goes out unasked, right after the last word. The
** data's byte i is (i * 7) % 251. */
enum { TRICKLE_BYTES = 1 << 20, TRICKLE_PIECES = 40 };

static uint8_t trickle_byte(size_t i)
{
    return (uint8_t)((i * 7) % 251);
}

static void *trickle_main(void *arg)
{
    struct staged *st = arg;
    int fd = accept(st->f.lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    fake_hello(fd);
    Tensord__Request *req = fake_read(fd);
    Tensord__Response g = TENSORD__RESPONSE__INIT;
    Tensord__TensorInfo t = TENSORD__TENSOR_INFO__INIT;
    int64_t shape[] = {TRICKLE_BYTES / 4};
    t.handle = 1;
    t.dtype = TENSORD__DTYPE__FLOAT32;
    t.shape = shape;
    t.n_shape = 1;
    t.nbytes = TRICKLE_BYTES;
    t.length = TRICKLE_BYTES;
    g.id = req != NULL ? req->id : 0;
    g.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
    g.tensor = &t;
    tensord__request__free_unpacked(req, NULL);
    size_t ml = tensord__response__get_packed_size(&g);
    size_t n = 12 + ml + TRICKLE_BYTES;
    uint8_t *frame = malloc(n);
    if (frame == NULL) {
        close(fd);
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        frame[i] = (uint8_t)(ml >> (24 - 8 * i)); /* u32 meta_len, big-endian */
    }
    for (int i = 0; i < 8; i++) {
        frame[4 + i] = (uint8_t)((uint64_t)TRICKLE_BYTES >> (56 - 8 * i)); /* u64 data_len */
    }
    tensord__response__pack(&g, frame + 12);
    for (size_t i = 0; i < TRICKLE_BYTES; i++) {
        frame[12 + ml + i] = trickle_byte(i); /* the data section */
    }
    size_t cuts[TRICKLE_PIECES + 1];
    cuts[0] = 0;
    cuts[1] = 5;           /* inside the header */
    cuts[2] = 12 + ml / 2; /* inside the protobuf section */
    for (int k = 3; k < TRICKLE_PIECES; k++) {
        cuts[k] = 12 + ml + (size_t)(k - 2) * (TRICKLE_BYTES / (TRICKLE_PIECES - 1));
    }
    cuts[TRICKLE_PIECES] = n;
    char b = 1;
    for (int k = 0; k < TRICKLE_PIECES; k++) {
        size_t len = cuts[k + 1] - cuts[k];
        if (write(fd, frame + cuts[k], len) != (ssize_t)len) {
            break;
        }
        if (k + 1 < TRICKLE_PIECES &&
            (write(st->staged[1], &b, 1) != 1 || read(st->go[0], &b, 1) != 1)) {
            break;
        }
    }
    free(frame);
    while (read(fd, &b, 1) > 0) { /* hold the connection until the client hangs up */
    }
    close(fd);
    return NULL;
}

/* tensord_recv_ready never waits inside a large frame: each call takes what the socket holds
** and returns, the frame's state kept between calls; tensord_recv finishes it, and the bytes
** are exact. The client's socket gets a receive timeout, so a call that waited would fail
** (EAGAIN after 20 s) rather than hang: the fake sends nothing until the test's word. */
static void test_recv_ready_never_waits_inside_a_large_frame(void **state)
{
    (void)state;
    struct staged st;
    struct tensord *c = staged_open(&st, trickle_main);
    struct timeval tv = {.tv_sec = 20};
    assert_int_equal(setsockopt(tensord_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    struct tensord_error err;
    uint8_t *buf = malloc(TRICKLE_BYTES);
    assert_non_null(buf);
    memset(buf, 0, TRICKLE_BYTES);
    uint64_t id;
    assert_int_equal(tensord_send_get(c, 1, buf, TRICKLE_BYTES, &id, &err), 0);
    assert_int_equal(tensord_flush(c, &err), 0);
    size_t ready = 7;
    char b = 1;
    for (int k = 0; k + 1 < TRICKLE_PIECES; k++) {
        assert_int_equal(read(st.staged[0], &b, 1), 1); /* piece k is on the wire */
        /* twice: the second call finds the socket empty inside the frame */
        for (int twice = 0; twice < 2; twice++) {
            int rc = tensord_recv_ready(c, &ready, &err);
            if (rc != 0) {
                fail_msg("piece %d: tensord_recv_ready -> %d %s", k, rc, err.message);
            }
            assert_int_equal(ready, 0);
            assert_int_equal(tensord_pending(c), 1);
        }
        assert_int_equal(write(st.go[1], &b, 1), 1);
    }
    /* the last piece: tensord_recv waits for it and finishes the frame begun above */
    struct tensord_reply r;
    assert_int_equal(tensord_recv(c, &r, &err), 0);
    assert_int_equal(r.id, id);
    assert_int_equal(r.status, TENSORD_OK);
    assert_true(r.has_info);
    assert_int_equal(r.info.length, TRICKLE_BYTES);
    for (size_t i = 0; i < TRICKLE_BYTES; i++) {
        if (buf[i] != trickle_byte(i)) {
            fail_msg("byte %zu is %u, sent %u", i, buf[i], trickle_byte(i));
        }
    }
    assert_int_equal(tensord_pending(c), 0);
    tensord_disconnect(c);
    pthread_join(st.f.thread, NULL);
    close(st.f.lfd);
    for (int i = 0; i < 2; i++) {
        close(st.staged[i]);
        close(st.go[i]);
    }
    free(buf);
}

/* Three sessions of a real daemon in one poll loop: 2x2 muls (a * b = {2, 4, 6, 8} by hand),
** the Gets of their results, and one 1 MiB Get (a frame larger than the read buffer), all
** collected through tensord_recv_ready. */
static void test_recv_ready_event_loop(void **state)
{
    (void)state;
    enum { CONNS = 3, OPS = 100, BIG = 1 << 18 };
    struct tensord *cs[CONNS];
    struct tensord_error err;
    static float got[CONNS][OPS][4];
    float *big = malloc(BIG * sizeof *big);
    assert_non_null(big);
    const float a[] = {1, 2, 3, 4}, bv[] = {2, 2, 2, 2};
    const int64_t shape[] = {2, 2}, bshape[] = {BIG};
    size_t left = 0;
    for (int k = 0; k < CONNS; k++) {
        cs[k] = open_session(daemon_.addr);
        assert_int_equal(tensord_create(cs[k], 1, TENSORD_FLOAT32, shape, 2, a, sizeof a, &err), 0);
        assert_int_equal(tensord_create(cs[k], 2, TENSORD_FLOAT32, shape, 2, bv, sizeof bv, &err),
                         0);
        struct tensord_operand in[] = {tensord_h(1), tensord_h(2)};
        for (int i = 0; i < OPS; i++) {
            assert_int_equal(tensord_send_op(cs[k], "mul", 10 + (uint64_t)i, in, 2, false, NULL,
                                             &err),
                             0);
            assert_int_equal(tensord_send_get(cs[k], 10 + (uint64_t)i, got[k][i], sizeof got[k][i],
                                              NULL, &err),
                             0);
        }
        if (k == 0) {
            assert_int_equal(tensord_send_full(cs[k], 3, TENSORD_FLOAT32, bshape, 1, tensord_f(3.0),
                                               NULL, &err),
                             0);
            assert_int_equal(tensord_send_get(cs[k], 3, big, BIG * sizeof *big, NULL, &err), 0);
        }
        assert_int_equal(tensord_flush(cs[k], &err), 0);
        left += tensord_pending(cs[k]);
    }
    size_t taken = 0;
    while (left > 0) {
        struct pollfd pfd[CONNS];
        for (int k = 0; k < CONNS; k++) {
            pfd[k] = (struct pollfd){.fd = tensord_fd(cs[k]), .events = POLLIN};
        }
        assert_true(poll(pfd, CONNS, -1) > 0);
        for (int k = 0; k < CONNS; k++) {
            size_t ready;
            if (pfd[k].revents == 0) {
                continue;
            }
            assert_int_equal(tensord_recv_ready(cs[k], &ready, &err), 0);
            assert_true(ready <= tensord_pending(cs[k]));
            for (; ready > 0; ready--, left--, taken++) {
                struct tensord_reply r;
                assert_int_equal(tensord_recv(cs[k], &r, &err), 0);
                assert_int_equal(r.status, TENSORD_OK);
            }
        }
    }
    assert_int_equal(taken, CONNS * (2 * OPS) + 2);
    for (int k = 0; k < CONNS; k++) {
        for (int i = 0; i < OPS; i++) {
            for (int j = 0; j < 4; j++) {
                assert_true(got[k][i][j] == 2.0f * (float)(j + 1));
            }
        }
        tensord_disconnect(cs[k]);
    }
    for (int i = 0; i < BIG; i++) {
        if (big[i] != 3.0f) {
            fail_msg("big[%d] = %g", i, (double)big[i]);
        }
    }
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_large_both_ways),
        cmocka_unit_test(test_blocking_refused_while_pipelined),
        cmocka_unit_test(test_buffer_too_small),
        cmocka_unit_test(test_frame_limit_checked_before_sending),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_handles_after_resume_do_not_collide),
        cmocka_unit_test(test_op_codes_and_args),
        cmocka_unit_test(test_malformed_replies_are_protocol_errors),
        cmocka_unit_test(test_recv_ready_takes_only_whole_replies),
        cmocka_unit_test(test_recv_ready_event_loop),
        cmocka_unit_test(test_recv_ready_never_waits_inside_a_large_frame),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
