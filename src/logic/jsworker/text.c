/* Pure helpers of the worker (text.h). */
#include "logic/jsworker/text.h"

#include <string.h>

enum { UTF8_CHUNK_BYTES = 1024 }; /* converted bytes handed to the write function at once */

/* Host objects of other runtimes: a ReferenceError naming one is LOGIC_E_FORBIDDEN. */
static const char *const host_names[] = {
    "require", "process", "fetch", "XMLHttpRequest", "setTimeout", "setInterval", "Deno", "Bun",
    "module", "window", "document", "WebSocket", "importScripts", "Buffer",
};

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

static bool flush(struct jsw_utf8_sink *s, const char *out, size_t len)
{
    if (len == 0) return true;
    if (!s->w(s->arg, out, len)) {
        s->is_stopped = true;
        return false;
    }
    s->written += len;
    return true;
}

bool jsw_utf8_put(struct jsw_utf8_sink *s, const uint16_t *p, size_t n)
{
    char out[UTF8_CHUNK_BYTES];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = p[i];
        if (s->high) {
            if (c >= 0xdc00 && c <= 0xdfff) c = 0x10000 + ((s->high - 0xd800u) << 10) + (c - 0xdc00);
            else len += put_utf8(out + len, 0xfffd);
            s->high = 0;
        } else if (c >= 0xd800 && c <= 0xdbff) {
            s->high = (uint16_t)c;
            continue;
        }
        len += put_utf8(out + len, (c >= 0xd800 && c <= 0xdfff) ? 0xfffd : c);
        if (len > sizeof out - 8) {
            if (!flush(s, out, len)) return false;
            len = 0;
        }
    }
    return flush(s, out, len);
}

bool jsw_line_add(void *arg, const char *p, size_t n)
{
    struct jsw_line *l = arg;
    size_t room = l->cap - l->len;
    size_t take = n < room ? n : room;
    memcpy(l->p + l->len, p, take);
    l->len += take;
    return n < room;
}

bool jsw_json_depth_ok(const char *p, size_t n, int max)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) return false;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

size_t jsw_json_deep_item(const char *p, size_t n, int max)
{
    int depth = 0;
    size_t item = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max + 1) return item;
        } else if (c == ']' || c == '}') {
            depth--;
        } else if (c == ',' && depth == 1) {
            item++;
        }
    }
    return SIZE_MAX;
}

static bool names_host_object(const char *msg)
{
    static const char prefix[] = "ReferenceError: ";
    static const char suffix[] = " is not defined";
    if (strncmp(msg, prefix, sizeof prefix - 1) != 0) return false;
    msg += sizeof prefix - 1;
    for (size_t i = 0; i < sizeof host_names / sizeof host_names[0]; i++) {
        size_t n = strlen(host_names[i]);
        if (!strncmp(msg, host_names[i], n) && !strcmp(msg + n, suffix)) return true;
    }
    return false;
}

enum logic_err_kind jsw_classify(const char *message, enum logic_err_kind kind)
{
    if (strstr(message, "allocation size overflow") || strstr(message, "out of memory"))
        return LOGIC_E_MEMORY;
    if (strstr(message, "blocked by CSP") || strstr(message, "is not available: a module") ||
        strstr(message, "Dynamic module import is disabled") || names_host_object(message))
        return LOGIC_E_FORBIDDEN;
    return kind;
}

double jsw_random_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
