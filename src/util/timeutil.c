/* Time helpers. Calendar maths uses days-from-civil (proleptic Gregorian), no locale, no TZ. */
#include "util/timeutil.h"

#include <time.h>

#include "util/errors.h"

struct timespec time_deadline_ms(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms % 1000u * 1000000u;
    ts.tv_sec += (time_t)(ms / 1000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    return ts;
}

int64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

void time_format(int64_t us, char *out)
{
    int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    /* Hand-formatted: this runs for every event read back, and snprintf is slow. */
    unsigned fields[7] = {(unsigned)(y < 0 ? 0 : y % 10000), (unsigned)m, (unsigned)d,
                          (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60),
                          (unsigned)(rem % 60), (unsigned)frac};
    static const int widths[7] = {4, 2, 2, 2, 2, 2, 6};
    static const char seps[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    char *p = out;
    for (int i = 0; i < 7; i++) {
        unsigned v = fields[i];
        for (int k = widths[i] - 1; k >= 0; k--) {
            p[k] = (char)('0' + v % 10);
            v /= 10;
        }
        p += widths[i];
        *p++ = seps[i];
    }
    *p = '\0';
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *out)
{
    if (at + count > n) {
        return ERR_INVALID;
    }
    int v = 0;
    for (size_t i = 0; i < count; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9') {
            return ERR_INVALID;
        }
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int parse_offset(const char *s, size_t n, size_t i, int *out_min)
{
    if (i < n && (s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
        *out_min = 0;
        return 0;
    }
    int oh, om;
    if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':' ||
        digits(s, n, i + 1, 2, &oh) || digits(s, n, i + 4, 2, &om) || oh > 23 || om > 59) {
        return ERR_INVALID;
    }
    *out_min = (s[i] == '-' ? -1 : 1) * (oh * 60 + om);
    return 0;
}

int time_parse(const char *s, size_t n, int64_t *out_us)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se;
    if (digits(s, n, 0, 4, &y) || n < 19 || s[4] != '-' || digits(s, n, 5, 2, &mo) ||
        s[7] != '-' || digits(s, n, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s, n, 11, 2, &h) || s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' ||
        digits(s, n, 17, 2, &se)) {
        return ERR_INVALID;
    }
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60) {
        return ERR_INVALID;
    }
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y))) {
        return ERR_INVALID;
    }
    size_t i = 19;
    int64_t frac = 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t start = i;
        int64_t scale = 100000;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9) {
            return ERR_INVALID;
        }
    }
    int off_min;
    if (parse_offset(s, n, i, &off_min)) {
        return ERR_INVALID;
    }
    if (se == 60) {
        se = 59; /* leap second: clamp, keeps order */
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_min * 60;
    *out_us = secs * 1000000 + frac;
    return 0;
}
