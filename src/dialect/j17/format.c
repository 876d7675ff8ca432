/* The j17 event format of the logic layer (j17.h): what the spec's Tick handlers fold, and
 * how a command handler written against it returns events. */
#include <stdio.h>
#include <string.h>

#include "dialect/j17/j17.h"
#include "dialect/j17/translate.h"
#include "json/jsonx.h"
#include "logic/logic.h"
#include "util/errors.h"

/* A returned event {"key": "<type>:<id>", "type", "data"?, "metadata"?} as the native event
 * {"stream": key, "type", "data", "metadata"}. */
static int j17_parse(struct slice ev, size_t index, const char *component, struct buf *native,
                     char *why, size_t cap)
{
    (void)component;
    static const char *const names[] = {"key", "type", "data", "metadata"};
    struct slice v[4];
    struct buf bad;
    bool dup;
    buf_init(&bad);
    int rc = jsonx_kind(ev) == '{' ? jsonx_members(ev, names, 4, v, &bad, &dup) : ERR_INVALID;
    buf_fini(&bad);
    if (rc || 
        !v[0].ptr || jsonx_kind(v[0]) != '"' || !v[1].ptr || jsonx_kind(v[1]) != '"' ||
        (v[3].ptr && jsonx_kind(v[3]) != '{')) {
        snprintf(why, cap, "event %zu: a j17 event is {\"key\": \"<type>:<id>\", \"type\", "
                 "\"data\"?, \"metadata\"?}", index);
        return ERR_INVALID;
    }
    buf_adds(native, "{\"stream\":");
    buf_add(native, v[0].ptr, v[0].len);
    buf_adds(native, ",\"type\":");
    buf_add(native, v[1].ptr, v[1].len);
    if (v[2].ptr) {
        buf_adds(native, ",\"data\":");
        buf_add(native, v[2].ptr, v[2].len);
    }
    if (v[3].ptr) {
        buf_adds(native, ",\"metadata\":");
        buf_add(native, v[3].ptr, v[3].len);
    }
    buf_addc(native, '}');
    return 0;
}

const struct logic_event_format j17_format = {
    .name = "j17",
    .render = j17_event_render,
    .parse = j17_parse,
};
