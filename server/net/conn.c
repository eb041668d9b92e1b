/* server/net/conn.c — listeners, connections, the frame reader and the write queue.
**
** The happy path: a listener accepts a stream and makes a td_conn; reads land in the
** connection's read buffer (or, for the bulk of a large data section, straight in the frame's
** data buffer); the reader walks header -> protobuf section -> data section and hands each
** complete frame to on_frame(). Every frame found in one read is delivered before anything is
** written; replies queued meanwhile sit in `out` until the loop's check phase, when one write
** sends them all: uv_try_write when nothing is in flight (the usual case: the parts are released
** at once, no write request is made), and uv_write for whatever the kernel did not take, whose
** parts are released when that write completes. Replies queued by those releases, or by the
** frames a connection resumed from the high-water mark runs, go out before the flush or the
** write callback returns: the check handle alone does not keep poll from blocking, so a reply
** left for the next check phase would wait for whatever next wakes the loop.
**
** The ways it fails: a header announcing more than max_meta_bytes / max_frame_bytes is refused
** before anything is allocated (on_frame_error, then close after the error is written), and so
** is, before td_conn_established, any frame over TD_NET_PREAUTH_MAX_META or with a data section:
** an unauthenticated peer holds a small read buffer and at most one small protobuf section. A
** data section is allocated through on_data_alloc (the layer above charges it), which may say
** "later" (the connection pauses until td_conn_resume) or "no" (the section is read and
** discarded, and the frame delivered without it, so the error reply keeps its place); a read
** error or EOF closes at once; a write error closes; a peer that stops reading makes the queue
** pass the high-water mark, and reading pauses until it drains, so the server never buffers
** without limit. A connection is freed only after libuv has closed both its handles.
*/
#include "net/net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"

#define READ_BUF_BYTES (64 * 1024)
#define PREAUTH_READ_BUF_BYTES 4096 /* the read buffer until td_conn_established */
#define DIRECT_READ_MIN (16 * 1024) /* read straight into the data buffer above this */
#define LINGER_MS 2000              /* how long a closing connection waits for the peer's EOF */

/* A frame's header, then (when it announces a data section) the data buffer's allocation, which
** the layer above may put off; then the protobuf section; then the data section. */
enum reader_state { READ_HEADER, READ_ALLOC, READ_META, READ_DATA };

struct td_listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    struct td_net *net;
    struct td_listener *next;
    bool is_unix;
    char path[108]; /* unix socket path, unlinked on close */
};

struct write_req {
    uv_write_t req;
    struct td_conn *conn;
    struct td_out *parts; /* owned array */
    int nparts;
    size_t bytes;
};

struct td_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_check_t flush;  /* runs the coalesced write once per loop iteration */
    uv_timer_t stall;  /* fires when a started frame stops arriving (slowloris) */
    uv_timer_t wstall; /* fires when written replies stop draining */
    struct td_net *net;
    struct td_conn *prev, *next; /* in net->conns */
    uint64_t id;
    uint64_t read_seq; /* reads that brought bytes (td_conn_read_seq) */
    void *user;        /* from on_open */
    char peer[64];

    /* reader */
    enum reader_state state;
    uint8_t *rbuf;     /* rcap bytes */
    size_t rcap;       /* PREAUTH_READ_BUF_BYTES, READ_BUF_BYTES once established */
    size_t rpos, rlen; /* unprocessed bytes are rbuf[rpos..rlen) */
    uint8_t hdr[TD_FRAME_HEADER_BYTES];
    size_t hdr_got;
    uint32_t meta_len;
    uint8_t *meta; /* assembled protobuf section when it spans reads */
    size_t meta_got;
    uint64_t data_len, data_got;
    uint8_t *data; /* td_malloc'd data section being filled; NULL while the
                                    ** section is discarded (on_data_alloc refused it) */
    bool direct;   /* the last alloc_cb handed out data + data_got */

    /* writer */
    struct td_out *out; /* queued, not yet written */
    int nout, capout;
    size_t queued_bytes; /* queued + in flight */
    int writes_in_flight;

    int pause_count; /* td_conn_pause nesting, plus one while on_data_alloc's
                                    ** "later" waits for its td_conn_resume */
    bool paused_for_writes;
    bool flush_due; /* its flush check is started and counted in net->flushes_due */
    bool reading;
    bool closing; /* td_conn_close ran */
    bool close_after_flush;
    bool lingering; /* write side shut; reading and discarding until EOF */
    uv_shutdown_t shut;
    bool processing;       /* conn_process is on the stack: do not re-enter */
    bool established;      /* td_conn_established: past the handshake */
    uint64_t deadline_ms;  /* the frame (or handshake) being read must end by then; 0:
                                    ** no clock running */
    size_t linger_unacked; /* lingering: unacknowledged bytes at the last look */
    uint64_t submitted;    /* reply bytes handed to libuv, ever */
    uint64_t drained_seen; /* of those, how many had left libuv's queue at the last
                                    ** look of the write clock */
    uint64_t wprogress_ms; /* loop time the write clock last saw replies drain */
    int open_handles;      /* stream + check + two timers; freed at 0 */
};

/* ---- helpers ---- */

static void release_parts(struct td_out *parts, int n)
{
    for (int i = 0; i < n; i++) {
        if (parts[i].release != NULL) {
            parts[i].release(parts[i].arg);
        }
    }
}

static bool conn_paused(const struct td_conn *c)
{
    return c->pause_count > 0 || c->paused_for_writes;
}

static void conn_update_reading(struct td_conn *c);
static void conn_process(struct td_conn *c);
static void conn_watch_stall(struct td_conn *c, size_t nread);
static void conn_watch_writes(struct td_conn *c);
static void conn_after_write(struct td_conn *c);
static void conn_on_flush(uv_check_t *chk);

/* Replies are written in the check phase, after the loop's poll. Replies queued before the poll
** (the prepare phase runs the sessions whose turn was deferred, td_store_turn; a write callback
** may resume a paused connection) would wait there until the poll returns, and with no I/O due
** it blocks until the next timer (seconds). So while any connection's flush is due, the net's
** idle handle is active: libuv then polls with a zero timeout, and the check phase comes at
** once. The idle callback does nothing; its being active is the point. */
static void on_flush_soon(uv_idle_t *h)
{
    (void)h;
}

static void flush_due(struct td_conn *c)
{
    if (!c->flush_due) {
        c->flush_due = true;
        if (c->net->flushes_due++ == 0) {
            uv_idle_start(&c->net->flush_soon, on_flush_soon);
        }
    }
    uv_check_start(&c->flush, conn_on_flush);
}

static void flush_done(struct td_conn *c)
{
    if (c->flush_due) {
        c->flush_due = false;
        if (--c->net->flushes_due == 0) {
            uv_idle_stop(&c->net->flush_soon);
        }
    }
}

/* ---- closing ---- */

static void conn_free_if_done(struct td_conn *c)
{
    if (c->open_handles > 0) {
        return;
    }
    release_parts(c->out, c->nout);
    td_free(c->out);
    td_free(c->rbuf);
    td_free(c->meta);
    td_free(c->data);
    td_free(c);
}

static void conn_on_handle_closed(uv_handle_t *h)
{
    struct td_conn *c = h->data;
    c->open_handles--;
    conn_free_if_done(c);
}

void td_conn_close(struct td_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    struct td_net *n = c->net;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        n->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    n->nconns--;
    td_log(TD_LOG_DEBUG, "conn_close", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
    if (n->cb.on_close != NULL && c->user != NULL) {
        n->cb.on_close(c, c->user);
    }
    /* Queued, unwritten bytes are dropped now; in-flight writes are cancelled by uv_close and
    ** release their parts in their callbacks. */
    release_parts(c->out, c->nout);
    c->nout = 0;
    uv_close(&c->h.handle, conn_on_handle_closed);
    flush_done(c);
    uv_close((uv_handle_t *)&c->flush, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->stall, conn_on_handle_closed);
    uv_close((uv_handle_t *)&c->wstall, conn_on_handle_closed);
}

/* A graceful close, once every reply byte is written: shut the write side (the peer reads our
** last reply, then EOF) and discard what the peer still sends until its EOF or LINGER_MS.
** Closing at once could make the kernel answer the peer's unread bytes with a reset, and a
** reset can destroy replies the peer has not read yet. */
static void conn_on_linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct td_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)c->rbuf, (unsigned int)c->rcap);
}

static void conn_on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0) {
        td_conn_close(s->data);
    }
}

/* Bytes the kernel has sent (or holds) that the peer has not acknowledged; 0 if unknown. */
static size_t conn_unacked(struct td_conn *c)
{
    uv_os_fd_t fd;
    int n = 0;
    if (uv_fileno(&c->h.handle, &fd) != 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0) {
        return 0;
    }
    return (size_t)n;
}

/* LINGER_MS without the peer's EOF: close — unless our last replies are still on their way
** and the peer keeps taking them (a slow reader that also keeps writing would otherwise get a
** reset that destroys replies it has not read). No progress in LINGER_MS closes all the same. */
static void conn_on_linger_timeout(uv_timer_t *t)
{
    struct td_conn *c = t->data;
    size_t left = conn_unacked(c);
    if (left > 0 && left < c->linger_unacked) {
        c->linger_unacked = left;
        uv_timer_start(&c->stall, conn_on_linger_timeout, LINGER_MS, 0);
        return;
    }
    td_conn_close(c);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status)
{
    struct td_conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status != 0 ||
        uv_read_start(&c->h.stream, conn_on_linger_alloc, conn_on_linger_read) != 0) {
        td_conn_close(c);
    }
}

static void conn_linger(struct td_conn *c)
{
    if (c->lingering || c->closing) {
        return;
    }
    c->lingering = true;
    if (c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
    uv_timer_stop(&c->stall);
    c->linger_unacked = conn_unacked(c);
    uv_timer_start(&c->stall, conn_on_linger_timeout, LINGER_MS, 0);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, &c->h.stream, conn_on_shutdown) != 0) {
        td_conn_close(c);
    }
}

void td_conn_close_after_flush(struct td_conn *c)
{
    if (c->closing) {
        return;
    }
    c->close_after_flush = true;
    c->pause_count++; /* nothing more is read from a connection that is going away */
    conn_update_reading(c);
    conn_watch_stall(c, 0);
    if (c->nout == 0 && c->writes_in_flight == 0) {
        conn_linger(c);
    }
}

/* ---- writing ---- */

static void conn_on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct td_conn *c = w->conn;
    release_parts(w->parts, w->nparts);
    td_free(w->parts);
    c->queued_bytes -= w->bytes;
    c->writes_in_flight--;
    td_free(w);
    if (c->closing) {
        return;
    }
    if (status < 0) {
        td_log(TD_LOG_INFO, "write_failed", "conn=%llu err=%s", (unsigned long long)c->id,
               uv_err_name(status));
        td_conn_close(c);
        return;
    }
    conn_after_write(c);
    /* Replies queued just now (a resumed connection ran its buffered frames, a release let a
    ** held session run) go out now: a write that completed at once calls back in the loop's
    ** pending phase, before poll, and the check handle does not keep poll from blocking, so
    ** with nothing else to wake the loop they would wait for its next event. */
    if (!c->closing && c->nout > 0 && c->writes_in_flight == 0) {
        conn_on_flush(&c->flush);
    }
}

/* After a write finished (conn_on_write) or went out at once (conn_try_write): reading resumes
** once the queue is down to half the high-water mark, and a close waits for the last write. */
static void conn_after_write(struct td_conn *c)
{
    if (c->paused_for_writes && c->queued_bytes <= c->net->cfg.write_high_water / 2) {
        c->paused_for_writes = false;
        conn_update_reading(c);
        conn_process(c); /* frames already buffered before the pause */
        conn_watch_stall(c, 0);
    }
    if (c->close_after_flush && c->nout == 0 && c->writes_in_flight == 0) {
        conn_linger(c);
    }
}

/* With no write in flight, the kernel usually takes a batch of replies at once: uv_try_write
** sends it without a write request (no POLLOUT registration, no callback on a later turn). The
** parts it took are released here; a part it took only partly stays first in `out`, advanced,
** for uv_write. Returns whether nothing is left to write (or c closed) after the releases and
** conn_after_write: those may queue replies (a release unholds a session, a resumed
** connection runs its buffered frames), which the caller must write now — in the check phase,
** a reply queued for the next turn waits for whatever next wakes the loop. */
#define TRY_WRITE_STACK_PARTS 64 /* a larger batch takes its scratch arrays from the heap */
static bool conn_try_write(struct td_conn *c)
{
    if (c->writes_in_flight != 0) {
        return false;
    }
    uv_buf_t stack_bufs[TRY_WRITE_STACK_PARTS];
    struct td_out stack_written[TRY_WRITE_STACK_PARTS];
    uv_buf_t *bufs = stack_bufs;
    struct td_out *written = stack_written;
    if (c->nout > TRY_WRITE_STACK_PARTS) {
        bufs = td_malloc(sizeof *bufs * (size_t)c->nout);
        written = td_malloc(sizeof *written * (size_t)c->nout);
        if (bufs == NULL || written == NULL) {
            td_free(bufs);
            td_free(written);
            return false; /* uv_write's path says what is wrong */
        }
    }
    for (int i = 0; i < c->nout; i++) {
        bufs[i] = uv_buf_init((char *)c->out[i].base, (unsigned int)c->out[i].len);
    }
    int n = uv_try_write(&c->h.stream, bufs, (unsigned int)c->nout);
    bool all = false;
    if (n >= 0) { /* else EAGAIN, or an error uv_write reports in its callback as before */
        size_t left = (size_t)n;
        int k = 0;
        while (k < c->nout && c->out[k].len <= left) {
            left -= c->out[k].len;
            k++;
        }
        /* Written parts leave `out` before their releases run: a release may queue more. */
        memcpy(written, c->out, sizeof *written * (size_t)k);
        memmove(c->out, c->out + k, sizeof *c->out * (size_t)(c->nout - k));
        c->nout -= k;
        if (c->nout > 0) {
            c->out[0].base = (const uint8_t *)c->out[0].base + left;
            c->out[0].len -= left;
        }
        c->queued_bytes -= (size_t)n;
        c->submitted += (uint64_t)n;
        all = c->nout == 0;
        release_parts(written, k);
        if (all && !c->closing) {
            conn_after_write(c);
        }
    }
    if (bufs != stack_bufs) {
        td_free(bufs);
        td_free(written);
    }
    return c->closing || (all && c->nout == 0);
}

/* The check phase: everything queued during this loop iteration goes out in one write. */
static void conn_on_flush(uv_check_t *chk)
{
    struct td_conn *c = chk->data;
    uv_check_stop(chk);
    flush_done(c);
    if (c->closing || c->nout == 0) {
        return;
    }
    if (conn_try_write(c) || c->closing || c->nout == 0) {
        return;
    }
    struct write_req *w = td_malloc(sizeof *w);
    uv_buf_t *bufs = td_malloc(sizeof *bufs * (size_t)c->nout);
    if (w == NULL || bufs == NULL) {
        td_free(w);
        td_free(bufs);
        td_log(TD_LOG_WARN, "write_oom", "conn=%llu", (unsigned long long)c->id);
        td_conn_close(c);
        return;
    }
    w->conn = c;
    w->parts = c->out;
    w->nparts = c->nout;
    w->bytes = 0;
    for (int i = 0; i < c->nout; i++) {
        bufs[i] = uv_buf_init((char *)c->out[i].base, (unsigned int)c->out[i].len);
        w->bytes += c->out[i].len;
    }
    c->out = NULL;
    c->nout = c->capout = 0;
    int rc = uv_write(&w->req, &c->h.stream, bufs, (unsigned int)w->nparts, conn_on_write);
    td_free(bufs); /* libuv copied the array; the bytes stay until conn_on_write */
    if (rc < 0) {
        release_parts(w->parts, w->nparts);
        td_free(w->parts);
        c->queued_bytes -= w->bytes;
        td_free(w);
        td_conn_close(c);
        return;
    }
    c->writes_in_flight++;
    c->submitted += w->bytes;
    conn_watch_writes(c);
}

void td_conn_send(struct td_conn *c, const struct td_out *parts, int nparts)
{
    if (c->closing) {
        release_parts((struct td_out *)parts, nparts);
        return;
    }
    if (c->nout + nparts > c->capout) {
        int ncap = c->capout ? c->capout * 2 : 16;
        while (ncap < c->nout + nparts) {
            ncap *= 2;
        }
        struct td_out *grown = td_realloc(c->out, sizeof *grown * (size_t)ncap);
        if (grown == NULL) {
            release_parts((struct td_out *)parts, nparts);
            td_conn_close(c);
            return;
        }
        c->out = grown;
        c->capout = ncap;
    }
    for (int i = 0; i < nparts; i++) {
        /* uv_buf_t lengths are unsigned int: split larger parts (the release goes on the last). */
        const uint8_t *base = parts[i].base;
        size_t len = parts[i].len;
        c->queued_bytes += len;
        while (len > (size_t)1 << 30) {
            if (c->nout + 1 >= c->capout) {
                struct td_out *grown = td_realloc(c->out, sizeof *grown * (size_t)c->capout * 2);
                if (grown == NULL) {
                    release_parts((struct td_out *)parts + i, nparts - i);
                    td_conn_close(c);
                    return;
                }
                c->out = grown;
                c->capout *= 2;
            }
            c->out[c->nout++] = (struct td_out){.base = base, .len = (size_t)1 << 30};
            base += (size_t)1 << 30;
            len -= (size_t)1 << 30;
        }
        c->out[c->nout++] = (struct td_out){base, len, parts[i].release, parts[i].arg};
    }
    flush_due(c);
    if (!c->paused_for_writes && c->queued_bytes > c->net->cfg.write_high_water) {
        c->paused_for_writes = true;
        conn_update_reading(c);
        conn_watch_stall(c, 0);
    }
}

/* ---- reading ---- */

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void conn_frame_error(struct td_conn *c, int code, const char *msg)
{
    td_log(TD_LOG_WARN, "bad_frame", "conn=%llu peer=%s reason=\"%s\"", (unsigned long long)c->id,
           c->peer, msg);
    c->rpos = c->rlen = 0;
    if (c->net->cb.on_frame_error != NULL && c->user != NULL) {
        c->net->cb.on_frame_error(c, c->user, code, msg);
    }
    td_conn_close_after_flush(c);
}

/* Parses the header in c->hdr; returns false when the frame was refused. */
static bool conn_start_frame(struct td_conn *c)
{
    const struct td_net_config *cfg = &c->net->cfg;
    c->meta_len = get_be32(c->hdr);
    c->data_len = get_be64(c->hdr + 4);
    c->meta_got = 0;
    c->data_got = 0;
    char msg[160];
    if (c->meta_len > cfg->max_meta_bytes) {
        snprintf(msg, sizeof msg, "frame protobuf section of %u bytes exceeds the maximum of %u",
                 c->meta_len, cfg->max_meta_bytes);
        conn_frame_error(c, TD_ELIMIT, msg);
        return false;
    }
    /* meta_len is at most 2^32, so the sum overflows only when data_len alone is over the limit. */
    if (c->data_len > cfg->max_frame_bytes || c->meta_len + c->data_len > cfg->max_frame_bytes) {
        snprintf(msg, sizeof msg, "frame of %u + %llu bytes exceeds max_frame_bytes %llu",
                 c->meta_len, (unsigned long long)c->data_len,
                 (unsigned long long)cfg->max_frame_bytes);
        conn_frame_error(c, TD_ELIMIT, msg);
        return false;
    }
    /* Until the handshake, the peer is nobody: it may make the server hold one small protobuf
    ** section and nothing else (finding: two unauthenticated connections announcing 256 MiB data
    ** sections each and trickling them in held half a gigabyte). */
    if (!c->established && c->meta_len > TD_NET_PREAUTH_MAX_META) {
        snprintf(msg, sizeof msg,
                 "frame protobuf section of %u bytes exceeds the maximum of %u "
                 "before the handshake (preauth_max_meta)",
                 c->meta_len, TD_NET_PREAUTH_MAX_META);
        conn_frame_error(c, TD_ELIMIT, msg);
        return false;
    }
    if (!c->established && c->data_len > 0) {
        snprintf(msg, sizeof msg,
                 "frame data section of %llu bytes before the handshake: the "
                 "maximum is 0 until it completes (preauth_max_data)",
                 (unsigned long long)c->data_len);
        conn_frame_error(c, TD_ELIMIT, msg);
        return false;
    }
    c->state = c->data_len > 0 ? READ_ALLOC : c->meta_len > 0 ? READ_META : READ_DATA;
    return true;
}

/* READ_ALLOC: the data section's buffer, from on_data_alloc (or td_malloc without one). Returns
** false when the reader must stop here: paused until the caller's td_conn_resume ("later"), or
** refused for want of memory (the connection is closing). */
static bool conn_alloc_data(struct td_conn *c)
{
    const struct td_net_callbacks *cb = &c->net->cb;
    void *buf = NULL;
    int rc = 0;
    if (cb->on_data_alloc != NULL) {
        rc = cb->on_data_alloc(c, c->user, (size_t)c->data_len, &buf);
        if (rc == TD_NET_DATA_LATER) {
            /* A pause the caller owns: its td_conn_resume lifts it, and the reader asks again.
            ** The read clock stops while paused (conn_watch_stall), so the wait is not taken
            ** for a stalled peer. */
            c->pause_count++;
            conn_update_reading(c);
            return false;
        }
        if (rc == 0 && buf == NULL) {
            rc = TD_ENOMEM; /* a callback that said yes without a buffer: discard */
        }
    } else {
        buf = td_malloc((size_t)c->data_len);
        if (buf == NULL) {
            conn_frame_error(c, TD_ENOMEM, "out of memory for the frame's data section");
            return false;
        }
    }
    /* Refused (rc != 0): the section is read and dropped as it arrives, and the frame is
    ** delivered with data NULL, so the reply to it keeps its place in the stream. */
    c->data = rc == 0 ? buf : NULL;
    c->state = c->meta_len > 0 ? READ_META : READ_DATA;
    return true;
}

static void conn_deliver(struct td_conn *c, const uint8_t *meta)
{
    void *data = c->data;
    c->data = NULL;
    c->state = READ_HEADER;
    c->hdr_got = 0;
    c->net->cb.on_frame(c, c->user, meta, c->meta_len, data, (size_t)c->data_len);
}

/* Walks the buffered bytes through the reader, delivering complete frames, until the buffer is
** empty, the connection pauses, or it closes. */
static void conn_process(struct td_conn *c)
{
    /* on_frame may resume a paused connection, which calls back in here; the outer call is
    ** already walking the buffer, so the inner one has nothing to do. */
    if (c->processing) {
        return;
    }
    c->processing = true;
    while (!c->closing && !conn_paused(c)) {
        if (c->state == READ_ALLOC) {
            if (!conn_alloc_data(c)) {
                break;
            }
            continue;
        }
        if (c->state == READ_DATA && c->data_got == c->data_len) {
            if (c->meta_len > 0 && c->meta == NULL) {
                /* The protobuf section is still in rbuf, just before rpos: no copy needed. */
                conn_deliver(c, c->rbuf + c->rpos - c->meta_len - c->data_len);
            } else {
                uint8_t *meta = c->meta;
                c->meta = NULL;
                conn_deliver(c, meta);
                td_free(meta);
            }
            continue;
        }
        size_t avail = c->rlen - c->rpos;
        if (avail == 0) {
            break;
        }
        const uint8_t *p = c->rbuf + c->rpos;
        if (c->state == READ_HEADER) {
            size_t take = TD_FRAME_HEADER_BYTES - c->hdr_got;
            take = take < avail ? take : avail;
            memcpy(c->hdr + c->hdr_got, p, take);
            c->hdr_got += take;
            c->rpos += take;
            if (c->hdr_got == TD_FRAME_HEADER_BYTES && !conn_start_frame(c)) {
                break;
            }
        } else if (c->state == READ_META) {
            size_t need = c->meta_len - c->meta_got;
            if (c->meta_got == 0 && avail >= need + c->data_len && c->data_len == 0) {
                /* Whole frame (no data) is in rbuf: deliver in place. */
                c->rpos += need;
                c->meta_got = c->meta_len;
                c->state = READ_DATA;
                continue;
            }
            if (c->meta == NULL) {
                c->meta = td_malloc(c->meta_len);
                if (c->meta == NULL) {
                    conn_frame_error(c, TD_ENOMEM, "out of memory for the frame");
                    break;
                }
            }
            size_t take = need < avail ? need : avail;
            memcpy(c->meta + c->meta_got, p, take);
            c->meta_got += take;
            c->rpos += take;
            if (c->meta_got == c->meta_len) {
                c->state = READ_DATA;
            }
        } else {
            uint64_t need = c->data_len - c->data_got;
            size_t take = need < avail ? (size_t)need : avail;
            if (c->data != NULL) {
                memcpy(c->data + c->data_got, p, take);
            }
            c->data_got += take;
            c->rpos += take;
        }
    }
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
    c->processing = false;
}

static void conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct td_conn *c = h->data;
    (void)hint;
    /* The bulk of a large data section goes straight where it belongs. */
    if (c->state == READ_DATA && c->rpos == c->rlen && c->data != NULL &&
        c->data_len - c->data_got >= DIRECT_READ_MIN) {
        uint64_t left = c->data_len - c->data_got;
        c->direct = true;
        *buf = uv_buf_init((char *)c->data + c->data_got,
                           (unsigned int)(left > (1u << 30) ? (1u << 30) : left));
        return;
    }
    c->direct = false;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->established && c->rcap < READ_BUF_BYTES) {
        /* Past the handshake: the full-size buffer. Grown here, never while conn_process walks
        ** the buffer (a frame's protobuf section may be delivered from inside it). Without
        ** memory the small one serves on. */
        uint8_t *grown = td_realloc(c->rbuf, READ_BUF_BYTES);
        if (grown != NULL) {
            c->rbuf = grown;
            c->rcap = READ_BUF_BYTES;
        }
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned int)(c->rcap - c->rlen));
}

static void conn_on_stall(uv_timer_t *t)
{
    struct td_conn *c = t->data;
    td_log(TD_LOG_INFO, "conn_stalled", "conn=%llu peer=%s timeout_ms=%llu reason=%s",
           (unsigned long long)c->id, c->peer, (unsigned long long)c->net->cfg.idle_timeout_ms,
           !c->established && c->state == READ_HEADER && c->hdr_got == 0 ? "no_handshake"
                                                                         : "frame_too_slow");
    td_conn_close(c);
}

/* The write clock: while replies wait in libuv's queue (the kernel's socket buffer is full),
** some of them must leave it within idle_timeout. A slow reader keeps draining and stays; a
** peer that stops reading is closed. Progress is bytes drained, so replies queued meanwhile do
** not read as a stall. Partial writes drain the queue without any callback, so the clock looks
** every idle_timeout/16 and closes at the first look that finds idle_timeout without progress:
** never before idle_timeout after the last byte drained, at most idle_timeout/8 after it
** (a one-shot timer re-armed on progress closed anywhere between idle_timeout and twice it). */
static uint64_t wclock_period_ms(const struct td_net_config *cfg)
{
    uint64_t p = cfg->idle_timeout_ms / 16;
    return p > 0 ? p : 1;
}

static void conn_on_write_stall(uv_timer_t *t)
{
    struct td_conn *c = t->data;
    size_t q = uv_stream_get_write_queue_size(&c->h.stream);
    if (q == 0) {
        uv_timer_stop(&c->wstall); /* all with the kernel; the next write arms the clock */
        return;
    }
    uint64_t now = uv_now(c->net->loop);
    uint64_t drained = c->submitted - q;
    if (drained != c->drained_seen) {
        c->drained_seen = drained;
        c->wprogress_ms = now;
        return;
    }
    if (now - c->wprogress_ms >= c->net->cfg.idle_timeout_ms) {
        td_log(TD_LOG_INFO, "conn_stalled",
               "conn=%llu peer=%s timeout_ms=%llu "
               "reason=replies_not_read queued_bytes=%zu",
               (unsigned long long)c->id, c->peer, (unsigned long long)c->net->cfg.idle_timeout_ms,
               c->queued_bytes);
        td_conn_close(c);
    }
}

static void conn_watch_writes(struct td_conn *c)
{
    if (c->closing || c->net->cfg.idle_timeout_ms == 0 || uv_is_active((uv_handle_t *)&c->wstall)) {
        return;
    }
    c->drained_seen = c->submitted - uv_stream_get_write_queue_size(&c->h.stream);
    c->wprogress_ms = uv_now(c->net->loop);
    uint64_t period = wclock_period_ms(&c->net->cfg);
    uv_timer_start(&c->wstall, conn_on_write_stall, period, period);
}

/* Slow peers may not hold a connection slot for free (slowloris). The read clock:
** - before its handshake (td_conn_established), a connection must not idle at all;
** - a frame that has started must keep arriving: silence for idle_timeout closes it, and so
**   does trickling — every byte buys 1/min_frame_rate s beyond the first idle_timeout, so a
**   frame must average min_frame_rate once that has passed.
** A connection between frames, past its handshake, may idle freely, and the clock stops while
** the server itself is not reading (paused, draining). Replies have their own clock
** (conn_watch_writes). Called after every read (nread bytes arrived) and whenever pausing
** changes. */
static void conn_watch_stall(struct td_conn *c, size_t nread)
{
    const struct td_net_config *cfg = &c->net->cfg;
    if (c->closing || c->lingering || cfg->idle_timeout_ms == 0) {
        return;
    }
    bool mid_frame = c->state != READ_HEADER || c->hdr_got > 0 || c->rpos != c->rlen;
    if (!(mid_frame || !c->established) || conn_paused(c) || c->net->draining) {
        /* idle between frames, or paused by the server's own backlog */
        uv_timer_stop(&c->stall);
        c->deadline_ms = 0;
        return;
    }
    uint64_t now = uv_now(c->net->loop);
    if (c->deadline_ms == 0) {
        c->deadline_ms = now + cfg->idle_timeout_ms;
    } else if (cfg->min_frame_rate > 0) {
        c->deadline_ms += (uint64_t)nread * 1000 / cfg->min_frame_rate;
    }
    uint64_t until = c->deadline_ms < now + cfg->idle_timeout_ms ? c->deadline_ms
                                                                 : now + cfg->idle_timeout_ms;
    uv_timer_start(&c->stall, conn_on_stall, until > now ? until - now : 0, 0);
}

void td_conn_established(struct td_conn *c)
{
    if (!c->established) {
        c->established = true;
        conn_watch_stall(c, 0);
    }
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct td_conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (nread != UV_EOF) {
            td_log(TD_LOG_INFO, "read_failed", "conn=%llu err=%s", (unsigned long long)c->id,
                   uv_err_name((int)nread));
        }
        td_conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    c->read_seq++;
    if (c->direct) {
        c->data_got += (uint64_t)nread;
    } else {
        c->rlen += (size_t)nread;
    }
    conn_process(c);
    conn_watch_stall(c, (size_t)nread);
}

static void conn_update_reading(struct td_conn *c)
{
    if (c->closing || c->lingering) {
        return;
    }
    bool want = !conn_paused(c) && !c->net->draining && c->rlen - c->rpos < c->rcap;
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, conn_on_alloc, conn_on_read) == 0) {
            c->reading = true;
        }
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

void td_conn_pause(struct td_conn *c)
{
    c->pause_count++;
    conn_update_reading(c);
    conn_watch_stall(c, 0);
}

void td_conn_resume(struct td_conn *c)
{
    if (c->pause_count > 0) {
        c->pause_count--;
    }
    conn_update_reading(c);
    conn_process(c);
    conn_update_reading(c);
    conn_watch_stall(c, 0);
}

uint64_t td_conn_read_seq(const struct td_conn *c)
{
    return c->read_seq;
}

uint64_t td_conn_id(const struct td_conn *c)
{
    return c->id;
}

const char *td_conn_peer(const struct td_conn *c)
{
    return c->peer;
}

/* ---- accepting ---- */

static void conn_describe_peer(struct td_conn *c, bool is_unix)
{
    if (is_unix) {
        snprintf(c->peer, sizeof c->peer, "unix");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof host);
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof host);
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

static void listener_on_connection(uv_stream_t *server, int status)
{
    struct td_listener *l = server->data;
    struct td_net *n = l->net;
    if (status < 0) {
        td_log(TD_LOG_WARN, "accept_failed", "err=%s", uv_err_name(status));
        return;
    }
    struct td_conn *c = td_calloc(1, sizeof *c);
    uint8_t *rbuf = td_malloc(PREAUTH_READ_BUF_BYTES); /* grown after the handshake */
    if (c == NULL || rbuf == NULL) {
        /* Accept and drop, so the backlog does not fill with a connection nobody serves. */
        td_free(c);
        td_free(rbuf);
        uv_tcp_t *tmp = td_malloc(sizeof *tmp);
        if (tmp != NULL) {
            uv_tcp_init(n->loop, tmp);
            uv_accept(server, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, (uv_close_cb)td_free);
        }
        return;
    }
    c->rbuf = rbuf;
    c->rcap = PREAUTH_READ_BUF_BYTES;
    c->net = n;
    c->id = n->next_conn_id++;
    if (l->is_unix) {
        uv_pipe_init(n->loop, &c->h.pipe, 0);
    } else {
        uv_tcp_init(n->loop, &c->h.tcp);
    }
    c->h.handle.data = c;
    uv_check_init(n->loop, &c->flush);
    c->flush.data = c;
    uv_timer_init(n->loop, &c->stall);
    c->stall.data = c;
    uv_timer_init(n->loop, &c->wstall);
    c->wstall.data = c;
    c->open_handles = 4;
    c->next = n->conns;
    if (n->conns != NULL) {
        n->conns->prev = c;
    }
    n->conns = c;
    n->nconns++;
    if (uv_accept(server, &c->h.stream) != 0) {
        td_conn_close(c);
        return;
    }
    if (!l->is_unix) {
        uv_tcp_nodelay(&c->h.tcp, 1);
    }
    conn_describe_peer(c, l->is_unix);
    c->user = n->cb.on_open != NULL ? n->cb.on_open(c, n->cb.user) : NULL;
    if (c->user == NULL) {
        td_conn_close(c);
        return;
    }
    td_log(TD_LOG_DEBUG, "conn_open", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
    conn_update_reading(c);
    conn_watch_stall(c, 0); /* the Hello clock */
}

/* ---- listeners ---- */

void td_net_init(struct td_net *n, uv_loop_t *loop, const struct td_net_config *cfg,
                 const struct td_net_callbacks *cb)
{
    memset(n, 0, sizeof *n);
    n->loop = loop;
    n->cfg = *cfg;
    n->cb = *cb;
    n->next_conn_id = 1;
    uv_idle_init(loop, &n->flush_soon);
    n->flush_soon.data = n;
}

static void listener_on_closed(uv_handle_t *h)
{
    struct td_listener *l = h->data;
    if (l->is_unix) {
        unlink(l->path);
    }
    td_free(l);
}

/* Does something accept connections on the socket file at path? A live daemon's socket must
** not be unlinked from under it; a stale one (connection refused) may be replaced. */
static bool unix_socket_answers(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    bool live = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return live;
}

/* Splits "host:port" / "[v6]:port"; returns 0 or -1. */
static int parse_host_port(const char *spec, char *host, size_t cap, int *port)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= cap) {
            return -1;
        }
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= cap || colon == spec) {
            return -1;
        }
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    char *endp;
    long p = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || p < 0 || p > 65535) {
        return -1;
    }
    *port = (int)p;
    return 0;
}

int td_net_sockaddr(const char *spec, struct sockaddr_storage *ss, struct td_err *err)
{
    char host[INET6_ADDRSTRLEN];
    int port;
    if (parse_host_port(spec, host, sizeof host, &port) != 0) {
        return td_err_set(err, TD_EINVAL, "bad listen address '%s' (want HOST:PORT)", spec);
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) != 0) {
        return td_err_set(err, TD_EINVAL, "bad listen address '%s' (not an IP address)", spec);
    }
    return 0;
}

int td_net_sockname(uv_tcp_t *tcp, char *bound, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
    char name[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof name);
        snprintf(bound, cap, "[%s]:%d", name, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof name);
        snprintf(bound, cap, "%s:%d", name, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return rc;
}

int td_net_listen(struct td_net *n, const char *spec, char *bound, size_t cap, struct td_err *err)
{
    struct td_listener *l = td_calloc(1, sizeof *l);
    if (l == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    l->net = n;
    int rc;
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        if (path[0] == '\0' || strlen(path) >= sizeof l->path) {
            td_free(l);
            return td_err_set(err, TD_EINVAL, "bad unix socket path '%s'", path);
        }
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            if (unix_socket_answers(path)) {
                td_free(l);
                return td_err_set(err, TD_EIO,
                                  "unix socket %s is in use by a running process "
                                  "(another tensord?)",
                                  path);
            }
            unlink(path); /* a stale socket from an earlier run */
        }
        l->is_unix = true;
        snprintf(l->path, sizeof l->path, "%s", path);
        uv_pipe_init(n->loop, &l->h.pipe, 0);
        l->h.handle.data = l;
        /* Created under a umask that leaves only the owner, then chmod for certainty. */
        mode_t old = umask(0177);
        rc = uv_pipe_bind(&l->h.pipe, path);
        umask(old);
        if (rc == 0 && chmod(path, 0600) != 0) {
            rc = UV_EPERM;
        }
        snprintf(bound, cap, "unix:%s", path);
    } else {
        struct sockaddr_storage ss;
        if (td_net_sockaddr(spec, &ss, err) != 0) {
            td_free(l);
            return err->code;
        }
        uv_tcp_init(n->loop, &l->h.tcp);
        l->h.handle.data = l;
        rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss,
                         ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
        if (rc == 0) {
            rc = td_net_sockname(&l->h.tcp, bound, cap);
        }
    }
    if (rc == 0) {
        rc = uv_listen(&l->h.stream, 511, listener_on_connection);
    }
    if (rc != 0) {
        l->is_unix = false; /* never unlink a path we did not create */
        uv_close(&l->h.handle, listener_on_closed);
        return td_err_set(err, TD_EIO, "cannot listen on %s: %s", spec, uv_strerror(rc));
    }
    l->next = n->listeners;
    n->listeners = l;
    return 0;
}

void td_net_stop_accepting(struct td_net *n)
{
    for (struct td_listener *l = n->listeners, *next; l != NULL; l = next) {
        next = l->next;
        uv_close(&l->h.handle, listener_on_closed);
    }
    n->listeners = NULL;
}

void td_net_drain(struct td_net *n)
{
    n->draining = true;
    for (struct td_conn *c = n->conns; c != NULL; c = c->next) {
        conn_update_reading(c);
        conn_watch_stall(c, 0); /* nothing more is read: no frame clock */
    }
}

void td_net_close_gracefully(struct td_net *n)
{
    td_net_stop_accepting(n);
    n->draining = true;
    for (struct td_conn *c = n->conns, *next; c != NULL; c = next) {
        next = c->next;
        td_conn_close_after_flush(c);
    }
}

bool td_net_flushed(const struct td_net *n)
{
    for (const struct td_conn *c = n->conns; c != NULL; c = c->next) {
        if (c->queued_bytes > 0 || c->writes_in_flight > 0) {
            return false;
        }
    }
    return true;
}

void td_net_close(struct td_net *n)
{
    n->closing = true;
    if (!uv_is_closing((uv_handle_t *)&n->flush_soon)) {
        uv_close((uv_handle_t *)&n->flush_soon, NULL);
    }
    for (struct td_listener *l = n->listeners, *next; l != NULL; l = next) {
        next = l->next;
        uv_close(&l->h.handle, listener_on_closed);
    }
    n->listeners = NULL;
    while (n->conns != NULL) {
        td_conn_close(n->conns);
    }
}
