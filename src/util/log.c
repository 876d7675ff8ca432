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

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
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
    ssize_t w = write(STDERR_FILENO, b.ptr, b.len);
    (void)w;
    buf_fini(&b);
}
