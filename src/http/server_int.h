/* Internals of the HTTP server, shared by its files and by no other module: the request,
 * connection, loop and server structs, and what each file offers the others.
 *
 *   server.c    the loops, accept, a connection's lifecycle: reading, the parse states,
 *               dispatch to the handler, flushing, closing; listening and stopping
 *   request.c   the request object: made from a parsed head, read by handlers, freed
 *   response.c  answers (http_respond, http_defer), response heads, the layer's own errors,
 *               streaming answers (Server-Sent Events) and their pumps
 *   ws.c        WebSocket: the upgrade, wslay driven by our buffers, frames
 *   tls.c       OpenSSL: the shared context, sessions, socket I/O plain or TLS
 *
 * Threads: a connection and its request belong to the I/O thread of the loop that accepted it
 * (server.c says which functions other threads may call). Every function below runs on that
 * thread unless it says otherwise.
 */
#ifndef HTTP_SERVER_INT_H
#define HTTP_SERVER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/parse.h"
#include "http/server.h"
#include "util/buf.h"
#include "util/strmap.h"

struct ssl_st;              /* OpenSSL's SSL (tls.c is the only file that includes OpenSSL) */
struct ssl_ctx_st;          /* OpenSSL's SSL_CTX */
struct wslay_event_context; /* wslay's context (ws.c is the only file that includes wslay) */

enum conn_state { C_HEAD, C_BODY, C_HANDLING, C_DEFERRED, C_WRITING, C_STREAM, C_CLOSED };

/* How far a connection's step got: on (STEP_GO), waiting for the socket (STEP_WAIT), or
 * closed (STEP_CLOSED: the conn is on its loop's dead list and must not be touched). */
enum step { STEP_GO, STEP_WAIT, STEP_CLOSED };

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
    size_t body_max;             /* the current request's body limit */
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
    struct wslay_event_context *ws; /* a WebSocket's framing state, or NULL */
    bool in_paused;              /* a stream's input was left unread (output full) */
    char peer[48];               /* client address (text) */
    struct ssl_st *ssl;          /* TLS session, or NULL for plain HTTP */
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
    struct ssl_ctx_st *tls;      /* HTTPS: shared context, or NULL */
    pthread_mutex_t peers_mu;    /* guards peers */
    struct strmap peers;         /* client address -> unsigned open connections */
};

/* ---- server.c: connections ---- */

/* Closes c: socket, TLS session, WebSocket state, request (its cleanup runs), buffers; c goes
 * on its loop's dead list, freed after the current epoll batch. */
void http_conn_close(struct conn *c);
/* Drops the first n bytes of c->in. */
void http_conn_consume(struct conn *c, size_t n);
/* Sends c->out. STEP_GO when all of it is sent (out is then reset), STEP_WAIT when the socket
 * is full, STEP_CLOSED when the peer is gone (c closed). */
enum step http_conn_flush(struct conn *c);
/* Drives c as far as it can go without blocking. */
void http_conn_run(struct conn *c);
/* Queues c on its loop's completion queue (a deferred answer is ready; with wake, a stream's
 * pump is to be called) and wakes the loop. Any thread. */
void http_conn_post(struct conn *c, bool wake);

/* ---- request.c: the request object ---- */

/* Makes c->req for head h, parsed from c->in[0..head_len), and counts it in flight. Returns 0,
 * or HTTP_ERR_BAD (a method too long; c->req is still set, for the error's path). */
int http_req_start(struct conn *c, const struct http_head *h, size_t head_len);
/* Runs req's cleanup and frees it with everything it holds. NULL is a no-op. */
void http_req_free(struct http_req *req);

/* ---- response.c: answers and streams ---- */

/* Queues an error the HTTP layer answers itself (in the configured envelope), to be followed
 * by closing; enters C_WRITING. */
void http_put_error(struct conn *c, unsigned status, const char *code, const char *message);
/* Moves c->req's stored answer to the output, frees the request; enters C_WRITING. */
void http_finish_request(struct conn *c);
/* Queues the head of c->req's streaming answer (or a WebSocket's 101), enters C_STREAM and
 * calls the pump once. */
void http_begin_stream(struct conn *c);
/* Drives a stream: reads (or discards) input, sends, ends or pumps. STEP_CLOSED when c
 * closed. */
enum step http_step_stream(struct conn *c);
/* Calls a stream's pump for why (a wake or a tick), then drives the connection. */
void http_pump_stream(struct conn *c, enum http_pump_reason why);

/* ---- ws.c: WebSocket framing ---- */

/* Makes c's wslay context (after the 101 is queued). Returns 0 or ERR_NOMEM (c->ws NULL). */
int http_ws_begin(struct conn *c);
/* Reads what the client sent (answering pings and closes); STEP_CLOSED when it has gone. */
enum step http_ws_read(struct conn *c);
/* Frees c's wslay context, if any. */
void http_ws_end(struct conn *c);

/* ---- tls.c: TLS and socket I/O ---- */

/* Loads srv->cfg's certificate and key into srv->tls (TLS 1.2 and later). Returns 0 or
 * ERR_IO (logged; srv->tls NULL). Before serving. */
int http_tls_setup(struct http_server *srv);
/* Frees srv->tls (NULL is a no-op). */
void http_tls_free(struct http_server *srv);
/* Starts the server side of a TLS session on c's socket when srv serves HTTPS (the handshake
 * runs inside the first reads). On failure it logs and c->ssl may stay NULL. */
void http_tls_accept(struct conn *c);
/* Ends c's TLS session, if any, best effort (the socket is non-blocking). */
void http_tls_close(struct conn *c);
/* recv(2) on c, through TLS when c has a session: bytes read, 0 at the end, or -1 with errno
 * (EAGAIN when TLS wants the socket either way, EIO for a TLS failure). */
ssize_t http_conn_recv(struct conn *c, char *p, size_t n);
/* send(2) on c, through TLS when c has a session; results as http_conn_recv. */
ssize_t http_conn_send(struct conn *c, const char *p, size_t n);

#endif
