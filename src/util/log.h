/* Logging to stderr: one JSON object per line when stderr is not a terminal, plain text on a
 * terminal. Thread-safe (one write(2) per line). */
#ifndef UTIL_LOG_H
#define UTIL_LOG_H
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lvl);
/* Parses "debug", "info", "warn", "error". Returns 0 or ERR_INVALID. */
int log_parse_level(const char *s, enum log_level *out);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when messages of lvl are written. */
bool log_enabled(enum log_level lvl);
/* One line about an answered request: {"time","level","msg":"request","requestId","method",
 * "path","status","ms"} (path: n bytes, as received). */
void log_request(enum log_level lvl, const char *request_id, const char *method,
                 const char *path, size_t n, unsigned status, double ms);
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
