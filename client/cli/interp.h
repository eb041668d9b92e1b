/* interp.h — inside tensorctl's interpreter: its values, its environment, and what its files
** share (values.c, print.c, ops.c, methods.c, builtins.c, eval.c, meta.c). main.c sees eval.h.
**
** Values are Python's (None, bools, ints, floats, strings, lists, tuples, shapes, dtypes) or
** tensors, which are references to server handles (`struct tref`, counted here so that `y = x`
** shares one handle and the last reference frees it). An operation on tensors queues its request
** and returns at once with a fresh handle for the result; the request is remembered in `pend`
** with the position of the code that sent it. sync() collects the replies in order, notes each
** tensor's dtype and shape, and reports the first refusal at its position. Only what needs an
** answer syncs: printing, item(), shapes, meta-commands, the end of a run. Frees of dropped
** handles are batched into one request per statement.
**
** Python semantics are kept where they show: number arithmetic happens here with Python's
** rules, printed text is Python's repr (and the server's torch-identical text for tensors),
** in-place augmented assignment on a tensor updates it. These files know libtensord's calls,
** not the wire.
**
** Ownership: a struct value owns its strings and items; tensors are shared `struct tref`s,
** counted (tdx_tref_ref / tdx_tref_unref); tdx_vfree releases a value, tdx_vcopy deep-copies.
*/
#ifndef TENSORCTL_INTERP_H
#define TENSORCTL_INTERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/strbuf.h"
#include "eval.h"
#include "ops.h"
#include "parse.h"
#include "tensord.h"

#define TDX_MAX_OPERANDS 64   /* operands one op call may send */
#define TDX_MAX_PARAMS 16     /* parameters of one op that a call may use */
#define FORMAT_CAP (4u << 20) /* the largest printed tensor text (torch summarises big ones) */

struct tref {
    uint64_t handle;
    int refs;
    bool known;         /* info holds the server's dtype and shape */
    bool none;          /* a .grad that turned out to be None */
    bool requires_grad; /* tracked here as torch would set it */
    bool is_leaf;
    struct tensord_info info;
};

enum vkind {
    V_NONE,
    V_BOOL,
    V_INT,
    V_FLOAT,
    V_STR,
    V_TENSOR,
    V_LIST,
    V_TUPLE,
    V_SIZE,
    V_DTYPE,
    V_FUNC,
    V_METHOD,
    V_CTX,
    V_RANGE,
    V_MODULE,
    V_NODE,
    V_GENERATOR, /* torch.Generator: t is its state tensor [seed, offset] (builtins.c) */
};

struct value {
    enum vkind k;
    bool b;
    int64_t i; /* V_INT; V_RANGE start */
    double f;
    int dt;              /* V_DTYPE; V_CTX: the grad mode it sets */
    int64_t stop, step;  /* V_RANGE */
    char *s;             /* V_STR text, V_FUNC / V_METHOD / V_NODE name: owned */
                         /* V_METHOD: b set for a Generator's method (t its state) */
    struct tref *t;      /* V_TENSOR, V_METHOD's self: a reference */
    struct value *items; /* V_LIST, V_TUPLE, V_SIZE (ints): owned */
    int n;
};

enum pkind {
    P_TENSOR,
    P_PLAIN,
    P_GRAD,
    P_FREE,
    P_NAME, /* SetName / DelName of a variable's name: a refusal is not reported */
};

struct preq {
    uint64_t id;
    enum pkind kind;
    struct tref *t; /* a reference, or NULL */
    int line, col;
};

struct var {
    char *name;
    struct value v;
    uint64_t named; /* the handle the session's name `name` was last bound to (0: none) */
};

struct tdx_env {
    struct tensord *c;
    struct tdx_config cfg;
    struct var *vars;
    int nvars, capvars;
    struct preq *pend;
    size_t npend, cappend;
    uint64_t *dead;
    size_t ndead, capdead;
    bool grad_enabled;
    bool timing;
    bool broken;
    bool failed; /* an error was reported during this run */
    const char *file;
    char *fmt; /* FORMAT_CAP bytes, allocated on first print */
    unsigned long waits;
    /* the error being raised */
    bool has_err;
    int err_line, err_col;
    char err_msg[600];
};

/* A call's evaluated arguments: positional, then keyword (names borrowed from the tree). */
struct call {
    struct value *args;
    int nargs;
    char **kwn;
    struct value *kwv;
    int nkw;
};

/* ---- small value helpers ---- */

static inline struct value vint(int64_t i)
{
    return (struct value){.k = V_INT, .i = i};
}

static inline struct value vfloat(double f)
{
    return (struct value){.k = V_FLOAT, .f = f};
}

static inline struct value vbool(bool b)
{
    return (struct value){.k = V_BOOL, .b = b};
}

static inline struct value vtensor(struct tref *t)
{
    return (struct value){.k = V_TENSOR, .t = t};
}

static inline bool is_num(const struct value *v)
{
    return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL;
}

static inline double num_f(const struct value *v)
{
    return v->k == V_FLOAT ? v->f : v->k == V_INT ? (double)v->i : v->b;
}

static inline int64_t num_i(const struct value *v)
{
    return v->k == V_INT ? v->i : v->k == V_BOOL ? v->b : (int64_t)v->f;
}

/* ---- values.c: errors, values, names, pending replies ---- */

int tdx_fail(struct tdx_env *e, const struct tdx_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tdx_report(struct tdx_env *e, int line, int col, const char *msg);
int tdx_lib_fail(struct tdx_env *e, const struct tdx_node *at, const struct tensord_error *err);
struct tref *tdx_tref_new(struct tdx_env *e);
struct tref *tdx_tref_ref(struct tref *t);
void tdx_tref_unref(struct tdx_env *e, struct tref *t);
void tdx_vfree(struct tdx_env *e, struct value *v);
int tdx_vcopy(struct tdx_env *e, struct value *dst, const struct value *src);
int tdx_vstr(struct tdx_env *e, struct value *out, const char *s, size_t n);
int tdx_vseq(struct tdx_env *e, struct value *out, enum vkind k, int n);
const char *tdx_type_name(const struct value *v);
int tdx_pend_add(struct tdx_env *e, uint64_t id, enum pkind kind, struct tref *t,
                 const struct tdx_node *at);
int tdx_flush_dead(struct tdx_env *e);
int tdx_need_sync(struct tdx_env *e);
int tdx_known(struct tdx_env *e, struct tref *t, const struct tdx_node *at);
struct var *tdx_lookup(struct tdx_env *e, const char *name);
int tdx_bind(struct tdx_env *e, const char *name, struct value *v);
void tdx_unbind(struct tdx_env *e, struct var *x);
int tdx_send_tensor_result(struct tdx_env *e, int lrc, uint64_t id, struct tref *t,
                           const struct tdx_node *at, const struct tensord_error *err);
int tdx_parse_dtype_value(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                          int *dt);
int tdx_get_shape(struct tdx_env *e, const struct value *args, int n, const struct tdx_node *at,
                  int64_t *shape, int *ndim);
int tdx_plain(struct tdx_env *e, int lrc, const uint64_t *id, const struct tdx_node *at,
              const struct tensord_error *err);
int tdx_set_grad_mode(struct tdx_env *e, bool enabled, const struct tdx_node *at);

/* ---- print.c: text, JSON, print() ---- */

const char *tdx_dtype_str(int dt);
int tdx_vtext(struct tdx_env *e, const struct value *v, bool str, const struct tdx_node *at,
              struct td_strbuf *b);
int tdx_fetch(struct tdx_env *e, struct tref *t, const struct tdx_node *at, uint8_t **out);
int tdx_format_spec(struct tdx_env *e, const struct tdx_node *at, const struct value *v,
                    const char *spec, struct td_strbuf *b);
int tdx_print_values(struct tdx_env *e, const struct tdx_node *at, const struct call *c);
int tdx_show(struct tdx_env *e, const struct tdx_node *at, struct value *v);

/* ---- ops.c: calling an op ---- */

int tdx_to_operand(struct tdx_env *e, const struct value *v, const struct tdx_node *at,
                   const char *op, struct tensord_operand *o);
int tdx_set_arg(struct tdx_env *e, const char *op, const char *key, const struct value *v,
                const struct tdx_node *at, struct tensord_op_args *a, bool *want_out2,
                bool *requires_grad);
int tdx_call_op(struct tdx_env *e, const struct tdx_node *at, const char *op, bool inplace,
                const struct call *c, struct value *out);

/* ---- methods.c: Tensor methods and attributes ---- */

int tdx_item(struct tdx_env *e, struct tref *t, const struct tdx_node *at, struct value *out);
int tdx_tolist(struct tdx_env *e, struct tref *t, const struct tdx_node *at, struct value *out);
int tdx_method(struct tdx_env *e, const struct tdx_node *at, struct tref *self, const char *name,
               const struct call *c0, struct value *out);
void tdx_complete_methods(const char *prefix, void (*fn)(const char *name, void *arg), void *arg);
int tdx_attribute(struct tdx_env *e, const struct tdx_node *at, const struct value *obj,
                  const char *name, struct value *out);

/* ---- builtins.c: functions and names ---- */

int tdx_func(struct tdx_env *e, const struct tdx_node *at, const char *name, const struct call *c,
             struct value *out);
int tdx_module_attr(struct tdx_env *e, const struct tdx_node *at, const char *module,
                    const char *name, struct value *out);
int tdx_name_value(struct tdx_env *e, const struct tdx_node *n, struct value *out);
/* generator=: the handle of Generator v's state (0 for None); else torch's error for fn. */
int tdx_generator_arg(struct tdx_env *e, const struct tdx_node *at, const char *fn,
                      const struct value *v, uint64_t *handle);
/* g.manual_seed(s), g.seed(), g.initial_seed(), g.get_state(), g.set_state(s). */
int tdx_generator_method(struct tdx_env *e, const struct tdx_node *at, struct tref *g,
                         const char *name, const struct call *c, struct value *out);
/* torch.tensor(data, dtype=dt) (dt 0: inferred as torch does) uploaded as a new tensor. */
int tdx_make_tensor(struct tdx_env *e, const struct value *data, int dt, bool requires_grad,
                    const struct tdx_node *at, struct value *out);

/* ---- eval.c: evaluation ---- */

int tdx_truth(struct tdx_env *e, const struct tdx_node *at, const struct value *v, bool *out);
int tdx_index_put_method(struct tdx_env *e, const struct tdx_node *at, struct tref *x, bool inplace,
                         const struct call *c, struct value *out);
#endif
