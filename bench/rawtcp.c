/* rawtcp — the raw TCP anchor of `make bench`: the least any request/reply server can cost on
** this machine, with the same byte counts as tensord's frames and no work between them.
**
**   rawtcp serve PORT                         thread per connection on 127.0.0.1:PORT
**   rawtcp pingpong PORT N REQ1 RESP1 REQ2 RESP2
**                                             N x (REQ1 bytes out, RESP1 back, REQ2 out, RESP2 back)
**   rawtcp pipe PORT DEPTH N REQ RESP         windows of DEPTH requests in one write, then their
**                                             DEPTH replies, as redis-benchmark -P does
**
** A connection starts with four u32 (REQ1 RESP1 REQ2 RESP2, REQ2 = 0: one kind). The server
** answers each complete request with its reply size, coalescing the replies to all requests one
** read brought into one write. Clients print one JSON object.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *what)
{
    perror(what);
    exit(1);
}

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint32_t pat[4];
    if (read_full(fd, pat, sizeof pat) != 0) {
        close(fd);
        return NULL;
    }
    size_t req[2] = {pat[0], pat[2] ? pat[2] : pat[0]};
    size_t resp[2] = {pat[1], pat[2] ? pat[3] : pat[1]};
    size_t cap = 1 << 20, have = 0, ocap = 1 << 20;
    char *in = malloc(cap), *out = calloc(1, ocap);
    int kind = 0;
    for (;;) {
        ssize_t r = read(fd, in + have, cap - have);
        if (r <= 0) {
            break;
        }
        have += (size_t)r;
        size_t pos = 0, olen = 0;
        while (have - pos >= req[kind]) {
            pos += req[kind];
            if (olen + resp[kind] > ocap) {
                ocap = 2 * (olen + resp[kind]);
                out = realloc(out, ocap);
                memset(out, 0, ocap);
            }
            olen += resp[kind];
            kind ^= 1;
        }
        memmove(in, in + pos, have - pos);
        have -= pos;
        if (olen > 0 && write_full(fd, out, olen) != 0) {
            break;
        }
    }
    free(in);
    free(out);
    close(fd);
    return NULL;
}

static _Noreturn void cmd_serve(int port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 128) != 0) {
        fail("rawtcp: bind/listen");
    }
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        nodelay(fd);
        pthread_t th;
        pthread_create(&th, NULL, serve_conn, (void *)(intptr_t)fd);
        pthread_detach(th);
    }
}

static int dial(int port, const uint32_t pat[4])
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fail("rawtcp: connect");
    }
    nodelay(fd);
    if (write_full(fd, pat, 4 * sizeof(uint32_t)) != 0) {
        fail("rawtcp: write");
    }
    return fd;
}

static int cmd_pingpong(int port, long n, const uint32_t pat[4])
{
    int fd = dial(port, pat);
    size_t big = pat[0] + pat[1] + pat[2] + pat[3];
    char *buf = calloc(1, big + 1);
    double t0 = 0;
    for (long i = -200; i < n; i++) {
        if (i == 0) {
            t0 = now_s();
        }
        if (write_full(fd, buf, pat[0]) != 0 || read_full(fd, buf, pat[1]) != 0) {
            fail("rawtcp: pingpong");
        }
        if (pat[2] && (write_full(fd, buf, pat[2]) != 0 || read_full(fd, buf, pat[3]) != 0)) {
            fail("rawtcp: pingpong");
        }
    }
    double dt = now_s() - t0;
    long rts = pat[2] ? 2 * n : n;
    printf("{\"us_per_rt\": %.3f, \"n\": %ld}\n", dt / (double)rts * 1e6, rts);
    free(buf);
    close(fd);
    return 0;
}

static int cmd_pipe(int port, int depth, long n, uint32_t req, uint32_t resp)
{
    const uint32_t pat[4] = {req, resp, 0, 0};
    int fd = dial(port, pat);
    size_t win = (size_t)depth * (req > resp ? req : resp);
    char *buf = calloc(1, win);
    long windows = n / depth;
    double t0 = 0;
    for (long w = -20; w < windows; w++) {
        if (w == 0) {
            t0 = now_s();
        }
        if (write_full(fd, buf, (size_t)depth * req) != 0 ||
            read_full(fd, buf, (size_t)depth * resp) != 0) {
            fail("rawtcp: pipe");
        }
    }
    double dt = now_s() - t0;
    printf("{\"ops_per_s\": %.1f, \"depth\": %d, \"ops\": %ld}\n", (double)(windows * depth) / dt,
           depth, windows * depth);
    free(buf);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        cmd_serve(atoi(argv[2]));
    }
    if (argc == 8 && strcmp(argv[1], "pingpong") == 0) {
        const uint32_t pat[4] = {(uint32_t)atol(argv[4]), (uint32_t)atol(argv[5]),
                                 (uint32_t)atol(argv[6]), (uint32_t)atol(argv[7])};
        return cmd_pingpong(atoi(argv[2]), atol(argv[3]), pat);
    }
    if (argc == 7 && strcmp(argv[1], "pipe") == 0) {
        return cmd_pipe(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), (uint32_t)atol(argv[5]),
                        (uint32_t)atol(argv[6]));
    }
    fprintf(stderr, "usage: see bench/rawtcp.c\n");
    return 2;
}
