/* server/base/log.c — the stderr log sink. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum td_log_level td_log_min_level = TD_LOG_INFO;
bool td_log_json = false;

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

/* Appends s to dst as JSON string contents (quotes and control bytes escaped). */
static size_t json_escape(char *dst, size_t cap, const char *s)
{
    size_t k = 0;
    for (; *s != '\0' && k + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[k++] = '\\';
            dst[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)snprintf(dst + k, cap - k, "\\u%04x", c);
        } else {
            dst[k++] = (char)c;
        }
    }
    dst[k] = '\0';
    return k;
}

void td_log_write(enum td_log_level lvl, const char *event, const char *fmt, ...)
{
    char fields[768], line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
    char stamp[80];
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
    int n;
    if (td_log_json) {
        char esc[800];
        json_escape(esc, sizeof esc, fields);
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"%s\","
                     "\"fields\":\"%s\"}",
                     stamp, level_names[lvl], event, esc);
    } else {
        n = snprintf(line, sizeof line, "ts=%s level=%s event=%s %s", stamp, level_names[lvl],
                     event, fields);
    }
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
    }
    line[len++] = '\n';
    /* One fwrite per line keeps lines whole when threads log at once. */
    fwrite(line, 1, len, stderr);
}
