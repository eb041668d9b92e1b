/* eval.h — tensorctl's interpreter: names, values, and statements run against a session.
**
** Names live here, in the client, and map to server handles. Statements are sent pipelined:
** creating and combining tensors queues requests without waiting, and only what needs an
** answer (printing, item(), a shape, a meta-command, the end of a script) waits, collecting
** every reply outstanding. A refused request is reported at the position of the code that
** sent it, `file:line:col: message`, with the server's message unchanged.
*/
#ifndef TENSORCTL_EVAL_H
#define TENSORCTL_EVAL_H

#include <stdbool.h>
#include <stdio.h>

#include "parse.h"
#include "tensord.h"

/* What running code can end with. */
enum tdx_status {
    TDX_OK = 0,
    TDX_ERROR = 1, /* a statement failed (reported on stderr); the session goes on */
    TDX_FATAL = 2, /* the connection is lost */
};

struct tdx_env;

struct tdx_config {
    bool json;        /* values print as JSON */
    bool keep_going;  /* a failed statement does not stop a script */
    bool interactive; /* the REPL: a few notices go to err that scripts need not see */
    FILE *out;        /* where values print (stdout) */
    FILE *err;        /* where errors go (stderr) */
};

/* A new interpreter on connection `c` (borrowed: it must outlive the env). NULL when out of
** memory. */
struct tdx_env *tdx_env_new(struct tensord *c, const struct tdx_config *cfg);
void tdx_env_free(struct tdx_env *e);

/* Runs prog's statements in order; errors are reported under the name `file`. A failed
** statement stops the run unless keep_going (the result is then still TDX_ERROR).
** The run ends with every reply collected. */
int tdx_run(struct tdx_env *e, const struct tdx_prog *prog, const char *file);

/* After --resume: each of the session's names that is a Python identifier becomes a variable
** holding the named tensor (variables name their tensors in the session as they are assigned,
** so a resumed script or REPL finds `x` again). Call once, on a new env, before anything runs.
** Reports failures on stderr. */
int tdx_restore_names(struct tdx_env *e);

/* Collects every outstanding reply, reporting failures. */
int tdx_sync(struct tdx_env *e);

/* Runs a meta-command line (":ls", ":save f.safetensors a b" ...), with its leading ':'. */
int tdx_meta(struct tdx_env *e, const char *line, const char *server_addr);

/* Sets :time on or off. */
bool tdx_timing(const struct tdx_env *e);

/* Names for completion that start with `prefix`: variables, functions and keywords when
** `object` is NULL; after "object." the tensor methods and attributes, or, when object names an
** imported torch module, its functions and dtypes. Calls fn for each. */
void tdx_complete(const struct tdx_env *e, const char *prefix, const char *object,
                  void (*fn)(const char *name, void *arg), void *arg);

/* Blocking waits so far (each collects replies from the server: one round trip). */
unsigned long tdx_waits(const struct tdx_env *e);

#endif
