/* server/base/err.c — formatting of error records. Depends on libc only. */
#include "err.h"

#include <stdio.h>
#include <string.h>

static const char *const err_names[TD_ERR_COUNT] = {[TD_OK] = "TD_OK",
#define TD_ERR_NAME(name, wire, msg) [name] = #name,
                                                    TD_ERRORS(TD_ERR_NAME)
#undef TD_ERR_NAME
};

static const char *const err_msgs[TD_ERR_COUNT] = {[TD_OK] = "ok",
#define TD_ERR_MSG(name, wire, msg) [name] = msg,
                                                   TD_ERRORS(TD_ERR_MSG)
#undef TD_ERR_MSG
};

int td_err_set(struct td_err *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int td_err_code(struct td_err *err, int code)
{
    return td_err_set(err, code, "%s", td_err_default_msg(code));
}

int td_err_copy(struct td_err *dst, const struct td_err *src)
{
    if (dst != NULL && dst != src) {
        memcpy(dst, src, sizeof *dst);
    }
    return src->code;
}

void td_err_clear(struct td_err *err)
{
    if (err != NULL) {
        err->code = TD_OK;
        err->msg[0] = '\0';
    }
}

const char *td_err_name(int code)
{
    return (code >= 0 && code < TD_ERR_COUNT) ? err_names[code] : "?";
}

const char *td_err_default_msg(int code)
{
    return (code >= 0 && code < TD_ERR_COUNT) ? err_msgs[code] : "?";
}
