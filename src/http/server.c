/* The HTTP/1.1 server: one epoll loop per I/O thread, all sharing the listening socket
 * (EPOLLEXCLUSIVE wakes one loop per connection). A connection belongs to the loop that
 * accepted it; only that thread touches it, except http_respond on a deferred request, which
 * stores the answer under the request's lock and posts the connection to its loop's completion
 * queue (woken through an eventfd).
 *
 * Connection states:
 *   HEAD --head parsed--> BODY --body complete--> HANDLING --handler answers--> WRITING
 *   HANDLING --http_defer--> DEFERRED --http_respond (any thread) + loop wakeup--> WRITING
 *   WRITING --all written, keep-alive--> HEAD (next pipelined request, if any, at once)
 *   HANDLING --http_stream_start--> STREAM (the pump writes; http_stream_wake from any thread
 *   posts the connection like a deferred answer) --end sent, or client gone--> CLOSED
 *   any --error, close, timeout--> CLOSED (conn_close: socket closed, buffers freed), and the
 *   struct freed by its loop after the current epoll batch, whose other events may name it.
 *   Never closed while HANDLING or DEFERRED: the socket is not read then, so a pending answer
 *   always finds its connection.
 */
#define _GNU_SOURCE /* accept4 */
#include "http/server.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <wslay/wslay.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http/parse.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

enum conn_state { C_HEAD, C_BODY, C_HANDLING, C_DEFERRED, C_WRITING, C_STREAM, C_CLOSED };

enum {
    READ_CHUNK = 16384,          /* bytes read per recv */
    MAX_EVENTS = 256,            /* epoll events per wait */
    TICK_MS = 1000,              /* timeout scan interval */
    WS_QUEUED_MAX = 4096,        /* WebSocket answers (pongs) waiting in wslay before reading
                                    more of a client's input */
};

struct loop;

struct hdr {
    char *name;        /* in this block, after the struct */
    char *value;       /* ... after the name */
    struct hdr *next;  /* list link */
};

struct http_req {
    struct conn *conn;           /* owning connection */
    char method[16];             /* NUL-terminated method (longer ones are refused) */
    struct slice path;           /* into conn->in: target without the query */
    struct slice query;          /* into conn->in: after '?', may be empty */
    struct http_head head;       /* parsed head; slices into conn->in */
    struct buf body;             /* request body */
    pthread_mutex_t mu;          /* orders http_respond against the loop */
    bool answered;               /* response stored */
    bool deferred;               /* http_defer was called */
    unsigned status;             /* stored response */
    struct buf resp;             /* stored response body */
    const char *content_type;    /* static */
    struct hdr *headers;         /* extra response headers */
    char **strs;                 /* owned strings handed out (query values, header values) */
    size_t nstrs, strs_cap;      /* entries in strs, and allocated */
    void *user;                  /* handler's data */
    http_cleanup_fn *cleanup;    /* frees user */
    int tag;                     /* http_set_tag, -1 when none */
    char request_id[72];         /* http_set_request_id, "" when none */
    uint64_t started_ns;         /* monotonic time the head was complete */
    http_pump_fn *pump;          /* streaming answer: its producer, or NULL */
    void *pump_arg;              /* passed to pump */
    bool stream_end;             /* http_stream_end was called */
    http_ws_msg_fn *ws_msg;      /* WebSocket: the message callback (http_ws_accept) */
    bool pump_again;             /* the pump stopped for lack of room */
};

struct conn {
    int fd;                      /* socket */
    struct loop *loop;           /* owner */
    enum conn_state state;       /* see the diagram */
    struct buf in;               /* bytes received, from in_off on unconsumed */
    size_t in_off;               /* start of the current request in in */
    size_t head_len;             /* bytes of the current head */
    int64_t body_left;           /* Content-Length bytes still to read */
    struct http_chunked chunk;   /* chunked decoder */
    struct buf out;              /* bytes to send, from out_off on */
    size_t out_off;              /* sent so far */
    bool close_after;            /* close once out is sent */
    bool is_head;                /* the request is HEAD: no body in the answer */
    bool peer_eof;               /* the peer finished sending (half-close) or failed */
    bool drained;                /* the last read emptied the socket and no readiness event
                                    came since: a read would only say EAGAIN (plain TCP) */
    bool hup_seen;               /* the peer's FIN or an error was signalled: reads go on
                                    until they see it (it brings no further event) */
    uint64_t active_ms;          /* last activity, for the idle timeout */
    uint64_t head_ms;            /* when the current head's first byte came (0 = none yet) */
    uint64_t body_ms;            /* when the current body began (0 = not in a body) */
    struct http_req *req;        /* current request, or NULL */
    struct conn *prev, *next;    /* the loop's connection list */
    struct conn *done_next;      /* completion queue link */
    bool queued;                 /* on the loop's completion queue (guarded by loop->mu) */
    bool woken;                  /* a stream wake is pending (guarded by loop->mu) */
    wslay_event_context_ptr ws;  /* a WebSocket's framing state, or NULL */
    bool in_paused;              /* a stream's input was left unread (output full) */
    char peer[48];               /* client address (text) */
    SSL *ssl;                    /* TLS session, or NULL for plain HTTP */
};

struct loop {
    struct http_server *srv;     /* borrowed */
    pthread_t thread;            /* the I/O thread */
    int ep;                      /* epoll fd */
    int wake;                    /* eventfd: completions and stop */
    pthread_mutex_t mu;          /* guards done */
    struct conn *done;           /* connections with a deferred answer ready */
    int *handoff;                /* accepted sockets given to this loop by another */
    size_t nhandoff, handoff_cap;/* entries used, allocated (guarded by mu) */
    struct conn *conns;          /* all connections of this loop */
    struct conn *dead;           /* closed this iteration; freed at its end */
    bool listening;              /* the listen socket is registered here */
};

struct http_server {
    struct http_config cfg;      /* copied */
    int lfd;                     /* listening socket, -1 after quiesce */
    uint16_t port;               /* bound port */
    struct loop *loops;          /* cfg.threads loops */
    unsigned nloops;             /* count */
    unsigned conns;              /* atomic: open connections */
    unsigned next_loop;          /* atomic: round-robin counter for new connections */
    unsigned inflight;           /* atomic: requests begun and not finished */
    bool stopping;               /* atomic: loops exit */
    bool quiesce;                /* atomic: stop accepting */
    SSL_CTX *tls;                /* HTTPS: shared context, or NULL */
    pthread_mutex_t peers_mu;    /* guards peers */
    struct strmap peers;         /* client address -> unsigned open connections */
};

static const char JSON_TYPE[] = "application/json";

/* ---- small helpers ---- */

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
                int d = (h >= '0' && h <= '9')   ? h - '0'
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
    return 0;
}

static const char *keep_str(struct http_req *req, char *s)
{
    if (req->nstrs == req->strs_cap) {
        req->strs_cap = req->strs_cap ? req->strs_cap * 2 : 8;
        req->strs = xrealloc(req->strs, req->strs_cap * sizeof(*req->strs));
    }
    req->strs[req->nstrs++] = s;
    return s;
}

const char *http_req_method(const struct http_req *req)
{
    return req->method;
}

struct slice http_req_query_string(const struct http_req *req)
{
    return req->query;
}

struct slice http_req_path(const struct http_req *req)
{
    return req->path;
}

/* Decodes q[0..n) into a string kept by req (the raw text when it has a bad escape, so that
 * it fails validation instead of passing for absent). */
static const char *query_text(struct http_req *req, const char *q, size_t n)
{
    struct buf b;
    buf_init(&b);
    if (http_url_decode(q, n, true, &b) != 0) {
        buf_fini(&b);
        return keep_str(req, xstrndup(q, n));
    }
    return keep_str(req, buf_steal(&b, NULL));
}

bool http_req_query_next(struct http_req *req, size_t *pos, const char **name,
                         const char **value)
{
    const char *q = req->query.ptr;
    size_t n = req->query.len, i = *pos;
    while (i < n && q[i] == '&') {
        i++; /* empty pairs ("a=1&&b=2") are nothing */
    }
    if (i >= n) {
        *pos = n;
        return false;
    }
    size_t s = i;
    while (i < n && q[i] != '&') {
        i++;
    }
    const char *eq = memchr(q + s, '=', i - s);
    size_t klen = eq ? (size_t)(eq - (q + s)) : i - s;
    *name = keep_str(req, xstrndup(q + s, klen));
    const char *v = eq ? eq + 1 : q + i;
    if (value) {
        *value = query_text(req, v, (size_t)(q + i - v));
    }
    *pos = i;
    return true;
}

const char *http_req_query_nth(struct http_req *req, const char *name, size_t nth)
{
    size_t nlen = strlen(name);
    const char *q = req->query.ptr;
    size_t n = req->query.len, i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && q[i] != '&') {
            i++;
        }
        const char *eq = memchr(q + s, '=', i - s);
        size_t klen = eq ? (size_t)(eq - (q + s)) : i - s;
        if (klen == nlen && memcmp(q + s, name, nlen) == 0 && nth-- == 0) {
            const char *v = eq ? eq + 1 : q + i;
            return query_text(req, v, (size_t)(q + i - v));
        }
        i++;
    }
    return NULL;
}

const char *http_req_query(struct http_req *req, const char *name)
{
    return http_req_query_nth(req, name, 0);
}

struct slice http_req_host(const struct http_req *req)
{
    return req->head.authority;
}

bool http_req_absolute_form(const struct http_req *req)
{
    return req->head.absolute_form;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    const struct http_header *h = http_head_find(&req->head, name);
    return h ? h->value.ptr : NULL; /* NUL-terminated in the request's copy of its head */
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
    size_t nl = strlen(name), vl = strlen(value);
    struct hdr *h = xmalloc(sizeof(*h) + nl + 1 + vl + 1); /* one block for all three */
    h->name = (char *)(h + 1);
    h->value = h->name + nl + 1;
    memcpy(h->name, name, nl + 1);
    memcpy(h->value, value, vl + 1);
    h->next = req->headers;
    req->headers = h;
}

static void req_free(struct http_req *req)
{
    if (!req) {
        return;
    }
    if (req->cleanup) {
        req->cleanup(req->user);
    }
    for (struct hdr *h = req->headers; h;) {
        struct hdr *next = h->next;
        free(h);
        h = next;
    }
    for (size_t i = 0; i < req->nstrs; i++) {
        free(req->strs[i]);
    }
    free(req->strs);
    buf_fini(&req->body);
    buf_fini(&req->resp);
    pthread_mutex_destroy(&req->mu);
    free(req);
}

/* ---- answers ---- */

void http_defer(struct http_req *req)
{
    pthread_mutex_lock(&req->mu);
    req->deferred = true;
    pthread_mutex_unlock(&req->mu);
}

/* Queues a connection whose deferred answer is ready. Only the first of a run of posts wakes
 * the loop (a syscall and a thread wakeup): the loop takes the whole queue at once, so later
 * posts ride along until it has emptied the queue again. */
static void post_done(struct conn *c, bool wake)
{
    struct loop *lp = c->loop;
    pthread_mutex_lock(&lp->mu);
    bool was_empty = lp->done == NULL;
    c->woken |= wake;
    if (c->queued) {
        pthread_mutex_unlock(&lp->mu);
        return;
    }
    c->queued = true;
    c->done_next = lp->done;
    lp->done = c;
    pthread_mutex_unlock(&lp->mu);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(lp->wake, &one, sizeof one);
        (void)w;
    }
}

void http_set_tag(struct http_req *req, int tag)
{
    req->tag = tag;
}

const char *http_req_peer(const struct http_req *req)
{
    return req->conn->peer;
}

const char *http_req_request_id(const struct http_req *req)
{
    return req->request_id;
}

void http_set_request_id(struct http_req *req, const char *id)
{
    size_t n = strnlen(id, sizeof req->request_id - 1); /* cut as snprintf would */
    memcpy(req->request_id, id, n);
    req->request_id[n] = '\0';
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
        post_done(req->conn, false);
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
    post_done(req->conn, true);
}

static const char *reason(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
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
static void put_error(struct conn *c, unsigned status, const char *code, const char *message)
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
static void finish_request(struct conn *c)
{
    struct http_req *req = c->req;
    if (!req->head.keep_alive || __atomic_load_n(&c->loop->srv->quiesce, __ATOMIC_RELAXED)) {
        c->close_after = true;
    }
    put_response(c, req->status, req->content_type, req->headers, req->request_id, &req->resp);
    c->req = NULL;
    req_free(req);
    __atomic_sub_fetch(&c->loop->srv->inflight, 1, __ATOMIC_RELAXED);
    c->state = C_WRITING;
}

/* ---- connections ---- */

enum step { STEP_GO, STEP_WAIT, STEP_CLOSED };

/* Counts a connection from peer; false when peer has its limit open already. */
static bool peer_joins(struct http_server *srv, const char *peer)
{
    unsigned max = srv->cfg.limits.client_connections;
    if (!max || !peer[0]) {
        return true;
    }
    pthread_mutex_lock(&srv->peers_mu);
    unsigned *n = strmap_put(&srv->peers, peer, strlen(peer), NULL);
    bool ok = *n < max;
    *n += ok;
    pthread_mutex_unlock(&srv->peers_mu);
    return ok;
}

static void peer_leaves(struct http_server *srv, const char *peer)
{
    if (!srv->cfg.limits.client_connections || !peer[0]) {
        return;
    }
    pthread_mutex_lock(&srv->peers_mu);
    unsigned *n = strmap_get(&srv->peers, peer, strlen(peer));
    if (n && --*n == 0) {
        strmap_remove(&srv->peers, peer, strlen(peer));
    }
    pthread_mutex_unlock(&srv->peers_mu);
}

/* Takes a closing connection off its loop's completion queue (a stream may be posted). */
static void unqueue(struct conn *c)
{
    struct loop *lp = c->loop;
    pthread_mutex_lock(&lp->mu);
    if (c->queued) {
        for (struct conn **p = &lp->done; *p; p = &(*p)->done_next) {
            if (*p == c) {
                *p = c->done_next;
                break;
            }
        }
        c->queued = false;
    }
    pthread_mutex_unlock(&lp->mu);
}

static void conn_close(struct conn *c)
{
    struct loop *lp = c->loop;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        lp->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* best effort: the socket is non-blocking */
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    close(c->fd);
    if (c->req) {
        bool counted = c->state != C_STREAM; /* a stream stopped counting when it began */
        req_free(c->req); /* a stream's cleanup: no wake follows it */
        if (counted) {
            __atomic_sub_fetch(&lp->srv->inflight, 1, __ATOMIC_RELAXED);
        }
    }
    unqueue(c);
    if (c->ws) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    buf_fini(&c->in);
    buf_fini(&c->out);
    /* Other events of this epoll batch may still name c: free it after the batch. */
    c->state = C_CLOSED;
    c->next = lp->dead;
    lp->dead = c;
    __atomic_sub_fetch(&lp->srv->conns, 1, __ATOMIC_RELAXED);
    peer_leaves(lp->srv, c->peer);
}

static void free_dead(struct loop *lp)
{
    while (lp->dead) {
        struct conn *c = lp->dead;
        lp->dead = c->next;
        free(c);
    }
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in.ptr, c->in.ptr + n, c->in.len - n);
    c->in.len -= n;
}

/* ---- socket I/O, plain or TLS ---- */

/* Maps an OpenSSL result: WANT_READ/WANT_WRITE become EAGAIN, a clean close 0, the rest EIO. */
static ssize_t tls_result(struct conn *c, int r)
{
    if (r > 0) {
        return r;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    errno = EIO;
    return -1;
}

static ssize_t conn_recv(struct conn *c, char *p, size_t n)
{
    if (!c->ssl) {
        return recv(c->fd, p, n, 0);
    }
    return tls_result(c, SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

static ssize_t conn_send(struct conn *c, const char *p, size_t n)
{
    if (!c->ssl) {
        return send(c->fd, p, n, MSG_NOSIGNAL);
    }
    return tls_result(c, SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
}

/* Reads what the socket has (up to the buffer cap). Returns STEP_GO when bytes arrived,
 * STEP_WAIT when none are available, STEP_CLOSED when the peer is gone (conn closed). Bytes
 * followed by EOF (a half-close right after a request) are still processed and answered; the
 * connection closes when more input would be needed. */
static enum step try_read(struct conn *c, size_t cap)
{
    if (c->peer_eof) {
        conn_close(c); /* more input is needed and none will come */
        return STEP_CLOSED;
    }
    if (c->drained && !c->hup_seen && !c->ssl) {
        return STEP_WAIT; /* edge triggering: new bytes bring a new event */
    }
    bool got = false;
    while (c->in.len < cap) {
        buf_reserve(&c->in, READ_CHUNK);
        size_t room = c->in.cap - c->in.len - 1;
        ssize_t r = conn_recv(c, c->in.ptr + c->in.len, room);
        if (r > 0) {
            c->in.len += (size_t)r;
            got = true;
            if ((size_t)r < room && !c->ssl) {
                /* drained: with edge triggering, later bytes bring a new event (not with TLS,
                 * whose library may hold decrypted bytes the socket no longer signals) */
                c->drained = true;
                break;
            }
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->drained = true;
            break;
        }
        if (got) {
            c->peer_eof = true; /* EOF or error after data: answer what came, then close */
            break;
        }
        conn_close(c);
        return STEP_CLOSED;
    }
    if (got) {
        c->active_ms = time_mono_ns() / 1000000;
    }
    return got ? STEP_GO : STEP_WAIT;
}

static enum step flush(struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = conn_send(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
        if (w > 0) {
            c->out_off += (size_t)w;
            c->active_ms = time_mono_ns() / 1000000; /* a slow reader that reads is not idle */
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return STEP_WAIT; /* EPOLLOUT (edge) resumes us */
        }
        conn_close(c);
        return STEP_CLOSED;
    }
    c->out_off = 0;
    buf_reset(&c->out);
    c->active_ms = time_mono_ns() / 1000000;
    return STEP_GO;
}

static void send_continue(struct conn *c)
{
    buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* Moves s from the buffer at from (of n bytes) onto its copy at to; a slice pointing
 * elsewhere (the parser's constant "/") stays. */
static void rebase(struct slice *s, const char *from, size_t n, const char *to)
{
    if (s->ptr >= from && s->ptr <= from + n) {
        s->ptr = to + (s->ptr - from);
    }
}

/* Makes the request object for head h, parsed from c->in[0..head_len). The head bytes are
 * copied (and h's slices moved onto the copy) so that the input buffer can move while the
 * request lives. */
static int start_request(struct conn *c, const struct http_head *h, size_t head_len)
{
    struct http_req *req = xcalloc(1, sizeof(*req));
    pthread_mutex_init(&req->mu, NULL);
    buf_init(&req->body);
    buf_init(&req->resp);
    req->conn = c;
    req->tag = -1;
    req->started_ns = time_mono_ns();
    c->req = req;
    __atomic_add_fetch(&c->loop->srv->inflight, 1, __ATOMIC_RELAXED);
    if (h->method.len >= sizeof req->method) {
        return HTTP_ERR_BAD;
    }
    char *copy = xstrndup(c->in.ptr, head_len);
    keep_str(req, copy);
    req->head = *h;
    struct slice *moved[] = {&req->head.method, &req->head.target, &req->head.path,
                             &req->head.query, &req->head.authority};
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        rebase(moved[i], c->in.ptr, head_len, copy);
    }
    for (size_t i = 0; i < req->head.nheaders; i++) {
        rebase(&req->head.headers[i].name, c->in.ptr, head_len, copy);
        rebase(&req->head.headers[i].value, c->in.ptr, head_len, copy);
        /* the byte after a value is whitespace or its line's CR: ending the value there makes
           it a C string, so header lookups allocate nothing */
        copy[req->head.headers[i].value.ptr + req->head.headers[i].value.len - copy] = '\0';
    }
    memcpy(req->method, req->head.method.ptr, req->head.method.len);
    req->method[req->head.method.len] = '\0';
    req->path = req->head.path;
    req->query = req->head.query;
    c->is_head = strcmp(req->method, "HEAD") == 0;
    return 0;
}

static void answer_parse_error(struct conn *c, ssize_t rc)
{
    switch (rc) {
    case HTTP_ERR_TOO_LARGE:
        put_error(c, 431, "header_too_large", "the request line and headers exceed the limit");
        break;
    case HTTP_ERR_TE:
        put_error(c, 501, "not_implemented", "only the chunked transfer coding is supported");
        break;
    case HTTP_ERR_VERSION:
        put_error(c, 505, "http_version_not_supported", "only HTTP/1.x is supported");
        break;
    case HTTP_ERR_HOST:
        put_error(c, 400, "bad_request",
                  "an HTTP/1.1 request needs exactly one Host header, an authority (RFC 9112 3.2)");
        break;
    default:
        put_error(c, 400, "bad_request", "malformed HTTP request");
    }
}

static enum step step_head(struct conn *c)
{
    const struct limits *lim = &c->loop->srv->cfg.limits;
    struct http_head h;
    ssize_t rc = http_parse_head(c->in.ptr ? c->in.ptr : "", c->in.len, lim->header_bytes, &h);
    if (rc == HTTP_INCOMPLETE) {
        enum step s = try_read(c, lim->header_bytes + READ_CHUNK);
        if (s == STEP_GO && !c->head_ms) {
            c->head_ms = time_mono_ns() / 1000000; /* the head's clock starts at its first byte */
        }
        return s == STEP_GO ? STEP_GO : s;
    }
    c->head_ms = 0;
    if (rc < 0) {
        answer_parse_error(c, rc);
        return STEP_GO;
    }
    if (start_request(c, &h, (size_t)rc) != 0) {
        answer_parse_error(c, HTTP_ERR_BAD);
        return STEP_GO;
    }
    consume(c, (size_t)rc);
    if (h.content_length > (int64_t)lim->body_bytes) {
        put_error(c, 413, "body_too_large", "request body exceeds the limit");
        return STEP_GO;
    }
    c->body_left = h.chunked ? -1 : (h.content_length > 0 ? h.content_length : 0);
    memset(&c->chunk, 0, sizeof c->chunk);
    if (h.expect_continue && (h.chunked || h.content_length > 0)) {
        send_continue(c);
    }
    c->state = C_BODY;
    c->body_ms = time_mono_ns() / 1000000;
    return STEP_GO;
}

static enum step step_body(struct conn *c)
{
    const struct limits *lim = &c->loop->srv->cfg.limits;
    struct http_req *req = c->req;
    if (c->out.len) {
        enum step s = flush(c); /* the 100 Continue */
        if (s != STEP_GO) {
            return s;
        }
    }
    if (c->body_left >= 0) {
        size_t take = c->in.len < (uint64_t)c->body_left ? c->in.len : (size_t)c->body_left;
        buf_add(&req->body, c->in.ptr ? c->in.ptr : "", take);
        consume(c, take);
        c->body_left -= (int64_t)take;
        if (c->body_left == 0) {
            c->state = C_HANDLING;
            return STEP_GO;
        }
    } else {
        ssize_t n = http_chunked_decode(&c->chunk, c->in.ptr ? c->in.ptr : "", c->in.len,
                                        &req->body, lim->body_bytes);
        if (n == HTTP_ERR_TOO_LARGE) {
            put_error(c, 413, "body_too_large", "request body exceeds the limit");
            return STEP_GO;
        }
        if (n < 0) {
            put_error(c, 400, "bad_request", "malformed chunked body");
            return STEP_GO;
        }
        consume(c, (size_t)n);
        if (c->chunk.done) {
            c->state = C_HANDLING;
            return STEP_GO;
        }
    }
    return try_read(c, READ_CHUNK * 4);
}

static void conn_run(struct conn *c);

/* ---- WebSocket framing (wslay, driven by our buffers) ---- */

static bool has_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        const char *end = p;
        while (*end && *end != ',') {
            end++;
        }
        const char *last = end;
        while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }
        if ((size_t)(last - p) == n && strncasecmp(p, token, n) == 0) {
            return true;
        }
        p = end;
    }
    return false;
}

bool http_ws_requested(const struct http_req *req)
{
    const char *up = http_req_header(req, "Upgrade");
    const char *conn = http_req_header(req, "Connection");
    const char *ver = http_req_header(req, "Sec-WebSocket-Version");
    const char *key = http_req_header(req, "Sec-WebSocket-Key");
    return up && strcasecmp(up, "websocket") == 0 && has_token(conn, "upgrade") && ver &&
           strcmp(ver, "13") == 0 && key && strlen(key) == 24 && key[22] == '=' &&
           key[23] == '=' && strcmp(req->method, "GET") == 0;
}

void http_ws_accept(struct http_req *req, http_ws_msg_fn *on_msg, http_pump_fn *pump,
                    void *arg)
{
    static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char both[24 + sizeof GUID];
    snprintf(both, sizeof both, "%s%s", http_req_header(req, "Sec-WebSocket-Key"), GUID);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)both, strlen(both), digest);
    unsigned char accept[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);
    http_add_header(req, "Upgrade", "websocket");
    http_add_header(req, "Connection", "Upgrade");
    http_add_header(req, "Sec-WebSocket-Accept", (const char *)accept);
    req->ws_msg = on_msg;
    http_stream_start(req, 101, NULL, pump, arg);
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *p, size_t n, int flags, void *user)
{
    (void)flags;
    struct conn *c = user;
    if (c->out.len - c->out_off >= HTTP_STREAM_MAX_BYTES ||
        wslay_event_get_queued_msg_count(ctx) >= WS_QUEUED_MAX ||
        wslay_event_get_queued_msg_length(ctx) >= HTTP_STREAM_MAX_BYTES) {
        c->in_paused = true; /* answers pile up: read the rest once they are sent */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (c->in.len) { /* bytes that came right behind the upgrade request */
        size_t take = c->in.len < n ? c->in.len : n;
        memcpy(p, c->in.ptr, take);
        consume(c, take);
        return (ssize_t)take;
    }
    ssize_t r = conn_recv(c, (char *)p, n);
    if (r > 0) {
        return r;
    }
    bool again = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    wslay_event_set_error(ctx, again ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *p, size_t n, int flags,
                       void *user)
{
    (void)ctx;
    (void)flags;
    struct conn *c = user;
    buf_add(&c->out, p, n); /* bounded by the pump's room checks */
    return (ssize_t)n;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
                      void *user)
{
    (void)ctx;
    struct conn *c = user;
    struct http_req *req = c->req;
    if ((m->opcode == WSLAY_TEXT_FRAME || m->opcode == WSLAY_BINARY_FRAME) && !req->stream_end) {
        req->ws_msg(req->pump_arg, req, m->opcode == WSLAY_TEXT_FRAME ? HTTP_WS_TEXT
                                                                      : HTTP_WS_BINARY,
                    (const char *)m->msg, m->msg_length);
    }
}

static int ws_begin(struct conn *c)
{
    static const struct wslay_event_callbacks CALLBACKS = {
        .recv_callback = ws_recv, .send_callback = ws_send, .on_msg_recv_callback = ws_on_msg};
    if (wslay_event_context_server_init(&c->ws, &CALLBACKS, c) != 0) {
        c->ws = NULL;
        return ERR(ERR_NOMEM);
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, HTTP_WS_MAX_MESSAGE);
    return 0;
}

/* Reads what the client sent (answering pings and closes); STEP_CLOSED when it has gone. */
static enum step ws_read(struct conn *c)
{
    if (wslay_event_recv(c->ws) != 0) {
        conn_close(c);
        return STEP_CLOSED;
    }
    wslay_event_send(c->ws);
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
        c->req->stream_end = true; /* the close handshake is done */
    }
    return STEP_GO;
}

void http_ws_send(struct http_req *req, const char *p, size_t n)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)p, n};
    if (req->conn->ws && wslay_event_queue_msg(req->conn->ws, &m) == 0) {
        wslay_event_send(req->conn->ws);
    }
}

void http_ws_ping(struct http_req *req)
{
    struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
    if (req->conn->ws && wslay_event_queue_msg(req->conn->ws, &m) == 0) {
        wslay_event_send(req->conn->ws);
    }
}

void http_ws_close(struct http_req *req, uint16_t code, const char *reason)
{
    if (req->conn->ws) {
        wslay_event_queue_close(req->conn->ws, code, (const uint8_t *)reason, strlen(reason));
        wslay_event_send(req->conn->ws);
    }
    req->stream_end = true;
}

/* Queues the head of a streaming answer (or a WebSocket's 101) and enters C_STREAM. */
static void begin_stream(struct conn *c)
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
    if (req->ws_msg && ws_begin(c) != 0) {
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
        ssize_t r = conn_recv(c, scratch, sizeof scratch);
        if (r > 0) {
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return STEP_GO;
        }
        conn_close(c);
        return STEP_CLOSED;
    }
}

/* Drives a stream: sends what is queued; once it is all sent, ends the stream or lets the
 * pump add more when it asked to be called again. */
static enum step step_stream(struct conn *c)
{
    bool unread = true; /* the client's input is still to be read */
    for (;;) {
        if (unread && c->out.len - c->out_off < HTTP_STREAM_MAX_BYTES) {
            /* a client that sends without reading what it is sent waits (TCP pushes back):
             * its messages may make answers, and they must not pile up */
            c->in_paused = false;
            if ((c->ws ? ws_read(c) : drain_input(c)) == STEP_CLOSED) {
                return STEP_CLOSED;
            }
            unread = c->in_paused;
        }
        enum step s = flush(c);
        if (s != STEP_GO) {
            return s;
        }
        struct http_req *req = c->req;
        if (req->stream_end) {
            conn_close(c);
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
static void pump_stream(struct conn *c, enum http_pump_reason why)
{
    struct http_req *req = c->req;
    if (!req->stream_end) {
        req->pump_again = req->pump(req->pump_arg, req, why);
    }
    conn_run(c);
}

static void dispatch(struct conn *c)
{
    struct http_req *req = c->req;
    c->loop->srv->cfg.handler(c->loop->srv->cfg.handler_arg, req);
    if (req->pump) {
        begin_stream(c);
        return;
    }
    pthread_mutex_lock(&req->mu);
    bool answered = req->answered;
    bool deferred = req->deferred;
    if (!answered && deferred) {
        c->state = C_DEFERRED;
    }
    pthread_mutex_unlock(&req->mu);
    if (answered) {
        finish_request(c);
    } else if (!deferred) {
        log_error("handler left %s %.*s unanswered", req->method, (int)req->path.len,
                  req->path.ptr);
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"error\":{\"code\":\"internal\",\"message\":\"request was not answered\"}}");
        http_respond(req, 500, &b, NULL);
        finish_request(c);
    }
}

/* Drives a connection as far as it can go without blocking. */
static void conn_run(struct conn *c)
{
    for (;;) {
        enum step s = STEP_GO;
        switch (c->state) {
        case C_HEAD: s = step_head(c); break;
        case C_BODY: s = step_body(c); break;
        case C_HANDLING: dispatch(c); break;
        case C_STREAM: s = step_stream(c); break;
        case C_DEFERRED:
        case C_CLOSED: return;
        case C_WRITING:
            s = flush(c);
            if (s == STEP_GO) {
                if (c->close_after) {
                    conn_close(c);
                    return;
                }
                c->state = C_HEAD;
                c->is_head = false;
            }
            break;
        }
        if (s != STEP_GO) {
            return;
        }
    }
}

/* ---- loops ---- */

/* Makes a connection of an accepted socket on loop lp (its thread). */
static void adopt(struct loop *lp, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->loop = lp;
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0) {
        const void *addr = sa.ss_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)&sa)->sin_addr;
        inet_ntop(sa.ss_family, addr, c->peer, sizeof c->peer);
    }
    if (lp->srv->tls) {
        c->ssl = SSL_new(lp->srv->tls);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            log_warn("cannot start a TLS session: out of memory?");
        } else {
            SSL_set_accept_state(c->ssl); /* the handshake runs inside the first reads */
        }
    }
    bool too_many = !peer_joins(lp->srv, c->peer);
    if (too_many) {
        c->peer[0] = '\0'; /* not counted: nothing to give back at close */
    }
    c->state = C_HEAD;
    c->active_ms = time_mono_ns() / 1000000;
    buf_init(&c->in);
    buf_init(&c->out);
    c->next = lp->conns;
    if (lp->conns) {
        lp->conns->prev = c;
    }
    lp->conns = c;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_close(c);
        return;
    }
    if (too_many) {
        put_error(c, 503, "too_many_connections",
                  "this address has the most open connections allowed");
    }
    conn_run(c);
}

/* Gives an accepted socket to another loop (connections are spread round-robin: the loop
 * that wins the accept would otherwise take a whole burst of them). */
static void hand_off(struct loop *to, int fd)
{
    pthread_mutex_lock(&to->mu);
    if (to->nhandoff == to->handoff_cap) {
        to->handoff_cap = to->handoff_cap ? to->handoff_cap * 2 : 16;
        to->handoff = xrealloc(to->handoff, to->handoff_cap * sizeof(*to->handoff));
    }
    to->handoff[to->nhandoff++] = fd;
    pthread_mutex_unlock(&to->mu);
    uint64_t one = 1;
    ssize_t w = write(to->wake, &one, sizeof one);
    (void)w;
}

static void accept_all(struct loop *lp)
{
    struct http_server *srv = lp->srv;
    for (;;) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE) {
                log_warn("out of file descriptors: not accepting for now");
            }
            return;
        }
        if (__atomic_add_fetch(&srv->conns, 1, __ATOMIC_RELAXED) > srv->cfg.limits.connections &&
            srv->tls) {
            __atomic_sub_fetch(&srv->conns, 1, __ATOMIC_RELAXED);
            close(fd); /* no plain-text answer on a TLS port */
            continue;
        }
        if (__atomic_load_n(&srv->conns, __ATOMIC_RELAXED) > srv->cfg.limits.connections) {
            static const char body[] = "{\"error\":{\"code\":\"too_many_connections\","
                                       "\"message\":\"the server's connection limit is reached\"}}";
            char busy[256];
            int n = snprintf(busy, sizeof busy,
                             "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             sizeof body - 1, body);
            ssize_t w = send(fd, busy, (size_t)n, MSG_NOSIGNAL);
            (void)w;
            close(fd);
            __atomic_sub_fetch(&srv->conns, 1, __ATOMIC_RELAXED);
            continue;
        }
        unsigned k = __atomic_fetch_add(&srv->next_loop, 1, __ATOMIC_RELAXED) % srv->nloops;
        if (&srv->loops[k] == lp) {
            adopt(lp, fd);
        } else {
            hand_off(&srv->loops[k], fd);
        }
    }
}

static void run_completions(struct loop *lp)
{
    uint64_t n;
    ssize_t r = read(lp->wake, &n, sizeof n);
    (void)r;
    pthread_mutex_lock(&lp->mu);
    struct conn *c = lp->done;
    lp->done = NULL;
    int fds[64];
    size_t nfds = lp->nhandoff < 64 ? lp->nhandoff : 64;
    if (nfds) {
        memcpy(fds, lp->handoff, nfds * sizeof(*fds));
        memmove(lp->handoff, lp->handoff + nfds, (lp->nhandoff - nfds) * sizeof(*fds));
        lp->nhandoff -= nfds;
    }
    bool more = lp->nhandoff > 0;
    pthread_mutex_unlock(&lp->mu);
    if (more) {
        uint64_t one = 1;
        ssize_t w = write(lp->wake, &one, sizeof one); /* come back for the rest */
        (void)w;
    }
    for (size_t i = 0; i < nfds; i++) {
        adopt(lp, fds[i]);
    }
    while (c) {
        /* queued stays set until its turn, so a post meanwhile (a stream's wake) cannot
         * relink it onto the new queue while this list still runs through it */
        pthread_mutex_lock(&lp->mu);
        struct conn *next = c->done_next;
        c->queued = false;
        bool woken = c->woken;
        c->woken = false;
        pthread_mutex_unlock(&lp->mu);
        if (c->state == C_STREAM) {
            if (woken) {
                pump_stream(c, HTTP_PUMP_MORE);
            }
        } else if (c->state == C_DEFERRED) {
            finish_request(c);
            conn_run(c);
        }
        c = next;
    }
}

/* True when c has spent longer than its limit on the current head or body (a slow client:
 * trickling bytes keeps it from being idle, not from being slow). */
static bool too_slow(const struct conn *c, const struct limits *lim, uint64_t now_ms)
{
    if (c->state == C_HEAD && c->head_ms && lim->header_timeout_s) {
        return now_ms - c->head_ms > (uint64_t)lim->header_timeout_s * 1000;
    }
    if (c->state == C_BODY && c->body_ms && lim->body_timeout_s) {
        return now_ms - c->body_ms > (uint64_t)lim->body_timeout_s * 1000;
    }
    return false;
}

static void expire_idle(struct loop *lp, uint64_t now_ms)
{
    const struct limits *lim = &lp->srv->cfg.limits;
    uint64_t limit_ms = (uint64_t)lim->timeout_s * 1000;
    for (struct conn *c = lp->conns; c;) {
        struct conn *next = c->next; /* read first: conn_close relinks c onto dead */
        bool busy = c->state == C_HANDLING || c->state == C_DEFERRED;
        if (c->state == C_STREAM && now_ms - c->active_ms <= limit_ms) {
            pump_stream(c, HTTP_PUMP_TICK); /* heartbeats; a stalled reader times out below */
        } else if (!busy && too_slow(c, lim, now_ms)) {
            put_error(c, 408, "request_timeout", "the request did not arrive in time");
            c->head_ms = c->body_ms = 0;
            conn_run(c); /* sends what it can, then closes */
        } else if (!busy && now_ms - c->active_ms > limit_ms) {
            conn_close(c);
        }
        c = next;
    }
}

static void *loop_main(void *arg)
{
    struct loop *lp = arg;
    pthread_setname_np(pthread_self(), "annals-io");
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_tick = time_mono_ns() / 1000000;
    while (!__atomic_load_n(&lp->srv->stopping, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(lp->ep, evs, MAX_EVENTS, TICK_MS);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == lp) {
                run_completions(lp);
            } else if (p == lp->srv) {
                accept_all(lp);
            } else {
                struct conn *c = p;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    c->drained = false; /* also while handling: read once it is done */
                    c->hup_seen |= (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
                }
                if (c->state != C_HANDLING && c->state != C_DEFERRED && c->state != C_CLOSED) {
                    conn_run(c);
                }
            }
        }
        free_dead(lp);
        uint64_t now = time_mono_ns() / 1000000;
        if (now - last_tick >= TICK_MS) {
            expire_idle(lp, now);
            last_tick = now;
        }
    }
    return NULL;
}

/* Fills sa with the numeric IPv4 or IPv6 address host (brackets allowed around IPv6) and
 * port. Returns its length, or 0 when host is not a numeric address. */
static socklen_t listen_addr(const char *host, uint16_t port, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof(*v4);
    }
    char bare[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof bare) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof(*v6);
    }
    return 0;
}

static int listen_on(struct http_server *srv)
{
    struct sockaddr_storage sa;
    socklen_t len = listen_addr(srv->cfg.host, srv->cfg.port, &sa);
    if (!len) {
        log_error("listen address %s is not an IPv4 or IPv6 address", srv->cfg.host);
        return ERR_INVALID;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 1024) != 0) {
        log_error("cannot listen on %s:%u: %s", srv->cfg.host, srv->cfg.port, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return ERR_IO;
    }
    getsockname(fd, (struct sockaddr *)&sa, &len);
    srv->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                               : ((struct sockaddr_in *)&sa)->sin_port);
    srv->lfd = fd;
    return 0;
}

static int loop_init(struct loop *lp, struct http_server *srv)
{
    lp->srv = srv;
    pthread_mutex_init(&lp->mu, NULL);
    lp->ep = epoll_create1(EPOLL_CLOEXEC);
    lp->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lp->ep < 0 || lp->wake < 0) {
        return ERR_IO;
    }
    struct epoll_event w = {.events = EPOLLIN, .data.ptr = lp};
    struct epoll_event l = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = srv};
    if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wake, &w) != 0 ||
        epoll_ctl(lp->ep, EPOLL_CTL_ADD, srv->lfd, &l) != 0) {
        return ERR_IO;
    }
    lp->listening = true;
    return pthread_create(&lp->thread, NULL, loop_main, lp) == 0 ? 0 : ERR_IO;
}

/* Loads the certificate and key into a shared TLS context (TLS 1.2 and later). */
static int tls_setup(struct http_server *srv)
{
    srv->tls = SSL_CTX_new(TLS_server_method());
    if (!srv->tls || SSL_CTX_set_min_proto_version(srv->tls, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(srv->tls, srv->cfg.tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(srv->tls, srv->cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(srv->tls) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof why);
        log_error("cannot use the TLS certificate %s and key %s: %s", srv->cfg.tls_cert,
                  srv->cfg.tls_key ? srv->cfg.tls_key : "(none)", why);
        SSL_CTX_free(srv->tls);
        srv->tls = NULL;
        return ERR_IO;
    }
    SSL_CTX_set_mode(srv->tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(srv->tls, SSL_OP_NO_RENEGOTIATION);
    return 0;
}

int http_server_bind(const struct http_config *cfg, struct http_server **out)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->lfd = -1;
    if (cfg->tls_cert && tls_setup(srv) != 0) {
        free(srv);
        return ERR_IO;
    }
    pthread_mutex_init(&srv->peers_mu, NULL);
    strmap_init(&srv->peers, sizeof(unsigned));
    int rc = listen_on(srv);
    if (rc) {
        http_server_stop(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int http_server_run(struct http_server *srv)
{
    int rc = 0;
    unsigned want = srv->cfg.threads ? srv->cfg.threads : 1;
    srv->loops = xcalloc(want, sizeof(*srv->loops));
    for (unsigned i = 0; i < want && !rc; i++) {
        rc = loop_init(&srv->loops[i], srv);
        srv->nloops = rc ? i : i + 1; /* loops started so far */
    }
    if (rc) {
        log_error("cannot start the I/O threads");
    }
    return rc;
}

int http_server_start(const struct http_config *cfg, struct http_server **out)
{
    struct http_server *srv;
    int rc = http_server_bind(cfg, &srv);
    if (!rc && (rc = http_server_run(srv)) != 0) {
        http_server_stop(srv);
    }
    if (!rc) {
        *out = srv;
    }
    return rc;
}

uint16_t http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_quiesce(struct http_server *srv)
{
    __atomic_store_n(&srv->quiesce, true, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < srv->nloops; i++) {
        epoll_ctl(srv->loops[i].ep, EPOLL_CTL_DEL, srv->lfd, NULL);
    }
    if (srv->lfd >= 0) {
        close(srv->lfd);
        srv->lfd = -1;
    }
}

unsigned http_server_connections(const struct http_server *srv)
{
    return __atomic_load_n(&srv->conns, __ATOMIC_RELAXED);
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
    __atomic_store_n(&srv->stopping, true, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < srv->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(srv->loops[i].wake, &one, sizeof one);
        (void)w;
    }
    for (unsigned i = 0; i < srv->nloops; i++) {
        struct loop *lp = &srv->loops[i];
        pthread_join(lp->thread, NULL);
        while (lp->conns) {
            conn_close(lp->conns);
        }
        free_dead(lp);
        for (size_t k = 0; k < lp->nhandoff; k++) {
            close(lp->handoff[k]);
            __atomic_sub_fetch(&srv->conns, 1, __ATOMIC_RELAXED);
        }
        free(lp->handoff);
        close(lp->ep);
        close(lp->wake);
        pthread_mutex_destroy(&lp->mu);
    }
    if (srv->lfd >= 0) {
        close(srv->lfd);
    }
    free(srv->loops);
    strmap_fini(&srv->peers);
    pthread_mutex_destroy(&srv->peers_mu);
    SSL_CTX_free(srv->tls);
    free(srv);
}
