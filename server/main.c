/* server/main.c — flags, configuration, wiring and signals.
**
** main owns the process: it parses flags (each with a TENSORD_* environment twin), sets up the
** store, the rpc server and the listeners, and wires the layers together: net's frames go to
** rpc peers, rpc's replies go back to net connections, and heavy session jobs go to libuv's
** thread pool. It is the only place that knows all layers. SIGTERM and SIGINT stop listening,
** let in-flight work finish, free every session and exit 0.
*/
#include <arpa/inet.h>
#include <dirent.h>
#include <stdarg.h>
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "base/log.h"
#include "base/memlimit.h"
#include "base/siphash.h"
#include "core/parallel.h"
#include "net/http.h"
#include "net/net.h"
#include "rpc/rpc.h"
#include "session/persist.h"
#include "session/session.h"

void openblas_set_num_threads(int num_threads);

#define MAX_LISTEN 16
#define PEER_PAUSE_PENDING 1024   /* stop reading a connection with this many requests queued */
#define PEER_RESUME_PENDING 256
#define PEER_PAUSE_BYTES ((int64_t)16 << 20)  /* ... or with this many bytes queued (decoded
                                               ** requests and data sections); resume at half */
#define MIN_FRAME_RATE 1024      /* bytes/s a frame must average once --idle-timeout has passed */
#define WRITE_HIGH_WATER ((size_t)64 << 20)  /* a connection's unwritten replies: stop reading it */
#define SESSION_DISK_CAP ((int64_t)8 << 30)   /* --session-max-disk-bytes' default at most */
#define DISK_CAP ((int64_t)64 << 30)          /* --max-disk-bytes' default at most */
#define TOKEN_MIN_BYTES 16
#define TOKEN_MAX_BYTES 4096
#define SHUTDOWN_CANCEL_GRACE_MS 2000  /* cancelled work's time to unwind before the deadline */
#define TURN_WORK ((int64_t)1 << 20)  /* inline work per loop turn (about a millisecond or two) */

struct config {
    const char *listen[MAX_LISTEN];
    int nlisten;
    const char *unix_path;
    uint64_t max_frame_bytes;
    int64_t max_tensor_bytes;
    int64_t session_max_bytes;
    int64_t max_bytes;
    int64_t max_sessions;
    uint64_t session_ttl_ms;
    int threads;
    int worker_nice;
    const char *auth_token_file;
    bool insecure_no_auth;
    const char *log_level;
    const char *log_format;
    int64_t max_connections;
    uint64_t idle_timeout_ms;
    const char *metrics_listen;
    const char *data_dir;
    const char *log_file;
    uint64_t shutdown_timeout_ms;
    uint64_t max_request_ms;
    int64_t max_op_elements;
    int64_t session_max_disk_bytes;  /* -1 until set: then derived from session_max_bytes */
    int64_t max_disk_bytes;          /* -1 until set: then derived from max_bytes */
    bool shared_files;
    int listen_source;   /* which source (1 file, 2 environment, 3 command line) set `listen` */
    int source;          /* the source being applied now */
};

/* ---- flags ---- */

#define MAX_THREADS 1024  /* --threads: libuv's own cap on its pool */

/* The one place defaults live: a flag's `dflt` is applied as its first value, before the
** config file, the environment and the command line (and shown in --help), unless `derived` says
** it is prose for a value main computes when no source set one (half of RAM, the CPU count). */
struct flag {
    const char *name;   /* without dashes; the env twin is TENSORD_<NAME> with - -> _ */
    const char *arg;    /* NULL: a switch (true/false; given alone on the command line: true) */
    const char *dflt;   /* NULL for --help and --version */
    const char *help;
    bool derived;       /* dflt describes a computed default (or "none") */
};

static const struct flag flags[] = {
    {"listen", "HOST:PORT", "127.0.0.1:7878",
     "TCP address to serve (repeatable; IPv4 or [IPv6])", false},
    {"unix", "PATH", "none", "also serve on a Unix socket, created mode 0600", true},
    {"max-frame-bytes", "SIZE", "1G", "largest request frame accepted", false},
    {"max-tensor-bytes", "SIZE", "1G", "largest single tensor", false},
    {"session-max-bytes", "SIZE", "4G", "memory quota of one session", false},
    {"max-bytes", "SIZE", "half of RAM", "memory cap for all sessions together (RAM: the "
     "cgroup's memory limit when smaller, as in a container)", true},
    {"max-sessions", "N", "10000", "most sessions alive at once", false},
    {"session-ttl", "DURATION", "10m", "how long a session outlives its last connection", false},
    {"threads", "N", "CPU count", "worker threads for heavy ops", true},
    {"worker-nice", "N", "5",
     "nice increment of the threads that run heavy ops, so the event loop preempts them (0-19)",
     false},
    {"auth-token-file", "PATH", "none", "require clients to present the token in this file (at "
     "least 16 bytes, no control bytes; re-read on SIGHUP)", true},
    {"data-dir", "DIR", "none",
     "persistence: Save/Load files, and sessions kept across a restart (written on SIGTERM)", true},
    {"session-max-disk-bytes", "SIZE", "2x --session-max-bytes, at most 8G",
     "disk quota of one session under --data-dir: its Save files and its snapshot; 0: none", true},
    {"max-disk-bytes", "SIZE", "4x --max-bytes, at most 64G",
     "disk cap for all sessions together under --data-dir; 0: none", true},
    {"shared-files", NULL, "off", "one Save/Load namespace for all sessions: any session may read "
     "or overwrite any saved file (an operator's choice; by default each session sees only its "
     "own files)", false},
    {"shutdown-timeout", "DURATION", "30s",
     "on SIGTERM, how long to wait for in-flight work before writing sessions and exiting; "
     "work still running near the end is cancelled so it ends in time", false},
    {"max-request-seconds", "DURATION", "60", "fail a request still running after this long "
     "(seconds, or with a suffix); 0: unlimited", false},
    {"max-op-elements", "N", "1099511627776", "fail a request whose work (elements read and "
     "written, plus flops) is above N, far above any honest use of --max-bytes; 0: unlimited",
     false},
    {"insecure-no-auth", NULL, "off", "allow non-loopback listening without a token", false},
    {"max-connections", "N", "1024", "connections served at once; more are refused at once",
     false},
    {"idle-timeout", "DURATION", "30s", "close a connection silent this long before its Hello or "
     "midway through a request (or sending one slower than 1 KiB/s), or whose peer stops reading "
     "its replies; 0: never", false},
    {"metrics-listen", "HOST:PORT", "none",
     "serve Prometheus /metrics, /healthz and /readyz over HTTP here", true},
    {"log-level", "LEVEL", "info", "debug, info, warn or error", false},
    {"log-format", "FORMAT", "text", "text (key=value) or json, one line per event", false},
    {"log-file", "PATH", "stderr", "append the log to PATH (reopened on SIGHUP, for rotation)",
     true},
    {"config", "FILE", "none", "read settings from FILE: 'key = value' lines, keys as flag names",
     true},
    {"help", NULL, NULL, "show this help", false},
    {"version", NULL, NULL, "show the version", false},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tensord [flags]\n\ntensord serves PyTorch-style tensors over the "
               "network. Flags (each also read from TENSORD_<FLAG>, e.g. TENSORD_LISTEN):\n\n");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", flags[i].name, flags[i].arg ? " " : "",
                 flags[i].arg ? flags[i].arg : "");
        fprintf(f, "  %-31s %s", left, flags[i].help);
        if (flags[i].dflt != NULL) {
            fprintf(f, " (default: %s)", flags[i].dflt);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nSIZE takes bytes or a suffix K, M, G, T (powers of 1024); DURATION takes "
               "seconds or a suffix ms, s, m, h.\n");
}

static int bad_value(const char *flag, const char *v, const char *why)
{
    fprintf(stderr, "tensord: invalid value '%s' for --%s: %s\n", v, flag, why);
    return -1;
}

static int parse_size(const char *flag, const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0 || !(v[0] >= '0' && v[0] <= '9')) {  /* no sign, no spaces */
        return bad_value(flag, v, "want a byte count such as 1048576, 64M or 2G");
    }
    int shift = 0;
    switch (*end) {
    case '\0': break;
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: return bad_value(flag, v, "unknown size suffix (use K, M, G or T)");
    }
    if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end != '\0' || n > (unsigned long long)(INT64_MAX >> shift)) {
        return bad_value(flag, v, "want a byte count such as 1048576, 64M or 2G");
    }
    *out = (int64_t)(n << shift);
    return 0;
}

static int parse_duration_ms(const char *flag, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0 || v[0] == '-') {
        return bad_value(flag, v, "want seconds or a duration such as 500ms, 30s, 10m");
    }
    uint64_t mul;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0) {
        mul = 1000;
    } else if (strcmp(end, "ms") == 0) {
        mul = 1;
    } else if (strcmp(end, "m") == 0) {
        mul = 60000;
    } else if (strcmp(end, "h") == 0) {
        mul = 3600000;
    } else {
        return bad_value(flag, v, "unknown duration suffix (use ms, s, m or h)");
    }
    if (n > UINT64_MAX / mul) {
        return bad_value(flag, v, "too large");
    }
    *out = n * mul;
    return 0;
}

static int parse_count(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || n < lo || n > hi) {
        char why[96];
        snprintf(why, sizeof why, "want a whole number from %lld to %lld", (long long)lo,
                 (long long)hi);
        return bad_value(flag, v, why);
    }
    *out = n;
    return 0;
}

/* HOST:PORT with a numeric IPv4 host or a bracketed IPv6 one (names are not resolved). */
static bool valid_listen(const char *v)
{
    char host[64];
    const char *colon;
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - v - 1) >= sizeof host) {
            return false;
        }
        memcpy(host, v + 1, (size_t)(end - v - 1));
        host[end - v - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL || (size_t)(colon - v) >= sizeof host) {
            return false;
        }
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
    }
    unsigned char buf[16];
    char *end;
    long port = strtol(colon + 1, &end, 10);
    bool ip = inet_pton(v[0] == '[' ? AF_INET6 : AF_INET, host, buf) == 1;
    return ip && colon[1] != '\0' && *end == '\0' && port >= 0 && port <= 65535;
}

/* A switch's value. Strict: a typo must not turn a safety off (nor silently leave it on). */
static int parse_switch(const char *flag, const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false",
                                                                               "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return 0;
        }
    }
    return bad_value(flag, v, "want true or false (1/0, yes/no, on/off)");
}

static int apply_flag(struct config *cfg, const char *name, const char *v)
{
    int64_t n;
    if (strcmp(name, "listen") == 0) {
        if (!valid_listen(v)) {
            return bad_value(name, v, "want HOST:PORT with an IPv4 address or [IPv6] and a port "
                             "from 0 to 65535");
        }
        if (cfg->listen_source != cfg->source) {
            cfg->nlisten = 0;  /* a later source's addresses replace an earlier one's */
            cfg->listen_source = cfg->source;
        }
        if (cfg->nlisten == MAX_LISTEN) {
            return bad_value(name, v, "too many --listen addresses");
        }
        cfg->listen[cfg->nlisten++] = v;
        return 0;
    }
    if (strcmp(name, "metrics-listen") == 0) {
        if (!valid_listen(v)) {
            return bad_value(name, v, "want HOST:PORT, e.g. 127.0.0.1:9090");
        }
        cfg->metrics_listen = v;
        return 0;
    }
    if (strcmp(name, "unix") == 0) {
        if (v[0] == '\0' || strlen(v) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
            return bad_value(name, v, "want a socket path of 1 to 107 bytes");
        }
        cfg->unix_path = v;
        return 0;
    }
    if (strcmp(name, "max-frame-bytes") == 0) {
        if (parse_size(name, v, &n) != 0) {
            return -1;
        }
        if (n < 1024) {
            return bad_value(name, v, "must be at least 1K");
        }
        cfg->max_frame_bytes = (uint64_t)n;
        return 0;
    }
    if (strcmp(name, "max-tensor-bytes") == 0) {
        return parse_size(name, v, &cfg->max_tensor_bytes);
    }
    if (strcmp(name, "session-max-bytes") == 0) {
        return parse_size(name, v, &cfg->session_max_bytes);
    }
    if (strcmp(name, "max-bytes") == 0) {
        return parse_size(name, v, &cfg->max_bytes);
    }
    if (strcmp(name, "max-sessions") == 0) {
        return parse_count(name, v, 1, INT32_MAX, &cfg->max_sessions);
    }
    if (strcmp(name, "session-ttl") == 0) {
        return parse_duration_ms(name, v, &cfg->session_ttl_ms);
    }
    if (strcmp(name, "threads") == 0) {
        if (parse_count(name, v, 1, MAX_THREADS, &n) != 0) {
            return -1;
        }
        cfg->threads = (int)n;
        return 0;
    }
    if (strcmp(name, "worker-nice") == 0) {
        if (parse_count(name, v, 0, 19, &n) != 0) {
            return -1;
        }
        cfg->worker_nice = (int)n;
        return 0;
    }
    if (strcmp(name, "auth-token-file") == 0) {
        cfg->auth_token_file = v;
        return 0;
    }
    if (strcmp(name, "log-file") == 0) {
        if (v[0] == '\0') {
            return bad_value(name, v, "want a file path");
        }
        cfg->log_file = v;
        return 0;
    }
    if (strcmp(name, "data-dir") == 0) {
        if (v[0] == '\0' || strlen(v) > 3000) {
            return bad_value(name, v, "want a directory path");
        }
        cfg->data_dir = v;
        return 0;
    }
    if (strcmp(name, "shutdown-timeout") == 0) {
        return parse_duration_ms(name, v, &cfg->shutdown_timeout_ms);
    }
    if (strcmp(name, "insecure-no-auth") == 0) {
        return parse_switch(name, v, &cfg->insecure_no_auth);
    }
    if (strcmp(name, "shared-files") == 0) {
        return parse_switch(name, v, &cfg->shared_files);
    }
    if (strcmp(name, "session-max-disk-bytes") == 0) {
        return parse_size(name, v, &cfg->session_max_disk_bytes);
    }
    if (strcmp(name, "max-disk-bytes") == 0) {
        return parse_size(name, v, &cfg->max_disk_bytes);
    }
    if (strcmp(name, "max-request-seconds") == 0) {
        return parse_duration_ms(name, v, &cfg->max_request_ms);
    }
    if (strcmp(name, "max-op-elements") == 0) {
        return parse_count(name, v, 0, INT64_MAX, &cfg->max_op_elements);
    }
    if (strcmp(name, "idle-timeout") == 0) {
        return parse_duration_ms(name, v, &cfg->idle_timeout_ms);
    }
    if (strcmp(name, "max-connections") == 0) {
        return parse_count(name, v, 1, 1000000, &cfg->max_connections);
    }
    if (strcmp(name, "log-format") == 0) {
        if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
            return bad_value(name, v, "want text or json");
        }
        cfg->log_format = v;
        return 0;
    }
    if (strcmp(name, "config") == 0) {
        return 0;  /* read before everything else, in parse_config */
    }
    if (strcmp(name, "log-level") == 0) {
        enum td_log_level lvl;
        if (td_log_parse_level(v, &lvl) != 0) {
            return bad_value(name, v, "want debug, info, warn or error");
        }
        cfg->log_level = v;
        return 0;
    }
    fprintf(stderr, "tensord: unknown flag --%s (see --help)\n", name);
    return -1;
}

static const struct flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) {
            return &flags[i];
        }
    }
    return NULL;
}

/* A true/false setting (--help and --version are actions, not settings). */
static bool is_switch(const struct flag *f)
{
    return f->arg == NULL && f->dflt != NULL;
}

/* Reads `key = value` lines ('#' starts a comment; keys are flag names, '_' or '-'). The values
** are kept for the process's lifetime. Returns 0 or -1 (message printed). */
static int read_config_file(struct config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "tensord: cannot read --config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *p = line, *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' ||
                         p[n - 1] == '\t')) {
            p[--n] = '\0';
        }
        if (n == 0) {
            continue;
        }
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            fprintf(stderr, "tensord: %s line %d: want 'key = value'\n", path, lineno);
            rc = -1;
            break;
        }
        char *key = p, *val = eq + 1, *kend = eq;
        while (kend > key && (kend[-1] == ' ' || kend[-1] == '\t')) {
            kend--;
        }
        *kend = '\0';
        while (*val == ' ' || *val == '\t') {
            val++;
        }
        for (char *c = key; *c; c++) {
            *c = *c == '_' ? '-' : *c;
        }
        const struct flag *fl = find_flag(key, strlen(key));
        if (fl == NULL || fl->arg == NULL || strcmp(key, "config") == 0) {
            if (fl != NULL && is_switch(fl)) {
                if ((rc = apply_flag(cfg, key, val)) != 0) {
                    fprintf(stderr, "tensord: (from %s line %d)\n", path, lineno);
                }
                continue;
            }
            fprintf(stderr, "tensord: %s line %d: unknown setting '%s'\n", path, lineno, key);
            rc = -1;
            break;
        }
        /* Values live as long as the process; a static table keeps them reachable. */
        static char *kept[256];
        static size_t nkept;
        char *copy = nkept < sizeof kept / sizeof kept[0] ? strdup(val) : NULL;
        if (copy != NULL) {
            kept[nkept++] = copy;
        }
        if (copy == NULL || apply_flag(cfg, key, copy) != 0) {
            fprintf(stderr, "tensord: (from %s line %d)\n", path, lineno);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

/* The config file first, then the environment, then the command line, so flags win. Returns 0,
** 1 (exit 0 after --help or --version) or -1 (invalid: exit 2). */
static int parse_config(struct config *cfg, int argc, char **argv)
{
    cfg->source = 0;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (flags[i].dflt != NULL && !flags[i].derived &&
            apply_flag(cfg, flags[i].name, flags[i].dflt) != 0) {
            fprintf(stderr, "tensord: (the built-in default of --%s)\n", flags[i].name);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path != NULL) {
            cfg->source = 1;
            if (read_config_file(cfg, path) != 0) {
                return -1;
            }
        }
    }
    const char *envcfg = getenv("TENSORD_CONFIG");
    if (envcfg != NULL && envcfg[0] != '\0' && cfg->source == 0) {
        cfg->source = 1;
        if (read_config_file(cfg, envcfg) != 0) {
            return -1;
        }
    }
    cfg->source = 2;
    static char envbuf[sizeof flags / sizeof flags[0]][64];
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if ((flags[i].arg == NULL && !is_switch(&flags[i])) ||
            strcmp(flags[i].name, "config") == 0) {
            continue;
        }
        char *e = envbuf[i];
        int k = snprintf(e, sizeof envbuf[i], "TENSORD_");
        for (const char *p = flags[i].name; *p && k < 62; p++) {
            e[k++] = *p == '-' ? '_' : (char)(*p - ('a' <= *p && *p <= 'z' ? 32 : 0));
        }
        e[k] = '\0';
        const char *v = getenv(e);
        if (v != NULL && v[0] != '\0') {
            if (apply_flag(cfg, flags[i].name, v) != 0) {
                fprintf(stderr, "tensord: (from the environment variable %s)\n", e);
                return -1;
            }
        }
    }
    cfg->source = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tensord: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct flag *f = find_flag(a, len);
        if (f == NULL) {
            fprintf(stderr, "tensord: unknown flag --%.*s (see --help)\n", (int)len, a);
            return -1;
        }
        if (strcmp(f->name, "help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(f->name, "version") == 0) {
            printf("tensord %s\n", TD_VERSION);
            return 1;
        }
        const char *v = "1";
        if (f->arg == NULL && eq != NULL) {
            v = eq + 1;  /* --insecure-no-auth=false */
        } else if (f->arg != NULL) {
            if (eq != NULL) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                fprintf(stderr, "tensord: --%s needs a value (%s)\n", f->name, f->arg);
                return -1;
            }
        }
        if (apply_flag(cfg, f->name, v) != 0) {
            return -1;
        }
    }
    return 0;
}

static bool is_loopback(const char *spec)
{
    return strncmp(spec, "127.", 4) == 0 || strncmp(spec, "[::1]:", 6) == 0 ||
           strncmp(spec, "localhost:", 10) == 0;
}

static void startup_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Is p[0..n) well-formed UTF-8? (The token travels as a protobuf string, which clients such as
** Python's protobuf refuse to build from anything else.) */
static bool valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        size_t len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3
                   : (b & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || i + len > n || (len == 2 && b < 0xc2) || (len == 4 && b > 0xf4)) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        uint32_t cp = len == 1 ? b : len == 2 ? (uint32_t)(b & 0x1f)
                                   : len == 3 ? (uint32_t)(b & 0x0f) : (uint32_t)(b & 7);
        for (size_t k = 1; k < len; k++) {
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;  /* overlong, out of range, or a surrogate */
        }
        i += len;
    }
    return true;
}

/* Reads the token file whole, in binary (finding 5 of issue 14: a NUL used to end the token
** early, and an empty file meant no authentication at all). Trailing whitespace (the newline an
** editor adds) is dropped; what is left must be 16 to 4096 bytes of UTF-8 with no NUL or other
** control byte. Returns the token (td_malloc'd), or NULL with the reason in `why`; the reason
** never quotes the token. */
static char *read_token_file(const char *path, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "cannot read it: %s", strerror(errno));
        return NULL;
    }
    uint8_t buf[TOKEN_MAX_BYTES + 2];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(why, cap, "cannot read it: %s", strerror(errno));
            close(fd);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) == sizeof buf) {
            break;
        }
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                     buf[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        snprintf(why, cap, "the token is empty (an empty token would let every client in)");
        return NULL;
    }
    if (n > TOKEN_MAX_BYTES) {
        snprintf(why, cap, "the token is longer than %d bytes", TOKEN_MAX_BYTES);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == 0) {
            snprintf(why, cap, "the token contains a NUL byte (at offset %zu)", i);
            return NULL;
        }
        if (buf[i] < 0x20 || buf[i] == 0x7f) {
            snprintf(why, cap, "the token contains a control byte 0x%02x (at offset %zu)", buf[i],
                     i);
            return NULL;
        }
    }
    if (!valid_utf8(buf, n)) {
        snprintf(why, cap, "the token is not valid UTF-8");
        return NULL;
    }
    if (n < TOKEN_MIN_BYTES) {
        snprintf(why, cap, "the token is shorter than %d bytes", TOKEN_MIN_BYTES);
        return NULL;
    }
    char *token = td_malloc(n + 1);
    if (token == NULL) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    memcpy(token, buf, n);
    token[n] = '\0';
    return token;
}

/* ---- wiring ---- */

struct server {
    uv_loop_t *loop;
    struct td_net net;
    struct td_store store;
    struct td_rpc_server rpc;
    struct td_executor executor;
    uv_timer_t sweep;
    uv_prepare_t turn;                  /* each loop turn: td_store_turn */
    uv_idle_t turn_spin;                /* active while sessions wait for the next turn */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;                   /* on SIGTERM: waits for in-flight work */
    uint64_t drain_deadline_ms;
    uint64_t cancel_at_ms;              /* then cancel what still runs (td_store_cancel_all) */
    bool work_cancelled;
    uint64_t shutdown_timeout_ms;
    const char *sessions_dir;           /* --data-dir/sessions, or NULL */
    struct td_http metrics;
    const char *auth_token_file;        /* re-read on SIGHUP */
    const char *log_file;               /* reopened on SIGHUP */
    char *token;                        /* owned; what rpc.auth_token points to */
    bool stopping;
    int64_t max_connections;
    int worker_nice;                    /* --worker-nice, applied to heavy-work threads */
};

static struct server server;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct pool_work {
    uv_work_t req;
    struct td_job *job;
};

/* Heavy work runs at a lower priority than the event loop (--worker-nice): on a busy core the
** scheduler then picks the loop thread as soon as a tiny request wakes it, instead of letting it
** queue behind BLAS time slices. Linux keeps a nice value per thread (the id setpriority takes
** for PRIO_PROCESS may be a thread id), and threads inherit it from the thread that creates
** them, so the kernels' short-lived helper threads follow. */

static void lower_priority(pid_t tid)
{
    if (server.worker_nice > 0 &&
        setpriority(PRIO_PROCESS, (id_t)tid, server.worker_nice) != 0) {
        td_log(TD_LOG_WARN, "worker_nice", "tid=%d err=\"%s\"", (int)tid, strerror(errno));
    }
}

/* OpenBLAS starts its threads when the library loads, before main: lower every thread but the
** loop's (this one). */
static void lower_blas_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) {
        return;
    }
    pid_t self = (pid_t)syscall(SYS_gettid);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != self) {
            lower_priority(tid);
        }
    }
    closedir(d);
}

static void pool_run(uv_work_t *req)
{
    struct pool_work *w = req->data;
    w->job->run(w->job);
}

/* At start, one work item per pool thread lowers that thread: each waits until all have
** arrived, so no thread takes two (bounded: if the pool were smaller, they give up after 2 s). */
static struct {
    uv_mutex_t mu;
    uv_cond_t cond;
    int arrived, expected;
    uv_work_t reqs[MAX_THREADS];
} nice_start;

static void nice_start_run(uv_work_t *req)
{
    (void)req;
    lower_priority((pid_t)syscall(SYS_gettid));
    uv_mutex_lock(&nice_start.mu);
    nice_start.arrived++;
    uv_cond_broadcast(&nice_start.cond);
    uint64_t deadline = uv_hrtime() + 2000000000u;
    while (nice_start.arrived < nice_start.expected && uv_hrtime() < deadline) {
        (void)uv_cond_timedwait(&nice_start.cond, &nice_start.mu, 100000000u);
    }
    uv_mutex_unlock(&nice_start.mu);
}

static void nice_start_after(uv_work_t *req, int status)
{
    (void)req;
    (void)status;
}

static void lower_pool_threads(int threads)
{
    if (server.worker_nice == 0 || uv_mutex_init(&nice_start.mu) != 0) {
        return;
    }
    if (uv_cond_init(&nice_start.cond) != 0) {
        uv_mutex_destroy(&nice_start.mu);
        return;
    }
    uv_mutex_lock(&nice_start.mu);
    nice_start.expected = threads;
    for (int i = 0; i < nice_start.expected; i++) {
        if (uv_queue_work(server.loop, &nice_start.reqs[i], nice_start_run,
                          nice_start_after) != 0) {
            nice_start.expected = i;  /* those queued stop waiting for the rest */
            break;
        }
    }
    uv_mutex_unlock(&nice_start.mu);
}

static void pool_after(uv_work_t *req, int status)
{
    struct pool_work *w = req->data;
    (void)status;
    struct td_job *job = w->job;
    td_free(w);
    td_session_job_complete(job);
}

static void pool_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    struct pool_work *w = td_malloc(sizeof *w);
    if (w != NULL) {
        /* Filled before queueing: a worker may pick the item up at once. */
        w->req.data = w;
        w->job = job;
    }
    if (w == NULL || uv_queue_work(server.loop, &w->req, pool_run, pool_after) != 0) {
        /* No memory for the work item: run it here rather than lose it. */
        td_free(w);
        job->run(job);
        td_session_job_complete(job);
    }
}

struct glue_conn {
    struct td_conn *conn;
    struct td_rpc_peer *peer;
    bool paused;                    /* td_conn_pause for PEER_PAUSE_PENDING queued requests
                                    ** or PEER_PAUSE_BYTES of them */
    bool data_waiting;              /* glue_data_alloc said "later": net counts one pause, which
                                    ** the next reply lifts (each pause has its own resume) */
    int busy;                       /* glue_frame / glue_reply on the stack */
    bool closed;                    /* on_close came meanwhile: free when the last one returns */
};

/* A send or a close can close the connection at once (out of memory), and net calls on_close
** synchronously: while a glue callback is on the stack, glue_close only marks g, and the
** outermost callback frees it. */
static void glue_enter(struct glue_conn *g)
{
    g->busy++;
}

static void glue_leave(struct glue_conn *g)
{
    if (--g->busy == 0 && g->closed) {
        td_free(g);
    }
}

static void glue_reply(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct glue_conn *g = user;
    glue_enter(g);
    if (r->frame == NULL) {
        td_conn_close(g->conn);
        glue_leave(g);
        return;
    }
    struct td_out parts[2] = {
        {r->frame, r->frame_len, td_free, r->frame},
        {r->data, r->data_len, r->release, r->release_arg},
    };
    td_conn_send(g->conn, parts, r->data_len > 0 || r->release != NULL ? 2 : 1);
    if (g->closed) {
        /* the send failed and closed the connection */
    } else if (r->close_after) {
        td_conn_close_after_flush(g->conn);
    } else {
        if (g->data_waiting) {
            /* A reply frees what the session's queued work held: ask rpc again (net does, in
            ** td_conn_resume, once no other pause is left). Cleared first: the retry may say
            ** "later" again and set it anew. */
            g->data_waiting = false;
            td_conn_resume(g->conn);
        }
        if (!g->closed && g->paused && p->pending <= PEER_RESUME_PENDING &&
            p->queued_bytes <= PEER_PAUSE_BYTES / 2) {
            g->paused = false;
            td_conn_resume(g->conn);
        }
    }
    glue_leave(g);
}

/* net asks for a frame's data section: rpc allocates it and charges it to the session (quota
** and --max-bytes), or says "later" (the session's queued work holds the quota: the connection
** pauses until this peer's next reply, glue_reply), or refuses (net discards the bytes and rpc
** answers the frame with its error). */
static int glue_data_alloc(struct td_conn *c, void *user, size_t len, void **out)
{
    struct glue_conn *g = user;
    (void)c;
    struct td_err err;
    td_err_clear(&err);
    int rc = td_rpc_data_alloc(g->peer, len, out, &err);
    if (rc == 0) {
        return 0;
    }
    /* TD_RPC_DATA_LATER shares its value with TD_EINVAL: "later" is the one answer that comes
    ** without an error record. */
    if (rc == TD_RPC_DATA_LATER && err.code == 0) {
        if (g->peer->pending == 0) {
            /* Nothing of this peer's is queued, so no reply would come to resume it: waiting
            ** would be for ever (another connection's work holds the session's quota). Refused
            ** now instead, rpc answers the frame with the quota's error. */
            return -1;
        }
        g->data_waiting = true;
        return TD_NET_DATA_LATER;
    }
    return rc == TD_NET_DATA_LATER ? -1 : rc;  /* any refusal but "later" */
}

static void *glue_open(struct td_conn *c, void *user)
{
    (void)user;
    struct glue_conn *g = td_calloc(1, sizeof *g);
    if (g == NULL) {
        return NULL;
    }
    g->conn = c;
    if (td_rpc_peer_new(&g->peer, &server.rpc, glue_reply, g) != 0) {
        td_free(g);
        return NULL;
    }
    td_rpc_peer_set_addr(g->peer, td_conn_peer(c), td_conn_id(c));
    if ((int64_t)server.net.nconns > server.max_connections) {
        /* Refused at once, with a reason, rather than left hanging. */
        char msg[96];
        snprintf(msg, sizeof msg, "connection limit reached: max_connections %lld",
                 (long long)server.max_connections);
        td_log(TD_LOG_WARN, "conn_refused", "conn=%llu peer=%s reason=max_connections",
               (unsigned long long)td_conn_id(c), td_conn_peer(c));
        td_rpc_reply_error(g->peer, 0, TD_ELIMIT, msg, true);
    }
    return g;
}

static void glue_frame(struct td_conn *c, void *user, const uint8_t *meta, size_t meta_len,
                       void *data, size_t data_len)
{
    struct glue_conn *g = user;
    glue_enter(g);
    td_rpc_handle(g->peer, meta, meta_len, data, data_len);
    if (g->closed) {
        glue_leave(g);
        return;
    }
    if (g->peer->session != NULL) {
        td_conn_established(c);
    }
    if (!g->paused && (g->peer->pending >= PEER_PAUSE_PENDING ||
                       g->peer->queued_bytes > PEER_PAUSE_BYTES)) {
        g->paused = true;
        td_conn_pause(c);
    }
    glue_leave(g);
}

static void glue_frame_error(struct td_conn *c, void *user, int code, const char *msg)
{
    struct glue_conn *g = user;
    (void)c;
    td_rpc_reply_error(g->peer, 0, code, msg, true);
}

static void glue_close(struct td_conn *c, void *user)
{
    struct glue_conn *g = user;
    (void)c;
    td_rpc_peer_close(g->peer);
    g->closed = true;
    if (g->busy == 0) {
        td_free(g);
    }
}

/* Each loop turn, before the loop waits for I/O: a new inline work budget, and the sessions
** that spent the last one run on. While some still wait, an active idle handle keeps the loop
** from blocking in poll (it polls with a zero timeout instead), so they are resumed at once,
** after every connection with something ready has had its turn. */
static void on_turn_spin(uv_idle_t *h)
{
    (void)h;  /* its being active is the point: the loop polls without blocking */
}

static void on_turn(uv_prepare_t *h)
{
    (void)h;
    td_store_turn(&server.store);
    if (td_store_has_deferred(&server.store)) {
        if (!uv_is_active((uv_handle_t *)&server.turn_spin)) {
            uv_idle_start(&server.turn_spin, on_turn_spin);
        }
    } else if (uv_is_active((uv_handle_t *)&server.turn_spin)) {
        uv_idle_stop(&server.turn_spin);
    }
}

static void on_sweep(uv_timer_t *t)
{
    (void)t;
    int n = td_store_sweep(&server.store, now_ms());
    if (n > 0) {
        td_log(TD_LOG_INFO, "sessions_expired", "count=%d live=%zu", n,
               td_store_count(&server.store));
    }
}

/* ---- /metrics, /healthz, /readyz ---- */

struct text {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void text_add(struct text *t, const char *fmt, ...)
{
    if (t->failed) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *nb = td_realloc(t->buf, cap);
        if (nb == NULL) {
            t->failed = true;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
}

/* One family's samples for a kind or an op: part 0 requests, 1 errors, 2 the latency histogram
** (seconds). A family's samples must be contiguous, so callers loop over parts outermost. */
static void metric_counter(struct text *t, int part, const char *prefix, const char *label,
                           const char *name, const struct td_rpc_counter *c)
{
    if (part == 0) {
        text_add(t, "%s_requests_total{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name, c->count);
        return;
    }
    if (part == 1) {
        text_add(t, "%s_errors_total{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name, c->errors);
        return;
    }
    uint64_t cum = 0;
    for (int b = 0; b < TD_RPC_LAT_BUCKETS; b++) {
        cum += c->lat[b];
        if (b < TD_RPC_LAT_BUCKETS - 1) {
            text_add(t, "%s_duration_seconds_bucket{%s=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                     prefix, label, name, (double)td_rpc_lat_bounds_us[b] / 1e6, cum);
        } else {
            text_add(t, "%s_duration_seconds_bucket{%s=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                     prefix, label, name, cum);
        }
    }
    text_add(t, "%s_duration_seconds_sum{%s=\"%s\"} %.6f\n", prefix, label, name,
             (double)c->sum_us / 1e6);
    text_add(t, "%s_duration_seconds_count{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name,
             c->count);
}

static const char *const family_help[3][2] = {
    {"requests_total", "counter"}, {"errors_total", "counter"}, {"duration_seconds", "histogram"},
};

static void metrics_text(struct text *t)
{
    const struct td_rpc_stats *st = &server.rpc.stats;
    text_add(t, "# HELP tensord_info The daemon's version and the BLAS behind matmul.\n"
                "# TYPE tensord_info gauge\ntensord_info{version=\"%s\",blas=\"%s\"} 1\n",
             TD_VERSION, td_blas_describe());
    text_add(t, "# HELP tensord_uptime_seconds Time since start.\n"
                "# TYPE tensord_uptime_seconds gauge\ntensord_uptime_seconds %.3f\n",
             (double)(now_ms() - server.rpc.started_ms) / 1e3);
    text_add(t, "# HELP tensord_allocated_bytes Memory held for tensors, frames being received "
                "and replies in flight.\n# TYPE tensord_allocated_bytes gauge\n"
                "tensord_allocated_bytes %" PRId64 "\n", td_alloc_live_bytes());
    text_add(t, "# HELP tensord_buffer_cache_bytes Freed large buffers kept for reuse.\n"
                "# TYPE tensord_buffer_cache_bytes gauge\ntensord_buffer_cache_bytes %zu\n",
             td_alloc_cached_bytes());
    text_add(t, "# HELP tensord_connections Open client connections.\n"
                "# TYPE tensord_connections gauge\ntensord_connections %" PRIu64 "\n",
             st->connections);
    text_add(t, "# HELP tensord_connections_total Client connections accepted.\n"
                "# TYPE tensord_connections_total counter\ntensord_connections_total %" PRIu64
                "\n", st->connections_total);
    text_add(t, "# HELP tensord_auth_failures_total Hellos refused for a bad auth token.\n"
                "# TYPE tensord_auth_failures_total counter\ntensord_auth_failures_total %" PRIu64
                "\n", st->auth_failures);
    text_add(t, "# HELP tensord_sessions Live sessions.\n# TYPE tensord_sessions gauge\n"
                "tensord_sessions %zu\n", td_store_count(&server.store));
    text_add(t, "# HELP tensord_tensors Handle table entries over all sessions.\n"
                "# TYPE tensord_tensors gauge\ntensord_tensors %zu\n",
             td_store_tensor_count(&server.store));
    text_add(t, "# HELP tensord_bytes Tensor bytes charged to all sessions.\n"
                "# TYPE tensord_bytes gauge\ntensord_bytes %" PRId64 "\n",
             (int64_t)atomic_load(&server.store.global.used));
    text_add(t, "# HELP tensord_max_bytes The global memory cap (--max-bytes).\n"
                "# TYPE tensord_max_bytes gauge\ntensord_max_bytes %" PRId64 "\n",
             server.store.cfg.max_bytes);
    static const char *const what[3] = {"Requests", "Error replies",
                                        "Seconds from arrival to reply"};
    for (int part = 0; part < 3; part++) {
        text_add(t, "# HELP tensord_request_%s %s, by request kind.\n"
                    "# TYPE tensord_request_%s %s\n", family_help[part][0], what[part],
                 family_help[part][0], family_help[part][1]);
        for (int k = 0; k < TD_RPC_KINDS; k++) {
            const char *name = td_rpc_kind_name(k);
            if (name != NULL && st->kinds[k].count > 0) {
                metric_counter(t, part, "tensord_request", "kind", name, &st->kinds[k]);
            }
        }
    }
    for (int part = 0; part < 3; part++) {
        text_add(t, "# HELP tensord_op_%s %s, RunOp by op.\n# TYPE tensord_op_%s %s\n",
                 family_help[part][0], what[part], family_help[part][0], family_help[part][1]);
        for (int i = 0; i < TD_OP_COUNT; i++) {
            if (server.rpc.op_counters[i].count > 0) {
                metric_counter(t, part, "tensord_op", "op", td_ops[i].name,
                               &server.rpc.op_counters[i]);
            }
        }
    }
}

static int on_http(void *user, const char *path, char **body, const char **ctype)
{
    (void)user;
    struct text t = {0};
    int status = 200;
    if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        metrics_text(&t);
    } else if (strcmp(path, "/healthz") == 0) {
        text_add(&t, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        status = server.stopping ? 503 : 200;
        text_add(&t, server.stopping ? "stopping\n" : "ready\n");
    } else {
        status = 404;
        text_add(&t, "not found: try /metrics, /healthz or /readyz\n");
    }
    if (t.failed) {
        td_free(t.buf);
        t.buf = NULL;
        status = 503;
    }
    *body = t.buf;
    return status;
}

/* The terminal (or supervisor) stderr from before --log-file took it over. */
static int startup_stderr = -1;

/* A reason not to start goes to the log and, when the log is a file, to the original stderr
** too: whoever ran the daemon should see why it stopped. */
static void startup_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (startup_stderr >= 0) {
        va_start(ap, fmt);
        vdprintf(startup_stderr, fmt, ap);
        va_end(ap);
    }
}

/* Points stderr (where the log goes) at the --log-file, appending. */
static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return -1;
    }
    int rc = dup2(fd, STDERR_FILENO) < 0 ? -1 : 0;
    close(fd);
    return rc;
}

/* SIGHUP: reopen the log file (after rotation), re-read the token file, so a token can be rotated without a restart. A file that
** cannot be read keeps the old token (and says why). */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (server.log_file != NULL && open_log(server.log_file) != 0) {
        td_log(TD_LOG_ERROR, "log_reopen_failed", "file=%s err=\"%s\"", server.log_file,
               strerror(errno));
    }
    if (server.auth_token_file == NULL) {
        td_log(TD_LOG_INFO, "reload", "msg=\"nothing to reload: no --auth-token-file\"");
        return;
    }
    char why[160];
    char *token = read_token_file(server.auth_token_file, why, sizeof why);
    if (token == NULL) {
        td_log(TD_LOG_ERROR, "reload_failed", "file=%s reason=\"%s\" msg=\"keeping the previous "
               "token\"", server.auth_token_file, why);
        return;
    }
    td_free(server.token);
    server.token = token;
    server.rpc.auth_token = token;
    td_log(TD_LOG_INFO, "reload", "file=%s msg=\"auth token re-read\"", server.auth_token_file);
}

/* The last step of a shutdown: close connections, write the sessions, let the loop end. */
static void finish_shutdown(void)
{
    uv_close((uv_handle_t *)&server.drain, NULL);
    if (server.sessions_dir != NULL) {
        int failed = 0;
        struct td_persist_budget budget = {  /* snapshots count against the disk quotas */
            .disk = &server.rpc.disk, .root = server.rpc.data_dir,
            .max = server.rpc.max_disk_bytes, .session_max = server.rpc.session_max_disk_bytes,
            .files_dir = server.rpc.files_dir, .shared = server.rpc.shared_files,
        };
        int saved = td_store_save_all(&server.store, server.sessions_dir, &budget, &failed);
        td_log(failed ? TD_LOG_ERROR : TD_LOG_INFO, "sessions_saved", "count=%d failed=%d dir=%s",
               saved, failed, server.sessions_dir);
    }
    td_store_stop(&server.store);  /* after a timeout, queued work is not started */
    td_net_close_gracefully(&server.net);
    td_http_close(&server.metrics);
    uv_close((uv_handle_t *)&server.sweep, NULL);
    uv_close((uv_handle_t *)&server.turn, NULL);
    uv_close((uv_handle_t *)&server.turn_spin, NULL);
    uv_close((uv_handle_t *)&server.sigterm, NULL);
    uv_close((uv_handle_t *)&server.sigint, NULL);
    uv_close((uv_handle_t *)&server.sighup, NULL);
}

/* Every few milliseconds while stopping: done once no session has work queued or running and
** every reply owed has been written, or when --shutdown-timeout runs out. Work still queued or
** running a little before the deadline (SHUTDOWN_CANCEL_GRACE_MS, at most a quarter of the
** timeout) is cancelled: queued jobs are dropped and answered CANCELLED, a running one stops at
** its next chunk boundary. Cancelled work has no effect, so the sessions then saved hold what
** was answered, and a request that would run for ever cannot keep the daemon from exiting or
** its sessions from being written. Requests that finish before that point are run and answered
** as always. */
static void on_drain(uv_timer_t *t)
{
    (void)t;
    bool idle = !td_store_busy(&server.store) && td_net_flushed(&server.net);
    uint64_t now = now_ms();
    if (!idle && !server.work_cancelled && now >= server.cancel_at_ms) {
        server.work_cancelled = true;
        td_log(TD_LOG_WARN, "shutdown_cancel", "msg=\"cancelling the work still queued or "
               "running, so the shutdown ends within --shutdown-timeout\"");
        td_store_cancel_all(&server.store);
        return;  /* the next look sees what the cancel left */
    }
    if (!idle && now < server.drain_deadline_ms) {
        return;
    }
    uv_timer_stop(&server.drain);
    if (!idle) {
        td_log(TD_LOG_WARN, "shutdown_timeout", "msg=\"in-flight work did not finish in time; "
               "busy sessions are not saved\"");
    }
    finish_shutdown();
}

/* SIGTERM/SIGINT: stop accepting and reading, finish the requests already read and answer them,
** then write the sessions (with --data-dir) and exit 0. A second signal skips the waiting. */
static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (server.stopping) {
        if (uv_is_active((uv_handle_t *)&server.drain)) {
            /* Cancel now, and give the cancelled work a moment to unwind (so its session can
            ** still be saved) rather than the rest of the timeout. */
            td_log(TD_LOG_WARN, "shutdown_now", "signal=%d", signum);
            uint64_t soon = now_ms() + 200;
            server.cancel_at_ms = 0;
            server.drain_deadline_ms = soon < server.drain_deadline_ms ? soon
                                                                       : server.drain_deadline_ms;
        }
        return;
    }
    server.stopping = true;
    td_log(TD_LOG_INFO, "shutdown", "signal=%d", signum);
    td_net_stop_accepting(&server.net);
    td_net_drain(&server.net);  /* /metrics stays up, and /readyz says 503, until the end */
    uint64_t now = now_ms(), grace = server.shutdown_timeout_ms / 4;
    grace = grace < SHUTDOWN_CANCEL_GRACE_MS ? grace : SHUTDOWN_CANCEL_GRACE_MS;
    if (!td_add_u64(now, server.shutdown_timeout_ms, &server.drain_deadline_ms)) {
        server.drain_deadline_ms = UINT64_MAX;  /* --shutdown-timeout of centuries */
    }
    server.cancel_at_ms = server.drain_deadline_ms - grace;
    uv_timer_start(&server.drain, on_drain, 0, 5);
}

/* What this process may use: physical memory, or its cgroup's limit when smaller (a container). */
static int64_t usable_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    int64_t physical = (pages > 0 && size > 0) ? (int64_t)pages * size : (int64_t)8 << 30;
    return td_memory_limit(physical, "/proc/self/cgroup", "/sys/fs/cgroup");
}

/* Until the loop's handlers are installed, a stop signal is only noted (and SIGHUP ignored): a
** supervisor may stop the daemon as soon as it logs "listening", and that stop must still be
** graceful. Masking would not do: OpenBLAS starts its threads before main, unmasked. */
static volatile sig_atomic_t early_stop_signal;

static void note_early_signal(int signum)
{
    if (signum != SIGHUP) {
        early_stop_signal = signum;
    }
}

int main(int argc, char **argv)
{
    struct sigaction early = {.sa_handler = note_early_signal};
    sigemptyset(&early.sa_mask);
    sigaction(SIGTERM, &early, NULL);
    sigaction(SIGINT, &early, NULL);
    sigaction(SIGHUP, &early, NULL);
    /* Literal defaults come from the flag table (parse_config); these are the derived ones. */
    struct config cfg = {
        .max_bytes = usable_memory() / 2,
        .threads = (int)sysconf(_SC_NPROCESSORS_ONLN),
        .session_max_disk_bytes = -1,
        .max_disk_bytes = -1,
    };
    int prc = parse_config(&cfg, argc, argv);
    if (prc != 0) {
        return prc > 0 ? 0 : 2;
    }
    if (cfg.session_max_disk_bytes < 0) {
        /* Twice the memory quota (a snapshot and a Save of everything), capped; no memory quota:
        ** the cap. */
        int64_t twice = td_sat_mul(cfg.session_max_bytes, 2);
        cfg.session_max_disk_bytes = cfg.session_max_bytes > 0 && twice < SESSION_DISK_CAP
                                         ? twice : SESSION_DISK_CAP;
    }
    if (cfg.max_disk_bytes < 0) {
        int64_t four = td_sat_mul(cfg.max_bytes, 4);
        cfg.max_disk_bytes = cfg.max_bytes > 0 && four < DISK_CAP ? four : DISK_CAP;
    }
    td_log_parse_level(cfg.log_level, &td_log_min_level);
    if (cfg.log_file != NULL) {
        startup_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);  /* see startup_error */
    }
    if (cfg.log_file != NULL && open_log(cfg.log_file) != 0) {
        fprintf(stderr, "tensord: cannot open --log-file %s: %s\n", cfg.log_file, strerror(errno));
        return 2;
    }
    server.log_file = cfg.log_file;
    td_log_json = strcmp(cfg.log_format, "json") == 0;
    server.max_connections = cfg.max_connections;
    if (cfg.threads < 1) {
        cfg.threads = 1;
    }

    char *token = NULL;
    if (cfg.auth_token_file != NULL) {
        char why[160];
        if ((token = read_token_file(cfg.auth_token_file, why, sizeof why)) == NULL) {
            startup_error("tensord: --auth-token-file %s: %s\n", cfg.auth_token_file, why);
            return 2;
        }
    }
    for (int i = 0; i < cfg.nlisten; i++) {
        if (!is_loopback(cfg.listen[i]) && token == NULL && !cfg.insecure_no_auth) {
            startup_error("tensord: refusing to listen on %s without --auth-token-file "
                            "(or --insecure-no-auth)\n", cfg.listen[i]);
            return 2;
        }
    }
    if (token == NULL && cfg.insecure_no_auth) {
        /* Written whatever --log-level says: running open must never be silent. */
        td_log_write(TD_LOG_WARN, "insecure_no_auth", "msg=\"serving without authentication\"");
    }

    /* libuv reads the pool size once, at its first use. */
    char pool[16];
    snprintf(pool, sizeof pool, "%d", cfg.threads);
    setenv("UV_THREADPOOL_SIZE", pool, 1);
    openblas_set_num_threads(cfg.threads);
    td_parallel_set_threads(cfg.threads);
    server.worker_nice = cfg.worker_nice;
    /* Freed large buffers kept for reuse: at most 256 MiB, less when --max-bytes is small. */
    int64_t cache = cfg.max_bytes / 16;
    td_alloc_cache_limit(cache < ((int64_t)256 << 20) ? (size_t)cache : (size_t)256 << 20);
    lower_blas_threads();
    signal(SIGPIPE, SIG_IGN);

    if (td_siphash_key_init() != 0) {
        /* Handle tables keyed with a known key could be flooded (finding 6 of issue 14). */
        startup_error("tensord: no randomness available for the hash key\n");
        return 1;
    }
    server.loop = uv_default_loop();
    server.executor.submit = pool_submit;
    struct td_store_config scfg = {
        .max_bytes = cfg.max_bytes,
        .session_max_bytes = cfg.session_max_bytes,
        .max_tensor_bytes = cfg.max_tensor_bytes,
        .max_sessions = cfg.max_sessions,
        .session_max_handles = 1000000,
        .session_ttl_ms = cfg.session_ttl_ms,
        .turn_work = TURN_WORK,
        .entry_bytes = TD_ENTRY_BYTES,
    };
    td_store_init(&server.store, &scfg, &server.executor);
    server.store.on_expire = td_rpc_session_expired;  /* an expired session's files go too */
    server.store.on_expire_arg = &server.rpc;
    server.shutdown_timeout_ms = cfg.shutdown_timeout_ms;
    static char files_dir[4096], sessions_dir[4096];
    if (cfg.data_dir != NULL) {
        snprintf(files_dir, sizeof files_dir, "%s/files", cfg.data_dir);
        snprintf(sessions_dir, sizeof sessions_dir, "%s/sessions", cfg.data_dir);
        const char *dirs[] = {cfg.data_dir, files_dir, sessions_dir};
        for (int i = 0; i < 3; i++) {
            struct stat st;
            if (mkdir(dirs[i], 0700) != 0 && errno != EEXIST) {
                startup_error("tensord: cannot create --data-dir %s: %s\n", dirs[i],
                        strerror(errno));
                td_store_close(&server.store);
                td_free(token);
                return 2;
            }
            if (stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode) || access(dirs[i], W_OK) != 0) {
                startup_error("tensord: --data-dir %s is not a writable directory\n", dirs[i]);
                td_store_close(&server.store);
                td_free(token);
                return 2;
            }
        }
        server.rpc.files_dir = files_dir;
        server.rpc.data_dir = cfg.data_dir;
        server.sessions_dir = sessions_dir;
        int stale = td_persist_remove_temporaries(files_dir) +
                    td_persist_remove_temporaries(sessions_dir);
        if (stale > 0) {
            td_log(TD_LOG_WARN, "temporaries_removed", "count=%d msg=\"writes interrupted by a "
                   "crash\"", stale);
        }
        int failed = 0;
        int restored = td_store_restore_all(&server.store, sessions_dir, now_ms(), &failed);
        td_log(failed ? TD_LOG_ERROR : TD_LOG_INFO, "sessions_restored",
               "count=%d failed=%d dir=%s", restored, failed, sessions_dir);
    }
    server.rpc.store = &server.store;
    server.rpc.auth_token = token;
    server.token = token;
    server.auth_token_file = cfg.auth_token_file;
    server.rpc.max_frame_bytes = cfg.max_frame_bytes;
    server.rpc.heavy_work = 1 << 16;
    server.rpc.max_request_ms = cfg.max_request_ms;
    server.rpc.max_op_elements = cfg.max_op_elements;
    server.rpc.session_max_disk_bytes = cfg.session_max_disk_bytes;
    server.rpc.max_disk_bytes = cfg.max_disk_bytes;
    server.rpc.shared_files = cfg.shared_files;
    server.rpc.peer_max_unsent_bytes = (int64_t)WRITE_HIGH_WATER;
    server.rpc.now_ms = now_ms;
    server.rpc.started_ms = now_ms();
    td_map_init(&server.rpc.auth_penalty);
    if (getrandom(server.rpc.instance_id, sizeof server.rpc.instance_id, 0) !=
        (ssize_t)sizeof server.rpc.instance_id) {
        startup_error("tensord: no randomness available\n");
        return 1;
    }

    struct td_net_config ncfg = {
        .max_frame_bytes = cfg.max_frame_bytes,
        .max_meta_bytes = 1u << 20,
        .write_high_water = WRITE_HIGH_WATER,
        .idle_timeout_ms = cfg.idle_timeout_ms,
        .min_frame_rate = MIN_FRAME_RATE,
    };
    struct td_net_callbacks cb = {
        .on_open = glue_open,
        .on_frame = glue_frame,
        .on_data_alloc = glue_data_alloc,
        .on_frame_error = glue_frame_error,
        .on_close = glue_close,
    };
    td_net_init(&server.net, server.loop, &ncfg, &cb);

    int rc = 0;
    struct td_err err;
    char bound[160];
    for (int i = 0; i < cfg.nlisten + (cfg.unix_path != NULL); i++) {
        char spec[256];
        if (i < cfg.nlisten) {
            snprintf(spec, sizeof spec, "%s", cfg.listen[i]);
        } else {
            snprintf(spec, sizeof spec, "unix:%s", cfg.unix_path);
        }
        if (td_net_listen(&server.net, spec, bound, sizeof bound, &err) != 0) {
            startup_error("tensord: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        td_log(TD_LOG_INFO, "listening", "addr=%s", bound);
    }
    if (cfg.metrics_listen != NULL) {
        if (td_http_listen(&server.metrics, server.loop, cfg.metrics_listen, on_http, NULL, bound,
                           sizeof bound, &err) != 0) {
            startup_error("tensord: metrics: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        td_log(TD_LOG_INFO, "metrics_listening", "addr=%s", bound);
        if (!is_loopback(cfg.metrics_listen)) {
            td_log(TD_LOG_WARN, "metrics_exposed", "addr=%s msg=\"metrics are served without "
                   "authentication\"", bound);
        }
    }
    td_log(TD_LOG_INFO, "started", "version=%s threads=%d max_frame_bytes=%" PRIu64
           " max_tensor_bytes=%" PRId64 " session_max_bytes=%" PRId64 " max_bytes=%" PRId64
           " session_ttl_ms=%" PRIu64 " max_request_ms=%" PRIu64 " max_op_elements=%" PRId64
           " session_max_disk_bytes=%" PRId64 " max_disk_bytes=%" PRId64 " shared_files=%d",
           TD_VERSION, cfg.threads, cfg.max_frame_bytes, cfg.max_tensor_bytes,
           cfg.session_max_bytes, cfg.max_bytes, cfg.session_ttl_ms, cfg.max_request_ms,
           cfg.max_op_elements, cfg.session_max_disk_bytes, cfg.max_disk_bytes,
           (int)cfg.shared_files);

    if (startup_stderr >= 0) {
        close(startup_stderr);  /* started: from here on everything goes to the log */
        startup_stderr = -1;
    }
    uv_prepare_init(server.loop, &server.turn);
    uv_prepare_start(&server.turn, on_turn);
    uv_unref((uv_handle_t *)&server.turn);  /* runs while the loop does; keeps it alive only
                                             ** through turn_spin, while work waits */
    uv_idle_init(server.loop, &server.turn_spin);
    uv_timer_init(server.loop, &server.sweep);
    uint64_t every = cfg.session_ttl_ms / 4;
    every = every < 100 ? 100 : every > 5000 ? 5000 : every;
    uv_timer_start(&server.sweep, on_sweep, every, every);
    uv_signal_init(server.loop, &server.sigterm);
    uv_signal_start(&server.sigterm, on_signal, SIGTERM);
    uv_signal_init(server.loop, &server.sigint);
    uv_signal_start(&server.sigint, on_signal, SIGINT);
    uv_timer_init(server.loop, &server.drain);
    uv_signal_init(server.loop, &server.sighup);
    uv_signal_start(&server.sighup, on_sighup, SIGHUP);
    lower_pool_threads(cfg.threads);
    if (early_stop_signal != 0) {
        on_signal(&server.sigterm, early_stop_signal);
    }

    uv_run(server.loop, UV_RUN_DEFAULT);
    td_log(TD_LOG_INFO, "stopped", "sessions=%zu", td_store_count(&server.store));
out:
    if (rc != 0) {
        td_net_close(&server.net);
        td_http_close(&server.metrics);
        uv_run(server.loop, UV_RUN_DEFAULT);
    }
    td_store_close(&server.store);
    td_rpc_server_close(&server.rpc);
    uv_loop_close(server.loop);
    td_free(server.token);
    return rc;
}
