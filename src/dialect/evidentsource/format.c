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

/* A whole number member (a revision); false when absent or not one. */
static bool revision_of(struct slice c, const char *name, uint64_t *out)
{
    struct slice v;
    char num[24];
    if (!jsonx_member(c, name, &v) || jsonx_kind(v) < '0' || jsonx_kind(v) > '9' ||
        v.len >= sizeof num) {
        return false;
    }
    memcpy(num, v.ptr, v.len);
    num[v.len] = '\0';
    return parse_u64(num, out) == 0;
}

/* {"failIfEventsMatch":{"selector":<sel>},"after":N} */
static void fail_if(struct buf *out, struct slice native_sel, uint64_t after)
{
    buf_adds(out, "{\"failIfEventsMatch\":{\"selector\":");
    buf_add(out, native_sel.ptr, native_sel.len);
    buf_printf(out, "},\"after\":%llu}", (unsigned long long)after);
}

/* EvidentDB's forms: a stream, a subject, or both; with a revision (max) or without
 * (does_not_exist: none at all). */
static int evident_db(struct slice c, const char *type, struct buf *out, char *why, size_t cap)
{
    bool on_stream = strstr(type, "_on_stream") != NULL;
    bool subject = !strncmp(type, "subject_", 8);
    bool max = strstr(type, "_max_revision") != NULL;
    uint64_t rev = 0;
    struct slice s = {NULL, 0}, sub = {NULL, 0};
    bool want_stream = !subject || on_stream;
    if ((want_stream && (!jsonx_member(c, "stream", &s) || jsonx_kind(s) != '"')) ||
        (subject && (!jsonx_member(c, "subject", &sub) || jsonx_kind(sub) != '"')) ||
        (max && !revision_of(c, "revision", &rev))) {
        return say(why, cap, "this constraint names its stream and/or subject (strings) and, "
                   "for a max revision, the revision");
    }
    struct buf sel, native;
    buf_init(&sel);
    buf_init(&native);
    buf_adds(&sel, "{");
    if (s.ptr) {
        buf_adds(&sel, "\"stream\":");
        buf_add(&sel, s.ptr, s.len);
    }
    if (sub.ptr) {
        buf_adds(&sel, s.ptr ? ",\"subject\":" : "\"subject\":");
        buf_add(&sel, sub.ptr, sub.len);
    }
    buf_addc(&sel, '}');
    struct parse_error pe;
    int rc = es_selector((struct slice){sel.ptr, sel.len}, "constraint", &native, &pe);
    if (rc) {
        say_parse(why, cap, &pe);
    } else {
        fail_if(out, (struct slice){native.ptr, native.len}, rev);
    }
    buf_fini(&sel);
    buf_fini(&native);
    return rc;
}

static int ce_condition(struct slice c, struct buf *out, char *why, size_t cap)
{
    struct slice t, sel;
    struct buf type;
    if (jsonx_kind(c) != '{') {
        return say(why, cap, "a constraint is an object");
    }
    if (!jsonx_member(c, "type", &t)) { /* a native condition */
        jsonx_minify(c, out);
        return 0;
    }
    buf_init(&type);
    int rc = jsonx_kind(t) == '"' ? jsonx_string(t, &type) : ERR_INVALID;
    const char *ty = rc || !type.ptr ? "" : type.ptr;
    uint64_t rev = 0;
    bool max = !strcmp(ty, "max_revision") || !strcmp(ty, "max");
    bool fail = !strcmp(ty, "fail_if_events_match");
    if (max || fail) {
        struct buf native;
        buf_init(&native);
        if (!jsonx_member(c, "selector", &sel)) {
            rc = say(why, cap, "this constraint has a selector");
        } else if (max ? !revision_of(c, "revision", &rev)
                       : jsonx_member(c, "after", &t) && !revision_of(c, "after", &rev)) {
            rc = say(why, cap, max ? "a max_revision constraint has a revision"
                                   : "after is a revision");
        } else {
            rc = any_selector(sel, "selector", &native, why, cap);
        }
        if (!rc) {
            fail_if(out, (struct slice){native.ptr, native.len}, rev);
        }
        buf_fini(&native);
    } else if (!strncmp(ty, "stream_", 7) || !strncmp(ty, "subject_", 8)) {
        rc = strstr(ty, "_max_revision") || strstr(ty, "does_not_exist")
                 ? evident_db(c, ty, out, why, cap)
                 : say(why, cap, "a decision's constraints say what may not exist: "
                       "*_exists forms are not supported here");
    } else {
        rc = say(why, cap, "a constraint's type is max_revision, fail_if_events_match or one "
                 "of EvidentDB's (stream_max_revision, subject_does_not_exist, ...); "
                 "min_revision and range are not supported in a decision");
    }
    buf_fini(&type);
    return rc;
}

const struct logic_event_format es_cloudevents_format = {
    .name = ES_FORMAT_NAME,
    .render = es_event,
    .parse = ce_parse,
    .filter = ce_filter,
    .condition = ce_condition,
};
