/* server/base/err.h — error codes and the error record every fallible call fills.
**
** This file owns the one list of error codes (TD_ERRORS). The enum, the code names, the default
** messages and rpc's mapping onto wire status codes are all generated from it, so they cannot
** disagree. It knows nothing of sockets, tensors or protobuf.
*/
#ifndef TD_BASE_ERR_H
#define TD_BASE_ERR_H

#include <stdarg.h>

/* X(name, wire status name, default message) */
#define TD_ERRORS(X)                                                                               \
    X(TD_EINVAL, INVALID_ARGUMENT, "invalid argument")                                             \
    X(TD_ESHAPE, SHAPE_MISMATCH, "shape mismatch")                                                 \
    X(TD_EDTYPE, DTYPE_ERROR, "unsupported or incompatible dtype")                                 \
    X(TD_EHANDLE, UNKNOWN_HANDLE, "unknown handle")                                                \
    X(TD_EEXIST, HANDLE_IN_USE, "handle already in use")                                           \
    X(TD_EINPUT, INPUT_FAILED, "an input's producing operation failed")                            \
    X(TD_ENOMEM, OUT_OF_MEMORY, "out of memory")                                                   \
    X(TD_EQUOTA, QUOTA_EXCEEDED, "memory quota exceeded")                                          \
    X(TD_ELIMIT, LIMIT_EXCEEDED, "limit exceeded")                                                 \
    X(TD_EPROTO, PROTOCOL_ERROR, "protocol error")                                                 \
    X(TD_EVERSION, VERSION_MISMATCH, "no common protocol version")                                 \
    X(TD_EAUTH, UNAUTHENTICATED, "authentication failed")                                          \
    X(TD_ESESSION, UNKNOWN_SESSION, "unknown or expired session")                                  \
    X(TD_EUNSUP, UNIMPLEMENTED, "not implemented")                                                 \
    X(TD_EIO, IO_ERROR, "input/output error")                                                      \
    X(TD_ENOSESSION, NO_SESSION, "no session: send Hello first")                                   \
    X(TD_EOP, UNKNOWN_OP, "unknown op or request kind")                                            \
    X(TD_EINTERNAL, INTERNAL, "internal error")                                                    \
    X(TD_ECANCELED, CANCELLED, "the request was cancelled")                                        \
    X(TD_EMOVED, MOVED, "the session is owned by another node")                                    \
    X(TD_EFULL, NODE_FULL, "this node takes no new session now")                                   \
    X(TD_ENODE, UNKNOWN_NODE, "the session token names an unknown node")

enum td_errcode {
    TD_OK = 0,
#define TD_ERR_ENUM(name, wire, msg) name,
    TD_ERRORS(TD_ERR_ENUM)
#undef TD_ERR_ENUM
        TD_ERR_COUNT
};

#define TD_ERR_MSG_MAX 512

/* The error record. `code` is 0 when nothing failed; `msg` is a complete sentence fit to send
** to the client unchanged (PyTorch's wording where PyTorch has one). */
struct td_err {
    int code;                 /* enum td_errcode */
    char msg[TD_ERR_MSG_MAX]; /* NUL-terminated, truncated if longer */
};

/* Records `code` and a printf-formatted message in `err` (which may be NULL) and returns
** `code`, so callers write `return td_err_set(err, TD_EINVAL, "...", ...)`. */
int td_err_set(struct td_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As td_err_set, with the code's default message. */
int td_err_code(struct td_err *err, int code);

/* Copies src into dst (dst may be NULL) and returns src->code. */
int td_err_copy(struct td_err *dst, const struct td_err *src);

/* Resets err to "no error". */
void td_err_clear(struct td_err *err);

/* The code's symbolic name ("TD_EINVAL") and default message; "?" for unknown codes. */
const char *td_err_name(int code);
const char *td_err_default_msg(int code);

#endif
