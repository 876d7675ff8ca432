/* proj_hooks: a projection whose event format has a hook style is delivered in that style's
 * shape (one change per POST, its body, message id, hex HMAC signature, id and attempt
 * headers) by the shared delivery thread (retries with the same message id, the webhook's own
 * headers but those the style sets, the checkpoint), through the whole logic layer and a
 * local receiver. The native shape is covered by tests/integration/test_logic_hooks.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "receiver.h"
#include "unit.h"
#include "api/groups_api.h"
#include "delivery/delivery.h"
#include "logic/logic.h"
#include "logic/proj_hooks.h"
#include "logic/projection.h"
#include "ops/out.h"
#include "util/errors.h"
#include "util/limits.h"

static struct engine *open_engine(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/annals-phook-%d", (int)getpid());
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    struct engine_config cfg = {.data_dir = dir};
    cfg.limits = (struct limits){.body_bytes = LIMIT_DEFAULT_BODY_BYTES,
                                 .batch_events = LIMIT_DEFAULT_BATCH_EVENTS,
                                 .event_bytes = LIMIT_DEFAULT_EVENT_BYTES,
                                 .map_bytes = 1ull << 30,
                                 .idem_ttl_s = LIMIT_DEFAULT_IDEM_TTL_S};
    struct engine *e;
    ASSERT_EQ(engine_open(&cfg, &e), 0);
    return e;
}

static void on_done(struct append_req *r)
{
    __atomic_store_n((int *)r->arg, 1, __ATOMIC_RELEASE);
}

static void append_one(struct db *db, const char *stream)
{
    struct append_event ev = {.type = {"T", 1}, .data = {"{}", 2}, .metadata = {"{}", 2},
                              .tags = {"[]", 2}};
    struct append_part part = {.stream = {stream, strlen(stream)}, .events = &ev, .count = 1};
    int done = 0;
    struct append_req r = {.parts = &part, .nparts = 1, .done = on_done, .arg = &done};
    ASSERT_EQ(engine_append(db, &r), 0);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        usleep(100);
    }
    ASSERT_EQ(r.err, 0);
}

/* The format: events are {"type","stream"}; its projections' webhooks are one change per POST,
 * {"type":"test.changed","sequence","stream","state","meta"}, with the stream read from the
 * event that made the change. */
static void test_render(struct buf *out, const struct event_rec *ev)
{
    buf_adds(out, "{\"type\":");
    buf_add_json_str(out, ev->type.ptr, ev->type.len);
    buf_adds(out, ",\"stream\":");
    buf_add_json_str(out, ev->stream.ptr, ev->stream.len);
    buf_addc(out, '}');
}

static int test_parse(struct slice ev, size_t index, const char *component, struct buf *native,
                      char *why, size_t cap)
{
    (void)ev;
    (void)native;
    snprintf(why, cap, "event %zu of %s: no commands in this test", index, component);
    return ERR_INVALID;
}

static int on_event(void *arg, const struct event_rec *ev)
{
    buf_add_json_str(arg, ev->stream.ptr, ev->stream.len);
    return 1;
}

static int test_payload(struct db *db, const struct comp_def *def, const struct proj_change *ch,
                        size_t n, const char *id, uint32_t attempt, struct buf *out)
{
    (void)id;
    (void)attempt;
    CHECK(n == 1);
    buf_printf(out, "{\"type\":\"test.changed\",\"sequence\":%llu,\"stream\":",
               (unsigned long long)ch->sequence);
    int rc = engine_read_event(db, ch->position, on_event, out);
    buf_adds(out, ",\"state\":");
    buf_add(out, ch->state.ptr, ch->state.len);
    buf_adds(out, ",\"meta\":");
    buf_adds(out, def->meta ? def->meta : "null");
    buf_addc(out, '}');
    return rc;
}

static void test_message_id(const struct comp_def *def, const struct proj_change *ch, size_t n,
                            char *out, size_t cap)
{
    CHECK(n == 1);
    snprintf(out, cap, "%s-%llu", def->name, (unsigned long long)ch->sequence);
}

static const struct logic_hook_style STYLE = {
    .batch_max = 1,
    .signing = DELIVERY_HMAC_HEX,
    .signature_header = "X-Test-Signature",
    .id_header = "X-Test-Delivery-Id",
    .attempt_header = "X-Test-Attempt",
    .payload = test_payload,
    .message_id = test_message_id,
};

static const struct logic_event_format HOOKED = {.name = "hooked", .render = test_render,
                                                 .parse = test_parse, .hook_style = &STYLE};

static void check_request(const char *req, const char *secret, const char *id,
                          const char *attempt, const char *body)
{
    char v[512];
    ASSERT_STR(rcv_body(req), body);
    ASSERT_STR(rcv_header(req, "Content-Type", v, sizeof v), "application/json");
    ASSERT_STR(rcv_header(req, "X-Test-Delivery-Id", v, sizeof v), id);
    ASSERT_EQ(rcv_header_count(req, "X-Test-Attempt"), 1); /* the webhook's own is dropped */
    ASSERT_STR(rcv_header(req, "X-Test-Attempt", v, sizeof v), attempt);
    ASSERT_STR(rcv_header(req, "X-Team", v, sizeof v), "ops");
    CHECK(!rcv_header(req, "webhook-id", v, sizeof v));
    CHECK(!rcv_header(req, "X-Annals-Attempt", v, sizeof v));
    struct buf sig;
    buf_init(&sig);
    delivery_sign_hex(&sig, secret, (struct slice){rcv_body(req), strlen(rcv_body(req))});
    buf_addc(&sig, '\0');
    ASSERT_STR(rcv_header(req, "X-Test-Signature", v, sizeof v), sig.ptr);
    buf_fini(&sig);
}

/* True once the webhook's checkpoint has reached sequence. */
static bool delivered(struct logic *lg, struct db *db, uint64_t sequence)
{
    char want[48];
    snprintf(want, sizeof want, "\"delivered\":%llu,", (unsigned long long)sequence);
    for (int i = 0; i < 300; i++) {
        struct buf b;
        buf_init(&b);
        int rc = proj_webhook(logic_projections(lg), db, "counts", &b);
        buf_addc(&b, '\0');
        bool ok = rc == 0 && strstr(b.ptr, want);
        buf_fini(&b);
        if (ok) {
            return true;
        }
        usleep(10 * 1000);
    }
    return false;
}

TEST(a_hook_style_shapes_each_post)
{
    static const int STATUSES[] = {500}; /* the first POST fails: attempt 2 follows */
    struct rcv r;
    rcv_start(&r, STATUSES, 1);
    char dir[128];
    struct engine *e = open_engine(dir, sizeof dir);
    struct db *db;
    ASSERT_EQ(engine_db_acquire(e, "default", 7, &db), 0);
    struct logic_env *env;
    struct logic_env_config ec = {0};
    ASSERT_EQ(logic_env_new(&ec, &env), 0);
    static const struct logic_event_format *const formats[] = {&HOOKED, NULL};
    struct logic_config cfg = {.engine = e, .env = env, .format_event = out_event,
                               .parse_filter = groups_parse_filter, .event_formats = formats,
                               .webhook_allow = "127.0.0.1"};
    logic_limits_default(&cfg.limits);
    struct logic *lg;
    ASSERT_EQ(logic_new(&cfg, &lg), 0);
    append_one(db, "a");
    append_one(db, "a");
    append_one(db, "b");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"kind\":\"projection\",\"language\":\"lua\",\"eventFormat\":\"hooked\","
             "\"meta\":{\"id\":\"proj_x\"},\"source\":\"function key(e) return e.stream end "
             "function apply(s, e) s = s or {n = 0} s.n = s.n + 1 return s end\","
             "\"webhook\":{\"url\":\"http://127.0.0.1:%d/h\",\"headers\":{\"X-Team\":\"ops\","
             "\"x-test-attempt\":\"99\"},\"maxAttempts\":3,\"backoffMs\":10}}", r.port);
    struct comp_def d;
    struct comp_error ce;
    ASSERT_EQ(comp_parse("counts", (struct slice){body, strlen(body)}, &d, &ce), 0);
    struct logic_error le = {0};
    ASSERT_EQ(logic_deploy(lg, db, &d, &le), 0);
    comp_def_fini(&d);
    CHECK(rcv_wait(&r, 4, 8000));
    CHECK(delivered(lg, db, 3));
    char secret[DELIVERY_SECRET_TEXT];
    ASSERT_EQ(phook_secret(db, "counts", false, secret), 0); /* the database's shared one */
    static const char B1[] = "{\"type\":\"test.changed\",\"sequence\":1,\"stream\":\"a\","
                             "\"state\":{\"n\":1},\"meta\":{\"id\":\"proj_x\"}}";
    check_request(r.req[0], secret, "counts-1", "1", B1);
    check_request(r.req[1], secret, "counts-1", "2", B1); /* the same message again */
    check_request(r.req[2], secret, "counts-2", "1",
                  "{\"type\":\"test.changed\",\"sequence\":2,\"stream\":\"a\","
                  "\"state\":{\"n\":2},\"meta\":{\"id\":\"proj_x\"}}");
    check_request(r.req[3], secret, "counts-3", "1",
                  "{\"type\":\"test.changed\",\"sequence\":3,\"stream\":\"b\","
                  "\"state\":{\"n\":1},\"meta\":{\"id\":\"proj_x\"}}");
    ASSERT_EQ(r.n, 4);
    logic_free(lg);
    logic_env_free(env);
    engine_db_release(db);
    engine_stop(e);
    engine_close(e);
    rcv_stop(&r);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}
