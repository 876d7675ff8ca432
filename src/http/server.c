/* The HTTP/1.1 server's loops and connections: one epoll loop per I/O thread, all sharing the
 * listening socket (EPOLLEXCLUSIVE wakes one loop per connection). A connection belongs to the
 * loop that accepted it; only that thread touches it, except http_respond on a deferred
 * request, which stores the answer under the request's lock and posts the connection to its
 * loop's completion queue (woken through an eventfd).
 *
 * Connection states:
 *   HEAD --head parsed--> BODY --body complete--> HANDLING --handler answers--> WRITING
 *   HANDLING --http_defer--> DEFERRED --http_respond (any thread) + loop wakeup--> WRITING
 *   WRITING --all written, keep-alive--> HEAD (next pipelined request, if any, at once)
 *   HANDLING --http_stream_start--> STREAM (the pump writes; http_stream_wake from any thread
 *   posts the connection like a deferred answer) --end sent, or client gone--> CLOSED
 *   any --error, close, timeout--> CLOSED (http_conn_close: socket closed, buffers freed),
 *   and the struct freed by its loop after the current epoll batch, whose other events may
 *   name it.
 *   Never closed while HANDLING or DEFERRED: the socket is not read then, so a pending answer
 *   always finds its connection.
 *
 * The request object, answers and streams, WebSocket framing and TLS live in request.c,
 * response.c, ws.c and tls.c; server_int.h has the structs they share.
 */
#define _GNU_SOURCE /* accept4 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/parse.h"
#include "http/server_int.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"

enum {
    READ_CHUNK = 16384,          /* bytes read per recv */
    MAX_EVENTS = 256,            /* epoll events per wait */
    TICK_MS = 1000,              /* timeout scan interval */
};

/* Queues a connection whose deferred answer is ready. Only the first of a run of posts wakes
 * the loop (a syscall and a thread wakeup): the loop takes the whole queue at once, so later
 * posts ride along until it has emptied the queue again. */
void http_conn_post(struct conn *c, bool wake)
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

/* ---- connections ---- */

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

void http_conn_close(struct conn *c)
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
    http_tls_close(c);
    close(c->fd);
    if (c->req) {
        bool counted = c->state != C_STREAM; /* a stream stopped counting when it began */
        http_req_free(c->req); /* a stream's cleanup: no wake follows it */
        if (counted) {
            __atomic_sub_fetch(&lp->srv->inflight, 1, __ATOMIC_RELAXED);
        }
    }
    unqueue(c);
    http_ws_end(c);
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

void http_conn_consume(struct conn *c, size_t n)
{
    memmove(c->in.ptr, c->in.ptr + n, c->in.len - n);
    c->in.len -= n;
}

/* Reads what the socket has (up to the buffer cap). Returns STEP_GO when bytes arrived,
 * STEP_WAIT when none are available, STEP_CLOSED when the peer is gone (conn closed). Bytes
 * followed by EOF (a half-close right after a request) are still processed and answered; the
 * connection closes when more input would be needed. */
static enum step try_read(struct conn *c, size_t cap)
{
    if (c->peer_eof) {
        http_conn_close(c); /* more input is needed and none will come */
        return STEP_CLOSED;
    }
    if (c->drained && !c->hup_seen && !c->ssl) {
        return STEP_WAIT; /* edge triggering: new bytes bring a new event */
    }
    bool got = false;
    while (c->in.len < cap) {
        buf_reserve(&c->in, READ_CHUNK);
        size_t room = c->in.cap - c->in.len - 1;
        ssize_t r = http_conn_recv(c, c->in.ptr + c->in.len, room);
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
        http_conn_close(c);
        return STEP_CLOSED;
    }
    if (got) {
        c->active_ms = time_mono_ns() / 1000000;
    }
    return got ? STEP_GO : STEP_WAIT;
}

enum step http_conn_flush(struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = http_conn_send(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
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
        http_conn_close(c);
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

static void answer_parse_error(struct conn *c, ssize_t rc)
{
    switch (rc) {
    case HTTP_ERR_TOO_LARGE:
        http_put_error(c, 431, "header_too_large", "the request line and headers exceed the limit");
        break;
    case HTTP_ERR_TE:
        http_put_error(c, 501, "not_implemented", "only the chunked transfer coding is supported");
        break;
    case HTTP_ERR_VERSION:
        http_put_error(c, 505, "http_version_not_supported", "only HTTP/1.x is supported");
        break;
    case HTTP_ERR_HOST:
        http_put_error(c, 400, "bad_request",
                  "an HTTP/1.1 request needs exactly one Host header, an authority (RFC 9112 3.2)");
        break;
    default:
        http_put_error(c, 400, "bad_request", "malformed HTTP request");
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
    if (http_req_start(c, &h, (size_t)rc) != 0) {
        answer_parse_error(c, HTTP_ERR_BAD);
        return STEP_GO;
    }
    /* h's slices point into c->in: read the path before consuming the head moves the bytes
       after it (the body's first bytes) into its place */
    const struct http_config *cfg = &c->loop->srv->cfg;
    size_t wider = cfg->body_limit ? cfg->body_limit(cfg->body_limit_arg, h.path) : 0;
    c->body_max = wider > lim->body_bytes ? wider : lim->body_bytes;
    http_conn_consume(c, (size_t)rc);
    if (h.content_length > (int64_t)c->body_max) {
        http_put_error(c, 413, "body_too_large", "request body exceeds the limit");
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
    struct http_req *req = c->req;
    if (c->out.len) {
        enum step s = http_conn_flush(c); /* the 100 Continue */
        if (s != STEP_GO) {
            return s;
        }
    }
    if (c->body_left >= 0) {
        size_t take = c->in.len < (uint64_t)c->body_left ? c->in.len : (size_t)c->body_left;
        buf_add(&req->body, c->in.ptr ? c->in.ptr : "", take);
        http_conn_consume(c, take);
        c->body_left -= (int64_t)take;
        if (c->body_left == 0) {
            c->state = C_HANDLING;
            return STEP_GO;
        }
    } else {
        ssize_t n = http_chunked_decode(&c->chunk, c->in.ptr ? c->in.ptr : "", c->in.len,
                                        &req->body, c->body_max);
        if (n == HTTP_ERR_TOO_LARGE) {
            http_put_error(c, 413, "body_too_large", "request body exceeds the limit");
            return STEP_GO;
        }
        if (n < 0) {
            http_put_error(c, 400, "bad_request", "malformed chunked body");
            return STEP_GO;
        }
        http_conn_consume(c, (size_t)n);
        if (c->chunk.done) {
            c->state = C_HANDLING;
            return STEP_GO;
        }
    }
    return try_read(c, READ_CHUNK * 4);
}

static void dispatch(struct conn *c)
{
    struct http_req *req = c->req;
    c->loop->srv->cfg.handler(c->loop->srv->cfg.handler_arg, req);
    if (req->pump) {
        http_begin_stream(c);
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
        http_finish_request(c);
    } else if (!deferred) {
        log_error("handler left %s %.*s unanswered", req->method, (int)req->path.len,
                  req->path.ptr);
        struct buf b;
        buf_init(&b);
        buf_adds(&b, "{\"error\":{\"code\":\"internal\",\"message\":\"request was not answered\"}}");
        http_respond(req, 500, &b, NULL);
        http_finish_request(c);
    }
}

/* Drives a connection as far as it can go without blocking. */
void http_conn_run(struct conn *c)
{
    for (;;) {
        enum step s = STEP_GO;
        switch (c->state) {
        case C_HEAD: s = step_head(c); break;
        case C_BODY: s = step_body(c); break;
        case C_HANDLING: dispatch(c); break;
        case C_STREAM: s = http_step_stream(c); break;
        case C_DEFERRED:
        case C_CLOSED: return;
        case C_WRITING:
            s = http_conn_flush(c);
            if (s == STEP_GO) {
                if (c->close_after) {
                    http_conn_close(c);
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
    http_tls_accept(c);
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
        http_conn_close(c);
        return;
    }
    if (too_many) {
        http_put_error(c, 503, "too_many_connections",
                  "this address has the most open connections allowed");
    }
    http_conn_run(c);
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
                http_pump_stream(c, HTTP_PUMP_MORE);
            }
        } else if (c->state == C_DEFERRED) {
            http_finish_request(c);
            http_conn_run(c);
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
        struct conn *next = c->next; /* read first: http_conn_close relinks c onto dead */
        bool busy = c->state == C_HANDLING || c->state == C_DEFERRED;
        if (c->state == C_STREAM && now_ms - c->active_ms <= limit_ms) {
            http_pump_stream(c, HTTP_PUMP_TICK); /* heartbeats; a stalled reader times out below */
        } else if (!busy && too_slow(c, lim, now_ms)) {
            http_put_error(c, 408, "request_timeout", "the request did not arrive in time");
            c->head_ms = c->body_ms = 0;
            http_conn_run(c); /* sends what it can, then closes */
        } else if (!busy && now_ms - c->active_ms > limit_ms) {
            http_conn_close(c);
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
                    http_conn_run(c);
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

int http_server_bind(const struct http_config *cfg, struct http_server **out)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->lfd = -1;
    if (cfg->tls_cert && http_tls_setup(srv) != 0) {
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
            http_conn_close(lp->conns);
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
    http_tls_free(srv);
    free(srv);
}
