/* The Hapnd event format (format.h). */
#include "dialect/hapnd/format.h"

#include <stdio.h>
#include <string.h>

#include "dialect/hapnd/translate.h"
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

const struct logic_event_format hapnd_format = {
    .name = HAPND_FORMAT_NAME,
    .render = hapnd_event_json,
    .parse = hd_parse,
};
