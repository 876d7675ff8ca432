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

/* The constraint forms: where the selector comes from and what bounds they set. */
enum sel_from { SEL_GIVEN, SEL_ANY, SEL_STREAM, SEL_SUBJECT, SEL_BOTH };
enum bound { B_NONE, B_REVISION, B_ONE, B_ZERO, B_MIN, B_MAX, B_AFTER };

struct form {
    const char *type;
    enum sel_from sel;
    enum bound min, max;
};

static const struct form FORMS[] = {
    {"min_revision", SEL_ANY, B_REVISION, B_NONE},
    {"min", SEL_GIVEN, B_REVISION, B_NONE},
    {"max", SEL_GIVEN, B_NONE, B_REVISION},
    {"max_revision", SEL_GIVEN, B_NONE, B_REVISION},
    {"range", SEL_GIVEN, B_MIN, B_MAX},
    {"fail_if_events_match", SEL_GIVEN, B_NONE, B_AFTER},
    {"stream_exists", SEL_STREAM, B_ONE, B_NONE},
    {"stream_does_not_exist", SEL_STREAM, B_NONE, B_ZERO},
    {"stream_max_revision", SEL_STREAM, B_NONE, B_REVISION},
    {"subject_exists", SEL_SUBJECT, B_ONE, B_NONE},
    {"subject_does_not_exist", SEL_SUBJECT, B_NONE, B_ZERO},
    {"subject_max_revision", SEL_SUBJECT, B_NONE, B_REVISION},
    {"subject_exists_on_stream", SEL_BOTH, B_ONE, B_NONE},
    {"subject_does_not_exist_on_stream", SEL_BOTH, B_NONE, B_ZERO},
    {"subject_max_revision_on_stream", SEL_BOTH, B_NONE, B_REVISION},
};

/* Appends ,"name":value for a bound; false when its member is missing or not a revision. */
static bool add_bound(struct slice c, enum bound b, const char *name, struct buf *out)
{
    uint64_t v = b == B_ONE ? 1 : 0;
    if (b == B_NONE) {
        return true;
    }
    if ((b == B_REVISION && !revision_of(c, "revision", &v)) ||
        (b == B_MIN && !revision_of(c, "min", &v)) ||
        (b == B_MAX && !revision_of(c, "max", &v))) {
        return false;
    }
    struct slice a;
    if (b == B_AFTER && jsonx_member(c, "after", &a) && !revision_of(c, "after", &v)) {
        return false;
    }
    buf_printf(out, ",\"%s\":%llu", name, (unsigned long long)v);
    return true;
}

/* The native selector of a form (nothing for SEL_ANY without one: every event). */
static int form_selector(struct slice c, const struct form *f, struct buf *out, char *why,
                         size_t cap)
{
    struct slice sel, s = {NULL, 0}, sub = {NULL, 0};
    if (f->sel == SEL_GIVEN || f->sel == SEL_ANY) {
        if (!jsonx_member(c, "selector", &sel)) {
            return f->sel == SEL_ANY ? 0 : say(why, cap, "this constraint has a selector");
        }
        return any_selector(sel, "selector", out, why, cap);
    }
    bool stream = f->sel != SEL_SUBJECT, subject = f->sel != SEL_STREAM;
    if ((stream && (!jsonx_member(c, "stream", &s) || jsonx_kind(s) != '"')) ||
        (subject && (!jsonx_member(c, "subject", &sub) || jsonx_kind(sub) != '"'))) {
        return say(why, cap, "this constraint names its stream and/or subject (strings)");
    }
    struct buf flat;
    buf_init(&flat);
    buf_adds(&flat, "{");
    if (s.ptr) {
        buf_adds(&flat, "\"stream\":");
        buf_add(&flat, s.ptr, s.len);
    }
    if (sub.ptr) {
        buf_adds(&flat, s.ptr ? ",\"subject\":" : "\"subject\":");
        buf_add(&flat, sub.ptr, sub.len);
    }
    buf_addc(&flat, '}');
    int rc = any_selector((struct slice){flat.ptr, flat.len}, "constraint", out, why, cap);
    buf_fini(&flat);
    return rc;
}

/* A constraint in one of FORMS as {"query":{"selector"?},"min"?,"max"?}. */
static int ce_form(struct slice c, const struct form *f, struct buf *out, char *why, size_t cap)
{
    struct buf sel;
    buf_init(&sel);
    int rc = form_selector(c, f, &sel, why, cap);
    if (!rc) {
        buf_adds(out, "{\"query\":{");
        if (sel.len) {
            buf_adds(out, "\"selector\":");
            buf_add(out, sel.ptr, sel.len);
        }
        buf_addc(out, '}');
        if (!add_bound(c, f->min, "min", out) || !add_bound(c, f->max, "max", out)) {
            rc = say(why, cap, "this constraint's revision (or min, max, after) is a whole "
                     "number");
        }
        buf_addc(out, '}');
    }
    buf_fini(&sel);
    return rc;
}

static int ce_condition(struct slice c, struct buf *out, char *why, size_t cap)
{
    struct slice t;
    if (jsonx_kind(c) != '{') {
        return say(why, cap, "a constraint is an object");
    }
    if (!jsonx_member(c, "type", &t)) { /* a native condition */
        jsonx_minify(c, out);
        return 0;
    }
    struct buf type;
    buf_init(&type);
    const struct form *f = NULL;
    if (jsonx_kind(t) == '"' && jsonx_string(t, &type) == 0 && type.ptr) {
        for (size_t i = 0; i < sizeof FORMS / sizeof FORMS[0] && !f; i++) {
            f = !strcmp(FORMS[i].type, type.ptr) ? &FORMS[i] : NULL;
        }
    }
    buf_fini(&type);
    if (!f) {
        return say(why, cap, "a constraint's type is min_revision, min, max, range, "
                   "fail_if_events_match or one of EvidentDB's (stream_exists, "
                   "subject_max_revision, ...)");
    }
    return ce_form(c, f, out, why, cap);
}

const struct logic_event_format es_cloudevents_format = {
    .name = ES_FORMAT_NAME,
    .render = es_event,
    .parse = ce_parse,
    .filter = ce_filter,
    .condition = ce_condition,
};
