/* tests/client/test_cluster.c — libtensord across many daemons: address lists, placement and
** redirects (docs/DESIGN.md, "Many daemons").
**
** The peers are fake nodes on one thread (a "fleet"): each listens on its own loopback port,
** counts the connections it accepts and the Hellos it reads (with the token each carried), and
** answers every Hello as the test scripted it: a session (HelloResult with a node id and a
** token), MOVED or NODE_FULL with a Status naming a node and an address. Any later request gets
** a bare OK. So the cases a real cluster rarely shows on demand (a redirect loop, a hostile
** MOVED) are exact here, and "refused without dialling" is a connection count of zero.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/tensord.pb-c.h"
#include "tensord.h"

enum mode { F_SESSION, F_MOVED, F_FULL, F_UNKNOWN_SESSION };

struct fnode {
    int lfd, port;
    char addr[32];
    enum mode mode;
    char id[80];       /* F_SESSION: HelloResult.node_id and the token's node */
    char st_node[96];  /* F_MOVED, F_FULL: Status.node */
    char st_addr[400]; /* ... and Status.address */
    atomic_int accepts, hellos;
    uint8_t token[160]; /* the last Hello's session token */
    size_t token_len;
};

#define FLEET_MAX 4
#define CONN_MAX 64

struct fleet {
    struct fnode n[FLEET_MAX];
    int count;
    int stop[2];
    int conn[CONN_MAX], conn_node[CONN_MAX], nconn;
    pthread_t th;
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

static Tensord__Request *read_request(int fd)
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
    if (ml > (1u << 20) || dl > (1u << 20)) {
        return NULL;
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

static void send_response(int fd, const Tensord__Response *r)
{
    uint8_t buf[2048];
    size_t ml = tensord__response__get_packed_size(r);
    if (ml + 12 > sizeof buf) {
        return;
    }
    memset(buf, 0, 12);
    for (int i = 0; i < 4; i++) {
        buf[i] = (uint8_t)(ml >> (24 - 8 * i));
    }
    tensord__response__pack(r, buf + 12);
    if (write(fd, buf, 12 + ml) != (ssize_t)(12 + ml)) {
        return;
    }
}

static void answer(struct fnode *f, int fd, const Tensord__Request *req)
{
    Tensord__Response r = TENSORD__RESPONSE__INIT;
    Tensord__Status st = TENSORD__STATUS__INIT;
    Tensord__HelloResult h = TENSORD__HELLO_RESULT__INIT;
    char token[128];
    r.id = req->id;
    if (req->body_case != TENSORD__REQUEST__BODY_HELLO) {
        send_response(fd, &r); /* anything after Hello: OK */
        return;
    }
    atomic_fetch_add(&f->hellos, 1);
    size_t tl = req->hello->session_token.len;
    f->token_len = tl < sizeof f->token ? tl : sizeof f->token;
    if (f->token_len != 0) {
        memcpy(f->token, req->hello->session_token.data, f->token_len);
    }
    switch (f->mode) {
    case F_SESSION:
        snprintf(token, sizeof token, "%s.0123456789abcdef0123456789abcdef", f->id);
        h.session_token.data = (uint8_t *)token;
        h.session_token.len = strlen(token);
        h.version = 1;
        h.node_id = f->id;
        h.resumed = tl != 0;
        r.result_case = TENSORD__RESPONSE__RESULT_HELLO;
        r.hello = &h;
        break;
    case F_MOVED:
    case F_FULL:
    case F_UNKNOWN_SESSION:
        st.code = f->mode == F_MOVED  ? TENSORD__STATUS_CODE__MOVED
                  : f->mode == F_FULL ? TENSORD__STATUS_CODE__NODE_FULL
                                      : TENSORD__STATUS_CODE__UNKNOWN_SESSION;
        st.message = f->mode == F_MOVED  ? "session is owned by another node"
                     : f->mode == F_FULL ? "node is full"
                                         : "unknown session";
        st.node = f->st_node;
        st.address = f->st_addr;
        r.status = &st;
        break;
    }
    send_response(fd, &r);
}

static void *fleet_main(void *arg)
{
    struct fleet *fl = arg;
    for (;;) {
        struct pollfd p[1 + FLEET_MAX + CONN_MAX];
        int np = 0;
        p[np++] = (struct pollfd){.fd = fl->stop[0], .events = POLLIN};
        for (int i = 0; i < fl->count; i++) {
            p[np++] = (struct pollfd){.fd = fl->n[i].lfd, .events = POLLIN};
        }
        for (int i = 0; i < fl->nconn; i++) {
            p[np++] = (struct pollfd){.fd = fl->conn[i], .events = POLLIN};
        }
        if (poll(p, (nfds_t)np, 10000) <= 0 || (p[0].revents & POLLIN)) {
            break;
        }
        int polled = fl->nconn; /* the connections p[] covers; accepted ones come after */
        for (int i = 0; i < polled; i++) {
            if (p[1 + fl->count + i].revents & (POLLIN | POLLHUP | POLLERR)) {
                Tensord__Request *req = read_request(fl->conn[i]);
                if (req == NULL) {
                    close(fl->conn[i]);
                    fl->conn[i] = -1; /* dropped below */
                    continue;
                }
                answer(&fl->n[fl->conn_node[i]], fl->conn[i], req);
                tensord__request__free_unpacked(req, NULL);
            }
        }
        int kept = 0;
        for (int i = 0; i < fl->nconn; i++) {
            if (fl->conn[i] >= 0) {
                fl->conn_node[kept] = fl->conn_node[i];
                fl->conn[kept++] = fl->conn[i];
            }
        }
        fl->nconn = kept;
        for (int i = 0; i < fl->count; i++) {
            if ((p[1 + i].revents & POLLIN) && fl->nconn < CONN_MAX) {
                int fd = accept(fl->n[i].lfd, NULL, NULL);
                if (fd >= 0) {
                    atomic_fetch_add(&fl->n[i].accepts, 1);
                    fl->conn_node[fl->nconn] = i;
                    fl->conn[fl->nconn++] = fd;
                }
            }
        }
    }
    return NULL;
}

/* Listens on `count` loopback ports; the caller scripts the nodes, then fleet_run. */
static void fleet_listen(struct fleet *fl, int count)
{
    memset(fl, 0, sizeof *fl);
    fl->count = count;
    assert_int_equal(pipe(fl->stop), 0);
    for (int i = 0; i < count; i++) {
        struct fnode *f = &fl->n[i];
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(f->lfd >= 0);
        assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(f->lfd, 64), 0);
        assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
        f->port = ntohs(sa.sin_port);
        snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", f->port);
        snprintf(f->id, sizeof f->id, "n%d", i);
        f->mode = F_SESSION;
    }
}

static void fleet_run(struct fleet *fl)
{
    assert_int_equal(pthread_create(&fl->th, NULL, fleet_main, fl), 0);
}

static void fleet_stop(struct fleet *fl)
{
    if (write(fl->stop[1], "x", 1) != 1) {
        fail_msg("cannot stop the fleet");
    }
    pthread_join(fl->th, NULL);
    for (int i = 0; i < fl->nconn; i++) {
        close(fl->conn[i]);
    }
    for (int i = 0; i < fl->count; i++) {
        close(fl->n[i].lfd);
    }
    close(fl->stop[0]);
    close(fl->stop[1]);
}

static void moved(struct fnode *f, const char *node, const char *addr)
{
    f->mode = F_MOVED;
    snprintf(f->st_node, sizeof f->st_node, "%s", node);
    snprintf(f->st_addr, sizeof f->st_addr, "%s", addr);
}

#define TOKEN_N0 "n0.00112233445566778899aabbccddeeff"

/* A redirect loop (A says B, B says A) ends after TENSORD_MAX_REDIRECTS hops, naming the chain. */
static void test_moved_loop_stops_after_the_hop_limit(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 2);
    moved(&fl.n[0], "n1", fl.n[1].addr);
    moved(&fl.n[1], "n0", fl.n[0].addr);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    struct tensord_options o = {.session_token = TOKEN_N0};
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, &o, &err), TENSORD_MOVED);
    assert_null(c);
    char want[256];
    snprintf(want, sizeof want,
             "gave up after 5 redirects resuming the session: %s -> n1 -> n0 -> "
             "n1 -> n0 -> n1 -> n0",
             fl.n[0].addr);
    assert_string_equal(err.message, want);
    /* the first Hello and five redirects: six connections, three each */
    assert_int_equal(atomic_load(&fl.n[0].hellos), 3);
    assert_int_equal(atomic_load(&fl.n[1].hellos), 3);
    /* the token went as its text (it is "<node>.<32 hex>") */
    assert_int_equal(fl.n[1].token_len, strlen(TOKEN_N0));
    assert_memory_equal(fl.n[1].token, TOKEN_N0, strlen(TOKEN_N0));
    fleet_stop(&fl);
}

/* A node that redirects to itself is a loop too. */
static void test_moved_to_itself(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 1);
    moved(&fl.n[0], "n0", fl.n[0].addr);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    struct tensord_options o = {.session_token = TOKEN_N0};
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, &o, &err), TENSORD_MOVED);
    assert_non_null(strstr(err.message, "-> n0 -> n0 -> n0 -> n0 -> n0 -> n0"));
    assert_int_equal(atomic_load(&fl.n[0].hellos), 6);
    fleet_stop(&fl);
}

/* MOVED naming a malformed node id or address is refused before anything is dialled. */
static void test_moved_garbage_is_not_dialled(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 2);
    fleet_run(&fl);
    char longhost[300];
    memset(longhost, 'a', 280);
    snprintf(longhost + 280, sizeof longhost - 280, ":%d", fl.n[1].port);
    char port0[64], v6bare[64], withpath[64];
    snprintf(port0, sizeof port0, "127.0.0.1:0");
    snprintf(v6bare, sizeof v6bare, "::1:%d", fl.n[1].port);
    snprintf(withpath, sizeof withpath, "unix:/tmp/x");
    const struct {
        const char *node, *addr;
    } bad[] = {
        {"Bad_Node", fl.n[1].addr}, /* uppercase and '_' are no DNS label */
        {"", fl.n[1].addr},         /* MOVED without a node */
        {"n1", ""},                 /* ... or without an address */
        {"n1", "127.0.0.1"},        /* no port */
        {"n1", port0},              /* port 0 */
        {"n1", "127.0.0.1:65536"},  /* out of range */
        {"n1", v6bare},             /* IPv6 without brackets */
        {"n1", withpath},           /* not host:port */
        {"n1", longhost},           /* too long */
        {"n1", "host name:7878"},   /* a space */
        {"n1", "127.0.0.1:7878/x"}, /* junk after the port */
        {"a123456789012345678901234567890123456789012345678901234567890123", fl.n[1].addr},
        {"-n1", fl.n[1].addr}, /* a DNS label neither starts */
        {"n1-", fl.n[1].addr}, /* ... nor ends with '-' */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl.n[0].mode = F_MOVED; /* set between connects: the fleet thread reads it at a Hello */
        snprintf(fl.n[0].st_node, sizeof fl.n[0].st_node, "%s", bad[i].node);
        snprintf(fl.n[0].st_addr, sizeof fl.n[0].st_addr, "%s", bad[i].addr);
        struct tensord *c = NULL;
        struct tensord_error err;
        struct tensord_options o = {.session_token = TOKEN_N0};
        int rc = tensord_connect(&c, fl.n[0].addr, &o, &err);
        if (rc != TENSORD_E_PROTOCOL || strstr(err.message, "not followed") == NULL) {
            fail_msg("case %zu (%s, %.40s): %d %s", i, bad[i].node, bad[i].addr, rc, err.message);
        }
        assert_null(c);
    }
    assert_int_equal(atomic_load(&fl.n[1].accepts), 0);
    fleet_stop(&fl);
}

/* MOVED to a node that does not answer: the error names the node and its address. */
static void test_unreachable_owner_is_named(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 2);
    moved(&fl.n[0], "n1", fl.n[1].addr);
    close(fl.n[1].lfd); /* n1 is gone: its port refuses */
    fl.n[1].lfd = socket(AF_INET, SOCK_STREAM, 0);
    fl.count = 1;
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    struct tensord_options o = {.session_token = TOKEN_N0};
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, &o, &err), TENSORD_E_CONNECT);
    char want[128];
    snprintf(want, sizeof want, "node n1 at %s is unreachable: ", fl.n[1].addr);
    assert_memory_equal(err.message, want, strlen(want));
    fl.count = 2;
    fleet_stop(&fl);
}

/* MOVED is followed to the owner; the connection reports it. */
static void test_moved_is_followed_to_the_owner(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    moved(&fl.n[0], "n2", fl.n[2].addr);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    char list[128];
    snprintf(list, sizeof list, "%s", fl.n[0].addr);
    struct tensord_options o = {.session_token = "n2.0123456789abcdef0123456789abcdef"};
    assert_int_equal(tensord_connect(&c, list, &o, &err), 0);
    assert_string_equal(tensord_node(c), "n2");
    assert_string_equal(tensord_address(c), fl.n[2].addr);
    assert_true(tensord_resumed(c));
    assert_int_equal(atomic_load(&fl.n[1].accepts), 0);
    tensord_disconnect(c);
    fleet_stop(&fl);
}

/* NODE_FULL naming a peer: the peer gets the session. */
static void test_node_full_follows_the_named_peer(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    fl.n[0].mode = F_FULL;
    snprintf(fl.n[0].st_node, sizeof fl.n[0].st_node, "n2");
    snprintf(fl.n[0].st_addr, sizeof fl.n[0].st_addr, "%s", fl.n[2].addr);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, NULL, &err), 0);
    assert_string_equal(tensord_node(c), "n2");
    assert_string_equal(tensord_session_token(c), "n2.0123456789abcdef0123456789abcdef");
    assert_int_equal(atomic_load(&fl.n[1].accepts), 0);
    tensord_disconnect(c);
    fleet_stop(&fl);
}

/* NODE_FULL without a peer, or a node that cannot be reached: the next entry of the list. When
** every entry fails, the error names each one's failure. */
static void test_node_full_without_peer_moves_on(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    fl.n[0].mode = F_FULL;
    fl.n[1].mode = F_FULL;
    fleet_run(&fl);
    char list[128];
    snprintf(list, sizeof list, "%s,%s,%s", fl.n[0].addr, fl.n[1].addr, fl.n[2].addr);
    for (int i = 0; i < 3; i++) { /* whichever entry the turn starts at */
        struct tensord *c = NULL;
        struct tensord_error err;
        assert_int_equal(tensord_connect(&c, list, NULL, &err), 0);
        assert_string_equal(tensord_node(c), "n2");
        tensord_disconnect(c);
    }
    assert_int_equal(atomic_load(&fl.n[2].hellos), 3);
    /* n2 full too: every entry named */
    fl.n[2].mode = F_FULL;
    struct tensord *c = NULL;
    struct tensord_error err;
    assert_int_equal(tensord_connect(&c, list, NULL, &err), TENSORD_NODE_FULL);
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s: node is full", fl.n[i].addr);
        assert_non_null(strstr(err.message, want));
    }
    fleet_stop(&fl);
}

/* New sessions go round-robin over the list: consecutive ones on consecutive entries. */
static void test_new_sessions_round_robin(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    fleet_run(&fl);
    char list[128];
    snprintf(list, sizeof list, "%s,%s,%s", fl.n[0].addr, fl.n[1].addr, fl.n[2].addr);
    int prev = -1;
    for (int i = 0; i < 9; i++) {
        struct tensord *c = NULL;
        struct tensord_error err;
        assert_int_equal(tensord_connect(&c, list, NULL, &err), 0);
        int at = tensord_node(c)[1] - '0';
        if (prev >= 0) {
            assert_int_equal(at, (prev + 1) % 3);
        }
        prev = at;
        tensord_disconnect(c);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&fl.n[i].hellos), 3);
    }
    fleet_stop(&fl);
}

/* Address lists are checked and bounded; dns: resolves. */
static void test_address_lists_are_checked(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 1);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:0",
                         "127.0.0.1:x",
                         "a,,b",
                         "127.0.0.1:1,",
                         "::1:7878",
                         "dns:",
                         "dns:[::1]:7878",
                         "dns:localhost",
                         "host name:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (tensord_connect(&c, bad[i], NULL, &err) != TENSORD_E_CONNECT) {
            fail_msg("'%s' was taken", bad[i]);
        }
    }
    /* 65 distinct addresses are one too many; 64 are fine (the first answering takes it) */
    char *list = malloc(65 * 24);
    size_t len = 0;
    len += (size_t)sprintf(list + len, "%s", fl.n[0].addr);
    for (int i = 1; i < 64; i++) {
        len += (size_t)sprintf(list + len, ",127.0.0.%d:%d", 1 + i, fl.n[0].port);
    }
    assert_int_equal(tensord_connect(&c, list, NULL, &err), 0);
    tensord_disconnect(c);
    sprintf(list + len, ",127.0.1.1:%d", fl.n[0].port);
    assert_int_equal(tensord_connect(&c, list, NULL, &err), TENSORD_E_CONNECT);
    assert_non_null(strstr(err.message, "more than 64"));
    free(list);
    /* dns:NAME:PORT: every address of the name */
    char dns[64];
    snprintf(dns, sizeof dns, "dns:localhost:%d", fl.n[0].port);
    assert_int_equal(tensord_connect(&c, dns, NULL, &err), 0);
    assert_string_equal(tensord_node(c), "n0");
    tensord_disconnect(c);
    fleet_stop(&fl);
}

/* Tokens: malformed ones are refused before anything is sent; the 32-hex form of a token from
** before scale-out goes as its 16 bytes; a server's malformed token is a protocol error. */
static void test_token_forms(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 1);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    const char *bad[] = {"",
                         "n0",
                         "n0.0123",
                         "N0.0123456789abcdef0123456789abcdef",
                         "n0.0123456789ABCDEF0123456789abcdef",
                         "n0.0123456789abcdef0123456789abcdeg",
                         ".0123456789abcdef0123456789abcdef",
                         "n_0.0123456789abcdef0123456789abcdef",
                         "-n0.0123456789abcdef0123456789abcdef",
                         "n0-.0123456789abcdef0123456789abcdef",
                         "0123456789abcdef0123456789abcdeX"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tensord_options o = {.session_token = bad[i]};
        if (tensord_connect(&c, fl.n[0].addr, &o, &err) != TENSORD_E_USAGE) {
            fail_msg("token '%s' was taken", bad[i]);
        }
    }
    assert_int_equal(atomic_load(&fl.n[0].accepts), 0);
    struct tensord_options old = {.session_token = "00112233445566778899AABBCCDDEEFF"};
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, &old, &err), 0);
    const uint8_t raw[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                             0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    assert_int_equal(fl.n[0].token_len, 16);
    assert_memory_equal(fl.n[0].token, raw, 16);
    tensord_disconnect(c);
    /* a node id the server should not send */
    snprintf(fl.n[0].id, sizeof fl.n[0].id, "Bad.Node");
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, NULL, &err), TENSORD_E_PROTOCOL);
    fleet_stop(&fl);
}

/* A legacy token (no node in it) is tried at each listed node until one holds it. */
static void test_legacy_token_asks_every_entry(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    fl.n[0].mode = F_UNKNOWN_SESSION;
    fl.n[1].mode = F_UNKNOWN_SESSION;
    fleet_run(&fl);
    char list[128];
    snprintf(list, sizeof list, "%s,%s,%s", fl.n[0].addr, fl.n[1].addr, fl.n[2].addr);
    struct tensord *c = NULL;
    struct tensord_error err;
    struct tensord_options old = {.session_token = "00112233445566778899aabbccddeeff"};
    assert_int_equal(tensord_connect(&c, list, &old, &err), 0);
    assert_string_equal(tensord_node(c), "n2");
    tensord_disconnect(c);
    fleet_stop(&fl);
}

/* Given a list, a resume goes straight to where the owner was last reached (learned from the
** MOVED of the first resume); one address given is asked as told. */
static void test_resume_remembers_the_owner(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 3);
    moved(&fl.n[0], "n2", fl.n[2].addr);
    moved(&fl.n[1], "n2", fl.n[2].addr);
    snprintf(fl.n[2].id, sizeof fl.n[2].id, "n2");
    fleet_run(&fl);
    char list[128];
    snprintf(list, sizeof list, "%s,%s", fl.n[0].addr, fl.n[1].addr);
    /* a node id no other test uses: the table is process-wide */
    struct tensord_options o = {.session_token = "n2.ffeeddccbbaa99887766554433221100"};
    struct tensord *c = NULL;
    struct tensord_error err;
    assert_int_equal(tensord_connect(&c, list, &o, &err), 0);
    assert_string_equal(tensord_node(c), "n2");
    tensord_disconnect(c);
    int asked = atomic_load(&fl.n[0].hellos) + atomic_load(&fl.n[1].hellos);
    assert_int_equal(asked, 1); /* one listed node, which answered MOVED */
    assert_int_equal(tensord_connect(&c, list, &o, &err), 0);
    tensord_disconnect(c);
    assert_int_equal(atomic_load(&fl.n[0].hellos) + atomic_load(&fl.n[1].hellos), asked);
    assert_int_equal(atomic_load(&fl.n[2].hellos), 2);
    /* one address: asked as told (it redirects) */
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, &o, &err), 0);
    tensord_disconnect(c);
    assert_int_equal(atomic_load(&fl.n[0].hellos) + atomic_load(&fl.n[1].hellos), asked + 1);
    fleet_stop(&fl);
}

/* A node id is only what a server claims: a hostile server answering as n7 to one address list
** must not be where another list's n7 token (and auth token) goes on its resume. */
static void test_node_table_is_per_address_list(void **state)
{
    (void)state;
    struct fleet fl;
    fleet_listen(&fl, 4); /* 0: hostile, 1-2: another set's front, 3: its real n7 */
    snprintf(fl.n[0].id, sizeof fl.n[0].id, "n7");
    snprintf(fl.n[3].id, sizeof fl.n[3].id, "n7");
    moved(&fl.n[1], "n7", fl.n[3].addr);
    moved(&fl.n[2], "n7", fl.n[3].addr);
    fleet_run(&fl);
    struct tensord *c = NULL;
    struct tensord_error err;
    char hostile[128], list[128];
    snprintf(hostile, sizeof hostile, "%s,%s", fl.n[0].addr, fl.n[0].addr);
    assert_int_equal(tensord_connect(&c, fl.n[0].addr, NULL, &err), 0);
    assert_string_equal(tensord_node(c), "n7");
    tensord_disconnect(c);
    assert_int_equal(tensord_connect(&c, hostile, NULL, &err), 0); /* a list of it, too */
    tensord_disconnect(c);
    assert_int_equal(atomic_load(&fl.n[0].hellos), 2);
    snprintf(list, sizeof list, "%s,%s", fl.n[1].addr, fl.n[2].addr);
    struct tensord_options o = {.session_token = "n7.0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                                .auth_token = "secret"};
    assert_int_equal(tensord_connect(&c, list, &o, &err), 0);
    tensord_disconnect(c);
    assert_int_equal(atomic_load(&fl.n[0].hellos), 2); /* the hostile one heard nothing */
    assert_int_equal(fl.n[0].token_len, 0);
    assert_int_equal(atomic_load(&fl.n[3].hellos), 1);
    assert_int_equal(fl.n[3].token_len, strlen(o.session_token));
    assert_memory_equal(fl.n[3].token, o.session_token, fl.n[3].token_len);
    fleet_stop(&fl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moved_loop_stops_after_the_hop_limit),
        cmocka_unit_test(test_moved_to_itself),
        cmocka_unit_test(test_moved_garbage_is_not_dialled),
        cmocka_unit_test(test_unreachable_owner_is_named),
        cmocka_unit_test(test_moved_is_followed_to_the_owner),
        cmocka_unit_test(test_node_full_follows_the_named_peer),
        cmocka_unit_test(test_node_full_without_peer_moves_on),
        cmocka_unit_test(test_new_sessions_round_robin),
        cmocka_unit_test(test_address_lists_are_checked),
        cmocka_unit_test(test_token_forms),
        cmocka_unit_test(test_legacy_token_asks_every_entry),
        cmocka_unit_test(test_resume_remembers_the_owner),
        cmocka_unit_test(test_node_table_is_per_address_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
