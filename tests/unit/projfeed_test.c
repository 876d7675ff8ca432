/* ops/projfeed: a projection's live feed in a style, over the real HTTP server (127.0.0.1,
 * an ephemeral port) with an engine, the logic layer and a Lua projection, read with a raw
 * socket: the style's render (reading the event a change came from, leaving a change out),
 * its SSE event name, a text keepalive instead of ping frames, client messages taken and
 * refused, resuming after a sequence; and the native style's bytes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"
#include "logic/component.h"
#include "logic/logic.h"
#include "logic/projection.h"
#include "ops/out.h"
#include "ops/projfeed.h"
#include "util/errors.h"
#include "util/limits.h"

/* ---- the style under test ---- */

static int pongs; /* pong messages taken (I/O thread writes, the test reads) */

static int on_stream(void *arg, const struct event_rec *ev)
{
    buf_add_json_str(arg, ev->stream.ptr, ev->stream.len);
    return 1;
}

/* {"type":"changed","tag","sequence","stream" (read from the event),"state"}; the change of
 * key "skip" is left out. */
static int test_render(const struct projfeed_change *fc, struct buf *out)
{
    const struct proj_change *ch = fc->change;
    if (ch->key.len == 4 && !memcmp(ch->key.ptr, "skip", 4)) {
        buf_adds(out, "left out"); /* (must not reach the wire) */
        return ERR_NOTFOUND;
    }
    buf_adds(out, "{\"type\":\"changed\",\"tag\":");
    buf_add_json_str(out, fc->tag, strlen(fc->tag));
    buf_printf(out, ",\"sequence\":%llu,\"stream\":", (unsigned long long)ch->sequence);
    int rc = engine_read_event(fc->db, ch->position, on_stream, out);
    buf_adds(out, ",\"state\":");
    buf_add(out, ch->state.ptr, ch->state.len);
    buf_addc(out, '}');
    return rc;
}

static int test_on_message(struct http_req *req, const char *tag, int opcode, struct slice msg,
                           const char **why)
{
    static const char PONG[] = "{\"type\":\"pong\"}";
    if (opcode != HTTP_WS_TEXT) {
        *why = "text messages only";
        return ERR_PROTOCOL;
    }
    if (msg.len == sizeof PONG - 1 && !memcmp(msg.ptr, PONG, msg.len)) {
        __atomic_add_fetch(&pongs, 1, __ATOMIC_RELEASE);
        return 0;
    }
    if (msg.len == 5 && !memcmp(msg.ptr, "hello", 5)) {
        char answer[64];
        int n = snprintf(answer, sizeof answer, "{\"type\":\"hi\",\"tag\":\"%s\"}", tag);
        http_ws_send(req, answer, (size_t)n);
        return 0;
    }
    *why = "unknown message";
    return ERR_PROTOCOL;
}

static const struct projfeed_style STYLE = {
    .render = test_render,
    .sse_event = "state_changed",
    .ws_ping_text = "{\"type\":\"ping\"}",
    .heartbeat_s = 1,
    .on_message = test_on_message,
};

/* ---- a server with one projection ---- */

struct fixture {
    char dir[128];
    struct engine *e;
    struct db *db;
    struct logic_env *env;
    struct logic *lg;
    struct http_server *srv;
    int port;
};

static void on_appended(struct append_req *r)
{
    __atomic_store_n((int *)r->arg, 1, __ATOMIC_RELEASE);
}

static void append_one(struct db *db, const char *stream)
{
    struct append_event ev = {.type = {"T", 1}, .data = {"{}", 2}, .metadata = {"{}", 2},
                              .tags = {"[]", 2}};
    struct append_part part = {.stream = {stream, strlen(stream)}, .events = &ev, .count = 1};
    int done = 0;
    struct append_req r = {.parts = &part, .nparts = 1, .done = on_appended, .arg = &done};
    ASSERT_EQ(engine_append(db, &r), 0);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    ASSERT_EQ(r.err, 0);
}

/* GET /<name>?after=N&tag=T[&native=1]: the feed of projection name (a WebSocket when asked),
 * or 404 {"rc":<error>} when projfeed_start refuses. */
static void on_request(void *arg, struct http_req *req)
{
    struct fixture *fx = arg;
    struct slice path = http_req_path(req);
    char name[COMP_NAME_BYTES + 2];
    snprintf(name, sizeof name, "%.*s", (int)(path.len - 1), path.ptr + 1);
    const char *after = http_req_query(req, "after");
    struct projfeed_spec spec = {.projection = name,
                                 .after = after ? strtoull(after, NULL, 10) : 0,
                                 .tag = http_req_query(req, "tag"),
                                 .ws = http_req_header(req, "Upgrade") != NULL};
    struct db *db;
    ASSERT_EQ(engine_db_acquire(fx->e, "default", 7, &db), 0);
    int rc = projfeed_start(req, fx->lg, db, &spec,
                            http_req_query(req, "native") ? &projfeed_native : &STYLE);
    if (rc) {
        engine_db_release(db);
        struct buf b;
        buf_init(&b);
        buf_printf(&b, "{\"rc\":%d}", rc);
        http_respond(req, 404, &b, NULL);
    }
}

/* An engine with events on streams a, skip, b; projection "counts" (one state per stream)
 * caught up with them (changes 1: a, 2: skip, 3: b); a server in front. */
static void fixture_open(struct fixture *fx)
{
    snprintf(fx->dir, sizeof fx->dir, "/tmp/annals-projfeed-%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    CHECK(system(cmd) == 0);
    struct engine_config ecfg = {.data_dir = fx->dir};
    ecfg.limits = (struct limits){.body_bytes = LIMIT_DEFAULT_BODY_BYTES,
                                  .batch_events = LIMIT_DEFAULT_BATCH_EVENTS,
                                  .event_bytes = LIMIT_DEFAULT_EVENT_BYTES,
                                  .map_bytes = 1ull << 30,
                                  .idem_ttl_s = LIMIT_DEFAULT_IDEM_TTL_S};
    ASSERT_EQ(engine_open(&ecfg, &fx->e), 0);
    ASSERT_EQ(engine_db_acquire(fx->e, "default", 7, &fx->db), 0);
    struct logic_env_config envcfg = {0};
    ASSERT_EQ(logic_env_new(&envcfg, &fx->env), 0);
    struct logic_config cfg = {.engine = fx->e, .env = fx->env, .format_event = out_event};
    logic_limits_default(&cfg.limits);
    ASSERT_EQ(logic_new(&cfg, &fx->lg), 0);
    append_one(fx->db, "a");
    append_one(fx->db, "skip");
    append_one(fx->db, "b");
    static const char DEF[] = "{\"kind\":\"projection\",\"language\":\"lua\",\"source\":"
                              "\"function key(e) return e.stream end function apply(s, e) "
                              "s = s or {n = 0} s.n = s.n + 1 return s end\"}";
    struct comp_def d;
    struct comp_error ce;
    ASSERT_EQ(comp_parse("counts", (struct slice){DEF, sizeof DEF - 1}, &d, &ce), 0);
    struct logic_error le = {0};
    ASSERT_EQ(logic_deploy(fx->lg, fx->db, &d, &le), 0);
    comp_def_fini(&d);
    CHECK(proj_await(logic_projections(fx->lg), fx->db, "counts", engine_db_head(fx->db),
                     5000));
    struct http_config hcfg = {.host = "127.0.0.1", .threads = 1, .handler = on_request,
                               .handler_arg = fx};
    hcfg.limits = ecfg.limits;
    hcfg.limits.header_bytes = LIMIT_DEFAULT_HEADER_BYTES;
    hcfg.limits.connections = 16;
    hcfg.limits.timeout_s = LIMIT_DEFAULT_TIMEOUT_S;
    ASSERT_EQ(http_server_start(&hcfg, &fx->srv), 0);
    fx->port = http_server_port(fx->srv);
}

static void fixture_close(struct fixture *fx)
{
    http_server_stop(fx->srv);
    logic_free(fx->lg);
    logic_env_free(fx->env);
    engine_db_release(fx->db);
    engine_stop(fx->e);
    engine_close(fx->e);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    CHECK(system(cmd) == 0);
}

/* ---- a raw client ---- */

struct client {
    int fd;
    char in[1 << 16];
    size_t len;
};

static void client_fill(struct client *cl)
{
    CHECK(cl->len < sizeof cl->in);
    ssize_t n = recv(cl->fd, cl->in + cl->len, sizeof cl->in - cl->len, 0);
    CHECK(n > 0); /* (SO_RCVTIMEO: a feed that says nothing fails here) */
    cl->len += (size_t)n;
}

static void client_drop(struct client *cl, size_t n)
{
    memmove(cl->in, cl->in + n, cl->len - n);
    cl->len -= n;
}

/* Sends GET target (a WebSocket upgrade when ws) and reads the answer's head; returns its
 * status. */
static int client_open(struct client *cl, int port, const char *target, bool ws)
{
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(cl->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(cl->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", target,
                     ws ? "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
                          "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" : "");
    CHECK(send(cl->fd, req, (size_t)n, 0) == n);
    cl->len = 0;
    char *end;
    while (cl->in[cl->len] = '\0', !(end = strstr(cl->in, "\r\n\r\n"))) {
        client_fill(cl);
    }
    int status = atoi(cl->in + 9);
    client_drop(cl, (size_t)(end + 4 - cl->in));
    return status;
}

/* The next frame's opcode; its payload (NUL-terminated) into out. Server frames are whole and
 * unmasked. */
static int ws_frame(struct client *cl, char *out, size_t cap)
{
    while (cl->len < 2) {
        client_fill(cl);
    }
    const uint8_t *p = (const uint8_t *)cl->in;
    CHECK((p[0] & 0x80) && !(p[1] & 0x80));
    size_t n = p[1] & 0x7f, off = 2;
    if (n == 126) {
        while (cl->len < 4) {
            client_fill(cl);
        }
        n = (size_t)p[2] << 8 | p[3];
        off = 4;
    }
    CHECK(n < cap);
    while (cl->len < off + n) {
        client_fill(cl);
    }
    int op = p[0] & 0x0f;
    memcpy(out, cl->in + off, n);
    out[n] = '\0';
    client_drop(cl, off + n);
    return op;
}

/* The next text message other than the style's keepalive into out. */
static void ws_text(struct client *cl, char *out, size_t cap)
{
    do {
        ASSERT_EQ(ws_frame(cl, out, cap), HTTP_WS_TEXT);
    } while (!strcmp(out, STYLE.ws_ping_text));
}

/* Sends one masked frame of opcode op (payload < 126 bytes). */
static void ws_send(struct client *cl, int op, const char *msg)
{
    size_t n = strlen(msg);
    CHECK(n < 126);
    uint8_t f[2 + 4 + 126] = {(uint8_t)(0x80 | op), (uint8_t)(0x80 | n), 1, 2, 3, 4};
    for (size_t i = 0; i < n; i++) {
        f[6 + i] = (uint8_t)msg[i] ^ f[2 + i % 4];
    }
    CHECK(send(cl->fd, f, 6 + n, 0) == (ssize_t)(6 + n));
}

/* The next SSE message (through its blank line) into out. */
static void sse_message(struct client *cl, char *out, size_t cap)
{
    char *end;
    while (cl->in[cl->len] = '\0', !(end = strstr(cl->in, "\n\n"))) {
        client_fill(cl);
    }
    size_t n = (size_t)(end + 2 - cl->in);
    CHECK(n < cap);
    memcpy(out, cl->in, n);
    out[n] = '\0';
    client_drop(cl, n);
}

/* ---- tests ---- */

TEST(a_style_renders_changes_pings_in_text_and_takes_messages_over_a_websocket)
{
    struct fixture fx;
    fixture_open(&fx);
    struct client cl;
    ASSERT_EQ(client_open(&cl, fx.port, "/counts?tag=proj_1", true), 101);
    char m[4096];
    ASSERT_EQ(ws_frame(&cl, m, sizeof m), HTTP_WS_TEXT); /* 2 (skip) is left out */
    ASSERT_STR(m, "{\"type\":\"changed\",\"tag\":\"proj_1\",\"sequence\":1,\"stream\":\"a\","
                  "\"state\":{\"n\":1}}");
    ASSERT_EQ(ws_frame(&cl, m, sizeof m), HTTP_WS_TEXT);
    ASSERT_STR(m, "{\"type\":\"changed\",\"tag\":\"proj_1\",\"sequence\":3,\"stream\":\"b\","
                  "\"state\":{\"n\":1}}");
    /* idle: the keepalive is the style's text message, never a ping frame */
    ASSERT_EQ(ws_frame(&cl, m, sizeof m), HTTP_WS_TEXT);
    ASSERT_STR(m, "{\"type\":\"ping\"}");
    ws_send(&cl, 1, "{\"type\":\"pong\"}");
    ws_send(&cl, 1, "hello");
    ws_text(&cl, m, sizeof m); /* the hook may answer */
    ASSERT_STR(m, "{\"type\":\"hi\",\"tag\":\"proj_1\"}");
    ASSERT_EQ(__atomic_load_n(&pongs, __ATOMIC_ACQUIRE), 1);
    /* live: a new change wakes the feed */
    append_one(fx.db, "a");
    ws_text(&cl, m, sizeof m);
    ASSERT_STR(m, "{\"type\":\"changed\",\"tag\":\"proj_1\",\"sequence\":4,\"stream\":\"a\","
                  "\"state\":{\"n\":2}}");
    /* a message the hook refuses closes the socket with 1008 and its reason */
    ws_send(&cl, 2, "x");
    int op;
    while ((op = ws_frame(&cl, m, sizeof m)) == HTTP_WS_TEXT) {
        ASSERT_STR(m, "{\"type\":\"ping\"}");
    }
    ASSERT_EQ(op, 8);
    ASSERT_EQ((uint8_t)m[0] << 8 | (uint8_t)m[1], 1008);
    ASSERT_STR(m + 2, "text messages only");
    close(cl.fd);
    fixture_close(&fx);
}

TEST(a_style_names_sse_events_and_resumes_after_a_sequence)
{
    struct fixture fx;
    fixture_open(&fx);
    struct client cl;
    ASSERT_EQ(client_open(&cl, fx.port, "/counts?after=1", false), 200);
    char m[4096];
    sse_message(&cl, m, sizeof m);
    ASSERT_STR(m, "id: 3\nevent: state_changed\ndata: {\"type\":\"changed\",\"tag\":\"\","
                  "\"sequence\":3,\"stream\":\"b\",\"state\":{\"n\":1}}\n\n");
    sse_message(&cl, m, sizeof m); /* after heartbeat_s: SSE keeps its comment line */
    ASSERT_STR(m, ": heartbeat\n\n");
    close(cl.fd);
    /* a projection that is not there: nothing answered, the surface answers */
    ASSERT_EQ(client_open(&cl, fx.port, "/nope", true), 404);
    CHECK(strstr(cl.in, "{\"rc\":-2}"));
    close(cl.fd);
    fixture_close(&fx);
}

TEST(the_native_style_sends_change_records)
{
    struct fixture fx;
    fixture_open(&fx);
    struct client cl;
    ASSERT_EQ(client_open(&cl, fx.port, "/counts?after=2&native=1", false), 200);
    char m[4096];
    sse_message(&cl, m, sizeof m);
    ASSERT_STR(m, "id: 3\nevent: change\ndata: {\"sequence\":3,\"key\":\"b\",\"state\":{\"n\":1},"
                  "\"position\":3}\n\n");
    close(cl.fd);
    ASSERT_EQ(client_open(&cl, fx.port, "/counts?after=2&native=1", true), 101);
    ASSERT_EQ(ws_frame(&cl, m, sizeof m), HTTP_WS_TEXT);
    ASSERT_STR(m, "{\"sequence\":3,\"key\":\"b\",\"state\":{\"n\":1},\"position\":3}");
    ws_send(&cl, 1, "anything"); /* ignored */
    append_one(fx.db, "b");
    ASSERT_EQ(ws_frame(&cl, m, sizeof m), HTTP_WS_TEXT);
    ASSERT_STR(m, "{\"sequence\":4,\"key\":\"b\",\"state\":{\"n\":2},\"position\":5}");
    close(cl.fd);
    fixture_close(&fx);
}

TEST(a_message_left_out_leaves_the_buffer_as_it_was)
{
    struct proj_change ch = {.sequence = 9, .key = {"skip", 4}, .state = {"1", 1},
                             .position = 2};
    struct projfeed_change fc = {.change = &ch, .projection = "p", .tag = ""};
    struct buf b;
    buf_init(&b);
    buf_adds(&b, "before");
    ASSERT_EQ(projfeed_message(&STYLE, &fc, false, &b), ERR_NOTFOUND);
    ASSERT_STR(b.ptr, "before");
    ch.key = (struct slice){"k\"", 2};
    ASSERT_EQ(projfeed_message(&projfeed_native, &fc, true, &b), 0);
    ASSERT_STR(b.ptr, "before{\"sequence\":9,\"key\":\"k\\\"\",\"state\":1,\"position\":2}");
    buf_fini(&b);
}
