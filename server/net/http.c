/* server/net/http.c — the HTTP responder behind --metrics-listen. See http.h. */
#include "net/http.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/net.h"

struct http_conn {
    uv_tcp_t tcp; /* first: the handle's address is the conn's */
    uv_timer_t timer;
    uv_write_t write;
    struct td_http *srv;
    struct http_conn *prev, *next; /* in srv's accept-order list while not closing */
    char req[TD_HTTP_MAX_REQUEST + 1];
    size_t len;
    char *out;   /* the response, head and body */
    int handles; /* open libuv handles; freed at 0 */
    bool answered;
};

static void http_on_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->handles == 0) {
        td_free(c->out);
        td_free(c);
    }
}

/* Leaves the accept-order list: a closing connection no longer counts against the limit. */
static void http_unlink(struct http_conn *c)
{
    struct td_http *h = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        h->oldest = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        h->newest = c->prev;
    }
    c->prev = c->next = NULL;
    h->nconns--;
}

static void http_close(struct http_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        http_unlink(c);
        uv_close((uv_handle_t *)&c->tcp, http_on_closed);
        uv_close((uv_handle_t *)&c->timer, http_on_closed);
    }
}

static void http_on_timeout(uv_timer_t *t)
{
    http_close(t->data);
}

static void http_on_written(uv_write_t *w, int status)
{
    (void)status;
    http_close(w->data);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void http_respond(struct http_conn *c, int status, char *body, const char *ctype,
                         bool head_only)
{
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->timer, http_on_timeout, TD_HTTP_TIMEOUT_MS, 0); /* now: the write */
    size_t blen = body != NULL ? strlen(body) : 0;
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n",
                        status, reason(status), ctype, blen);
    size_t total = (size_t)hlen + (head_only ? 0 : blen);
    c->out = td_malloc(total + 1);
    if (c->out == NULL) {
        td_free(body);
        http_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)hlen);
    if (!head_only && blen > 0) {
        memcpy(c->out + hlen, body, blen);
    }
    td_free(body);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)total);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, http_on_written) != 0) {
        http_close(c);
    }
}

/* A complete request head is in c->req: answer it. */
static void http_handle(struct http_conn *c)
{
    char method[8], path[512];
    if (sscanf(c->req, "%7s %511s HTTP/1.%*c", method, path) != 2) {
        http_respond(c, 400, NULL, "text/plain", false);
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head) {
        http_respond(c, 405, NULL, "text/plain", false);
        return;
    }
    char *q = strchr(path, '?');
    if (q != NULL) {
        *q = '\0';
    }
    char *body = NULL;
    const char *ctype = "text/plain; charset=utf-8";
    int status = c->srv->handler(c->srv->user, path, &body, &ctype);
    http_respond(c, status, body, ctype, head);
}

static void http_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->req + c->len, (unsigned)(TD_HTTP_MAX_REQUEST - c->len));
}

static void http_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct http_conn *c = s->data;
    (void)buf;
    if (n < 0) {
        http_close(c);
        return;
    }
    if (c->answered) {
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
        http_handle(c);
    } else if (c->len == TD_HTTP_MAX_REQUEST) {
        http_respond(c, 431, NULL, "text/plain", false);
    }
}

static void http_on_connection(uv_stream_t *server, int status)
{
    struct td_http *h = server->data;
    if (status != 0) {
        return;
    }
    if (h->nconns >= TD_HTTP_MAX_CONNS) {
        /* Full: the oldest connection still waiting for its request makes room (one whose
        ** response is being written finishes). Idle sockets then cost a prober nothing. */
        struct http_conn *idle = h->oldest;
        while (idle != NULL && idle->answered) {
            idle = idle->next;
        }
        if (idle != NULL) {
            h->evicted++;
            td_log(TD_LOG_DEBUG, "http_evicted", "open=%d", h->nconns);
            http_close(idle);
        }
    }
    struct http_conn *c = td_calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->srv = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->prev = h->newest;
    if (h->newest != NULL) {
        h->newest->next = c;
    } else {
        h->oldest = c;
    }
    h->newest = c;
    h->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->nconns > TD_HTTP_MAX_CONNS) {
        http_close(c);
        return;
    }
    uv_timer_start(&c->timer, http_on_timeout, TD_HTTP_REQUEST_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, http_alloc, http_on_read);
}

int td_http_listen(struct td_http *h, uv_loop_t *loop, const char *spec, td_http_handler *fn,
                   void *user, char *bound, size_t cap, struct td_err *err)
{
    struct sockaddr_storage ss;
    if (td_net_sockaddr(spec, &ss, err) != 0) {
        return err->code;
    }
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->handler = fn;
    h->user = user;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listening = true;
    int rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss,
                         ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0) {
        rc = td_net_sockname(&h->listener, bound, cap);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&h->listener, 64, http_on_connection);
    }
    if (rc != 0) {
        td_http_close(h);
        return td_err_set(err, TD_EIO, "cannot listen on %s: %s", spec, uv_strerror(rc));
    }
    return 0;
}

void td_http_close(struct td_http *h)
{
    if (h->listening) {
        h->listening = false;
        uv_close((uv_handle_t *)&h->listener, NULL);
    }
}
