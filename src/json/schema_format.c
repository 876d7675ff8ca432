/* Format assertions for JSON Schema (schema_format.h): RFC 3339 dates and times, RFC 5321
 * mailboxes, RFC 1123 host names (ASCII: A-labels are checked for shape, not decoded),
 * IPv4 and IPv6 addresses, RFC 4122 UUIDs, RFC 3986 URIs and references, RFC 6901 JSON
 * Pointers, RFC 3339 appendix A durations, and regexes (PCRE2 compiles them). */
#include "json/schema_format.h"

#include <string.h>

#include "json/schema_int.h"
#include "util/buf.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* The value of n digits at s, or -1 if they are not all digits. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool check_date(const char *s, size_t len)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (len != 10 || s[4] != '-' || s[7] != '-') {
        return false;
    }
    int y = digits(s, 4);
    int m = digits(s + 5, 2);
    int d = digits(s + 8, 2);
    if (y < 0 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) {
        return false;
    }
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/* RFC 3339 full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM); a leap second (60) only at 23:59
 * UTC. */
static bool check_time(const char *s, size_t len)
{
    if (len < 9 || s[2] != ':' || s[5] != ':') {
        return false;
    }
    int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);
    if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60) {
        return false;
    }
    size_t i = 8;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i])) {
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    int oh = 0, om = 0, sign = 0;
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        sign = 0;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        sign = s[i] == '+' ? 1 : -1;
        oh = digits(s + i + 1, 2);
        om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) {
            return false;
        }
    } else {
        return false;
    }
    if (sec == 60) {
        int utc = ((h * 60 + m - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
        return utc == 23 * 60 + 59;
    }
    return true;
}

static bool check_date_time(const char *s, size_t len)
{
    return len > 11 && (s[10] == 'T' || s[10] == 't') && check_date(s, 10) &&
           check_time(s + 11, len - 11);
}

static bool check_ipv4(const char *s, size_t len)
{
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t start = i;
        int v = 0;
        while (i < len && is_digit(s[i]) && i - start < 3) {
            v = v * 10 + (s[i++] - '0');
        }
        size_t n = i - start;
        if (n == 0 || v > 255 || (n > 1 && s[start] == '0')) {
            return false;
        }
        if (++parts < 4) {
            if (i >= len || s[i] != '.') {
                return false;
            }
            i++;
        }
    }
    return i == len;
}

static bool check_ipv6(const char *s, size_t len)
{
    int groups = 0;
    bool gap = false;
    size_t i = 0;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        gap = true;
        i = 2;
    } else if (len && s[0] == ':') {
        return false;
    }
    while (i < len) {
        size_t start = i;
        while (i < len && is_hex(s[i]) && i - start < 5) {
            i++;
        }
        if (i < len && s[i] == '.') { /* a trailing dotted IPv4 counts as two groups */
            return groups + 2 <= 8 && (gap ? groups + 2 < 8 : groups + 2 == 8) &&
                   check_ipv4(s + start, len - start);
        }
        size_t n = i - start;
        if (n == 0 || n > 4) {
            return false;
        }
        groups++;
        if (i == len) {
            break;
        }
        if (s[i] != ':' || i + 1 == len) {
            return false;
        }
        i++;
        if (s[i] == ':') {
            if (gap) {
                return false;
            }
            gap = true;
            i++;
        }
    }
    return gap ? groups < 8 : groups == 8;
}

static bool check_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-') {
                return false;
            }
            const char *l = s + i - label;
            if (label >= 4 && l[2] == '-' && l[3] == '-' &&
                !((l[0] | 0x20) == 'x' && (l[1] | 0x20) == 'n')) {
                return false; /* "--" at 3-4 is reserved for A-labels (RFC 5891) */
            }
            label = 0;
            continue;
        }
        if (!is_alpha(s[i]) && !is_digit(s[i]) && !(s[i] == '-' && label > 0)) {
            return false;
        }
        label++;
    }
    return true;
}

static bool check_uuid(const char *s, size_t len)
{
    if (len != 36) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i])) {
            return false;
        }
    }
    return true;
}

static bool is_atext(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* RFC 5321 Mailbox: Dot-string or Quoted-string "@" host name or address literal. */
static bool check_email(const char *s, size_t len)
{
    size_t i = 0;
    if (len && s[0] == '"') {
        for (i = 1; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\') {
                i++;
            } else if ((unsigned char)s[i] < 32) {
                return false;
            }
        }
        if (i >= len) {
            return false;
        }
        i++;
    } else {
        for (; i < len && s[i] != '@'; i++) {
            bool dot_ok = s[i] == '.' && i > 0 && s[i - 1] != '.';
            if (!is_atext(s[i]) && !dot_ok) {
                return false;
            }
        }
        if (i == 0 || s[i - 1] == '.') {
            return false;
        }
    }
    if (i >= len || s[i] != '@' || i + 1 == len) {
        return false;
    }
    const char *d = s + i + 1;
    size_t dl = len - i - 1;
    if (d[0] == '[' && d[dl - 1] == ']') {
        if (dl > 6 && memcmp(d + 1, "IPv6:", 5) == 0) {
            return check_ipv6(d + 6, dl - 7);
        }
        return check_ipv4(d + 1, dl - 2);
    }
    return check_hostname(d, dl);
}

static bool is_uri_char(char c, bool brackets)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-._~!$&'()*+,;=:@/?#%", c)) ||
           (brackets && (c == '[' || c == ']'));
}

/* RFC 3986 URI-reference (absolute when need_scheme): characters, percent-escapes, the
 * scheme's shape, a numeric port, brackets only around an IP literal host. */
static bool check_uri(const char *s, size_t len, bool need_scheme)
{
    size_t i = 0;
    while (i < len && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#') {
        i++;
    }
    bool has_scheme = i < len && s[i] == ':' && i > 0;
    if (has_scheme) {
        if (!is_alpha(s[0])) {
            return false;
        }
        for (size_t k = 1; k < i; k++) {
            if (!is_alpha(s[k]) && !is_digit(s[k]) && !strchr("+-.", s[k])) {
                return false;
            }
        }
        i++;
    } else if (need_scheme) {
        return false;
    } else {
        i = 0;
    }
    size_t host_end = len;
    if (len - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        size_t a = i + 2;
        host_end = a;
        while (host_end < len && !strchr("/?#", s[host_end])) {
            host_end++;
        }
        const char *at = memchr(s + a, '@', host_end - a);
        size_t h = at ? (size_t)(at - s) + 1 : a;
        bool bracket = h < host_end && s[h] == '[';
        const char *close = bracket ? memchr(s + h, ']', host_end - h) : NULL;
        if ((bracket && !close) || (at && memchr(at + 1, '@', host_end - (size_t)(at + 1 - s)))) {
            return false;
        }
        if (close && s[h + 1] != 'v' && s[h + 1] != 'V' &&
            !check_ipv6(s + h + 1, (size_t)(close - s) - h - 1)) {
            return false;
        }
        size_t port = close ? (size_t)(close - s) + 1 : h;
        while (port < host_end && s[port] != ':') {
            port++;
        }
        for (size_t k = port + 1; k < host_end; k++) {
            if (!is_digit(s[k])) {
                return false;
            }
        }
        for (size_t k = a; k < host_end; k++) {
            bool in_lit = close && k >= h && s + k <= close;
            if (!is_uri_char(s[k], in_lit)) {
                return false;
            }
        }
        i = host_end;
    }
    for (; i < len; i++) {
        if (!is_uri_char(s[i], false)) {
            return false;
        }
        if (s[i] == '%' && (i + 2 >= len || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))) {
            return false;
        }
    }
    return true;
}

static bool check_json_pointer(const char *s, size_t len)
{
    if (len && s[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '~' && (i + 1 == len || (s[i + 1] != '0' && s[i + 1] != '1'))) {
            return false;
        }
    }
    return true;
}

/* RFC 3339 appendix A: P(nY)(nM)(nD)(T(nH)(nM)(nS)) in that order, at least one element
 * (and one after T), or PnW alone. */
static bool check_duration(const char *s, size_t len)
{
    static const char date_units[] = "YMD", time_units[] = "HMS";
    if (len < 3 || s[0] != 'P') {
        return false;
    }
    if (s[len - 1] == 'W') {
        return digits(s + 1, len - 2) >= 0;
    }
    size_t i = 1;
    const char *units = date_units;
    size_t next = 0;
    size_t elements = 0;
    while (i < len) {
        if (s[i] == 'T') {
            if (units == time_units || i + 1 == len) {
                return false;
            }
            units = time_units;
            next = 0;
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && is_digit(s[i])) {
            i++;
        }
        const char *u = i < len && s[i] ? strchr(units + next, s[i]) : NULL;
        bool first = next == 0; /* later units follow without a gap: P1Y2D is not valid */
        if (i == start || !u || (!first && u != units + next)) {
            return false;
        }
        next = (size_t)(u - units) + 1;
        elements++;
        i++;
    }
    return elements > 0;
}

static bool check_regex(const char *s, size_t len)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = schema_regex_compile(s, len, &code, &at);
    pcre2_code_free(re);
    return re != NULL;
}

/* The format table: name, check, failure message. Index = enum schema_format. */
static const struct {
    const char *name;
    bool (*check)(const char *s, size_t len);
    const char *msg;
} FORMATS[] = {
    [FMT_NONE] = {"", NULL, ""},
    [FMT_EMAIL] = {"email", check_email, "not a valid email address"},
    [FMT_UUID] = {"uuid", check_uuid, "not a valid UUID"},
    [FMT_DATE_TIME] = {"date-time", check_date_time, "not a valid RFC 3339 date-time"},
    [FMT_DATE] = {"date", check_date, "not a valid RFC 3339 full-date"},
    [FMT_TIME] = {"time", check_time, "not a valid RFC 3339 full-time"},
    [FMT_IPV4] = {"ipv4", check_ipv4, "not a valid IPv4 address"},
    [FMT_IPV6] = {"ipv6", check_ipv6, "not a valid IPv6 address"},
    [FMT_HOSTNAME] = {"hostname", check_hostname, "not a valid host name"},
    [FMT_URI] = {"uri", NULL, "not a valid absolute URI"},
    [FMT_URI_REFERENCE] = {"uri-reference", NULL, "not a valid URI reference"},
    [FMT_JSON_POINTER] = {"json-pointer", check_json_pointer, "not a valid JSON Pointer"},
    [FMT_DURATION] = {"duration", check_duration, "not a valid duration"},
    [FMT_REGEX] = {"regex", check_regex, "not a valid regular expression"},
};

int schema_format_lookup(const char *name, size_t len)
{
    for (int i = 1; i < (int)(sizeof FORMATS / sizeof *FORMATS); i++) {
        if (strlen(FORMATS[i].name) == len && memcmp(FORMATS[i].name, name, len) == 0) {
            return i;
        }
    }
    return FMT_NONE;
}

bool schema_format_check(int fmt, const char *s, size_t len)
{
    if (fmt == FMT_URI || fmt == FMT_URI_REFERENCE) {
        return check_uri(s, len, fmt == FMT_URI);
    }
    return fmt == FMT_NONE || FORMATS[fmt].check(s, len);
}

const char *schema_format_message(int fmt)
{
    return FORMATS[fmt].msg;
}

/* ECMA-262 General_Category long names and their PCRE2 short forms. */
static const char *const GC_NAMES[][2] = {
    {"Letter", "L"}, {"Cased_Letter", "L&"}, {"Uppercase_Letter", "Lu"},
    {"Lowercase_Letter", "Ll"}, {"Titlecase_Letter", "Lt"}, {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"}, {"Mark", "M"}, {"Combining_Mark", "M"},
    {"Nonspacing_Mark", "Mn"}, {"Spacing_Mark", "Mc"}, {"Enclosing_Mark", "Me"},
    {"Number", "N"}, {"Decimal_Number", "Nd"}, {"digit", "Nd"}, {"Letter_Number", "Nl"},
    {"Other_Number", "No"}, {"Punctuation", "P"}, {"punct", "P"},
    {"Connector_Punctuation", "Pc"}, {"Dash_Punctuation", "Pd"}, {"Open_Punctuation", "Ps"},
    {"Close_Punctuation", "Pe"}, {"Initial_Punctuation", "Pi"},
    {"Final_Punctuation", "Pf"}, {"Other_Punctuation", "Po"}, {"Symbol", "S"},
    {"Math_Symbol", "Sm"}, {"Currency_Symbol", "Sc"}, {"Modifier_Symbol", "Sk"},
    {"Other_Symbol", "So"}, {"Separator", "Z"}, {"Space_Separator", "Zs"},
    {"Line_Separator", "Zl"}, {"Paragraph_Separator", "Zp"}, {"Other", "C"},
    {"Control", "Cc"}, {"cntrl", "Cc"}, {"Format", "Cf"}, {"Surrogate", "Cs"},
    {"Private_Use", "Co"}, {"Unassigned", "Cn"},
};

/* ECMA-262's WhiteSpace and LineTerminator code points, as class contents. */
static const char ECMA_SPACE[] =
    "\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f"
    "\\u205f\\u3000\\ufeff";

/* Appends \p{name} / \P{name} (src at the 'p', name in braces) in PCRE2's spelling: long
 * General_Category names shortened, "Script=" and "General_Category=" prefixes dropped.
 * Returns source bytes consumed from the 'p'. */
static size_t add_property(const char *s, size_t len, struct buf *out)
{
    const char *close = len > 2 && s[1] == '{' ? memchr(s, '}', len) : NULL;
    if (!close) {
        buf_addc(out, s[0]);
        return 1;
    }
    const char *name = s + 2;
    size_t n = (size_t)(close - name);
    const char *eq = memchr(name, '=', n);
    if (eq) {
        n -= (size_t)(eq + 1 - name);
        name = eq + 1;
    }
    buf_addc(out, s[0]);
    buf_addc(out, '{');
    const char *mapped = NULL;
    for (size_t i = 0; i < sizeof GC_NAMES / sizeof *GC_NAMES && !mapped; i++) {
        if (strlen(GC_NAMES[i][0]) == n && memcmp(GC_NAMES[i][0], name, n) == 0) {
            mapped = GC_NAMES[i][1];
        }
    }
    if (mapped) {
        buf_adds(out, mapped);
    } else {
        buf_add(out, name, n);
    }
    buf_addc(out, '}');
    return (size_t)(close - s) + 1;
}

/* Rewrites ECMA-262 regex syntax PCRE2 reads differently: \p{Long_Name}, and \s / \S
 * (Unicode white space in ECMA, ASCII in PCRE2 without UCP, which would also make \d and
 * \w Unicode). \S inside a class stays PCRE2's. */
static void ecma_to_pcre2(const char *s, size_t len, struct buf *out)
{
    bool in_class = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c != '\\' || i + 1 == len) {
            in_class = c == '[' ? true : c == ']' ? false : in_class;
            buf_addc(out, c);
            continue;
        }
        char e = s[++i];
        if (e == 'p' || e == 'P') {
            buf_addc(out, '\\');
            i += add_property(s + i, len - i, out) - 1;
        } else if (e == 's' && in_class) {
            buf_adds(out, ECMA_SPACE);
        } else if (e == 's' || (e == 'S' && !in_class)) {
            buf_adds(out, e == 's' ? "[" : "[^");
            buf_adds(out, ECMA_SPACE);
            buf_addc(out, ']');
        } else {
            buf_addc(out, '\\');
            buf_addc(out, e);
        }
    }
}

pcre2_code *schema_regex_compile(const char *src, size_t len, int *code, PCRE2_SIZE *at)
{
    struct buf pat;
    buf_init(&pat);
    buf_reserve(&pat, len);
    ecma_to_pcre2(src, len, &pat);
    uint32_t opts = PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX | PCRE2_NO_UTF_CHECK |
                    PCRE2_ALLOW_EMPTY_CLASS;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat.ptr, pat.len, opts, code, at, NULL);
    buf_fini(&pat);
    if (re) {
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* failure leaves the interpreter */
    }
    return re;
}
