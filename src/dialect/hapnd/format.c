/* The Hapnd event format (format.h). */
#include "dialect/hapnd/format.h"

#include <stdio.h>
#include <string.h>

#include "dialect/hapnd/hd_int.h"
#include "dialect/hapnd/translate.h"
#include "logic/projection.h"
#include "json/jsonx.h"
#include "util/errors.h"

static int hd_parse(struct slice ev, size_t index, const char *component, struct buf *native,
                    char *why, size_t cap)
{
    (void)component;
    struct hapnd_append a;
    hapnd_append_init(&a);
    struct parse_error pe;
    int rc = hapnd_append_parse(ev, false, 1, &a, &pe);
    struct slice type = a.aggregate_type;
    if (rc) {
        snprintf(why, cap, "event %zu: %s%s%s", index, pe.field, pe.field[0] ? ": " : "",
                 pe.message);
    } else if (!type.ptr && !hapnd_infer_type(a.aggregate_id, &type)) {
        snprintf(why, cap, "event %zu: aggregateType is required (the aggregateId has no '_' "
                 "or '-')", index);
        rc = ERR_INVALID;
    } else if (!hapnd_type_ok(type)) {
        snprintf(why, cap, "event %zu: the aggregate type must be letters, digits, '_', '-' "
                 "and '.'", index);
        rc = ERR_INVALID;
    } else {
        struct buf body;
        buf_init(&body);
        hapnd_native_body(&a, type, &body); /* {"events":[<the event>]} */
        struct slice evs, item;
        size_t pos = 0;
        if (jsonx_member((struct slice){body.ptr, body.len}, "events", &evs) &&
            jsonx_next_item(evs, &pos, &item)) {
            buf_adds(native, "{\"stream\":");
            buf_add_json_str(native, a.aggregate_id.ptr, a.aggregate_id.len);
            buf_addc(native, ',');
            buf_add(native, item.ptr + 1, item.len - 1); /* its members and '}' */
        }
        buf_fini(&body);
    }
    hapnd_append_fini(&a);
    return rc;
}

/* ---- webhooks: one change per POST, Hapnd's payload and headers ---- */

static int hook_payload(struct db *db, const struct comp_def *def,
                        const struct proj_change *changes, size_t n, const char *id,
                        uint32_t attempt, struct buf *out)
{
    (void)n; /* batch_max 1 */
    (void)id;
    (void)attempt;
    char pid[COMP_NAME_BYTES + 8];
    hd_projection_id(def->name, pid, sizeof pid);
    hd_render_change(db, "projection.state_changed", (struct slice){pid, strlen(pid)},
                     changes[0].sequence, changes[0].key, changes[0].state,
                     changes[0].position, out);
    return 0;
}

static void hook_id(const struct comp_def *def, const struct proj_change *changes, size_t n,
                    char *out, size_t cap)
{
    (void)n;
    char pid[COMP_NAME_BYTES + 8];
    hd_projection_id(def->name, pid, sizeof pid);
    snprintf(out, cap, "%s-%llu", pid, (unsigned long long)changes[0].sequence);
}

static const struct logic_hook_style HAPND_HOOKS = {
    .batch_max = 1,
    .signing = DELIVERY_HMAC_HEX,
    .signature_header = "X-Hapnd-Signature",
    .id_header = "X-Hapnd-Delivery-Id",
    .attempt_header = "X-Hapnd-Attempt",
    .payload = hook_payload,
    .message_id = hook_id,
};

const struct logic_event_format hapnd_format = {
    .name = HAPND_FORMAT_NAME,
    .render = hapnd_event_json,
    .parse = hd_parse,
    .hook_style = &HAPND_HOOKS,
};
