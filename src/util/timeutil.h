/* Wall-clock time in microseconds since the Unix epoch, and RFC 3339 text. Pure except now. */
#ifndef UTIL_TIMEUTIL_H
#define UTIL_TIMEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum { TIME_RFC3339_LEN = 32 }; /* buffer size for time_format */

int64_t time_now_us(void);
/* The wall-clock moment ms milliseconds from now, as pthread_cond_timedwait takes it. */
struct timespec time_deadline_ms(uint64_t ms);
uint64_t time_mono_ns(void);
/* Formats us as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC) into out (>= TIME_RFC3339_LEN bytes). */
void time_format(int64_t us, char *out);
/* Parses an RFC 3339 date-time (fraction optional, 'Z' or +hh:mm offset) into *out_us.
 * Returns 0 or ERR_INVALID. */
int time_parse(const char *s, size_t n, int64_t *out_us);

#endif
