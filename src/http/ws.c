/* WebSocket (RFC 6455) for the HTTP server (server_int.h): the upgrade check and the 101
 * answer's Sec-WebSocket-Accept, then wslay's framing driven by the connection's buffers:
 * wslay reads through ws_recv (first the bytes that came right behind the upgrade request,
 * then the socket, plain or TLS) and writes into the connection's output, which the stream
 * flushes. Reading pauses while answers (pongs, echoed closes) pile up, so a client that
 * sends without reading cannot make the server buffer more than HTTP_STREAM_MAX_BYTES. Loop
 * thread only.
 */
#include "http/server_int.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/errors.h"

enum {
    WS_QUEUED_MAX = 4096,        /* WebSocket answers (pongs) waiting in wslay before reading
                                    more of a client's input */
};

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
        http_conn_consume(c, take);
        return (ssize_t)take;
    }
    ssize_t r = http_conn_recv(c, (char *)p, n);
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

int http_ws_begin(struct conn *c)
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
enum step http_ws_read(struct conn *c)
{
    if (wslay_event_recv(c->ws) != 0) {
        http_conn_close(c);
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

void http_ws_end(struct conn *c)
{
    if (c->ws) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
}
