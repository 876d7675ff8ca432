/* Hapnd's GET /projections/{id}/stream: a projection's state changes over a WebSocket
 * (ops/projfeed.h runs the feed; this is its Hapnd style): each change a text message
 * {"type":"state_changed", ...} (hapnd_change_json), {"type":"ping"} text messages as
 * keepalives, the client's {"type":"pong"} (and any other message) accepted, resumed after
 * ?afterSequence=. */
#include "dialect/hapnd/hd_int.h"

#include <stdio.h>
#include <string.h>

#include "logic/component.h"
#include "logic/logic.h"
#include "ops/projfeed.h"
#include "util/errors.h"

static int render(const struct projfeed_change *fc, struct buf *out)
{
    hd_render_change(fc->db, "state_changed", (struct slice){fc->tag, strlen(fc->tag)},
                     fc->change->sequence, fc->change->key, fc->change->state,
                     fc->change->position, out);
    return 0;
}

/* The client's messages: pongs (and anything else) are taken and need no answer. */
static int on_message(struct http_req *req, const char *tag, int opcode, struct slice msg,
                      const char **why)
{
    (void)req, (void)tag, (void)opcode, (void)msg, (void)why;
    return 0;
}

static const struct projfeed_style HAPND_STREAM = {
    .render = render,
    .ws_ping_text = "{\"type\":\"ping\"}",
    .heartbeat_s = PROJFEED_HEARTBEAT_S, /* Hapnd documents none: 15 s */
    .on_message = on_message,
};

void hd_projection_stream(struct gate_call *c)
{
    const char *after_s = http_req_query(c->req, "afterSequence");
    uint64_t after = 0;
    if (after_s && parse_u64(after_s, &after) != 0) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "afterSequence is a sequence number (0: "
                   "from the first change)", "afterSequence");
        return;
    }
    char name[COMP_NAME_BYTES + 1];
    struct slice pid = gate_param(c, "id");
    struct comp_set *set;
    const struct comp_def *def = NULL;
    if (hd_projection_name(pid, name) && logic_set(hd_ctx_of(c)->logic, c->db, &set) == 0) {
        def = comp_set_find(set, name);
        def = def && def->kind == COMP_PROJECTION ? def : NULL;
        comp_set_unref(set);
    }
    if (!def) {
        hd_fail(c, GK_NOT_FOUND, "NOT_FOUND", "NOT_FOUND");
        return;
    }
    if (!http_ws_requested(c->req)) {
        hd_fail_at(c, GK_INVALID, "VALIDATION_ERROR", "this route is a WebSocket: ask to "
                   "upgrade (Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: "
                   "13, Sec-WebSocket-Key)", "Upgrade");
        return;
    }
    char tag[COMP_NAME_BYTES + 8];
    snprintf(tag, sizeof tag, "%.*s", (int)pid.len, pid.ptr);
    struct projfeed_spec spec = {.projection = name, .after = after, .tag = tag, .ws = true};
    int rc = projfeed_start(c->req, hd_ctx_of(c)->logic, c->db, &spec, &HAPND_STREAM);
    if (rc == 0) {
        c->db = NULL; /* the feed's reference now */
    } else if (rc == ERR_NOTFOUND) {
        hd_fail(c, GK_UNAVAILABLE, "SERVICE_UNAVAILABLE", "the projection is starting: "
                "connect again shortly");
    } else {
        gate_fail_engine(c, rc);
    }
}
