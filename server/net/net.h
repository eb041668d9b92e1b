/* server/net/net.h — listeners, connections, framing and write queues, on libuv.
**
** net turns byte streams into frames (a 12-byte header, a protobuf section, a raw data section)
** and queued reply bytes into as few writes as possible. It knows bytes, not tensors or
** protobuf: complete frames go up through on_frame(), replies come down through td_conn_send().
** Everything runs on the loop thread.
*/
#ifndef TD_NET_NET_H
#define TD_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "tensord_frame.h" /* TD_FRAME_HEADER_BYTES */

#define TD_NET_DATA_LATER 1
/* Before td_conn_established, a frame may hold at most this many protobuf bytes and no data
** section (Redis likewise gives unauthenticated clients tight caps): an unauthenticated peer
** makes the server hold no more than this per connection. */
#define TD_NET_PREAUTH_MAX_META 16384

struct td_conn;

struct td_net_config {
    uint64_t max_frame_bytes; /* header's meta_len + data_len above this: error, close */
    uint32_t max_meta_bytes;  /* protobuf section alone */
    size_t write_high_water;  /* pause reading while more reply bytes than this are queued */
    uint64_t idle_timeout_ms; /* close a connection whose frame stalls this long; 0: never */
    uint64_t min_frame_rate;  /* bytes/s a started frame must average once idle_timeout
                                   ** has passed (0: no minimum); see conn_watch_stall */
};

struct td_net_callbacks {
    void *user;
    /* A connection was accepted. Returns its per-connection pointer (passed back below), or
    ** NULL to refuse it (it is closed at once). */
    void *(*on_open)(struct td_conn *c, void *user);
    /* A complete frame: `meta` is borrowed for the call; `data` (td_malloc'd, or NULL when
    ** data_len is 0) is taken. */
    void (*on_frame)(struct td_conn *c, void *conn_user, const uint8_t *meta, size_t meta_len,
                     void *data, size_t data_len);
    /* A frame announces a data section of `len` bytes (after its header passed the limits; never
    ** before td_conn_established). Returns 0 with *out set to a td_malloc'd buffer of len bytes
    ** (taken by net, handed to on_frame; freed with td_free if the connection closes before the
    ** section is complete); TD_NET_DATA_LATER to have net pause the connection (it counts as
    ** one td_conn_pause, which the caller lifts with one td_conn_resume; net asks again once no
    ** pause is left; the read clock does not run meanwhile); or anything else to have net read
    ** and discard the section (no allocation), then call on_frame with data NULL and data_len
    ** len. NULL callback: net allocates with td_malloc itself. */
    int (*on_data_alloc)(struct td_conn *c, void *conn_user, size_t len, void **out);
    /* A header broke a limit (code TD_ELIMIT) or the stream is unusable. The callback may send
    ** an error reply; the connection closes once it is written. */
    void (*on_frame_error)(struct td_conn *c, void *conn_user, int code, const char *msg);
    /* The connection is closing; no send is accepted after this returns. Called once. */
    void (*on_close)(struct td_conn *c, void *conn_user);
};

struct td_net {
    uv_loop_t *loop; /* borrowed */
    struct td_net_config cfg;
    struct td_net_callbacks cb;
    struct td_listener *listeners; /* owned list */
    struct td_conn *conns;         /* open connections, a doubly linked list */
    uint64_t next_conn_id;
    size_t nconns;
    bool closing;
    bool draining;        /* td_net_drain: no connection reads any more */
    uv_idle_t flush_soon; /* active while replies wait for a flush (conn.c: flush_due) */
    int flushes_due;      /* connections whose flush is due */
};

/* One piece of reply bytes; release(arg) runs once after it is written or dropped. */
struct td_out {
    const void *base;
    size_t len;
    void (*release)(void *arg); /* may be NULL */
    void *arg;
};

void td_net_init(struct td_net *n, uv_loop_t *loop, const struct td_net_config *cfg,
                 const struct td_net_callbacks *cb);

/* Listens on "HOST:PORT" (IPv4, or "[v6addr]:PORT"; port 0 picks one) or "unix:PATH" (the socket
** is created mode 0600; a stale socket file there is replaced). Writes the bound address in the
** same notation into `bound`. Errors: TD_EINVAL (bad address), TD_EIO (bind/listen failed). */
int td_net_listen(struct td_net *n, const char *spec, char *bound, size_t cap, struct td_err *err);

/* "HOST:PORT" / "[v6]:PORT" to a socket address (TD_EINVAL with a message if it is not one). */
int td_net_sockaddr(const char *spec, struct sockaddr_storage *ss, struct td_err *err);

/* The bound address of tcp in HOST:PORT notation; returns libuv's status. */
int td_net_sockname(uv_tcp_t *tcp, char *bound, size_t cap);

/* Graceful shutdown, in steps: stop accepting; stop reading (frames already read are still
** delivered, and their replies written); td_net_flushed tells when every queued reply byte has
** been written; then td_net_close. */
void td_net_stop_accepting(struct td_net *n);
void td_net_drain(struct td_net *n);
bool td_net_flushed(const struct td_net *n);

/* Closes every connection once its replies are written, each with a lingering close (write side
** shut, the peer's remaining bytes discarded until its EOF, or 2 s in which it took none of our
** last replies) so no reply is lost to a reset. The loop ends when the last one is gone. */
void td_net_close_gracefully(struct td_net *n);

/* Stops listening and closes every connection; the loop then runs until handles are closed. */
void td_net_close(struct td_net *n);

/* Queues reply bytes, written in order. All parts queued before the loop next polls go out in
** one write. Takes the parts' releases (run at once if the connection is closing). */
void td_conn_send(struct td_conn *c, const struct td_out *parts, int nparts);

/* Closes once everything queued has been written. */
void td_conn_close_after_flush(struct td_conn *c);

/* Closes now; queued bytes are dropped (their releases run). */
void td_conn_close(struct td_conn *c);

/* The peer has completed the handshake of the protocol above (the caller decides what that
** is). Until then the connection may not idle between frames either: a socket that never
** completes it is closed after idle_timeout rather than holding a connection slot. */
void td_conn_established(struct td_conn *c);

/* How many reads have brought bytes to this connection (1 from the first): the frames it
** delivers with the same number arrived together, in one read. */
uint64_t td_conn_read_seq(const struct td_conn *c);

/* Flow control from above: while paused, no frames are delivered. Calls nest. */
void td_conn_pause(struct td_conn *c);
void td_conn_resume(struct td_conn *c);

uint64_t td_conn_id(const struct td_conn *c);
const char *td_conn_peer(const struct td_conn *c); /* "127.0.0.1:5555" or "unix" */

#endif
