/* server/base/log.c — the stderr log sink. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum td_log_level td_log_min_level = TD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int td_log_parse_level(const char *s, enum td_log_level *out)
{
    for (int i = 0; i <= TD_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum td_log_level)i;
            return 0;
        }
    }
    return -1;
}

void td_log_write(enum td_log_level lvl, const char *event, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, level_names[lvl], event);
    if (n < 0 || (size_t)n >= sizeof line) {
        n = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (m < 0) ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
    }
    line[len++] = '\n';
    /* One fwrite per line keeps lines whole when threads log at once. */
    fwrite(line, 1, len, stderr);
}
