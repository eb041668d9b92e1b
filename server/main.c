/* server/main.c — the process: startup, the loop's timers, signals and the shutdown sequence.
**
** main reads the settings (config.c), sets up the store, the rpc server and the listeners, and
** wires the layers together through the files beside it: glue.c joins net's connections to rpc's
** peers, threads.c runs heavy session jobs on libuv's pool at --worker-nice, metrics.c answers
** the HTTP listener, token.c reads the auth token file. These top-level files are the only
** place that knows all layers. SIGTERM and SIGINT stop listening, let in-flight work finish,
** write the sessions (with --data-dir) and exit 0; SIGHUP reopens the log and re-reads the token.
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "base/log.h"
#include "base/node.h"
#include "base/siphash.h"
#include "config.h"
#include "glue.h"
#include "metrics.h"
#include "net/http.h"
#include "net/net.h"
#include "peers.h"
#include "rpc/rpc.h"
#include "session/persist.h"
#include "session/session.h"
#include "threads.h"
#include "token.h"

#define MIN_FRAME_RATE 1024 /* bytes/s a frame must average once --idle-timeout has passed */
#define WRITE_HIGH_WATER ((size_t)64 << 20) /* a connection's unwritten replies: stop reading it */
#define SHUTDOWN_CANCEL_GRACE_MS 2000 /* cancelled work's time to unwind before the deadline */
#define TURN_WORK ((int64_t)1 << 20)  /* inline work per loop turn (about a millisecond or two) */

static bool is_loopback(const char *spec)
{
    return strncmp(spec, "127.", 4) == 0 || strncmp(spec, "[::1]:", 6) == 0 ||
           strncmp(spec, "localhost:", 10) == 0;
}

static void startup_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the daemon: every layer's state, and the handles main runs on the loop ---- */

struct server {
    uv_loop_t *loop;
    struct td_net net;
    struct td_store store;
    struct td_rpc_server rpc;
    struct td_pool_executor executor; /* heavy jobs to libuv's pool */
    struct td_glue glue;              /* net's connections as rpc's peers */
    uv_timer_t sweep;
    uv_prepare_t turn;   /* each loop turn: td_store_turn */
    uv_idle_t turn_spin; /* active while sessions wait for the next turn */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain; /* on SIGTERM: waits for in-flight work */
    uint64_t drain_deadline_ms;
    uint64_t cancel_at_ms; /* then cancel what still runs (td_store_cancel_all) */
    bool work_cancelled;
    uint64_t shutdown_timeout_ms;
    const char *sessions_dir;    /* --data-dir/sessions, or NULL */
    struct td_http http;         /* --metrics-listen */
    struct td_metrics metrics;   /* what it serves */
    const char *auth_token_file; /* re-read on SIGHUP */
    const char *log_file;        /* reopened on SIGHUP */
    char *token;                 /* owned; what rpc.auth_token points to */
    struct td_poller *poller;    /* --peers, or NULL */
    char node_id[TD_NODE_ID_MAX + 1];
    bool stopping;
};

static struct server server;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Each loop turn, before the loop waits for I/O: a new inline work budget, and the sessions
** that spent the last one run on. While some still wait, an active idle handle keeps the loop
** from blocking in poll (it polls with a zero timeout instead), so they are resumed at once,
** after every connection with something ready has had its turn. */
static void on_turn_spin(uv_idle_t *h)
{
    (void)h; /* its being active is the point: the loop polls without blocking */
}

/* The loop thread's CPU time, in ns (0 if the clock is unavailable). */
static uint64_t loop_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reading the thread's CPU clock is a system call (~1 us here): it is read only at turns that
** ran past TURN_CPU_AFTER_NS, and otherwise at most every TURN_CPU_EVERY_NS to keep a baseline. */
#define TURN_CPU_AFTER_NS 1000000u
#define TURN_CPU_EVERY_NS 5000000u

static void on_turn(uv_prepare_t *h)
{
    /* The turn that ends here held the loop for its wall time less its wait in poll (libuv
    ** measures that with UV_METRICS_IDLE_TIME), but for no more than the CPU time the loop
    ** thread spent meanwhile: on a shared machine a turn can be preempted by other processes,
    ** and that time is not the daemon's doing. The CPU time is measured from a baseline at most
    ** TURN_CPU_EVERY_NS older than the turn's start, so it over-counts by at most that much.
    ** Stats and /metrics report the result. */
    static uint64_t last_ns, last_idle_ns, cpu_base_ns, cpu_base_at_ns;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
    if (last_ns != 0 && now >= last_ns && idle >= last_idle_ns) {
        uint64_t wall = now - last_ns, waited = idle - last_idle_ns;
        uint64_t busy = wall > waited ? wall - waited : 0;
        if (busy >= TURN_CPU_AFTER_NS) {
            uint64_t cpu = loop_cpu_ns();
            if (cpu_base_at_ns != 0 && cpu >= cpu_base_ns && cpu - cpu_base_ns < busy) {
                busy = cpu - cpu_base_ns;
            }
            cpu_base_ns = cpu;
            cpu_base_at_ns = now;
        }
        td_rpc_stats_turn(&server.rpc, busy / 1000u);
    }
    if (now - cpu_base_at_ns >= TURN_CPU_EVERY_NS) {
        cpu_base_ns = loop_cpu_ns();
        cpu_base_at_ns = now;
    }
    last_ns = now;
    last_idle_ns = idle;
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

/* SIGHUP: reopen the log file (after rotation), re-read the token file, so a token can be
** rotated without a restart. A file that cannot be read keeps the old token (and says why). */
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
    char *token = td_token_read_file(server.auth_token_file, why, sizeof why);
    if (token == NULL) {
        td_log(TD_LOG_ERROR, "reload_failed",
               "file=%s reason=\"%s\" msg=\"keeping the previous "
               "token\"",
               server.auth_token_file, why);
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
        struct td_persist_budget budget = {
            /* snapshots count against the disk quotas */
            .disk = &server.rpc.disk,          .root = server.rpc.data_dir,
            .max = server.rpc.max_disk_bytes,  .session_max = server.rpc.session_max_disk_bytes,
            .files_dir = server.rpc.files_dir, .shared = server.rpc.shared_files,
        };
        int saved = td_store_save_all(&server.store, server.sessions_dir, &budget, &failed);
        td_log(failed ? TD_LOG_ERROR : TD_LOG_INFO, "sessions_saved", "count=%d failed=%d dir=%s",
               saved, failed, server.sessions_dir);
    }
    td_store_stop(&server.store); /* after a timeout, queued work is not started */
    td_poller_stop(server.poller);
    server.poller = NULL;
    td_net_close_gracefully(&server.net);
    td_http_close(&server.http);
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
        td_log(TD_LOG_WARN, "shutdown_cancel",
               "msg=\"cancelling the work still queued or "
               "running, so the shutdown ends within --shutdown-timeout\"");
        td_store_cancel_all(&server.store);
        return; /* the next look sees what the cancel left */
    }
    if (!idle && now < server.drain_deadline_ms) {
        return;
    }
    uv_timer_stop(&server.drain);
    if (!idle) {
        td_log(TD_LOG_WARN, "shutdown_timeout",
               "msg=\"in-flight work did not finish in time; "
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
    server.rpc.draining = true; /* NodeInfo says so; a Hello still read gets NODE_FULL */
    td_log(TD_LOG_INFO, "shutdown", "signal=%d node=%s", signum, server.node_id);
    td_net_stop_accepting(&server.net);
    td_net_drain(&server.net); /* /metrics stays up, and /readyz says 503, until the end */
    uint64_t now = now_ms(), grace = server.shutdown_timeout_ms / 4;
    grace = grace < SHUTDOWN_CANCEL_GRACE_MS ? grace : SHUTDOWN_CANCEL_GRACE_MS;
    if (!td_add_u64(now, server.shutdown_timeout_ms, &server.drain_deadline_ms)) {
        server.drain_deadline_ms = UINT64_MAX; /* --shutdown-timeout of centuries */
    }
    server.cancel_at_ms = server.drain_deadline_ms - grace;
    uv_timer_start(&server.drain, on_drain, 0, 5);
}

/* ---- the node's id ---- */

#define NODE_ID_FILE "node-id"

/* "n-" and 10 random hex digits: 40 bits, plenty for the nodes of one deployment. */
static int random_node_id(char out[TD_NODE_ID_MAX + 1])
{
    uint8_t r[5];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        return -1;
    }
    snprintf(out, TD_NODE_ID_MAX + 1, "n-%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4]);
    return 0;
}

/* Reads <data_dir>/node-id into out: 1 when there is none, 0 when read and valid, -1 (message
** printed) when it cannot be read or is not a node id. */
static int read_node_id_file(const char *data_dir, char out[TD_NODE_ID_MAX + 1])
{
    char path[4200], buf[TD_NODE_ID_MAX + 4];
    snprintf(path, sizeof path, "%s/" NODE_ID_FILE, data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 1;
        }
        startup_error("tensord: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    if (n <= 0 || n > TD_NODE_ID_MAX || !td_node_id_valid(buf, (size_t)n)) {
        startup_error("tensord: %s does not hold a node id (a DNS label: 1 to 63 of a-z, 0-9 and "
                      "-); fix or remove it, or pass --node-id\n",
                      path);
        return -1;
    }
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    return 0;
}

/* The node's id: --node-id (or the StatefulSet host name config.c found), else the one kept in
** --data-dir, else a new random one. With a data dir holding none, the id is written there
** (0600) when `keep` (a real start; not --check-config). Returns 0, or -1 with the reason
** printed. */
static int resolve_node_id(const struct td_config *cfg, bool keep, char out[TD_NODE_ID_MAX + 1])
{
    int rc = 1;
    char kept[TD_NODE_ID_MAX + 1];
    if (cfg->data_dir != NULL && (rc = read_node_id_file(cfg->data_dir, kept)) < 0) {
        return -1;
    }
    if (cfg->node_id != NULL) {
        snprintf(out, TD_NODE_ID_MAX + 1, "%s", cfg->node_id);
        if (rc == 0 && strcmp(kept, out) != 0) {
            td_log(TD_LOG_WARN, "node_id_changed",
                   "node=%s kept=%s msg=\"sessions restored from --data-dir name node %s: their "
                   "clients are told UNKNOWN_NODE here\"",
                   out, kept, kept);
        }
    } else if (rc == 0) {
        memcpy(out, kept, sizeof kept);
    } else if (random_node_id(out) != 0) {
        startup_error("tensord: no randomness available for a node id\n");
        return -1;
    }
    if (keep && rc == 1 && cfg->data_dir != NULL) {
        /* The first start with this data dir: its id is kept, so a later start without
        ** --node-id is the same node (and its restored sessions' tokens still name it). */
        char path[4200];
        snprintf(path, sizeof path, "%s/" NODE_ID_FILE, cfg->data_dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        size_t n = strlen(out);
        bool ok = fd >= 0 && write(fd, out, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
        ok = fd >= 0 && fsync(fd) == 0 && ok;
        if (fd >= 0) {
            close(fd);
        }
        if (!ok) {
            startup_error("tensord: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* --check-config: --data-dir exists and is writable, or could be created (its parent is). */
static int check_data_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode) || access(dir, W_OK) != 0) {
            fprintf(stderr, "tensord: --data-dir %s is not a writable directory\n", dir);
            return -1;
        }
        return 0;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) {
        slash[1] = '\0';
    } else if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(parent, sizeof parent, ".");
    }
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode) || access(parent, W_OK) != 0) {
        fprintf(stderr,
                "tensord: --data-dir %s cannot be created: %s is not a writable "
                "directory\n",
                dir, parent);
        return -1;
    }
    return 0;
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
    struct td_config cfg;
    int prc = td_config_parse(&cfg, argc, argv);
    if (prc != 0) {
        return prc > 0 ? 0 : 2;
    }
    td_log_min_level = cfg.log_level;
    if (cfg.check_config) {
        /* What a start checks before it binds, with no side effect: nothing is created. */
        char *tok = NULL, why[160];
        if (cfg.auth_token_file != NULL &&
            (tok = td_token_read_file(cfg.auth_token_file, why, sizeof why)) == NULL) {
            fprintf(stderr, "tensord: --auth-token-file %s: %s\n", cfg.auth_token_file, why);
            return 2;
        }
        td_free(tok);
        for (int i = 0; i < cfg.listen.n; i++) {
            if (!is_loopback(cfg.listen.addr[i]) && cfg.auth_token_file == NULL &&
                !cfg.insecure_no_auth) {
                fprintf(stderr,
                        "tensord: refusing to listen on %s without --auth-token-file "
                        "(or --insecure-no-auth)\n",
                        cfg.listen.addr[i]);
                return 2;
            }
        }
        if (cfg.data_dir != NULL && check_data_dir(cfg.data_dir) != 0) {
            return 2;
        }
        if (resolve_node_id(&cfg, false, server.node_id) != 0) {
            return 2;
        }
        if (cfg.node_id == NULL && cfg.data_dir != NULL) {
            char probe[TD_NODE_ID_MAX + 1];
            if (read_node_id_file(cfg.data_dir, probe) != 0) {
                /* A start would draw a new id and keep it: say so, not a made-up one. */
                snprintf(server.node_id, sizeof server.node_id, "%s", "none");
            }
        } else if (cfg.node_id == NULL) {
            snprintf(server.node_id, sizeof server.node_id, "%s", "none");
        }
        cfg.node_id = server.node_id;
        td_config_print(&cfg, stdout);
        return 0;
    }
    if (cfg.log_file != NULL) {
        startup_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3); /* see startup_error */
    }
    if (cfg.log_file != NULL && open_log(cfg.log_file) != 0) {
        fprintf(stderr, "tensord: cannot open --log-file %s: %s\n", cfg.log_file, strerror(errno));
        return 2;
    }
    server.log_file = cfg.log_file;
    td_log_json = strcmp(cfg.log_format, "json") == 0;

    char *token = NULL;
    if (cfg.auth_token_file != NULL) {
        char why[160];
        if ((token = td_token_read_file(cfg.auth_token_file, why, sizeof why)) == NULL) {
            startup_error("tensord: --auth-token-file %s: %s\n", cfg.auth_token_file, why);
            return 2;
        }
    }
    for (int i = 0; i < cfg.listen.n; i++) {
        if (!is_loopback(cfg.listen.addr[i]) && token == NULL && !cfg.insecure_no_auth) {
            startup_error("tensord: refusing to listen on %s without --auth-token-file "
                          "(or --insecure-no-auth)\n",
                          cfg.listen.addr[i]);
            return 2;
        }
    }
    if (cfg.data_dir != NULL && mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        startup_error("tensord: cannot create --data-dir %s: %s\n", cfg.data_dir, strerror(errno));
        td_free(token);
        return 2;
    }
    struct stat dst;
    if (cfg.data_dir != NULL && (stat(cfg.data_dir, &dst) != 0 || !S_ISDIR(dst.st_mode) ||
                                 access(cfg.data_dir, W_OK) != 0)) {
        startup_error("tensord: --data-dir %s is not a writable directory\n", cfg.data_dir);
        td_free(token);
        return 2;
    }
    if (resolve_node_id(&cfg, true, server.node_id) != 0) {
        td_free(token);
        return 2;
    }
    if (token == NULL && cfg.insecure_no_auth) {
        /* Written whatever --log-level says: running open must never be silent. */
        td_log_write(TD_LOG_WARN, "insecure_no_auth", "msg=\"serving without authentication\"");
    }

    td_threads_setup((int)cfg.threads, (int)cfg.worker_nice);
    /* Freed large buffers kept for reuse (--cache-bytes), released when unused for
    ** --cache-decay; the cache keeps within what the node's quota leaves free (below, once the
    ** store exists). */
    td_alloc_cache_limit((size_t)cfg.cache_bytes);
    td_alloc_cache_decay(cfg.cache_decay_ms);
    /* Large frees unmapped off the loop: at most 1 GiB waiting, less when --max-bytes is small. */
    int64_t releasing = cfg.max_bytes / 8;
    td_alloc_release_limit(releasing < ((int64_t)1 << 30) ? (size_t)releasing : (size_t)1 << 30);
    signal(SIGPIPE, SIG_IGN);

    if (td_siphash_key_init() != 0) {
        /* Handle tables keyed with a known key could be flooded (finding 6 of issue 14). */
        startup_error("tensord: no randomness available for the hash key\n");
        return 1;
    }
    server.loop = uv_default_loop();
    if (uv_loop_configure(server.loop, UV_METRICS_IDLE_TIME) != 0) {
        td_log(TD_LOG_WARN, "loop_metrics", "msg=\"loop busy times are not measured\"");
    }
    td_pool_executor_init(&server.executor, server.loop);
    struct td_store_config scfg = {
        .max_bytes = cfg.max_bytes,
        .session_max_bytes = cfg.session_max_bytes,
        .max_tensor_bytes = cfg.max_tensor_bytes,
        .max_sessions = cfg.max_sessions,
        .session_max_handles = 1000000,
        .session_ttl_ms = cfg.session_ttl_ms,
        .turn_work = TURN_WORK,
        .entry_bytes = TD_ENTRY_BYTES,
        .node_id = server.node_id,
    };
    td_store_init(&server.store, &scfg, &server.executor.ex);
    td_alloc_cache_node(&server.store.global);       /* the cache keeps within --max-bytes */
    server.store.on_expire = td_rpc_session_expired; /* an expired session's files go too */
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
            td_log(TD_LOG_WARN, "temporaries_removed",
                   "count=%d msg=\"writes interrupted by a "
                   "crash\"",
                   stale);
        }
        int failed = 0;
        int restored = td_store_restore_all(&server.store, sessions_dir, now_ms(), &failed);
        td_log(failed ? TD_LOG_ERROR : TD_LOG_INFO, "sessions_restored",
               "count=%d failed=%d dir=%s", restored, failed, sessions_dir);
    }
    server.rpc.store = &server.store;
    server.rpc.node_id = server.node_id;
    server.rpc.advertise = cfg.advertise;
    server.rpc.auth_token = token;
    server.token = token;
    server.auth_token_file = cfg.auth_token_file;
    server.rpc.max_frame_bytes = (uint64_t)cfg.max_frame_bytes;
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
        .max_frame_bytes = (uint64_t)cfg.max_frame_bytes,
        .max_meta_bytes = 1u << 20,
        .write_high_water = WRITE_HIGH_WATER,
        .idle_timeout_ms = cfg.idle_timeout_ms,
        .min_frame_rate = MIN_FRAME_RATE,
    };
    server.glue = (struct td_glue){
        .rpc = &server.rpc,
        .net = &server.net,
        .max_connections = cfg.max_connections,
    };
    struct td_net_callbacks cb;
    td_glue_callbacks(&server.glue, &cb);
    td_net_init(&server.net, server.loop, &ncfg, &cb);

    int rc = 0;
    struct td_err err;
    char bound[160];
    for (int i = 0; i < cfg.listen.n + (cfg.unix_path != NULL); i++) {
        char spec[256];
        if (i < cfg.listen.n) {
            snprintf(spec, sizeof spec, "%s", cfg.listen.addr[i]);
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
        server.metrics = (struct td_metrics){
            .rpc = &server.rpc,
            .store = &server.store,
            .stopping = &server.stopping,
        };
        if (td_http_listen(&server.http, server.loop, cfg.metrics_listen, td_metrics_http,
                           &server.metrics, bound, sizeof bound, &err) != 0) {
            startup_error("tensord: metrics: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        td_log(TD_LOG_INFO, "metrics_listening", "addr=%s", bound);
        if (!is_loopback(cfg.metrics_listen)) {
            td_log(TD_LOG_WARN, "metrics_exposed",
                   "addr=%s msg=\"metrics are served without "
                   "authentication\"",
                   bound);
        }
    }
    if (cfg.peers != NULL && (server.poller = td_poller_start(server.loop, &server.rpc, cfg.peers,
                                                              cfg.peer_interval_ms)) == NULL) {
        startup_error("tensord: out of memory for the peer poller\n");
        rc = 1;
        goto out;
    }
    td_log(TD_LOG_INFO, "started",
           "node=%s advertise=%s version=%s threads=%d max_frame_bytes=%" PRId64
           " max_tensor_bytes=%" PRId64 " session_max_bytes=%" PRId64 " max_bytes=%" PRId64
           " session_ttl_ms=%" PRIu64 " max_request_ms=%" PRIu64 " max_op_elements=%" PRId64
           " session_max_disk_bytes=%" PRId64 " max_disk_bytes=%" PRId64 " shared_files=%d",
           server.node_id, cfg.advertise != NULL ? cfg.advertise : "-", TD_VERSION,
           (int)cfg.threads, cfg.max_frame_bytes, cfg.max_tensor_bytes, cfg.session_max_bytes,
           cfg.max_bytes, cfg.session_ttl_ms, cfg.max_request_ms, cfg.max_op_elements,
           cfg.session_max_disk_bytes, cfg.max_disk_bytes, (int)cfg.shared_files);

    if (startup_stderr >= 0) {
        close(startup_stderr); /* started: from here on everything goes to the log */
        startup_stderr = -1;
    }
    uv_prepare_init(server.loop, &server.turn);
    uv_prepare_start(&server.turn, on_turn);
    uv_unref((uv_handle_t *)&server.turn); /* runs while the loop does; keeps it alive only
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
    td_threads_lower_pool(server.loop, (int)cfg.threads);
    if (early_stop_signal != 0) {
        on_signal(&server.sigterm, early_stop_signal);
    }

    uv_run(server.loop, UV_RUN_DEFAULT);
    td_log(TD_LOG_INFO, "stopped", "sessions=%zu", td_store_count(&server.store));
out:
    if (rc != 0) {
        td_poller_stop(server.poller);
        td_net_close(&server.net);
        td_http_close(&server.http);
        uv_run(server.loop, UV_RUN_DEFAULT);
    }
    td_store_close(&server.store);
    td_rpc_server_close(&server.rpc);
    uv_loop_close(server.loop);
    td_free(server.token);
    return rc;
}
