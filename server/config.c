/* server/config.c — the daemon's settings: config.def's table, its parsers and its sources.
**
** Every setting is a row of config.def; this file expands the rows into `settings[]` and does
** all that happens to a setting: --help prints the table, the built-in defaults are the rows' own
** default text run through the rows' own parsers, the config file finds a row by its key, the
** environment by its variable, the command line by its name, and the defaults that depend on
** other settings or on the machine are computed by the functions the rows name, once every
** source has been read. Complaints name the flag and the value, and then the source. It knows no
** layer below base: main hands the settings on.
*/
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/checked.h"
#include "base/memlimit.h"
#include "base/node.h"

_Static_assert(TD_CFG_SUN_PATH_MAX == sizeof((struct sockaddr_un *)0)->sun_path - 1,
               "--unix's length limit is sun_path's");

struct setting;

/* Parses v into the row's field. Returns 0; -1 (invalid: the complaint is printed); 1 (an action
** that ends the parse: --help, --version). */
typedef int parse_fn(struct td_config *cfg, const struct setting *o, const char *v, void *field);

/* Computes a default from the other settings (or the machine), when no source set the row. */
typedef void derive_fn(struct td_config *cfg);

struct setting {
    const char *name;  /* the flag, without dashes */
    const char *env;   /* TENSORD_*, or NULL */
    const char *key;   /* the config file's key, or NULL */
    const char *arg;   /* metavariable; NULL: a switch or an action */
    const char *dflt;  /* as --help shows it; NULL: none */
    derive_fn *derive; /* NULL: dflt is the value */
    parse_fn *parse;
    size_t offset; /* of the field in struct td_config */
    int64_t lo, hi;
    const char *complaint; /* for an invalid value, where the parser has no words of its own */
    const char *help;
};

/* ---- parsers ---- */

static int bad_value(const struct setting *o, const char *v, const char *why)
{
    fprintf(stderr, "tensord: invalid value '%s' for --%s: %s\n", v, o->name, why);
    return -1;
}

static int parse_size(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0 || !(v[0] >= '0' && v[0] <= '9')) { /* no sign, no spaces */
        return bad_value(o, v, "want a byte count such as 1048576, 64M or 2G");
    }
    int shift = 0;
    switch (*end) {
    case '\0': break;
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    case 'T':
    case 't':
        shift = 40;
        end++;
        break;
    default: return bad_value(o, v, "unknown size suffix (use K, M, G or T)");
    }
    if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end != '\0' || n > (unsigned long long)(INT64_MAX >> shift)) {
        return bad_value(o, v, "want a byte count such as 1048576, 64M or 2G");
    }
    int64_t bytes = (int64_t)(n << shift);
    if (bytes < o->lo) {
        return bad_value(o, v, o->complaint);
    }
    *(int64_t *)field = bytes;
    return 0;
}

static int parse_duration(struct td_config *cfg, const struct setting *o, const char *v,
                          void *field)
{
    (void)cfg;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || errno != 0 || v[0] == '-') {
        return bad_value(o, v, "want seconds or a duration such as 500ms, 30s, 10m");
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
        return bad_value(o, v, "unknown duration suffix (use ms, s, m or h)");
    }
    if (n > UINT64_MAX / mul) {
        return bad_value(o, v, "too large");
    }
    if (o->hi > 0 && (n * mul < (uint64_t)o->lo || n * mul > (uint64_t)o->hi)) {
        return bad_value(o, v, o->complaint);
    }
    *(uint64_t *)field = n * mul;
    return 0;
}

static int parse_count(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || n < o->lo || n > o->hi) {
        char why[96];
        snprintf(why, sizeof why, "want a whole number from %lld to %lld", (long long)o->lo,
                 (long long)o->hi);
        return bad_value(o, v, why);
    }
    *(int64_t *)field = n;
    return 0;
}

/* A switch's value. Strict: a typo must not turn a safety off (nor silently leave it on). */
static int parse_boolean(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *(bool *)field = strcasecmp(v, yes[i]) == 0;
            return 0;
        }
    }
    return bad_value(o, v, "want true or false (1/0, yes/no, on/off)");
}

/* A path or other text of lo to hi bytes, kept as given. */
static int parse_text(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    size_t n = strlen(v);
    if ((int64_t)n < o->lo || (uint64_t)n > (uint64_t)o->hi) {
        return bad_value(o, v, o->complaint);
    }
    *(const char **)field = v;
    return 0;
}

/* HOST:PORT with a numeric IPv4 host or a bracketed IPv6 one (names are not resolved). */
static bool valid_address(const char *v)
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

static int parse_address(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    if (!valid_address(v)) {
        return bad_value(o, v, o->complaint);
    }
    *(const char **)field = v;
    return 0;
}

/* Repeatable within one source; a later source's addresses replace an earlier one's. */
static int parse_addresses(struct td_config *cfg, const struct setting *o, const char *v,
                           void *field)
{
    struct td_cfg_addresses *a = field;
    if (!valid_address(v)) {
        return bad_value(o, v, o->complaint);
    }
    if (a->source != cfg->source) {
        a->n = 0;
        a->source = cfg->source;
    }
    if (a->n == TD_CFG_MAX_LISTEN) {
        return bad_value(o, v, "too many --listen addresses");
    }
    a->addr[a->n++] = v;
    return 0;
}

static int parse_node_id(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    if (!td_node_id_valid(v, strlen(v))) {
        return bad_value(o, v, o->complaint);
    }
    *(const char **)field = v;
    return 0;
}

/* HOST:PORT where HOST may be a DNS name (not resolved here). */
static int parse_hostport(struct td_config *cfg, const struct setting *o, const char *v,
                          void *field)
{
    (void)cfg;
    if (!td_hostport_parse(v, false, NULL, 0, NULL)) {
        return bad_value(o, v, o->complaint);
    }
    *(const char **)field = v;
    return 0;
}

bool td_cfg_peers_next(const char *list, size_t *pos, char *out, size_t cap)
{
    const char *p = list + *pos;
    if (*p == '\0') {
        return false;
    }
    const char *comma = strchr(p, ',');
    size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
    *pos += n + (comma != NULL);
    if (n >= cap) {
        n = cap - 1; /* the parser refused longer entries */
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* One --peers entry: HOST:PORT, or dns:NAME:PORT (NAME a DNS name: its every address). */
static bool valid_peer(const char *e)
{
    char host[TD_HOSTPORT_MAX + 1];
    if (strncmp(e, "dns:", 4) == 0) {
        return e[4] != '[' && td_hostport_parse(e + 4, false, host, sizeof host, NULL) &&
               inet_pton(AF_INET, host, (unsigned char[4]){0}) != 1;
    }
    return td_hostport_parse(e, false, NULL, 0, NULL);
}

static int parse_peers(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    size_t pos = 0;
    int64_t n = 0;
    char e[TD_HOSTPORT_MAX + 8];
    if (v[0] == '\0' || v[strlen(v) - 1] == ',') {
        return bad_value(o, v, o->complaint);
    }
    while (td_cfg_peers_next(v, &pos, e, sizeof e)) {
        if (strlen(e) >= sizeof e - 1 || !valid_peer(e) || ++n > o->hi) {
            char why[TD_HOSTPORT_MAX + 160];
            snprintf(why, sizeof why, "%s (at '%s')", o->complaint, e);
            return bad_value(o, v, n > o->hi ? "more than 64 peers" : why);
        }
    }
    *(const char **)field = v;
    return 0;
}

static int parse_level(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    if (td_log_parse_level(v, (enum td_log_level *)field) != 0) {
        return bad_value(o, v, o->complaint);
    }
    return 0;
}

static int parse_format(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
        return bad_value(o, v, o->complaint);
    }
    *(const char **)field = v;
    return 0;
}

/* --config: the file was read before every other source (td_config_parse); noted, no more. */
static int parse_config(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    (void)o;
    *(const char **)field = v;
    return 0;
}

static void usage(FILE *f);

static int parse_help(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    (void)o;
    (void)v;
    (void)field;
    usage(stdout);
    return 1;
}

static int parse_version(struct td_config *cfg, const struct setting *o, const char *v, void *field)
{
    (void)cfg;
    (void)o;
    (void)v;
    (void)field;
    printf("tensord %s\n", TD_VERSION);
    return 1;
}

/* ---- computed defaults ---- */

#define SESSION_DISK_CAP ((int64_t)8 << 30) /* --session-max-disk-bytes' default at most */
#define DISK_CAP ((int64_t)64 << 30)        /* --max-disk-bytes' default at most */

/* What this process may use: physical memory, or its cgroup's limit when smaller (a container). */
static int64_t usable_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    int64_t physical = (pages > 0 && size > 0) ? (int64_t)pages * size : (int64_t)8 << 30;
    return td_memory_limit(physical, "/proc/self/cgroup", "/sys/fs/cgroup");
}

static void default_max_bytes(struct td_config *cfg)
{
    cfg->max_bytes = usable_memory() / 2;
}

/* An eighth of the memory cap, at most 1 GiB: enough to reuse the buffers of a few large
** transfers (256 MiB tensors included), small beside the cap; 0 when the cap is off (no bound to
** be a fraction of: the cache keeps to the old 256 MiB default then). */
static void default_cache_bytes(struct td_config *cfg)
{
    int64_t eighth = cfg->max_bytes / 8;
    cfg->cache_bytes = cfg->max_bytes <= 0           ? (int64_t)256 << 20
                       : eighth < ((int64_t)1 << 30) ? eighth
                                                     : (int64_t)1 << 30;
}

static void default_threads(struct td_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n < 1 ? 1 : n > TD_CFG_MAX_THREADS ? TD_CFG_MAX_THREADS : n;
}

/* Twice the memory quota (a snapshot and a Save of everything), capped; no memory quota: the
** cap. */
static void default_session_max_disk_bytes(struct td_config *cfg)
{
    int64_t twice = td_sat_mul(cfg->session_max_bytes, 2);
    cfg->session_max_disk_bytes = cfg->session_max_bytes > 0 && twice < SESSION_DISK_CAP
                                      ? twice
                                      : SESSION_DISK_CAP;
}

static void default_max_disk_bytes(struct td_config *cfg)
{
    int64_t four = td_sat_mul(cfg->max_bytes, 4);
    cfg->max_disk_bytes = cfg->max_bytes > 0 && four < DISK_CAP ? four : DISK_CAP;
}

/* A StatefulSet names its pods <set>-<ordinal>: such a host name is a stable id. Anything else
** is left unset: main then keeps a random id in --data-dir (or draws one per start). */
static void default_node_id(struct td_config *cfg)
{
    static char host[256];
    if (gethostname(host, sizeof host) != 0) {
        return;
    }
    host[sizeof host - 1] = '\0';
    size_t n = strlen(host);
    size_t d = n;
    while (d > 0 && host[d - 1] >= '0' && host[d - 1] <= '9') {
        d--;
    }
    if (d < n && d >= 2 && host[d - 1] == '-' && td_node_id_valid(host, n)) {
        cfg->node_id = host;
    }
}

/* DFLT_UNSET: the field's zero is the default ("none"). */
static void leave_unset(struct td_config *cfg)
{
    (void)cfg;
}

#define DFLT_TEXT NULL
#define DFLT_UNSET leave_unset

/* ---- the table ---- */

static const struct setting settings[] = {
#define OPT(field, name, env, key, arg, dflt, derive, parse, lo, hi, complaint, help)              \
    {name, env, key,       arg, dflt, derive, parse_##parse, offsetof(struct td_config, field),    \
     lo,   hi,  complaint, help},
#include "config.def"
#undef OPT
};

#define NSETTINGS (sizeof settings / sizeof settings[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: tensord [flags]\n\ntensord serves PyTorch-style tensors over the "
               "network. Flags (each also read from TENSORD_<FLAG>, e.g. TENSORD_LISTEN):\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", settings[i].name, settings[i].arg ? " " : "",
                 settings[i].arg ? settings[i].arg : "");
        fprintf(f, "  %-31s %s", left, settings[i].help);
        if (settings[i].dflt != NULL) {
            fprintf(f, " (default: %s)", settings[i].dflt);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nSIZE takes bytes or a suffix K, M, G, T (powers of 1024); DURATION takes "
               "seconds or a suffix ms, s, m, h.\n");
}

/* Applies one value from the current source to row o. */
static int apply(struct td_config *cfg, const struct setting *o, const char *v)
{
    int rc = o->parse(cfg, o, v, (char *)cfg + o->offset);
    if (rc == 0 && cfg->source > 0) {
        cfg->set[o - settings] = true;
    }
    return rc;
}

static const struct setting *find_name(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0) {
            return &settings[i];
        }
    }
    return NULL;
}

/* A config file's key: the row's key, with - standing for _ anywhere. */
static const struct setting *find_key(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *a = key, *b = settings[i].key;
        if (b == NULL) {
            continue;
        }
        while (*a != '\0' && (*a == *b || (*a == '-' && *b == '_'))) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') {
            return &settings[i];
        }
    }
    return NULL;
}

/* ---- sources ---- */

/* Reads `key = value` lines ('#' starts a comment; keys are flag names, '_' or '-'). The values
** are kept for the process's lifetime. Returns 0 or -1 (message printed). */
static int read_config_file(struct td_config *cfg, const char *path)
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
        while (n > 0 &&
               (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) {
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
            *c = *c == '_' ? '-' : *c; /* complaints spell the key as a flag */
        }
        const struct setting *o = find_key(key);
        if (o == NULL) {
            fprintf(stderr, "tensord: %s line %d: unknown setting '%s'\n", path, lineno, key);
            rc = -1;
            break;
        }
        if (o->parse == parse_boolean) {
            /* A switch keeps nothing of its text. */
            if ((rc = apply(cfg, o, val)) != 0) {
                fprintf(stderr, "tensord: (from %s line %d)\n", path, lineno);
            }
            continue;
        }
        /* Values live as long as the process; a static table keeps them reachable. */
        static char *kept[256];
        static size_t nkept;
        char *copy = nkept < sizeof kept / sizeof kept[0] ? strdup(val) : NULL;
        if (copy != NULL) {
            kept[nkept++] = copy;
        }
        if (copy == NULL || apply(cfg, o, copy) != 0) {
            fprintf(stderr, "tensord: (from %s line %d)\n", path, lineno);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

static int read_environment(struct td_config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *o = &settings[i];
        if (o->env == NULL || o->parse == parse_config) {
            continue; /* TENSORD_CONFIG was read first, as the file */
        }
        const char *v = getenv(o->env);
        if (v != NULL && v[0] != '\0' && apply(cfg, o, v) != 0) {
            fprintf(stderr, "tensord: (from the environment variable %s)\n", o->env);
            return -1;
        }
    }
    return 0;
}

static int read_command_line(struct td_config *cfg, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tensord: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct setting *o = find_name(a, len);
        if (o == NULL) {
            fprintf(stderr, "tensord: unknown flag --%.*s (see --help)\n", (int)len, a);
            return -1;
        }
        const char *v = "1";
        if (o->arg == NULL && eq != NULL) {
            v = eq + 1; /* --insecure-no-auth=false */
        } else if (o->arg != NULL) {
            if (eq != NULL) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                fprintf(stderr, "tensord: --%s needs a value (%s)\n", o->name, o->arg);
                return -1;
            }
        }
        int rc = apply(cfg, o, v);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int td_config_parse(struct td_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (settings[i].dflt != NULL && settings[i].derive == NULL &&
            apply(cfg, &settings[i], settings[i].dflt) != 0) {
            fprintf(stderr, "tensord: (the built-in default of --%s)\n", settings[i].name);
            return -1;
        }
    }
    /* The config file first, then the environment, then the command line, so flags win. */
    const struct setting *conf = NULL;
    for (size_t i = 0; i < NSETTINGS; i++) {
        conf = settings[i].parse == parse_config ? &settings[i] : conf;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
        if (strncmp(a, "--", 2) != 0 || find_name(a + 2, len - 2) != conf) {
            continue;
        }
        const char *path = eq != NULL ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
        if (path != NULL) {
            cfg->source = 1;
            if (read_config_file(cfg, path) != 0) {
                return -1;
            }
        }
    }
    const char *envcfg = getenv(conf->env);
    if (envcfg != NULL && envcfg[0] != '\0' && cfg->source == 0) {
        cfg->source = 1;
        if (read_config_file(cfg, envcfg) != 0) {
            return -1;
        }
    }
    cfg->source = 2;
    if (read_environment(cfg) != 0) {
        return -1;
    }
    cfg->source = 3;
    int rc = read_command_line(cfg, argc, argv);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < NSETTINGS; i++) { /* in table order: max-disk-bytes after max-bytes */
        if (settings[i].derive != NULL && !cfg->set[i]) {
            settings[i].derive(cfg);
        }
    }
    return 0;
}

/* ---- --check-config ---- */

void td_config_print(const struct td_config *cfg, FILE *f)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *o = &settings[i];
        const void *field = (const char *)cfg + o->offset;
        if (o->parse == parse_help || o->parse == parse_version || o->parse == parse_config ||
            o->key == NULL) {
            continue; /* actions, --config itself, --check-config */
        }
        fprintf(f, "%s = ", o->name);
        if (o->parse == parse_size || o->parse == parse_count) {
            fprintf(f, "%lld\n", (long long)*(const int64_t *)field);
        } else if (o->parse == parse_duration) {
            fprintf(f, "%llums\n", (unsigned long long)*(const uint64_t *)field);
        } else if (o->parse == parse_boolean) {
            fprintf(f, "%s\n", *(const bool *)field ? "true" : "false");
        } else if (o->parse == parse_addresses) {
            const struct td_cfg_addresses *a = field;
            for (int k = 0; k < a->n; k++) {
                fprintf(f, "%s%s", k ? "," : "", a->addr[k]);
            }
            fprintf(f, "%s\n", a->n == 0 ? "none" : "");
        } else if (o->parse == parse_level) {
            static const char *const names[] = {"debug", "info", "warn", "error", "off"};
            int l = (int)*(const enum td_log_level *)field;
            fprintf(f, "%s\n", l >= 0 && l <= 4 ? names[l] : "?");
        } else {
            const char *v = *(const char *const *)field;
            fprintf(f, "%s\n", v != NULL ? v : "none");
        }
    }
}
