/* server/base/log.h — one key=value line per event on stderr.
**
** The level is checked before formatting, so a disabled line costs one comparison. Only net,
** session, rpc and main log; core and base return codes and let the caller decide what matters.
** Tensor contents and session tokens never appear in logs.
*/
#ifndef TD_BASE_LOG_H
#define TD_BASE_LOG_H

#include <stdbool.h>

enum td_log_level { TD_LOG_DEBUG, TD_LOG_INFO, TD_LOG_WARN, TD_LOG_ERROR, TD_LOG_OFF };

extern enum td_log_level td_log_min_level;
extern bool td_log_json; /* one JSON object per line instead of key=value */

/* Parses "debug|info|warn|error|off"; returns 0 or -1. */
int td_log_parse_level(const char *s, enum td_log_level *out);

void td_log_write(enum td_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define td_log(lvl, event, ...)                                                                    \
    do {                                                                                           \
        if ((lvl) >= td_log_min_level) {                                                           \
            td_log_write((lvl), (event), __VA_ARGS__);                                             \
        }                                                                                          \
    } while (0)

#endif
