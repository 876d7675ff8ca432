/* Line-oriented logger. The level is process-wide configuration set once at start-up. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/errors.h"
#include "util/timeutil.h"

static enum log_level min_level = LOG_INFO;

void log_set_level(enum log_level lvl)
{
    min_level = lvl;
}

int log_parse_level(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

static const char *const NAMES[] = {"debug", "info", "warn", "error"};

bool log_enabled(enum log_level lvl)
{
    return lvl >= min_level;
}

static void emit(struct buf *b)
{
    ssize_t w = write(STDERR_FILENO, b->ptr, b->len);
    (void)w;
    buf_fini(b);
}

void log_request(enum log_level lvl, const char *request_id, const char *method,
                 const char *path, size_t n, unsigned status, double ms)
{
    if (lvl < min_level) {
        return;
    }
    char ts[TIME_RFC3339_LEN];
    time_format(time_now_us(), ts);
    struct buf b;
    buf_init(&b);
    if (isatty(STDERR_FILENO)) {
        buf_printf(&b, "%s %-5s request %s %s %.*s %u %.3f ms\n", ts, NAMES[lvl], request_id,
                   method, (int)n, path, status, ms);
    } else {
        buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"request\",\"requestId\":",
                   ts, NAMES[lvl]);
        buf_add_json_str(&b, request_id, strlen(request_id));
        buf_adds(&b, ",\"method\":");
        buf_add_json_str(&b, method, strlen(method));
        buf_adds(&b, ",\"path\":");
        buf_add_json_str(&b, path, n);
        buf_printf(&b, ",\"status\":%u,\"ms\":%.3f}\n", status, ms);
    }
    emit(&b);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    const char *const *names = NAMES;
    if (lvl < min_level) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[TIME_RFC3339_LEN];
    time_format(time_now_us(), ts);
    struct buf b;
    buf_init(&b);
    if (isatty(STDERR_FILENO)) {
        buf_printf(&b, "%s %-5s %s\n", ts, names[lvl], msg);
    } else {
        buf_adds(&b, "{\"time\":\"");
        buf_adds(&b, ts);
        buf_adds(&b, "\",\"level\":\"");
        buf_adds(&b, names[lvl]);
        buf_adds(&b, "\",\"msg\":");
        buf_add_json_str(&b, msg, strlen(msg));
        buf_adds(&b, "}\n");
    }
    emit(&b);
}
