/* Answers of the HTTP server (server_int.h): a handler's answer stored by http_respond (any
 * thread for a deferred request) and serialised by the loop (status line, Date, Content-Type
 * and Content-Length, X-Request-Id, extra headers, Connection: close), the errors the layer
 * answers itself (in the configured envelope, then close), and streaming answers: the head of
 * a Server-Sent Events stream or a WebSocket's 101, then the stream driven by its pump under
 * HTTP_STREAM_MAX_BYTES of queued output. A HEAD request's answer has no body; a 204 has no
 * Content-Type or body.
 */
#include "http/server_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/timeutil.h"

static const char JSON_TYPE[] = "application/json";

/* ---- answers ---- */

void http_defer(struct http_req *req)
{
    pthread_mutex_lock(&req->mu);
    req->deferred = true;
    pthread_mutex_unlock(&req->mu);
}

void http_respond(struct http_req *req, unsigned status, struct buf *body,
                  const char *content_type)
{
    const struct http_config *cfg = &req->conn->loop->srv->cfg;
    if (cfg->observe) {
        cfg->observe(cfg->observe_arg, req, req->tag, status, time_mono_ns() - req->started_ns);
    }
    pthread_mutex_lock(&req->mu);
    req->status = status;
    req->resp = *body;
    buf_init(body);
    req->content_type = content_type ? content_type : JSON_TYPE;
    req->answered = true;
    bool post = req->conn->state == C_DEFERRED;
    pthread_mutex_unlock(&req->mu);
    if (post) {
        http_conn_post(req->conn, false);
    }
}

/* ---- streaming answers ---- */

void http_stream_start(struct http_req *req, unsigned status, const char *content_type,
                       http_pump_fn *pump, void *arg)
{
    req->status = status;
    req->content_type = content_type;
    req->pump = pump;
    req->pump_arg = arg;
}

void http_stream_write(struct http_req *req, const void *p, size_t n)
{
    buf_add(&req->conn->out, p, n);
}

size_t http_stream_queued(const struct http_req *req)
{
    return req->conn->out.len - req->conn->out_off;
}

size_t http_stream_room(const struct http_req *req)
{
    size_t queued = http_stream_queued(req);
    return queued >= HTTP_STREAM_MAX_BYTES ? 0 : HTTP_STREAM_MAX_BYTES - queued;
}

void http_stream_end(struct http_req *req)
{
    req->stream_end = true;
}

void http_stream_wake(struct http_req *req)
{
    http_conn_post(req->conn, true);
}

static const char *reason(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    }
    return "Unknown";
}

static void add_date(struct buf *out)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t cached_at;
    static __thread char cached[40];
    time_t now = time(NULL);
    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(cached, sizeof cached, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_at = now;
    }
    buf_adds(out, cached);
}

/* Serialises a response into the connection's output. */
static void put_response(struct conn *c, unsigned status, const char *type, struct hdr *extra,
                         const char *request_id, const struct buf *body)
{
    struct buf *o = &c->out;
    buf_reserve(o, 256 + body->len);
    buf_adds(o, "HTTP/1.1 ");
    buf_add_u64(o, status);
    buf_addc(o, ' ');
    buf_adds(o, reason(status));
    buf_adds(o, "\r\n");
    add_date(o);
    if (status != 204) {
        buf_adds(o, "Content-Type: ");
        buf_adds(o, type);
        buf_adds(o, "\r\nContent-Length: ");
        buf_add_u64(o, body->len);
        buf_adds(o, "\r\n");
    }
    if (request_id && request_id[0]) {
        buf_adds(o, "X-Request-Id: ");
        buf_adds(o, request_id);
        buf_adds(o, "\r\n");
    }
    for (struct hdr *h = extra; h; h = h->next) {
        buf_adds(o, h->name);
        buf_adds(o, ": ");
        buf_adds(o, h->value);
        buf_adds(o, "\r\n");
    }
    if (c->close_after) {
        buf_adds(o, "Connection: close\r\n");
    }
    buf_adds(o, "\r\n");
    if (!c->is_head && status != 204) {
        buf_add(o, body->ptr ? body->ptr : "", body->len);
    }
}

/* Queues an error answered by the HTTP layer itself and closes after it. */
void http_put_error(struct conn *c, unsigned status, const char *code, const char *message)
{
    const struct http_config *cfg = &c->loop->srv->cfg;
    if (cfg->observe) {
        cfg->observe(cfg->observe_arg, NULL, -1, status, 0); /* answered before any handler */
    }
    struct buf b;
    buf_init(&b);
    if (cfg->error_body) {
        struct slice path = c->req ? c->req->path : (struct slice){"", 0};
        cfg->error_body(cfg->error_arg, path, status, code, message, &b);
    } else {
        buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
    }
    c->close_after = true;
    put_response(c, status, JSON_TYPE, NULL, NULL, &b);
    buf_fini(&b);
    c->state = C_WRITING;
}

/* Moves the request's stored answer to the output and ends the request. */
void http_finish_request(struct conn *c)
{
    struct http_req *req = c->req;
    if (!req->head.keep_alive || __atomic_load_n(&c->loop->srv->quiesce, __ATOMIC_RELAXED)) {
        c->close_after = true;
    }
    put_response(c, req->status, req->content_type, req->headers, req->request_id, &req->resp);
    c->req = NULL;
    http_req_free(req);
    __atomic_sub_fetch(&c->loop->srv->inflight, 1, __ATOMIC_RELAXED);
    c->state = C_WRITING;
}

/* ---- driving streams ---- */

/* Queues the head of a streaming answer (or a WebSocket's 101) and enters C_STREAM. */
void http_begin_stream(struct conn *c)
{
    struct http_req *req = c->req;
    const struct http_config *cfg = &c->loop->srv->cfg;
    if (cfg->observe) {
        cfg->observe(cfg->observe_arg, req, req->tag, req->status,
                     time_mono_ns() - req->started_ns);
    }
    struct buf *o = &c->out;
    buf_adds(o, "HTTP/1.1 ");
    buf_add_u64(o, req->status);
    buf_addc(o, ' ');
    buf_adds(o, req->status == 101 ? "Switching Protocols" : reason(req->status));
    buf_adds(o, "\r\n");
    add_date(o);
    if (req->content_type) {
        buf_adds(o, "Content-Type: ");
        buf_adds(o, req->content_type);
        buf_adds(o, "\r\n");
    }
    if (req->request_id[0]) {
        buf_adds(o, "X-Request-Id: ");
        buf_adds(o, req->request_id);
        buf_adds(o, "\r\n");
    }
    for (struct hdr *h = req->headers; h; h = h->next) {
        buf_adds(o, h->name);
        buf_adds(o, ": ");
        buf_adds(o, h->value);
        buf_adds(o, "\r\n");
    }
    buf_adds(o, req->ws_msg ? "\r\n" : "Connection: close\r\n\r\n");
    c->close_after = true;
    c->state = C_STREAM;
    if (req->ws_msg && http_ws_begin(c) != 0) {
        req->stream_end = true;
    }
    __atomic_sub_fetch(&c->loop->srv->inflight, 1, __ATOMIC_RELAXED);
    req->pump_again = req->pump(req->pump_arg, req, HTTP_PUMP_MORE);
}

/* Discards what a streaming client sends; STEP_CLOSED when it has gone. */
static enum step drain_input(struct conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t r = http_conn_recv(c, scratch, sizeof scratch);
        if (r > 0) {
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return STEP_GO;
        }
        http_conn_close(c);
        return STEP_CLOSED;
    }
}

/* Drives a stream: sends what is queued; once it is all sent, ends the stream or lets the
 * pump add more when it asked to be called again. */
enum step http_step_stream(struct conn *c)
{
    bool unread = true; /* the client's input is still to be read */
    for (;;) {
        if (unread && c->out.len - c->out_off < HTTP_STREAM_MAX_BYTES) {
            /* a client that sends without reading what it is sent waits (TCP pushes back):
             * its messages may make answers, and they must not pile up */
            c->in_paused = false;
            if ((c->ws ? http_ws_read(c) : drain_input(c)) == STEP_CLOSED) {
                return STEP_CLOSED;
            }
            unread = c->in_paused;
        }
        enum step s = http_conn_flush(c);
        if (s != STEP_GO) {
            return s;
        }
        struct http_req *req = c->req;
        if (req->stream_end) {
            http_conn_close(c);
            return STEP_CLOSED;
        }
        if (unread) {
            continue; /* drained: read what waited */
        }
        if (!req->pump_again) {
            return STEP_WAIT;
        }
        req->pump_again = req->pump(req->pump_arg, req, HTTP_PUMP_MORE);
        if (c->out.len == 0 && !req->stream_end) {
            return STEP_WAIT;
        }
    }
}

/* Calls a stream's pump for reason why (a wake or a tick), then sends what it queued. */
void http_pump_stream(struct conn *c, enum http_pump_reason why)
{
    struct http_req *req = c->req;
    if (!req->stream_end) {
        req->pump_again = req->pump(req->pump_arg, req, why);
    }
    http_conn_run(c);
}
