/* The CloudEvents event format (dialect/evidentsource/format.h), made of translate.h's
 * translators. */
#include "dialect/evidentsource/format.h"

#include <stdio.h>
#include <string.h>

#include "dialect/evidentsource/translate.h"
#include "json/jsonx.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/uuid.h"

static int say(char *why, size_t cap, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    return ERR_INVALID;
}

static int say_parse(char *why, size_t cap, const struct parse_error *pe)
{
    snprintf(why, cap, "%s%s%s", pe->field[0] ? pe->field : "", pe->field[0] ? ": " : "",
             pe->message);
    return ERR_INVALID;
}

/* The event with the attributes a state change may leave out: specversion, id, source. */
static void with_defaults(struct slice ev, const char *component, struct buf *out)
{
    struct slice v;
    buf_addc(out, '{');
    if (!jsonx_member(ev, "specversion", &v)) {
        buf_adds(out, "\"specversion\":\"1.0\",");
    }
    if (!jsonx_member(ev, "id", &v)) {
        uint8_t u[UUID_LEN];
        char text[UUID_TEXT_LEN + 1];
        uuid_v7(time_now_us(), u);
        uuid_format(u, text);
        buf_printf(out, "\"id\":\"%s\",", text);
    }
    if (!jsonx_member(ev, "source", &v) && !jsonx_member(ev, "stream", &v)) {
        buf_adds(out, "\"source\":");
        buf_add_json_str(out, component, strlen(component));
        buf_addc(out, ',');
    }
    if (ev.len > 2) {
        buf_add(out, ev.ptr + 1, ev.len - 1); /* its members and '}' */
    } else {
        out->len--; /* the last comma (there is one: specversion was missing) */
        buf_addc(out, '}');
    }
}

static int ce_parse(struct slice ev, size_t index, const char *component, struct buf *native,
                    char *why, size_t cap)
{
    if (jsonx_kind(ev) != '{') {
        return say(why, cap, "an event is a CloudEvent object");
    }
    struct buf min, full, obj, stream;
    buf_init(&min);
    buf_init(&full);
    buf_init(&obj);
    buf_init(&stream);
    jsonx_minify(ev, &min);
    with_defaults((struct slice){min.ptr, min.len}, component, &full);
    struct parse_error pe;
    int rc = es_ce_to_native((struct slice){full.ptr, full.len}, index, &obj, &stream, &pe);
    if (rc) {
        say_parse(why, cap, &pe);
    } else {
        buf_adds(native, "{\"stream\":");
        buf_add_json_str(native, stream.ptr, stream.len);
        buf_addc(native, ',');
        buf_add(native, obj.ptr + 1, obj.len - 1);
    }
    buf_fini(&min);
    buf_fini(&full);
    buf_fini(&obj);
    buf_fini(&stream);
    return rc;
}

/* A selector, or an array of selectors (any of), as a native selector object. */
static int any_selector(struct slice arg, const char *field, struct buf *out, char *why,
                        size_t cap)
{
    struct parse_error pe;
    if (jsonx_kind(arg) != '[') {
        return es_selector(arg, field, out, &pe) ? say_parse(why, cap, &pe) : 0;
    }
    buf_adds(out, "{\"type\":\"or\",\"selectors\":[");
    size_t pos = 0, n = 0;
    struct slice it;
    while (jsonx_next_item(arg, &pos, &it)) {
        buf_adds(out, n++ ? "," : "");
        if (es_selector(it, field, out, &pe)) {
            return say_parse(why, cap, &pe);
        }
    }
    buf_adds(out, "]}");
    return n ? 0 : say(why, cap, "an array of selectors holds at least one");
}

static int ce_filter(struct slice arg, struct buf *out, char *why, size_t cap)
{
    buf_adds(out, "{\"selector\":");
    int rc = any_selector(arg, "selector", out, why, cap);
    buf_addc(out, '}');
    return rc;
}

/* A constraint (es_constraint's forms) as a native condition {"query","min"?,"max"?}; one
 * without "type" is a native condition already. */
static int ce_condition(struct slice c, size_t index, struct buf *out, char *why, size_t cap)
{
    struct slice t;
    if (jsonx_kind(c) != '{') {
        snprintf(why, cap, "constraints[%zu]: a constraint is an object", index);
        return ERR_INVALID;
    }
    if (!jsonx_member(c, "type", &t)) {
        jsonx_minify(c, out);
        return 0;
    }
    struct buf min;
    buf_init(&min);
    jsonx_minify(c, &min);
    struct parse_error pe;
    int rc = es_constraint((struct slice){min.ptr, min.len}, index, out, &pe);
    buf_fini(&min);
    return rc ? say_parse(why, cap, &pe) : 0;
}

const struct logic_event_format es_cloudevents_format = {
    .name = ES_FORMAT_NAME,
    .render = es_event,
    .parse = ce_parse,
    .filter = ce_filter,
    .condition = ce_condition,
};
