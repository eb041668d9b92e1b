/* server/net/http.h — a small HTTP/1.x responder on the event loop, for /metrics and health.
**
** It serves GET (and HEAD) of a path through one callback, one request per connection
** (`Connection: close`), with bounded request size, connection count and time. A connection
** that has not sent a complete request within TD_HTTP_REQUEST_TIMEOUT_MS is closed, and when
** TD_HTTP_MAX_CONNS are open a new one evicts the oldest that is still waiting for its request,
** so idle sockets cannot lock a prober out of /healthz. It knows nothing of what it serves: the
** daemon's wiring supplies the handler. Loop thread only.
*/
#ifndef TD_NET_HTTP_H
#define TD_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/err.h"

#define TD_HTTP_MAX_REQUEST 4096 /* request line and headers */
#define TD_HTTP_MAX_CONNS 64
#define TD_HTTP_REQUEST_TIMEOUT_MS 1000 /* from accept to a complete request head */
#define TD_HTTP_TIMEOUT_MS 5000         /* from then to the response written */

/* Produces the response for `path`: returns the status code and sets *body (td_malloc'd, taken;
** NULL for an empty body) and *content_type (static). */
typedef int td_http_handler(void *user, const char *path, char **body, const char **content_type);

struct http_conn;

struct td_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    td_http_handler *handler;
    void *user;
    struct http_conn *oldest, *newest; /* open connections in accept order (not closing) */
    int nconns;                        /* of them */
    uint64_t evicted;                  /* idle connections closed to admit a new one */
    bool listening;
};

/* Listens on "HOST:PORT" ("[v6]:PORT"; port 0 picks one); writes the bound address to `bound`. */
int td_http_listen(struct td_http *h, uv_loop_t *loop, const char *spec, td_http_handler *fn,
                   void *user, char *bound, size_t cap, struct td_err *err);

/* Stops listening; connections in flight finish or time out. */
void td_http_close(struct td_http *h);

#endif
