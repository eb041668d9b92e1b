/* tests/fuzz/fuzz_frames.c — libFuzzer target for net's frame reader (server/net/conn.c).
**
** The reader can only be driven through a libuv stream, so this target runs a real loop: a
** td_net listens on a unix socket in a private temp dir, each input connects a plain socket to
** it, and the input's byte stream is written in chunks, the loop pumped after each one. The
** chunking, whether frames are echoed back (exercising the write queue and its high-water
** pause) and whether the callback pauses the connection come from the input's first bytes:
**
**   byte 0..3   seed of the chunk-size generator (at most 64 chunks, then the rest at once)
**   byte 4      bits 0-2: chunk-size class; bit 3: echo frames back; bit 4: pause in on_frame;
**               bit 5: small high-water mark
**   byte 5..    the stream the client sends
**
** A reference parser walks the same stream with the same limits, and every callback is checked
** against it: frames arrive whole, in order, byte for byte, within the limits; a refused header
** gives exactly one on_frame_error and no frame after it; echoed bytes come back in order; each
** release runs once; on_close runs once; and every byte net allocated is returned.
*/
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/net.h"

#define MAX_META 4096
#define MAX_FRAME (1u << 20)
#define MAX_EXPECT 4096
#define MAX_CHUNKS 64

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_frames: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct expect_frame {
    size_t meta_off, meta_len;
    size_t data_off, data_len;
};

struct state {
    /* the input */
    const uint8_t *stream;
    size_t len;
    struct expect_frame frames[MAX_EXPECT];
    int nframes;         /* complete frames the reference parser found */
    bool error_expected; /* a refused header follows the last complete frame */
    bool established;    /* td_conn_established called: at open (flag 64) or after frame 1,
                           ** as the daemon does after a Hello; before it, no data section */
    bool truncated;      /* the stream ends inside a frame */
    bool echo, pause_in_frame;

    /* what happened */
    struct td_conn *conn; /* NULL before on_open and after on_close */
    int opens, closes, errors, delivered;
    int paused; /* td_conn_pause calls not yet resumed */
    int64_t releases_pending;
    uint8_t *echo_expect; /* concatenation of delivered frames' meta + data */
    size_t echo_len, echo_cap, echo_got;
    bool echo_broken; /* the echo buffer could not grow: stop checking echoes */
};

static struct state st;
static uv_loop_t loop;
static struct td_net net;
static char sock_path[128];
static int64_t base_live;
static char sock_dir[64];

static void remove_sock_dir(void)
{
    unlink(sock_path + 5);
    rmdir(sock_dir);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* The reference: the same walk as the reader, written the obvious way. */
static void reference_parse(void)
{
    size_t at = 0;
    st.nframes = 0;
    st.error_expected = false;
    st.truncated = false;
    while (at < st.len) {
        if (st.len - at < TD_FRAME_HEADER_BYTES) {
            st.truncated = true;
            return;
        }
        uint64_t ml = be32(st.stream + at), dl = be64(st.stream + at + 4);
        if (ml > MAX_META || dl > MAX_FRAME || ml + dl > MAX_FRAME) {
            st.error_expected = true;
            return;
        }
        /* Before the handshake a frame may not carry data (nor more protobuf than
        ** TD_NET_PREAUTH_MAX_META, which MAX_META is already below). */
        if (!st.established && st.nframes == 0 && dl > 0) {
            st.error_expected = true;
            return;
        }
        at += TD_FRAME_HEADER_BYTES;
        if (st.len - at < ml + dl || st.nframes == MAX_EXPECT) {
            st.truncated = true;
            return;
        }
        st.frames[st.nframes++] = (struct expect_frame){at, (size_t)ml, at + (size_t)ml,
                                                        (size_t)dl};
        at += (size_t)(ml + dl);
    }
}

static void release_free(void *arg)
{
    st.releases_pending--;
    CHECK(st.releases_pending >= 0);
    td_free(arg);
}

static void echo_append(const uint8_t *p, size_t n)
{
    if (st.echo_broken || n == 0) {
        return;
    }
    if (st.echo_len + n > st.echo_cap) {
        size_t cap = st.echo_cap ? st.echo_cap * 2 : 4096;
        while (cap < st.echo_len + n) {
            cap *= 2;
        }
        uint8_t *g = realloc(st.echo_expect, cap);
        CHECK(g != NULL);
        st.echo_expect = g;
        st.echo_cap = cap;
    }
    memcpy(st.echo_expect + st.echo_len, p, n);
    st.echo_len += n;
}

static void *on_open(struct td_conn *c, void *user)
{
    (void)user;
    CHECK(st.conn == NULL);
    st.conn = c;
    st.opens++;
    if (st.established) {
        td_conn_established(c);
    }
    return &st;
}

static void on_frame(struct td_conn *c, void *conn_user, const uint8_t *meta, size_t meta_len,
                     void *data, size_t data_len)
{
    CHECK(conn_user == &st && c == st.conn);
    CHECK(st.errors == 0);
    CHECK(st.delivered < st.nframes);
    const struct expect_frame *f = &st.frames[st.delivered++];
    if (!st.established) {
        td_conn_established(c); /* the first frame was the handshake */
        st.established = true;
    }
    /* Whole, within the limits, and the very bytes that were sent. */
    CHECK(meta_len <= MAX_META && meta_len + data_len <= MAX_FRAME);
    CHECK(meta_len == f->meta_len && data_len == f->data_len);
    CHECK((data == NULL) == (data_len == 0));
    CHECK(meta_len == 0 || memcmp(meta, st.stream + f->meta_off, meta_len) == 0);
    CHECK(data_len == 0 || memcmp(data, st.stream + f->data_off, data_len) == 0);
    if (st.echo) {
        struct td_out parts[2];
        int n = 0;
        if (meta_len > 0) {
            uint8_t *m = td_malloc(meta_len);
            CHECK(m != NULL);
            memcpy(m, meta, meta_len);
            parts[n++] = (struct td_out){m, meta_len, release_free, m};
            st.releases_pending++;
        }
        if (data_len > 0) {
            parts[n++] = (struct td_out){data, data_len, release_free, data};
            st.releases_pending++;
            data = NULL;
        }
        echo_append(meta, meta_len);
        echo_append(st.stream + f->data_off, data_len);
        if (n > 0) {
            td_conn_send(c, parts, n);
        }
    }
    td_free(data);
    if (st.pause_in_frame && (st.delivered & 1) != 0) {
        td_conn_pause(c);
        st.paused++;
    }
}

static void on_frame_error(struct td_conn *c, void *conn_user, int code, const char *msg)
{
    CHECK(conn_user == &st && c == st.conn);
    CHECK(code == TD_ELIMIT);
    CHECK(msg != NULL);
    CHECK(st.error_expected);
    CHECK(st.delivered == st.nframes);
    st.errors++;
    CHECK(st.errors == 1);
}

static void on_close(struct td_conn *c, void *conn_user)
{
    CHECK(conn_user == &st && c == st.conn);
    st.closes++;
    st.conn = NULL;
}

/* Reads whatever the server sent back, checking it against the echo. */
static bool client_drain(int fd)
{
    bool got = false;
    uint8_t buf[65536];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r <= 0) {
            break;
        }
        got = true;
        CHECK(st.echo);
        if (!st.echo_broken) {
            CHECK(st.echo_got + (size_t)r <= st.echo_len);
            CHECK(memcmp(buf, st.echo_expect + st.echo_got, (size_t)r) == 0);
        }
        st.echo_got += (size_t)r;
    }
    return got;
}

static int outq(int fd)
{
    int n = 0;
    if (ioctl(fd, SIOCOUTQ, &n) != 0) {
        return -1;
    }
    return n;
}

/* Runs the loop until the server has read everything sent (`settle` false), or until nothing
** moves any more: the server read what was sent, answered, and the callbacks settled. Resumes
** connections the callback paused once things are quiet. */
static void pump(int fd, bool settle)
{
    int quiet = 0;
    for (int i = 0; i < 10000 && quiet < 3; i++) {
        int before_q = outq(fd);
        int before_d = st.delivered;
        int before_c = st.closes;
        uv_run(&loop, UV_RUN_NOWAIT);
        bool moved = client_drain(fd);
        int q = outq(fd);
        if (!settle && q == 0 && st.paused == 0) {
            return;
        }
        moved = moved || q != before_q || st.delivered != before_d || st.closes != before_c;
        if (moved) {
            quiet = 0;
            continue;
        }
        quiet++;
        if (st.paused > 0 && st.conn != NULL) {
            st.paused--;
            td_conn_resume(st.conn);
            quiet = 0;
        }
    }
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    td_log_min_level = TD_LOG_OFF;
    snprintf(sock_dir, sizeof sock_dir, "/tmp/td_fuzz_frames.XXXXXX");
    CHECK(mkdtemp(sock_dir) != NULL);
    atexit(remove_sock_dir);
    snprintf(sock_path, sizeof sock_path, "unix:%s/s", sock_dir);
    CHECK(uv_loop_init(&loop) == 0);
    struct td_net_config cfg = {
        .max_frame_bytes = MAX_FRAME,
        .max_meta_bytes = MAX_META,
        .write_high_water = 1 << 20,
        .idle_timeout_ms = 60000,
    };
    struct td_net_callbacks cb = {
        .on_open = on_open,
        .on_frame = on_frame,
        .on_frame_error = on_frame_error,
        .on_close = on_close,
    };
    td_net_init(&net, &loop, &cfg, &cb);
    char bound[160];
    struct td_err err = {0};
    CHECK(td_net_listen(&net, sock_path, bound, sizeof bound, &err) == 0);
    base_live = td_alloc_live_bytes();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) {
        return 0;
    }
    static const size_t chunk_class[8] = {1, 3, 12, 13, 100, 4096, 70000, SIZE_MAX};
    uint32_t seed = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    seed = seed != 0 ? seed : 1;
    uint8_t flags = data[4];
    size_t max_chunk = chunk_class[flags & 7];

    memset(&st, 0, sizeof st);
    st.stream = data + 5;
    st.len = size - 5;
    st.echo = (flags & 8) != 0;
    st.pause_in_frame = (flags & 16) != 0;
    net.cfg.write_high_water = (flags & 32) != 0 ? 64 : 1 << 20;
    st.established = (flags & 64) != 0;
    reference_parse();

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path + 5);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    for (int i = 0; i < 1000 && st.opens == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK(st.opens == 1);

    /* At most MAX_CHUNKS splits, then the rest in one piece: the split points are what matter,
    ** and a write per byte of a long stream would make each run slow. */
    size_t at = 0;
    for (int k = 0; at < st.len && st.conn != NULL; k++) {
        size_t n = max_chunk == SIZE_MAX || k >= MAX_CHUNKS ? st.len - at
                                                            : 1 + xorshift(&seed) % max_chunk;
        n = n < st.len - at ? n : st.len - at;
        size_t sent = 0;
        for (int tries = 0; sent < n && tries < 100 && st.conn != NULL; tries++) {
            ssize_t w = send(fd, st.stream + at + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                sent += (size_t)w;
            } else {
                CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE ||
                                errno == ECONNRESET));
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    break;
                }
            }
            pump(fd, false);
        }
        if (sent < n) {
            break; /* the server stopped reading (a refused frame): the rest goes nowhere */
        }
        at += n;
    }
    pump(fd, true);
    while (st.paused > 0 && st.conn != NULL) {
        st.paused--;
        td_conn_resume(st.conn);
        pump(fd, true);
    }

    /* Everything sent was seen, unless the stream was cut short by a refused frame. */
    if (at == st.len && st.conn != NULL) {
        CHECK(st.delivered == st.nframes);
        CHECK(st.errors == (st.error_expected ? 1 : 0));
        if (st.echo && !st.error_expected) {
            CHECK(st.echo_got == st.echo_len);
        }
    }
    CHECK(st.delivered <= st.nframes);
    CHECK(st.errors <= 1);

    close(fd);
    for (int i = 0; i < 10000 && (st.closes == 0 || td_alloc_live_bytes() != base_live); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    CHECK(st.closes == 1);
    CHECK(st.releases_pending == 0);
    if (getenv("FUZZ_DEBUG") != NULL) {
        fprintf(stderr, "frames: %d of %d delivered, errors %d, echoed %zu of %zu, truncated %d\n",
                st.delivered, st.nframes, st.errors, st.echo_got, st.echo_len, st.truncated);
    }
    CHECK(td_alloc_live_bytes() == base_live);
    CHECK(net.nconns == 0);
    free(st.echo_expect);
    return 0;
}
