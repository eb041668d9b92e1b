/* server/config.h — the daemon's settings: one struct, filled from one table (config.def).
**
** struct td_config has a field per config.def row, typed by the row's parser. td_config_parse
** fills it from the built-in defaults, the config file, the environment and the command line, in
** that order (a later source wins), then computes the defaults that depend on other settings or
** on the machine (--max-bytes, --threads, the disk quotas). It prints --help and --version and
** every complaint itself. It knows no layer below: main turns the settings into each layer's
** own config struct.
*/
#ifndef TD_CONFIG_H
#define TD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/log.h"

#define TD_CFG_MAX_LISTEN 16    /* --listen addresses from one source */
#define TD_CFG_MAX_THREADS 1024 /* --threads: libuv's own cap on its pool */
#define TD_CFG_MAX_PEERS 64     /* --peers entries (rpc's TD_PEERS_MAX) */
#define TD_CFG_SUN_PATH_MAX 107 /* a Unix socket path's bytes (sun_path holds 108 with the NUL) */

/* --listen: the addresses of the last source that named any. */
struct td_cfg_addresses {
    const char *addr[TD_CFG_MAX_LISTEN]; /* borrowed (see td_config_parse) */
    int n;
    int source; /* the source (0 default ... 3 command line) of them */
};

/* A field's type, by its row's parser. */
#define TD_CFG_TYPE_size int64_t      /* bytes */
#define TD_CFG_TYPE_duration uint64_t /* milliseconds */
#define TD_CFG_TYPE_count int64_t
#define TD_CFG_TYPE_boolean bool
#define TD_CFG_TYPE_text const char *    /* NULL: not set */
#define TD_CFG_TYPE_address const char * /* HOST:PORT; NULL: not set */
#define TD_CFG_TYPE_addresses struct td_cfg_addresses
#define TD_CFG_TYPE_level enum td_log_level
#define TD_CFG_TYPE_format const char * /* "text" or "json" */
#define TD_CFG_TYPE_node_id const char *  /* a DNS label; NULL: not set (main decides) */
#define TD_CFG_TYPE_hostport const char * /* HOST:PORT, names allowed; NULL: not set */
#define TD_CFG_TYPE_peers const char *    /* comma list, checked (td_cfg_peers_next) */
#define TD_CFG_TYPE_config const char * /* the --config given on the command line, if any */
#define TD_CFG_TYPE_help bool           /* actions: they print and end the parse */
#define TD_CFG_TYPE_version bool

enum {
    TD_CFG_COUNT = 0 /* the rows of config.def */
#define OPT(field, name, env, key, arg, dflt, derive, parse, lo, hi, complaint, help) +1
#include "config.def"
#undef OPT
};

struct td_config {
#define OPT(field, name, env, key, arg, dflt, derive, parse, lo, hi, complaint, help)              \
    TD_CFG_TYPE_##parse field;
#include "config.def"
#undef OPT
    bool set[TD_CFG_COUNT]; /* a source (not the default) gave the row a value */
    int source;             /* the source being applied: 0 defaults, 1 file, 2 env, 3 argv */
};

/* Fills *cfg (zeroed first) from argv, the environment and the config file. Strings in it are
** borrowed from argv, the environment or config.def's defaults, or kept by config.c for the
** process's lifetime (a config file's values).
** Returns 0; 1 after --help or --version (exit 0); -1 when a setting is invalid (the reason is
** printed on stderr; exit 2). */
int td_config_parse(struct td_config *cfg, int argc, char **argv);

/* Prints the effective settings, `name = value` per line in config.def's order (the actions and
** --config left out), in the forms the parsers take: sizes in bytes, durations in ms. Paths
** are printed, never the auth token itself. */
void td_config_print(const struct td_config *cfg, FILE *f);

/* Walks a --peers list: copies the entry at *pos into out[cap] and advances *pos; false at the
** end. Entries are "HOST:PORT" or "dns:NAME:PORT", checked by the parser. */
bool td_cfg_peers_next(const char *list, size_t *pos, char *out, size_t cap);

#endif
