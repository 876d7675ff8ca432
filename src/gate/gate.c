/* The request pipeline (gate.h). One request: request id, Host, Origin and CORS, the mount
 * and route, the key and its scope, the query parameters, the database, the rate limit, the
 * idempotency gate, then the handler. */
#include "gate/gate.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gate/ratelimit.h"
#include "http/parse.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

/* ---- mounts ---- */

int gate_mount(struct gate *g, const struct gate_mount *desc, const char *prefix, void *ctx)
{
    bool unlisted = prefix == NULL;
    prefix = unlisted ? "" : prefix;
    if (g->nmounts == GATE_MAX_MOUNTS || strlen(prefix) >= sizeof g->mounts[0].prefix) {
        return ERR_TOOBIG;
    }
    size_t i = g->nmounts++;
    /* longest prefix first: insert before the first shorter one */
    while (i > 0 && strlen(g->mounts[i - 1].prefix) < strlen(prefix)) {
        g->mounts[i] = g->mounts[i - 1];
        i--;
    }
    g->mounts[i].desc = desc;
    g->mounts[i].route_segs = xcalloc(desc->nroutes ? desc->nroutes : 1, 1);
    for (size_t r = 0; r < desc->nroutes; r++) {
        const char *p = desc->routes[r].pattern;
        size_t n = *p ? 1 : 0;
        for (; *p; p++) {
            n += *p == '/';
        }
        g->mounts[i].route_segs[r] = (uint8_t)n;
    }
    snprintf(g->mounts[i].prefix, sizeof g->mounts[i].prefix, "%s", prefix);
    g->mounts[i].ctx = ctx;
    g->mounts[i].unlisted = unlisted;
    int tag = 0;
    for (size_t k = 0; k < g->nmounts; k++) {
        g->mounts[k].tag_base = tag;
        tag += (int)g->mounts[k].desc->nroutes;
    }
    return 0;
}

void gate_set_rate(struct gate *g, const struct gate_mount *desc, uint32_t rate)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        if (g->mounts[k].desc == desc) {
            g->mounts[k].has_rate = true;
            g->mounts[k].rate = rate;
        }
    }
}

void gate_set_ip_rate(struct gate *g, const struct gate_mount *desc, uint32_t rate)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        if (g->mounts[k].desc == desc) {
            g->mounts[k].has_ip_rate = true;
            g->mounts[k].ip_rate = rate;
        }
    }
}

size_t gate_route_count(const struct gate *g)
{
    size_t n = 0;
    for (size_t k = 0; k < g->nmounts; k++) {
        n += g->mounts[k].desc->nroutes;
    }
    return n;
}

bool gate_route_label(const struct gate *g, int tag, char *out, size_t cap)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        int rel = tag - g->mounts[k].tag_base;
        if (rel >= 0 && (size_t)rel < g->mounts[k].desc->nroutes) {
            const struct route *r = &g->mounts[k].desc->routes[rel];
            snprintf(out, cap, "%s %s/%s", r->method, g->mounts[k].prefix, r->pattern);
            return true;
        }
    }
    return false;
}

int gate_find_mount(const struct gate *g, struct slice path, struct slice *rest)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        size_t n = strlen(g->mounts[k].prefix);
        if (g->mounts[k].unlisted) {
            continue;
        }
        if (path.len >= n && memcmp(path.ptr, g->mounts[k].prefix, n) == 0 &&
            (n == 0 || path.len == n || path.ptr[n] == '/')) {
            *rest = (struct slice){path.ptr + n, path.len - n};
            if (rest->len == 0) {
                *rest = (struct slice){"/", 1};
            }
            return (int)k;
        }
    }
    return -1;
}

/* ---- errors ---- */

/* The native error envelope: {"error":{"code","message","field"?, details...}}. */
unsigned gate_native_error(const struct gate_error *e, struct buf *out)
{
    buf_adds(out, "{\"error\":{\"code\":");
    buf_add_json_str(out, e->code, strlen(e->code));
    buf_adds(out, ",\"message\":");
    buf_add_json_str(out, e->message, strlen(e->message));
    if (e->field) {
        buf_adds(out, ",\"field\":");
        buf_add_json_str(out, e->field, strlen(e->field));
    }
    if (e->details && *e->details) {
        buf_addc(out, ',');
        buf_adds(out, e->details);
    }
    if (e->stream.ptr) {
        buf_adds(out, ",\"stream\":");
        buf_add_json_str(out, e->stream.ptr, e->stream.len);
    }
    if (e->has_actual_version) {
        buf_printf(out, ",\"actualVersion\":%llu", (unsigned long long)e->actual_version);
    }
    if (e->has_last_position) {
        buf_printf(out, ",\"lastPosition\":%llu", (unsigned long long)e->last_position);
        buf_adds(out, ",\"conflictingPositions\":[");
        for (size_t i = 0; i < e->nconflicts; i++) {
            buf_printf(out, "%s%llu", i ? "," : "", (unsigned long long)e->conflicts[i]);
        }
        buf_addc(out, ']');
    }
    if (e->has_after && e->after_given) {
        buf_printf(out, ",\"after\":%llu", (unsigned long long)e->after);
    } else if (e->has_after) {
        buf_adds(out, ",\"after\":null");
    }
    buf_adds(out, "}}");
    return e->kind;
}

void gate_fail_req(const struct gate_mount *m, struct http_req *req, const struct gate_error *e)
{
    struct buf b;
    buf_init(&b);
    unsigned status = m ? m->error(e, &b) : gate_native_error(e, &b);
    http_respond(req, status, &b, NULL);
}

void gate_fail(const struct gate_call *c, const struct gate_error *e)
{
    gate_fail_req(c->mount, c->req, e);
}

void gate_engine_error(int err, struct gate_error *out)
{
    *out = (struct gate_error){.kind = GK_INTERNAL, .code = "storage_error",
                               .message = "storage failed (see the server log); no write in "
                                          "this request was acknowledged"};
    switch (err) {
    case ERR_NOTFOUND:
        *out = (struct gate_error){.kind = GK_NOT_FOUND, .code = "not_found",
                                   .message = "not found"};
        break;
    case ERR_GONE:
        *out = (struct gate_error){.kind = GK_NOT_FOUND, .code = "database_not_found",
                                   .message = "the database was deleted"};
        break;
    case ERR_DELETED:
        *out = (struct gate_error){.kind = GK_GONE, .code = "stream_deleted",
                                   .message = "the stream was deleted for good (tombstone)",
                                   .field = "stream"};
        break;
    case ERR_NOSPACE:
        *out = (struct gate_error){.kind = GK_STORAGE_FULL, .code = "storage_full",
                                   .message = "the database is out of space; nothing was "
                                              "written"};
        break;
    case ERR_CORRUPT:
        *out = (struct gate_error){.kind = GK_INTERNAL, .code = "data_corrupt",
                                   .message = "stored data failed its integrity check; run "
                                              "annals verify"};
        break;
    case ERR_SHUTDOWN:
        *out = (struct gate_error){.kind = GK_UNAVAILABLE, .code = "shutting_down",
                                   .message = "the server is shutting down; nothing was "
                                              "written"};
        break;
    }
}

void gate_fail_engine(const struct gate_call *c, int err)
{
    struct gate_error e;
    gate_engine_error(err, &e);
    gate_fail(c, &e);
}

static void fail(const struct gate_call *c, unsigned kind, const char *code, const char *message,
                 const char *field)
{
    struct gate_error e = {.kind = kind, .code = code, .message = message, .field = field};
    gate_fail(c, &e);
}

void gate_http_error(void *arg, struct slice path, unsigned status, const char *code,
                     const char *message, struct buf *out)
{
    struct gate *g = arg;
    struct slice rest;
    int k = path.len ? gate_find_mount(g, path, &rest) : -1;
    const struct gate_mount *m = k >= 0 ? g->mounts[k].desc : NULL;
    for (size_t i = g->nmounts; !m && i > 0; i--) {
        /* the main listener's shortest prefix (the root's): never a mount that is only on a
           port of its own, whose path the main listener does not serve */
        m = g->mounts[i - 1].unlisted ? NULL : g->mounts[i - 1].desc;
    }
    if (!m) {
        buf_printf(out, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
        return;
    }
    struct gate_error e = {.kind = status, .code = code, .message = message};
    (void)m->error(&e, out); /* the HTTP layer keeps its own status */
}

size_t gate_body_limit(void *arg, struct slice path)
{
    struct gate *g = arg;
    struct slice rest;
    int k = path.len ? gate_find_mount(g, path, &rest) : -1;
    return k >= 0 ? g->mounts[k].desc->max_body_bytes : 0;
}

size_t gate_body_limit_port(void *arg, struct slice path)
{
    struct gate_port *p = arg;
    (void)path;
    return p->mount->max_body_bytes;
}

/* ---- request ids ---- */

/* Sets X-Request-Id: the client's (a token of at most 64 characters) or a new one. */
static void request_id(struct http_req *req)
{
    const char *given = http_req_header(req, "X-Request-Id");
    bool ok = given && *given && strlen(given) <= 64;
    for (const char *p = given; ok && *p; p++) {
        ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             *p == '-' || *p == '_' || *p == '.';
    }
    char id[40];
    if (!ok) {
        /* unique per process: a random prefix drawn at the first request, then a counter */
        static uint64_t counter, prefix;
        uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        if (!__atomic_load_n(&prefix, __ATOMIC_RELAXED)) {
            uint8_t u[16];
            uuid_v7(time_now_us(), u);
            uint64_t p = 0;
            memcpy(&p, u + 8, sizeof p);
            __atomic_store_n(&prefix, p | 1, __ATOMIC_RELAXED);
        }
        static const char HEX[] = "0123456789abcdef";
        uint64_t p = __atomic_load_n(&prefix, __ATOMIC_RELAXED);
        for (int i = 0; i < 16; i++) {
            id[i] = HEX[(p >> (60 - 4 * i)) & 15];
        }
        size_t o = 16;
        id[o++] = '-';
        char digits[17];
        int nd = 0;
        do {
            digits[nd++] = HEX[n & 15];
            n >>= 4;
        } while (n);
        while (nd) {
            id[o++] = digits[--nd];
        }
        id[o] = '\0';
        given = id;
    }
    http_set_request_id(req, given);
}

/* ---- Host and Origin: what browsers may reach ---- */

/* The host of an authority ("host", "host:port", "[v6]:port"), lower-cased, without a
 * trailing dot, into out (size cap). False when it does not fit. */
static bool authority_host(struct slice a, char *out, size_t cap)
{
    size_t n = a.len;
    if (n && a.ptr[0] == '[') {
        const char *close = memchr(a.ptr, ']', a.len);
        n = close ? (size_t)(close - a.ptr) + 1 : a.len;
    } else {
        const char *colon = memchr(a.ptr, ':', a.len);
        n = colon ? (size_t)(colon - a.ptr) : a.len;
    }
    if (n && a.ptr[n - 1] == '.') {
        n--;
    }
    if (n >= cap) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = a.ptr[i];
        out[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    out[n] = '\0';
    return true;
}

/* True for names of this machine's loopback interface: localhost and *.localhost (RFC 6761:
 * never resolved elsewhere), 127.0.0.0/8 and [::1]. */
static bool host_is_loopback(const char *h)
{
    size_t n = strlen(h);
    if (!strcmp(h, "localhost") || (n > 10 && !strcmp(h + n - 10, ".localhost"))) {
        return true;
    }
    struct in_addr v4;
    if (inet_pton(AF_INET, h, &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    struct in6_addr v6;
    char bare[64];
    if (n > 2 && n - 2 < sizeof bare && h[0] == '[' && h[n - 1] == ']') {
        memcpy(bare, h + 1, n - 2);
        bare[n - 2] = '\0';
        return inet_pton(AF_INET6, bare, &v6) == 1 &&
               (IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127));
    }
    return false;
}

/* True when the comma-separated list holds item (n bytes; "*" holds everything). */
static bool list_has(const char *list, const char *item, size_t n)
{
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ') {
            p++, len--;
        }
        if ((len == 1 && *p == '*') || (len == n && strncasecmp(p, item, n) == 0)) {
            return true;
        }
        p += len + (comma ? 1 : 0);
    }
    return false;
}

/* DNS rebinding: while authentication is off, only requests addressed to this machine's
 * loopback names (or to --allowed-hosts) are served; with --allowed-hosts, always only those.
 * A request without any host (HTTP/1.0) comes from no browser and passes. */
static bool host_allowed(const struct gate *g, struct http_req *req)
{
    struct slice a = http_req_host(req);
    bool dev = !__atomic_load_n(&g->auth_required, __ATOMIC_ACQUIRE);
    if (a.len == 0 || (!dev && !g->allowed_hosts)) {
        return true;
    }
    char host[256];
    if (!authority_host(a, host, sizeof host)) {
        return false;
    }
    return list_has(g->allowed_hosts, host, strlen(host)) ||
           (!g->allowed_hosts && host_is_loopback(host));
}

/* True when the request's Origin (n bytes) is the origin of the request itself: its
 * authority is the one the request is addressed to (the scheme is not compared). */
static bool same_origin(struct http_req *req, const char *origin)
{
    const char *sep = strstr(origin, "://");
    struct slice a = http_req_host(req);
    return sep && a.len && strlen(sep + 3) == a.len && strncasecmp(sep + 3, a.ptr, a.len) == 0;
}

/* True when a page of origin may use this server: --cors-origins lists it (or is "*"), or
 * without the flag in development mode it is a page of this machine
 * (http[s]://localhost|127.0.0.1|[::1][:port]); or it is the server's own origin. */
static bool origin_allowed(const struct gate *g, struct http_req *req, const char *origin)
{
    if (g->cors_origins) {
        return list_has(g->cors_origins, origin, strlen(origin)) || same_origin(req, origin);
    }
    if (!__atomic_load_n(&g->auth_required, __ATOMIC_ACQUIRE)) {
        const char *sep = strstr(origin, "://");
        char host[256];
        bool web = !strncmp(origin, "http://", 7) || !strncmp(origin, "https://", 8);
        if (web && sep && authority_host((struct slice){sep + 3, strlen(sep + 3)}, host,
                                         sizeof host)) {
            return !strcmp(host, "localhost") || !strcmp(host, "127.0.0.1") ||
                   !strcmp(host, "[::1]");
        }
    }
    return same_origin(req, origin);
}

/* True when mount m lets pages of every origin use it: it asks so (cors_any_origin) and keys
 * are checked (its keys travel in headers a page must set itself, so a page cannot act with
 * a user's credentials; without keys the usual policy keeps other pages off). */
static bool any_origin(const struct gate *g, const struct gate_mount *m)
{
    return m->cors_any_origin && __atomic_load_n(&g->auth_required, __ATOMIC_ACQUIRE);
}

/* Adds the CORS answer headers; answers a preflight (OPTIONS) itself and returns true. */
static bool cors(const struct gate_mount *m, struct http_req *req, const char *origin,
                 bool allowed, bool any)
{
    bool preflight = strcmp(http_req_method(req), "OPTIONS") == 0;
    if (origin && allowed && any) {
        http_add_header(req, "Access-Control-Allow-Origin", "*");
        http_add_header(req, "Access-Control-Expose-Headers", m->cors_expose_headers);
    } else if (origin && allowed) {
        http_add_header(req, "Access-Control-Allow-Origin", origin);
        http_add_header(req, "Vary", "Origin");
        http_add_header(req, "Access-Control-Expose-Headers", m->cors_expose_headers);
    }
    if (!preflight) {
        return false;
    }
    if (origin && allowed) {
        http_add_header(req, "Access-Control-Allow-Methods",
                        m->cors_allow_methods ? m->cors_allow_methods
                                              : "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        http_add_header(req, "Access-Control-Allow-Headers", m->cors_allow_headers);
        http_add_header(req, "Access-Control-Max-Age", "600");
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
    return true;
}

/* Browsers apply no CORS to what a request does, only to who reads its answer, and none at
 * all to WebSockets: a request that changes something (any method but GET, HEAD and OPTIONS)
 * or opens a WebSocket from a page whose origin is not allowed is refused here. */
static bool browser_ok(const struct gate_call *c, const char *origin, bool allowed)
{
    const char *m = http_req_method(c->req);
    bool safe = !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
    if (!origin || allowed || (safe && !http_req_header(c->req, "Upgrade"))) {
        return true;
    }
    fail(c, GK_FORBIDDEN, "origin_not_allowed",
         "requests that change data or open a WebSocket are refused from pages of this origin "
         "(allow it with --cors-origins)", "Origin");
    return false;
}

/* ---- paths and routes ---- */

/* True for the segments RFC 3986 5.2.4 would remove or that name nothing: "", "." and "..". */
static bool bad_segment(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* Splits the path into percent-decoded segments. "/" has none. Returns 0, ERR_NOTFOUND (no
 * leading '/', or too many segments) or ERR_INVALID (a bad escape, an empty segment, or a dot
 * segment, sent as such or percent-encoded: clients would have collapsed them). */
static int hex_digit(char h)
{
    return (h >= '0' && h <= '9')   ? h - '0'
           : (h >= 'a' && h <= 'f') ? h - 'a' + 10
           : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                    : -1;
}

/* Percent-decodes s[0..n) into out (room for n bytes and a NUL; decoding only shrinks), as
 * http_url_decode does for paths ('+' stays). Returns the decoded length, or -1 for a bad
 * escape or an encoded NUL. */
static long decode_segment(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return -1;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return (long)o;
}

static int split_path(struct gate_call *c, struct slice path)
{
    if (path.len == 0 || path.ptr[0] != '/') {
        return ERR_NOTFOUND;
    }
    if (path.len == 1) {
        return 0;
    }
    char *room = c->segbuf;
    if (path.len + GATE_MAX_SEGS >= sizeof c->segbuf) {
        room = c->seg_heap = xmalloc(path.len + GATE_MAX_SEGS + 1);
    }
    size_t i = 1;
    for (;;) {
        size_t start = i;
        while (i < path.len && path.ptr[i] != '/') {
            i++;
        }
        if (c->nseg == GATE_MAX_SEGS) {
            return ERR_NOTFOUND;
        }
        long n = decode_segment(path.ptr + start, i - start, room);
        c->seg[c->nseg] = room;
        c->seg_len[c->nseg] = n < 0 ? 0 : (size_t)n;
        c->nseg++;
        room += (n < 0 ? 0 : n) + 1;
        if (n < 0 || bad_segment(c->seg[c->nseg - 1], c->seg_len[c->nseg - 1])) {
            return ERR_INVALID;
        }
        if (i == path.len) {
            return 0;
        }
        i++; /* the '/': a segment follows, possibly empty */
    }
}

/* True when the call's segments match pat ("a/{x}/b"); "{...}" matches any one segment. */
static bool pattern_match(const struct gate_call *c, const char *pat)
{
    size_t k = 0;
    const char *p = pat;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (k >= c->nseg) {
            return false;
        }
        bool any = len >= 2 && p[0] == '{' && p[len - 1] == '}';
        if (!any && (c->seg_len[k] != len || memcmp(c->seg[k], p, len) != 0)) {
            return false;
        }
        k++;
        p += len + (end ? 1 : 0);
    }
    return k == c->nseg;
}

void gate_allowed_methods(const struct gate_call *c, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < c->mount->nroutes; i++) {
        const struct route *r = &c->mount->routes[i];
        if (c->route_segs[i] == c->nseg && pattern_match(c, r->pattern) &&
            strlen(out) + strlen(r->method) + 3 < cap) {
            strcat(out, out[0] ? ", " : "");
            strcat(out, r->method);
        }
    }
}

static void answer_405(struct gate_call *c)
{
    char allow[96];
    gate_allowed_methods(c, allow, sizeof allow);
    http_add_header(c->req, "Allow", allow);
    fail(c, GK_METHOD, "method_not_allowed", "method not allowed on this path", NULL);
}

static const struct route *find_route(const struct gate_call *c, const char *m, bool *path_known)
{
    bool head = strcmp(m, "HEAD") == 0;
    *path_known = false;
    for (size_t i = 0; i < c->mount->nroutes; i++) {
        const struct route *r = &c->mount->routes[i];
        if (c->route_segs[i] == c->nseg && pattern_match(c, r->pattern)) {
            *path_known = true;
            if (strcmp(r->method, m) == 0 || (head && !strcmp(r->method, "GET"))) {
                return r;
            }
        }
    }
    return NULL;
}

int gate_match(struct gate_call *c, const char *method, struct slice rest, bool *path_known)
{
    *path_known = false;
    c->route = NULL;
    int rc = split_path(c, rest);
    if (rc) {
        return rc;
    }
    c->route = find_route(c, method, path_known);
    return c->route ? 0 : ERR_NOTFOUND;
}

const struct route_param *route_param_find(const struct route *r, const char *name, size_t n)
{
    for (const struct route_param *p = r->params; p && p->name; p++) {
        if (strlen(p->name) == n && memcmp(p->name, name, n) == 0) {
            return p;
        }
    }
    return NULL;
}

/* The segment index of path parameter name in pattern, or -1. */
static int param_index(const char *pattern, const char *name)
{
    size_t n = strlen(name);
    int k = 0;
    for (const char *p = pattern; *p; k++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n + 2 && p[0] == '{' && !memcmp(p + 1, name, n) && p[len - 1] == '}') {
            return k;
        }
        p += len + (end ? 1 : 0);
    }
    return -1;
}

struct slice gate_param(const struct gate_call *c, const char *name)
{
    int k = c->route ? param_index(c->route->pattern, name) : -1;
    if (k < 0 || (size_t)k >= c->nseg) {
        return (struct slice){NULL, 0};
    }
    return (struct slice){c->seg[k], c->seg_len[k]};
}

const char *gate_param_str(const struct gate_call *c, const char *name)
{
    return gate_param(c, name).ptr;
}

/* ---- keys, parameters, databases, rate limits, idempotency ---- */

int gate_presented_key(const struct gate_mount *m, const struct route *r,
                       const struct gate_credentials *cred, const char **out)
{
    bool in_query = (r->flags & ROUTE_KEY_IN_QUERY) && m->key_param;
    const char *from[3] = {in_query ? cred->query : NULL, NULL,
                           (m->key_from & GATE_KEY_HEADER) ? cred->api_key : NULL};
    const char *a = (m->key_from & GATE_KEY_BEARER) ? cred->authorization : NULL;
    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ') {
            a++;
        }
        from[1] = a;
    }
    *out = NULL;
    for (size_t i = 0; i < 3; i++) {
        if (from[i] && *out && strcmp(from[i], *out) != 0) {
            return ERR_INVALID;
        }
        *out = *out ? *out : from[i];
    }
    return 0;
}

/* The key presented on c's request the mount's ways (gate_presented_key). The query parameter
 * is decoded only on routes where it counts. */
static int presented_key(const struct gate_call *c, const struct route *r, const char **out)
{
    const struct gate_mount *m = c->mount;
    bool in_query = (r->flags & ROUTE_KEY_IN_QUERY) && m->key_param;
    struct gate_credentials cred = {
        .query = in_query ? http_req_query(c->req, m->key_param) : NULL,
        .authorization = http_req_header(c->req, "Authorization"),
        .api_key = http_req_header(c->req, "X-API-Key"),
    };
    return gate_presented_key(m, r, &cred, out);
}

static bool scope_covers(enum key_scope have, enum need need)
{
    return need <= NEED_ANY || (int)have >= (int)need - 1; /* READ=2->1, WRITE->2, ADMIN->3 */
}

unsigned gate_key_refusal(const struct api_key *key, const struct route *r, struct slice db)
{
    if (db.ptr && key->database[0] &&
        (strlen(key->database) != db.len || memcmp(key->database, db.ptr, db.len) != 0)) {
        return GK_NOT_FOUND;
    }
    if (!scope_covers(key->scope, r->need) || ((r->flags & ROUTE_ALL_DBS) && key->database[0])) {
        return GK_FORBIDDEN;
    }
    return 0;
}

/* The database the route names in its path, or an empty slice. */
static struct slice path_db(const struct gate_call *c, const struct route *r)
{
    if (c->mount->db_from != GATE_DB_PATH || !c->mount->db_param) {
        return (struct slice){NULL, 0};
    }
    int k = param_index(r->pattern, c->mount->db_param);
    return k >= 0 && (size_t)k < c->nseg ? (struct slice){c->seg[k], c->seg_len[k]}
                                         : (struct slice){NULL, 0};
}

/* Checks the caller's key against route r. Answers 400/401/403/404 and returns false when it
 * may not proceed. A key bound to another database gets 404 for it (no existence leak). */
static bool authorize(struct gate_call *c, const struct route *r)
{
    const char *k;
    if (presented_key(c, r, &k) != 0) {
        fail(c, GK_INVALID, "conflicting_credentials",
             "two different API keys were presented: send one", "Authorization");
        return false;
    }
    if (r->need == NEED_NONE || !__atomic_load_n(&c->gate->auth_required, __ATOMIC_ACQUIRE)) {
        return true;
    }
    if (!k || keyring_verify(c->gate->keys, k, strlen(k), time_now_us(), &c->key) != 0) {
        http_add_header(c->req, "WWW-Authenticate", "Bearer realm=\"annals\"");
        fail(c, GK_UNAUTHORIZED, "unauthorized",
             k ? "unknown, expired or revoked API key" : "an API key is required",
             "Authorization");
        return false;
    }
    c->authed = true;
    unsigned refusal = gate_key_refusal(&c->key, r, path_db(c, r));
    if (refusal == GK_NOT_FOUND) {
        fail(c, GK_NOT_FOUND, "database_not_found", "no such database", "database");
        return false;
    }
    if (refusal == GK_FORBIDDEN) {
        fail(c, GK_FORBIDDEN, "forbidden", "this API key's scope does not allow this request",
             NULL);
        return false;
    }
    return true;
}

/* Answers 400 invalid_parameter for an unknown query parameter, listing the known ones. */
static void unknown_param(struct gate_call *c, const char *name)
{
    struct buf m;
    buf_init(&m);
    buf_adds(&m, "unknown query parameter; this route takes ");
    if (!c->route->params) {
        buf_adds(&m, "none");
    }
    for (const struct route_param *p = c->route->params; p && p->name; p++) {
        buf_adds(&m, p == c->route->params ? "" : ", ");
        buf_adds(&m, p->name);
    }
    fail(c, GK_INVALID, "invalid_parameter", m.ptr, name);
    buf_fini(&m);
}

/* True when query has a parameter named name other than the one at pos (which ends it). */
static bool given_again(struct slice query, size_t pos, struct slice name)
{
    size_t i = 0;
    struct slice k, v;
    while (http_query_next(query, &i, &k, &v)) {
        if (i != pos && k.len == name.len && memcmp(k.ptr, name.ptr, name.len) == 0) {
            return true;
        }
    }
    return false;
}

int gate_check_query(const struct route *r, struct slice query, struct slice *bad, bool *twice)
{
    size_t pos = 0;
    struct slice name, value;
    while (http_query_next(query, &pos, &name, &value)) {
        const struct route_param *p = route_param_find(r, name.ptr, name.len);
        bool open = !p && (r->flags & ROUTE_OPEN_QUERY);
        *bad = name;
        *twice = p != NULL || open;
        if ((!p && !open) || ((!p || p->kind != PARAM_LIST) && given_again(query, pos, name))) {
            return ERR_INVALID;
        }
    }
    return 0;
}

/* Refuses query parameters the route does not declare, and a non-list parameter given twice:
 * 400 naming it. */
static bool params_ok(struct gate_call *c)
{
    struct slice bad;
    bool twice;
    if (gate_check_query(c->route, http_req_query_string(c->req), &bad, &twice) == 0) {
        return true;
    }
    char *name = xstrndup(bad.ptr, bad.len);
    if (twice) {
        fail(c, GK_INVALID, "invalid_parameter", "given more than once", name);
    } else {
        unknown_param(c, name);
    }
    free(name);
    return false;
}

struct slice gate_db_name(const struct gate_call *c)
{
    struct slice name = path_db(c, c->route);
    if (!name.ptr) {
        const char *k = c->authed && c->key.database[0] ? c->key.database : c->mount->default_db;
        name = k ? (struct slice){k, strlen(k)} : (struct slice){NULL, 0};
    }
    return name;
}

/* Acquires the database the request is about: its path names it, or the key's (or, without
 * keys, the mount's default). */
static bool acquire_db(struct gate_call *c)
{
    struct slice name = gate_db_name(c);
    if (!name.ptr) {
        fail(c, GK_FORBIDDEN, "database_required",
             "this API's paths name no database: use a key bound to one", NULL);
        return false;
    }
    if (!engine_db_name_ok(name.ptr, name.len)) {
        fail(c, GK_INVALID, "invalid_name", "database names match [a-z0-9][a-z0-9-]{0,62}",
             "database");
        return false;
    }
    if (engine_db_acquire(c->gate->engine, name.ptr, name.len, &c->db) != 0) {
        fail(c, GK_NOT_FOUND, "database_not_found", "no such database", "database");
        return false;
    }
    return true;
}

void gate_rate_plan(const struct gate *g, int k, const struct api_key *key, uint32_t db_rate,
                    struct gate_rates *out)
{
    const struct gate_mount *m = g->mounts[k].desc;
    unsigned window = m->rate_window_s ? m->rate_window_s : 1;
    uint32_t dflt = g->mounts[k].has_rate ? g->mounts[k].rate : m->default_rate;
    bool own = g->mounts[k].has_rate || m->default_rate;
    double rate = own ? (double)dflt / window : g->rate_limit;
    rate = db_rate ? db_rate : rate;
    rate = key && key->rate_limit ? key->rate_limit : rate;
    out->rate = rate;
    out->burst = window > 1 ? rate * window : g->rate_burst ? g->rate_burst : rate;
    uint32_t ip = g->mounts[k].has_ip_rate ? g->mounts[k].ip_rate : m->ip_rate;
    out->ip_rate = (double)ip / window;
    out->ip_burst = ip;
}

static void add_rate_header(struct gate_rate_answer *a, const char *name, const char *text)
{
    a->headers[a->count].name = name;
    snprintf(a->headers[a->count].value, GATE_RATE_VALUE_BYTES, "%s", text);
    a->count++;
}

static void add_rate_number(struct gate_rate_answer *a, const char *name, unsigned v)
{
    char text[GATE_RATE_VALUE_BYTES];
    snprintf(text, sizeof text, "%u", v);
    add_rate_header(a, name, text);
}

void gate_rate_answer(const struct gate_mount *m, bool keyed, const struct gate_bucket *client,
                      const struct gate_bucket *ip, struct gate_rate_answer *out)
{
    const struct rl_result *c = client->rr, *a = ip->rr;
    *out = (struct gate_rate_answer){.count = 0};
    out->by_ip = a && (a->limited || !c || (!c->limited && a->remaining < c->remaining));
    const struct gate_bucket *b = out->by_ip ? ip : client;
    if (!b->rr) {
        return; /* no limit applies: no headers */
    }
    unsigned window = m->rate_window_s ? m->rate_window_s : 1;
    out->limited = b->rr->limited;
    add_rate_number(out, "X-RateLimit-Limit",
                    window > 1 ? (unsigned)(b->rate * window + 0.5) : b->rr->limit);
    add_rate_number(out, "X-RateLimit-Remaining", b->rr->remaining);
    if (!m->rate_no_reset) {
        add_rate_number(out, "X-RateLimit-Reset", b->rr->reset_s);
    }
    if (m->rate_scope) {
        add_rate_header(out, "X-RateLimit-Scope", out->by_ip || !keyed ? "ip" : m->rate_scope);
    }
    if (out->limited) {
        add_rate_number(out, "Retry-After", b->rr->retry_after_s);
    }
}

/* The name of a bucket, into who (cap bytes): returns its length (clamped to fit). */
static size_t bucket_name(char *who, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t bucket_name(char *who, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(who, cap, fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void gate_rate_check(struct ratelimiter *rl, const struct gate_mount *m, bool keyed,
                     const struct gate_rates *r, struct slice who, struct slice ip_who,
                     uint64_t now_ns, struct gate_rate_answer *out)
{
    struct rl_result ip_rr, client_rr;
    struct gate_bucket ip = {NULL, r->ip_rate}, client = {NULL, r->rate};
    if (r->ip_rate > 0) {
        rl_take(rl, ip_who.ptr, ip_who.len, r->ip_rate, r->ip_burst, now_ns, &ip_rr);
        ip.rr = &ip_rr;
    }
    /* without a key, a mount with an address limit counts the address alone (the key's
     * limit is per key) */
    bool client_counts = r->rate > 0 && (keyed || r->ip_rate <= 0);
    if (client_counts && !(ip.rr && ip_rr.limited)) {
        rl_take(rl, who.ptr, who.len, r->rate, r->burst, now_ns, &client_rr);
        client.rr = &client_rr;
        if (client_rr.limited && ip.rr) {
            rl_give(rl, ip_who.ptr, ip_who.len, now_ns);
        }
    }
    gate_rate_answer(m, keyed, &client, &ip, out);
}

/* Applies the caller's rate limits (gate_rate_plan, gate_rate_check) and sets the
 * X-RateLimit-* headers. Answers 429 and returns false when a bucket is empty. The client's
 * bucket is its key's (or its address's without one) on its database; the address's bucket
 * (ip_rate) spans the mount. */
static bool rate_ok(struct gate_call *c, int k)
{
    const struct gate_mount *m = c->mount;
    struct gate_rates rates;
    gate_rate_plan(c->gate, k, c->authed ? &c->key : NULL,
                   c->db ? engine_db_rate_limit(c->db) : 0, &rates);
    if ((rates.rate <= 0 && rates.ip_rate <= 0) || !c->gate->limiter) {
        return true;
    }
    const char *peer = http_req_peer(c->req);
    char who[200], ip_who[120];
    size_t n = bucket_name(who, sizeof who, "%s|%s%s|%s", m->name, c->authed ? "key:" : "ip:",
                           c->authed ? c->key.id : peer, c->db ? engine_db_name(c->db) : "");
    size_t ip_n = bucket_name(ip_who, sizeof ip_who, "%s|addr:%s",
                              m->rate_group ? m->rate_group : m->name, peer);
    struct gate_rate_answer a;
    gate_rate_check(c->gate->limiter, m, c->authed, &rates, (struct slice){who, n},
                    (struct slice){ip_who, ip_n}, time_mono_ns(), &a);
    for (size_t i = 0; i < a.count; i++) {
        http_add_header(c->req, a.headers[i].name, a.headers[i].value);
    }
    if (a.limited) {
        fail(c, GK_RATE_LIMITED, "rate_limited",
             "too many requests; retry after Retry-After seconds", NULL);
        return false;
    }
    return true;
}

void gate_keys_made(struct gate *g, const struct api_key *k)
{
    if (!__atomic_exchange_n(&g->auth_required, true, __ATOMIC_ACQ_REL)) { /* keys exist */
        log_warn("authentication is now ON: the first API key was created (%s, %s scope); every "
                 "request but GET /health and /v1/openapi.json needs a key from now on%s",
                 k->id, key_scope_name(k->scope),
                 g->cors_origins ? "" : ", and browser pages of this machine are no longer "
                 "allowed by default (list them with --cors-origins)");
    }
}

bool gate_takes_idempotency_key(const struct route *r)
{
    return (r->flags & (ROUTE_IDEMPOTENT | ROUTE_READ_BODY)) || !strcmp(r->method, "GET");
}

/* An Idempotency-Key on a write that does not keep it is refused rather than run without the
 * promised protection. */
static bool idem_ok(struct gate_call *c, const struct route *r)
{
    const char *h = http_req_header(c->req, "Idempotency-Key") ? "Idempotency-Key"
                    : http_req_header(c->req, "X-Idempotency-Key") ? "X-Idempotency-Key"
                                                                    : NULL;
    if (!h || gate_takes_idempotency_key(r)) {
        return true;
    }
    fail(c, GK_INVALID, "idempotency_not_supported",
         "idempotency keys are kept for database writes (appends, stream metadata and "
         "deletes), not for administrative or subscription requests", h);
    return false;
}

/* ---- the pipeline ---- */

/* Answers what the path and method select: 400 for a bad path, 404, 405, or the route after
 * its key, parameters, database, rate limit and idempotency checks. */
static void dispatch(struct gate_call *c, struct slice rest, int k)
{
    int tag_base = c->gate->mounts[k].tag_base;
    bool known;
    int rc = gate_match(c, http_req_method(c->req), rest, &known);
    const struct route *r = c->route;
    static const struct route ANY_KEY = {.method = "", .pattern = "", .need = NEED_ANY};
    if (r) {
        http_set_tag(c->req, tag_base + (int)(r - c->mount->routes));
    }
    if (!r && !authorize(c, &ANY_KEY)) {
        /* without a valid key, nothing tells which routes exist */
    } else if (rc == ERR_INVALID) {
        fail(c, GK_INVALID, "invalid_path", "the path has a bad percent-escape, an empty "
             "segment or a dot segment (. or ..)", NULL);
    } else if (!r && known) {
        answer_405(c);
    } else if (!r) {
        fail(c, GK_NOT_FOUND, "not_found", "no such route", NULL);
    } else if (authorize(c, r) && params_ok(c) && (!(r->flags & ROUTE_DB) || acquire_db(c)) &&
               rate_ok(c, k) && idem_ok(c, r)) {
        r->fn(c);
    }
}

static void call_fini(struct gate_call *c)
{
    free(c->seg_heap);
    engine_db_release(c->db);
}

/* Runs the pipeline for req on mount k, whose routes see rest. */
static void handle_on(struct gate *g, int k, struct slice rest, struct http_req *req)
{
    struct gate_call c = {.gate = g, .mount = g->mounts[k].desc, .ctx = g->mounts[k].ctx,
                          .req = req, .route_segs = g->mounts[k].route_segs};
    if (!host_allowed(g, req)) {
        fail(&c, GK_FORBIDDEN, "host_not_allowed",
             "while authentication is off this server answers only requests addressed to "
             "localhost, 127.0.0.1 or [::1] (a defence against DNS rebinding); list other names "
             "with --allowed-hosts", "Host");
        return;
    }
    const char *origin = http_req_header(req, "Origin");
    bool any = any_origin(g, c.mount);
    bool allowed = origin && (any || origin_allowed(g, req, origin));
    if (!cors(c.mount, req, origin, allowed, any) && browser_ok(&c, origin, allowed)) {
        dispatch(&c, rest, k);
    }
    call_fini(&c);
}

void gate_handle(void *arg, struct http_req *req)
{
    struct gate *g = arg;
    request_id(req);
    struct slice rest;
    int k = gate_find_mount(g, http_req_path(req), &rest);
    if (k < 0) { /* no mount at the root: answer in the last mount's envelope */
        k = (int)g->nmounts - 1;
        rest = (struct slice){"", 0};
    }
    handle_on(g, k, rest, req);
}

/* The mount index of desc, or -1. */
static int mount_index(const struct gate *g, const struct gate_mount *desc)
{
    for (size_t k = 0; k < g->nmounts; k++) {
        if (g->mounts[k].desc == desc) {
            return (int)k;
        }
    }
    return -1;
}

void gate_handle_port(void *arg, struct http_req *req)
{
    struct gate_port *p = arg;
    request_id(req);
    handle_on(p->gate, mount_index(p->gate, p->mount), http_req_path(req), req);
}

void gate_http_error_port(void *arg, struct slice path, unsigned status, const char *code,
                          const char *message, struct buf *out)
{
    struct gate_port *p = arg;
    struct gate_error e = {.kind = status, .code = code, .message = message};
    (void)path;
    (void)p->mount->error(&e, out);
}
