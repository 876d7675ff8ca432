/* libmicrohttpd glue. MHD calls on_access several times per request: first with the head,
 * then once per body chunk, then with an empty chunk when the body is complete. We keep a
 * struct http_req per request (MHD's con_cls), answer from it, and suspend the connection for
 * deferred answers. The lock in struct http_req orders http_respond (any thread) against the
 * decision to suspend (I/O thread), so a fast writer cannot resume before we suspend. */
#include "http/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/errors.h"
#include "util/log.h"

enum req_state {
    REQ_READING,   /* head seen, body arriving */
    REQ_HANDLING,  /* handler running */
    REQ_DEFERRED,  /* waiting for http_respond from another thread */
    REQ_ANSWERED,  /* response stored (or queued) */
};

struct hdr {
    char *name;        /* owned */
    char *value;       /* owned */
    struct hdr *next;  /* list link */
};

struct http_req {
    struct MHD_Connection *conn; /* borrowed from MHD */
    struct http_server *srv;     /* borrowed */
    const char *method;          /* borrowed from MHD */
    struct slice path;           /* borrowed from MHD's url */
    struct buf body;             /* request body */
    enum req_state state;        /* see server.h */
    bool too_big;                /* body exceeded the limit: answered 413 at its end */
    uint64_t discarded;          /* body bytes thrown away after too_big */
    bool suspended;              /* MHD connection is suspended */
    bool queued;                 /* response handed to MHD */
    pthread_mutex_t mu;          /* guards state, suspended and the stored response */
    unsigned status;             /* stored response status */
    struct buf resp;             /* stored response body */
    const char *content_type;    /* static string */
    struct hdr *headers;         /* extra response headers */
    char **qvals;                /* owned copies of decoded query values */
    size_t qcount;               /* entries in qvals */
    void *user;                  /* handler's data */
    http_cleanup_fn *cleanup;    /* frees user */
};

struct http_server {
    struct MHD_Daemon *d;        /* owned */
    struct http_config cfg;      /* copied */
    unsigned inflight;           /* atomic: requests begun and not yet completed */
};

static const char JSON_TYPE[] = "application/json";

enum {
    HTTP_DISCARD_BYTES = 64 * 1024 * 1024, /* body bytes dropped after 413 before closing */
};

int http_url_decode(const char *s, size_t n, bool plus_space, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return ERR_INVALID;
            }
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = s[i + k];
                int d = (h >= '0' && h <= '9') ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (d < 0) {
                    return ERR_INVALID;
                }
                v = v * 16 + d;
            }
            if (v == 0) {
                return ERR_INVALID;
            }
            buf_addc(out, (char)v);
            i += 2;
        } else if (c == '+' && plus_space) {
            buf_addc(out, ' ');
        } else {
            buf_addc(out, c);
        }
    }
    if (!out->cap) {
        buf_reserve(out, 0);
    }
    return 0;
}

const char *http_req_method(const struct http_req *req)
{
    return req->method;
}

struct slice http_req_path(const struct http_req *req)
{
    return req->path;
}

const char *http_req_query(struct http_req *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw) {
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    if (http_url_decode(raw, strlen(raw), true, &b) != 0) {
        buf_fini(&b);
        return NULL;
    }
    req->qvals = xrealloc(req->qvals, (req->qcount + 1) * sizeof(*req->qvals));
    req->qvals[req->qcount++] = buf_steal(&b, NULL);
    return req->qvals[req->qcount - 1];
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct slice http_req_body(const struct http_req *req)
{
    struct slice s = {req->body.ptr ? req->body.ptr : "", req->body.len};
    return s;
}

void http_set_user(struct http_req *req, void *user, http_cleanup_fn *cleanup)
{
    req->user = user;
    req->cleanup = cleanup;
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
    struct hdr *h = xmalloc(sizeof(*h));
    h->name = xstrndup(name, strlen(name));
    h->value = xstrndup(value, strlen(value));
    h->next = req->headers;
    req->headers = h;
}

void http_defer(struct http_req *req)
{
    pthread_mutex_lock(&req->mu);
    if (req->state == REQ_HANDLING) {
        req->state = REQ_DEFERRED;
    }
    pthread_mutex_unlock(&req->mu);
}

void http_respond(struct http_req *req, unsigned status, struct buf *body,
                  const char *content_type)
{
    pthread_mutex_lock(&req->mu);
    req->status = status;
    req->resp = *body;
    buf_init(body);
    req->content_type = content_type ? content_type : JSON_TYPE;
    req->state = REQ_ANSWERED;
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
    }
    pthread_mutex_unlock(&req->mu);
}

static enum MHD_Result queue_stored(struct http_req *req)
{
    size_t len;
    char *body = buf_steal(&req->resp, &len);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type);
    for (struct hdr *h = req->headers; h; h = h->next) {
        MHD_add_response_header(r, h->name, h->value);
    }
    enum MHD_Result rc = MHD_queue_response(req->conn, req->status, r);
    MHD_destroy_response(r);
    req->queued = true;
    return rc;
}

static void respond_error(struct http_req *req, unsigned status, const char *code,
                          const char *message)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
    http_respond(req, status, &b, NULL);
}

static bool content_length_too_big(struct http_req *req)
{
    const char *cl = http_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl) {
        return false;
    }
    char *end;
    unsigned long long v = strtoull(cl, &end, 10);
    return v > req->srv->cfg.limits.body_bytes;
}

/* Adds up one header's share of the request head. */
static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* True when the request line and headers exceed the configured limit. MHD's own buffer is
 * larger than the limit so that it can hand us heads a little over it to refuse as JSON. */
static bool head_too_big(struct http_req *req)
{
    size_t n = strlen(req->method) + strlen(req->path.ptr) + 12;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header_bytes, &n);
    return n > req->srv->cfg.limits.header_bytes;
}

static struct http_req *req_new(struct http_server *srv, struct MHD_Connection *conn,
                                const char *url, const char *method)
{
    struct http_req *req = xcalloc(1, sizeof(*req));
    __atomic_add_fetch(&srv->inflight, 1, __ATOMIC_RELAXED);
    req->conn = conn;
    req->srv = srv;
    req->method = method;
    req->path.ptr = url;
    const char *q = strchr(url, '?');
    req->path.len = q ? (size_t)(q - url) : strlen(url);
    pthread_mutex_init(&req->mu, NULL);
    buf_init(&req->body);
    buf_init(&req->resp);
    return req;
}

static void req_free(struct http_req *req)
{
    __atomic_sub_fetch(&req->srv->inflight, 1, __ATOMIC_RELAXED);
    if (req->cleanup) {
        req->cleanup(req->user);
    }
    for (struct hdr *h = req->headers; h;) {
        struct hdr *next = h->next;
        free(h->name);
        free(h->value);
        free(h);
        h = next;
    }
    for (size_t i = 0; i < req->qcount; i++) {
        free(req->qvals[i]);
    }
    free(req->qvals);
    buf_fini(&req->body);
    buf_fini(&req->resp);
    pthread_mutex_destroy(&req->mu);
    free(req);
}

/* Runs the handler on a complete request, then queues its answer or suspends. */
static enum MHD_Result dispatch(struct http_req *req)
{
    req->state = REQ_HANDLING;
    req->srv->cfg.handler(req->srv->cfg.handler_arg, req);
    pthread_mutex_lock(&req->mu);
    enum MHD_Result rc = MHD_YES;
    if (req->state == REQ_ANSWERED) {
        rc = queue_stored(req);
    } else if (req->state == REQ_DEFERRED) {
        req->suspended = true;
        MHD_suspend_connection(req->conn);
    } else {
        pthread_mutex_unlock(&req->mu);
        log_error("handler left %s %.*s unanswered", req->method, (int)req->path.len,
                  req->path.ptr);
        respond_error(req, 500, "internal", "request was not answered");
        return queue_stored(req);
    }
    pthread_mutex_unlock(&req->mu);
    return rc;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)version;
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req) {
        req = req_new(srv, conn, url, method);
        *con_cls = req;
        if (head_too_big(req)) {
            respond_error(req, 431, "header_too_large",
                          "the request line and headers exceed the limit");
            return queue_stored(req);
        }
        if (content_length_too_big(req)) {
            req->too_big = true;
            respond_error(req, 413, "body_too_large", "request body exceeds the limit");
            return queue_stored(req);
        }
        return MHD_YES;
    }
    if (req->queued) {
        *upload_data_size = 0; /* answered early: discard the rest */
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* MHD cannot answer in the middle of a body (a chunked one, whose size was not known
         * up front): drop the rest, answer 413 when it ends, and cut off a sender that goes
         * on far past the limit. */
        if (req->too_big || req->body.len + *upload_data_size > srv->cfg.limits.body_bytes) {
            req->too_big = true;
            req->discarded += *upload_data_size;
            *upload_data_size = 0;
            return req->discarded > HTTP_DISCARD_BYTES ? MHD_NO : MHD_YES;
        }
        buf_add(&req->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->too_big && req->state == REQ_READING) {
        respond_error(req, 413, "body_too_large", "request body exceeds the limit");
        return queue_stored(req);
    }
    if (req->state == REQ_READING) {
        return dispatch(req);
    }
    pthread_mutex_lock(&req->mu);
    enum MHD_Result rc = req->state == REQ_ANSWERED ? queue_stored(req) : MHD_YES;
    pthread_mutex_unlock(&req->mu);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct http_req *req = *con_cls;
    if (req) {
        req_free(req);
        *con_cls = NULL;
    }
}

static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') {
        msg[--n] = '\0';
    }
    log_debug("http: %s", msg);
}

int http_server_start(const struct http_config *cfg, struct http_server **out)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, cfg->host, &sa.sin_addr) != 1) {
        log_error("listen address %s is not an IPv4 address", cfg->host);
        free(srv);
        return ERR_INVALID;
    }
    size_t pool = cfg->limits.header_bytes + 16384;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    srv->d = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_access, srv, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        cfg->limits.connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->limits.timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, srv, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, srv, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024, MHD_OPTION_END);
    if (!srv->d) {
        log_error("cannot listen on %s:%u", cfg->host, cfg->port);
        free(srv);
        return ERR_IO;
    }
    *out = srv;
    return 0;
}

uint16_t http_server_port(const struct http_server *srv)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : srv->cfg.port;
}

void http_server_quiesce(struct http_server *srv)
{
    MHD_socket s = MHD_quiesce_daemon(srv->d);
    if (s != MHD_INVALID_SOCKET) {
        close(s);
    }
}

unsigned http_server_connections(const struct http_server *srv)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

unsigned http_server_inflight(const struct http_server *srv)
{
    return __atomic_load_n(&srv->inflight, __ATOMIC_RELAXED);
}

void http_server_stop(struct http_server *srv)
{
    if (!srv) {
        return;
    }
    MHD_stop_daemon(srv->d);
    free(srv);
}
