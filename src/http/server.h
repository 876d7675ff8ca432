/* The HTTP/1.1 server: epoll loops on a few I/O threads (server.c) over a pure parser
 * (parse.c). It reads each request's head and body under the configured limits and hands
 * complete requests to one handler; the handler answers at once (http_respond on the I/O
 * thread) or later from any thread (http_defer, then http_respond). Keep-alive, pipelining,
 * chunked bodies and 100-continue are handled here; every error it answers itself is JSON.
 * Knows nothing of routes or storage. Connection states: see server.c.
 */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/limits.h"

struct http_server;
struct http_req;

/* Called once per complete request on an I/O thread. It must call http_respond or http_defer
 * before returning. */
typedef void http_handler_fn(void *arg, struct http_req *req);
/* Called when a request's connection is done with it (answered, or the client went away),
 * so the handler can free what it attached with http_set_user. */
typedef void http_cleanup_fn(void *user);

/* Told of every answer (any thread): the request (NULL for errors the HTTP layer answers
 * itself, with tag -1 and ns 0), its tag (http_set_tag; -1 when none), its status and the time
 * from its head's arrival to the answer. */
typedef void http_observe_fn(void *arg, struct http_req *req, int tag, unsigned status,
                             uint64_t ns);

/* Writes into out the JSON body of an error the HTTP layer answers itself (a body too large,
 * a malformed chunked body, a timeout, a malformed head), so that an API surface can use its
 * own envelope; path is the request's path when its head was parsed, else empty. */
typedef void http_error_body_fn(void *arg, struct slice path, unsigned status, const char *code,
                                const char *message, struct buf *out);

/* The largest body a request to path (still percent-encoded) may send, when more than
 * limits.body_bytes (0: limits.body_bytes). Pure, any I/O thread. */
typedef size_t http_body_limit_fn(void *arg, struct slice path);

struct http_config {
    const char *host;            /* IPv4 or IPv6 address to bind ("127.0.0.1", "::1", "[::1]") */
    uint16_t port;               /* 0 = any free port */
    unsigned threads;            /* I/O threads */
    struct limits limits;        /* body, header, connection and timeout limits */
    http_handler_fn *handler;    /* request handler */
    void *handler_arg;           /* borrowed, passed to handler */
    http_observe_fn *observe;    /* optional */
    void *observe_arg;           /* borrowed, passed to observe */
    http_error_body_fn *error_body; /* optional: bodies of the layer's own errors (default
                                       {"error":{"code","message"}}) */
    void *error_arg;             /* borrowed, passed to error_body */
    http_body_limit_fn *body_limit; /* optional: larger bodies for some paths (uploads) */
    void *body_limit_arg;        /* borrowed, passed to body_limit */
    const char *tls_cert;        /* PEM certificate chain file: serve HTTPS (NULL: plain) */
    const char *tls_key;         /* PEM private key file (with tls_cert) */
};

/* Starts listening and serving: http_server_bind, then http_server_run. Returns 0, ERR_IO
 * (bind failed: the log says why) or ERR_INVALID (not an address). */
int http_server_start(const struct http_config *cfg, struct http_server **out);
/* Loads the TLS certificate and opens the listening socket, without serving yet (so a start
 * can fail on a port in use before it creates anything). cfg is copied; its handler_arg and
 * observe_arg are only used once running. Returns 0, ERR_IO or ERR_INVALID (logged); on
 * failure nothing is left open. Free with http_server_stop. */
int http_server_bind(const struct http_config *cfg, struct http_server **out);
/* Starts the I/O threads of a bound server. Returns 0 or ERR_IO; then http_server_stop. */
int http_server_run(struct http_server *srv);
uint16_t http_server_port(const struct http_server *srv);
/* Stops accepting new connections; open ones keep being served. */
void http_server_quiesce(struct http_server *srv);
unsigned http_server_connections(const struct http_server *srv);
/* Requests received and not yet fully answered. */
unsigned http_server_inflight(const struct http_server *srv);
/* Closes every connection and frees the server. NULL is a no-op. */
void http_server_stop(struct http_server *srv);

const char *http_req_method(const struct http_req *req);
/* The request path, still percent-encoded, without the query. */
struct slice http_req_path(const struct http_req *req);
/* The query string after '?' as sent (empty when none). */
struct slice http_req_query_string(const struct http_req *req);
/* A query parameter, percent-decoded ('+' is a space), or NULL when absent. A value with a bad
 * percent-escape is returned undecoded (still holding its '%'), so that it fails validation
 * instead of passing for absent. The string lives as long as the request. */
const char *http_req_query(struct http_req *req, const char *name);
/* The nth (from 0) occurrence of query parameter name, decoded as http_req_query does, or
 * NULL when there are fewer. Names are matched as sent (not decoded). */
const char *http_req_query_nth(struct http_req *req, const char *name, size_t nth);
/* Iterates the query's parameters in order: start with *pos = 0; each call sets *name (as
 * sent, not decoded, as http_req_query matches it) and *value (decoded as http_req_query
 * does; "" for a parameter without '='; value may be NULL), both living as long as the
 * request, and returns true, or returns false at the end. */
bool http_req_query_next(struct http_req *req, size_t *pos, const char **name,
                         const char **value);
/* The authority the request is addressed to: an absolute-form target's (RFC 9112 3.2.2),
 * else the Host header's value; empty when there is neither (HTTP/1.0). */
struct slice http_req_host(const struct http_req *req);
/* True when the request target was in absolute form ("http://host/path"). */
bool http_req_absolute_form(const struct http_req *req);
/* A request header value (the first of its name), or NULL. Allocates nothing; the string lives
 * as long as the request. */
const char *http_req_header(const struct http_req *req, const char *name);
struct slice http_req_body(const struct http_req *req);

/* Attaches user data freed by cleanup when the request ends. */
void http_set_user(struct http_req *req, void *user, http_cleanup_fn *cleanup);
/* Adds a response header (copied). Call before http_respond. */
void http_add_header(struct http_req *req, const char *name, const char *value);
/* Labels the request for the observe callback (e.g. the route it matched). */
void http_set_tag(struct http_req *req, int tag);
/* Sets the X-Request-Id answer header (at most 71 bytes, no CR/LF). */
void http_set_request_id(struct http_req *req, const char *id);
const char *http_req_request_id(const struct http_req *req);
/* The client's address as text ("" when unknown). */
const char *http_req_peer(const struct http_req *req);
/* Answers with status and body (taken: body is reset). content_type may be NULL for JSON.
 * Thread-safe for deferred requests; exactly once per request. */
void http_respond(struct http_req *req, unsigned status, struct buf *body,
                  const char *content_type);
/* Marks the request as answered later: the connection is suspended until http_respond. */
void http_defer(struct http_req *req);

/* ---- streaming answers (Server-Sent Events) ----
 *
 * A handler may answer with a stream instead of a body: http_stream_start (on the I/O thread,
 * during the handler) queues the status line and headers (no Content-Length; the body ends
 * when the connection closes) and hands the connection to pump, which the connection's I/O
 * thread calls with HTTP_PUMP_MORE once at the start, after http_stream_wake, and when the
 * output has drained after a call that returned true; and with HTTP_PUMP_TICK about once a
 * second. The pump writes with http_stream_write while http_stream_room allows (so a slow
 * client never makes the server buffer more than HTTP_STREAM_MAX_BYTES) and returns true when
 * it stopped for lack of room. http_stream_end closes the connection once the output is sent.
 * When the connection closes (the end, the client gone, the idle timeout, the server
 * stopping) the request's cleanup (http_set_user) runs on the I/O thread; no pump call and no
 * wake may follow it. A stream does not count as in flight (http_server_inflight). */
enum { HTTP_STREAM_MAX_BYTES = 256 * 1024 };
enum http_pump_reason { HTTP_PUMP_MORE, HTTP_PUMP_TICK };
typedef bool http_pump_fn(void *arg, struct http_req *req, enum http_pump_reason why);
void http_stream_start(struct http_req *req, unsigned status, const char *content_type,
                       http_pump_fn *pump, void *arg);
/* Queues bytes on the stream (pump only). */
void http_stream_write(struct http_req *req, const void *p, size_t n);
/* Bytes the pump may still queue before the stream is full (pump only). */
size_t http_stream_room(const struct http_req *req);
/* Bytes queued and not yet sent (pump only). */
size_t http_stream_queued(const struct http_req *req);
/* Ends the stream after what is queued (pump only). */
void http_stream_end(struct http_req *req);
/* Asks for a pump call soon (any thread, until the request's cleanup has started). */
void http_stream_wake(struct http_req *req);

/* ---- WebSocket (RFC 6455) ----
 *
 * A WebSocket is a stream whose input is read too: http_ws_accept (instead of
 * http_stream_start, for a request that asked to upgrade) answers 101 Switching Protocols and
 * from then on calls on_msg (I/O thread) for each complete text or binary message of at most
 * HTTP_WS_MAX_MESSAGE bytes (a larger one closes the connection with 1009); pings are
 * answered, a close is echoed and ends the connection. The pump is driven as for any stream;
 * it and on_msg send with http_ws_send / http_ws_ping and end with http_ws_close. */
enum { HTTP_WS_MAX_MESSAGE = 64 * 1024, HTTP_WS_TEXT = 1, HTTP_WS_BINARY = 2 };
typedef void http_ws_msg_fn(void *arg, struct http_req *req, int opcode, const char *p,
                            size_t n);
/* True when req asks to upgrade to a WebSocket (Upgrade: websocket, Connection: upgrade,
 * Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key of 16 bytes in base64). */
bool http_ws_requested(const struct http_req *req);
void http_ws_accept(struct http_req *req, http_ws_msg_fn *on_msg, http_pump_fn *pump,
                    void *arg);
/* Queues one text message (pump or on_msg only). */
void http_ws_send(struct http_req *req, const char *p, size_t n);
/* Queues a ping (pump or on_msg only). */
void http_ws_ping(struct http_req *req);
/* Queues a close frame with code and reason and ends the stream after it. */
void http_ws_close(struct http_req *req, uint16_t code, const char *reason);

/* Percent-decodes s[0..n) into out (NUL-terminated). '+' becomes a space when plus_space.
 * Returns 0, or ERR_INVALID on a bad escape or an encoded NUL. */
int http_url_decode(const char *s, size_t n, bool plus_space, struct buf *out);

#endif
