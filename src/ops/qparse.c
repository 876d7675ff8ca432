#include "ops/qparse.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/canon.h"
#include "util/errors.h"
#include "util/limits.h"
#include "util/timeutil.h"

/* Which field a list names, and how its values read. */
struct list_kind {
    enum filter_field field;
    bool patterns;     /* trailing '*' prefix (and leading '*' suffix when suffix) */
    bool suffix;       /* a leading '*' is a suffix pattern */
    bool each_atom;    /* every value its own atom (tags: all of) */
    size_t max_bytes;  /* longest value */
};

static const struct list_kind K_TYPES = {FF_TYPE, true, true, false, LIMIT_TYPE_BYTES};
static const struct list_kind K_STREAMS = {FF_STREAM, false, false, false,
                                           LIMIT_STREAM_NAME_BYTES};
static const struct list_kind K_CATEGORIES = {FF_CATEGORY, false, false, false,
                                              LIMIT_STREAM_NAME_BYTES};
static const struct list_kind K_TAGS = {FF_TAG, false, false, true, LIMIT_TAG_BYTES};
static const struct list_kind K_SUBJECTS = {FF_SUBJECT, true, false, false, LIMIT_SUBJECT_BYTES};

static void pq_init(struct parsed_query *out)
{
    memset(out, 0, sizeof(*out));
    filter_init(&out->filter);
    out->q.filter = &out->filter;
    out->q.limit = LIMIT_READ_DEFAULT;
    out->q.budget = QUERY_BUDGET;
}

void parsed_query_fini(struct parsed_query *pq)
{
    filter_fini(&pq->filter);
}

/* Reads one value of a list into *p. Returns 0 or ERR_INVALID. */
static int read_value(const struct list_kind *k, struct slice v, struct pattern *p)
{
    if (!engine_name_ok(v.ptr, v.len, k->max_bytes)) {
        return ERR_INVALID;
    }
    if (!k->patterns) {
        *p = (struct pattern){PAT_EXACT, v};
        return 0;
    }
    return pattern_parse(v, k->suffix, p);
}

/* Adds the atoms of values vals[0..n) of kind k to item it. */
static int add_values(struct filter *f, struct filter_item *it, const struct list_kind *k,
                      const struct pattern *pats, size_t n)
{
    if (!k->each_atom) {
        return filter_add_atom(f, it, k->field, pats, n);
    }
    for (size_t i = 0; i < n; i++) {
        int rc = filter_add_atom(f, it, k->field, &pats[i], 1);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static const char *kind_rule(const struct list_kind *k)
{
    if (k->field == FF_TYPE) {
        return "event types (exact, prefix.*, *.suffix or *)";
    }
    return k->patterns ? "non-empty strings (exact, or a prefix ending in *)" : "non-empty strings";
}

/* ---------------------------------------------------------------- GET parameters */

/* Appends the values of list parameter text to vals (decoded bytes, back to back) and their
 * end offsets to ends[*n..]: values are separated by commas; in a value `\,` is a comma and
 * `\\` a backslash. Returns 0, ERR_INVALID (another escape) or ERR_TOOBIG (more than max
 * values in all). */
static int split_list(const char *text, struct buf *vals, size_t *ends, size_t *n, size_t max)
{
    for (const char *p = text;; p++) {
        if (*p == '\\') {
            if (p[1] != ',' && p[1] != '\\') {
                return ERR_INVALID;
            }
            buf_addc(vals, *++p);
            continue;
        }
        if (*p && *p != ',') {
            buf_addc(vals, *p);
            continue;
        }
        if (*n == max) {
            return ERR_TOOBIG;
        }
        ends[(*n)++] = vals->len;
        if (!*p) {
            return 0;
        }
    }
}

/* Reads every occurrence of list parameter name into one atom of item it. */
static int param_list(struct filter *f, struct filter_item *it, const char *name,
                      param_fn *get, void *arg, const struct list_kind *k,
                      struct parse_error *err)
{
    struct pattern pats[FILTER_MAX_PATTERNS];
    size_t ends[FILTER_MAX_PATTERNS], n = 0;
    struct buf vals;
    buf_init(&vals);
    int rc = 0;
    const char *text;
    for (size_t nth = 0; !rc && (text = get(arg, name, nth)) != NULL; nth++) {
        rc = split_list(text, &vals, ends, &n, FILTER_MAX_PATTERNS);
    }
    for (size_t i = 0, start = 0; !rc && i < n; start = ends[i++]) {
        struct slice v = {vals.ptr + start, ends[i] - start};
        rc = read_value(k, v, &pats[i]);
    }
    if (!rc && add_values(f, it, k, pats, n) != 0) {
        rc = ERR_TOOBIG;
    }
    buf_fini(&vals);
    if (rc == ERR_TOOBIG) {
        return parse_fail(err, 400, "invalid_parameter", name, "at most %d values",
                          FILTER_MAX_PATTERNS);
    }
    if (rc) {
        return parse_fail(err, 400, "invalid_parameter", name,
                          "a comma-separated list of %s (in a value, \\, is a comma and "
                          "\\\\ a backslash)", kind_rule(k));
    }
    return 0;
}

static int param_u64(param_fn *get, void *arg, const char *name, bool *has, uint64_t *out,
                     struct parse_error *err)
{
    const char *s = get(arg, name, 0);
    *has = s != NULL;
    if (s && parse_u64(s, out) != 0) {
        return parse_fail(err, 400, "invalid_parameter", name,
                          "must be an unsigned decimal integer");
    }
    return 0;
}

static int param_time(param_fn *get, void *arg, const char *name, bool *has, int64_t *out,
                      struct parse_error *err)
{
    const char *s = get(arg, name, 0);
    *has = s != NULL;
    if (s && time_parse(s, strlen(s), out) != 0) {
        return parse_fail(err, 400, "invalid_parameter", name, "must be an RFC 3339 date-time");
    }
    return 0;
}

int parse_as_of_params(param_fn *get, void *arg, struct as_of *out, struct parse_error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = param_u64(get, arg, "asOf", &out->has_pos, &out->pos, err);
    if (!rc) rc = param_time(get, arg, "asOfTime", &out->has_time, &out->time_us, err);
    return rc;
}

static int params_range(param_fn *get, void *arg, struct parsed_query *pq,
                        struct parse_error *err)
{
    struct engine_query *q = &pq->q;
    struct filter *f = &pq->filter;
    const char *dir = get(arg, "direction", 0);
    if (dir && strcmp(dir, "forward") != 0 && strcmp(dir, "backward") != 0) {
        return parse_fail(err, 400, "invalid_parameter", "direction",
                          "direction is forward or backward");
    }
    q->backward = dir && strcmp(dir, "backward") == 0;
    bool has_limit;
    uint64_t limit = LIMIT_READ_DEFAULT;
    int rc = param_u64(get, arg, "limit", &has_limit, &limit, err);
    if (!rc && (limit < 1 || limit > LIMIT_READ_MAX)) {
        rc = parse_fail(err, 400, "invalid_parameter", "limit", "limit must be between 1 and %d",
                        LIMIT_READ_MAX);
    }
    q->limit = (size_t)limit;
    if (!rc) rc = param_u64(get, arg, "from", &q->has_from, &q->from, err);
    if (!rc) rc = param_u64(get, arg, "to", &q->has_to, &q->to, err);
    if (!rc && ((q->has_from && q->from == 0) || (q->has_to && q->to == 0))) {
        rc = parse_fail(err, 400, "invalid_parameter", q->has_from && !q->from ? "from" : "to",
                        "positions are integers from 1");
    }
    if (!rc) rc = param_time(get, arg, "recordedFrom", &q->has_recorded_from,
                             &q->recorded_from_us, err);
    if (!rc) rc = param_time(get, arg, "recordedTo", &q->has_recorded_to, &q->recorded_to_us,
                             err);
    if (!rc) rc = param_time(get, arg, "timeFrom", &f->has_time_from, &f->time_from_us, err);
    if (!rc) rc = param_time(get, arg, "timeTo", &f->has_time_to, &f->time_to_us, err);
    if (!rc) rc = parse_as_of_params(get, arg, &q->at, err);
    return rc;
}

int parse_query_params(param_fn *get, void *arg, struct parsed_query *out,
                       struct parse_error *err)
{
    static const struct {
        const char *name;
        const struct list_kind *kind;
    } LISTS[] = {{"types", &K_TYPES},   {"streams", &K_STREAMS}, {"category", &K_CATEGORIES},
                 {"tags", &K_TAGS},     {"subject", &K_SUBJECTS}};
    pq_init(out);
    struct filter_item *it = NULL;
    for (size_t i = 0; i < sizeof LISTS / sizeof LISTS[0]; i++) {
        if (!get(arg, LISTS[i].name, 0)) {
            continue;
        }
        if (!it) {
            it = filter_add_item(&out->filter);
        }
        int rc = param_list(&out->filter, it, LISTS[i].name, get, arg, LISTS[i].kind, err);
        if (rc) {
            return rc;
        }
    }
    return params_range(get, arg, out, err);
}

/* ---------------------------------------------------------------- POST body */

static int bad(struct parse_error *err, const char *field, const char *msg)
{
    return parse_fail(err, 400, "invalid_request", field, "%s", msg);
}

/* Reads array member `name` of obj (absent is fine) as a list of kind k into item *it (made
 * on first use). field is the member's path for errors. */
static int body_list(struct filter *f, struct filter_item **it, json_t *obj, const char *name,
                     const char *field, const struct list_kind *k, struct parse_error *err)
{
    json_t *arr = json_object_get(obj, name);
    if (!arr) {
        return 0;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be an array of %s", name, kind_rule(k));
    if (!json_is_array(arr) || json_array_size(arr) > FILTER_MAX_PATTERNS) {
        return json_is_array(arr) ? parse_fail(err, 400, "invalid_request", field,
                                               "at most %d values", FILTER_MAX_PATTERNS)
                                  : bad(err, field, msg);
    }
    struct pattern pats[FILTER_MAX_PATTERNS];
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        struct slice s = {json_string_value(v), json_string_length(v)};
        if (!json_is_string(v) || read_value(k, s, &pats[i]) != 0) {
            return bad(err, field, msg);
        }
    }
    if (n == 0) {
        return 0; /* an empty list does not restrict (DCB: no types = all types) */
    }
    if (!*it) {
        *it = filter_add_item(f);
    }
    if (!*it || add_values(f, *it, k, pats, n) != 0) {
        return bad(err, field, "too many values");
    }
    return 0;
}

/* The five lists of a clause object (top level or an item) into filter f as one item (none
 * when the object restricts nothing). prefix names the object in errors ("" or "items[3]."). */
static int body_clause(struct filter *f, json_t *obj, const char *prefix,
                       struct parse_error *err)
{
    static const struct {
        const char *name;
        const struct list_kind *kind;
    } LISTS[] = {{"types", &K_TYPES},   {"streams", &K_STREAMS}, {"categories", &K_CATEGORIES},
                 {"tags", &K_TAGS},     {"subjects", &K_SUBJECTS}};
    struct filter_item *it = NULL;
    for (size_t i = 0; i < sizeof LISTS / sizeof LISTS[0]; i++) {
        char field[64];
        snprintf(field, sizeof field, "%s%s", prefix, LISTS[i].name);
        int rc = body_list(f, &it, obj, LISTS[i].name, field, LISTS[i].kind, err);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int body_items(json_t *items, struct filter *out, struct parse_error *err)
{
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > FILTER_MAX_ITEMS) {
        return parse_fail(err, 400, "invalid_request", "items",
                          "items must be an array of 1 to %d objects", FILTER_MAX_ITEMS);
    }
    static const char *const ALLOWED[] = {"types", "streams", "categories", "tags", "subjects"};
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *o = json_array_get(items, i);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "items[%zu]", i);
        if (!json_is_object(o)) {
            return bad(err, prefix, "each item must be an object");
        }
        const char *key;
        json_t *val;
        json_object_foreach(o, key, val) {
            bool ok = false;
            for (size_t k = 0; k < sizeof ALLOWED / sizeof ALLOWED[0]; k++) {
                ok = ok || strcmp(key, ALLOWED[k]) == 0;
            }
            if (!ok) {
                char field[96];
                snprintf(field, sizeof field, "%s.%.48s", prefix, key);
                return bad(err, field, "unknown member");
            }
        }
        struct filter one;
        filter_init(&one);
        strcat(prefix, ".");
        int rc = body_clause(&one, o, prefix, err);
        if (!rc && one.nitems == 0) {
            filter_add_item(&one); /* an item restricting nothing matches every event */
        }
        if (!rc) rc = filter_or(out, &one) ? bad(err, "items", "too many items") : 0;
        filter_fini(&one);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

/* ---- EvidentSource selectors ---- */

static int selector_leaf(json_t *sel, bool prefix, const char *field, struct filter *out,
                         struct parse_error *err)
{
    json_t *attr = json_object_get(sel, "attr");
    if (!json_is_object(attr) || json_object_size(attr) != 1) {
        return bad(err, field, "attr must be an object with one of stream, subject, event_type");
    }
    const char *key = json_object_iter_key(json_object_iter(attr));
    json_t *v = json_object_iter_value(json_object_iter(attr));
    enum filter_field ff;
    size_t max;
    if (strcmp(key, "stream") == 0) {
        ff = FF_STREAM, max = LIMIT_STREAM_NAME_BYTES;
    } else if (strcmp(key, "subject") == 0) {
        ff = FF_SUBJECT, max = LIMIT_SUBJECT_BYTES;
    } else if (strcmp(key, "event_type") == 0) {
        ff = FF_TYPE, max = LIMIT_TYPE_BYTES;
    } else {
        return bad(err, field, "attr must be an object with one of stream, subject, event_type");
    }
    struct pattern p;
    if (json_is_null(v) && ff == FF_SUBJECT && !prefix) {
        p = (struct pattern){PAT_NONE, {"", 0}};
    } else if (json_is_string(v) &&
               engine_name_ok(json_string_value(v), json_string_length(v), max)) {
        p = (struct pattern){prefix ? PAT_PREFIX : PAT_EXACT,
                             {json_string_value(v), json_string_length(v)}};
    } else {
        return bad(err, field, "the attribute value must be a non-empty string");
    }
    return filter_add_atom(out, filter_add_item(out), ff, &p, 1);
}

static int selector(json_t *sel, int depth, const char *field, struct filter *out,
                    struct parse_error *err)
{
    if (depth > SELECTOR_MAX_DEPTH) {
        return parse_fail(err, 400, "invalid_request", field, "selectors nest at most %d deep",
                          SELECTOR_MAX_DEPTH);
    }
    const char *type = json_string_value(json_object_get(sel, "type"));
    if (!json_is_object(sel) || !type) {
        return bad(err, field, "a selector is an object with a type");
    }
    if (strcmp(type, "equals") == 0 || strcmp(type, "starts_with") == 0) {
        return selector_leaf(sel, type[0] == 's', field, out, err);
    }
    bool is_and = strcmp(type, "and") == 0;
    if (!is_and && strcmp(type, "or") != 0) {
        return bad(err, field, "selector type is equals, starts_with, and or or");
    }
    json_t *subs = json_object_get(sel, "selectors");
    if (!json_is_array(subs) || json_array_size(subs) == 0) {
        return bad(err, field, "and/or selectors need a non-empty selectors array");
    }
    int rc = 0;
    for (size_t i = 0; i < json_array_size(subs) && !rc; i++) {
        char sub[96];
        snprintf(sub, sizeof sub, "%.60s.selectors[%zu]", field, i);
        struct filter one;
        filter_init(&one);
        rc = selector(json_array_get(subs, i), depth + 1, sub, &one, err);
        if (!rc && i == 0) {
            rc = filter_or(out, &one);
        } else if (!rc) {
            rc = is_and ? filter_and(out, &one) : filter_or(out, &one);
        }
        if (rc == ERR_TOOBIG) {
            rc = parse_fail(err, 400, "invalid_request", "selector",
                            "the selector expands to more than %d alternatives",
                            FILTER_MAX_ITEMS);
        }
        filter_fini(&one);
    }
    return rc;
}

/* ---- numbers, times and the whole body ---- */

static int body_u64(json_t *root, const char *name, bool *has, uint64_t *out,
                    struct parse_error *err)
{
    json_t *v = json_object_get(root, name);
    *has = v != NULL;
    if (!v) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return bad(err, name, "must be a non-negative integer");
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int body_time(json_t *root, const char *name, bool *has, int64_t *out,
                     struct parse_error *err)
{
    json_t *v = json_object_get(root, name);
    *has = v != NULL;
    if (v && (!json_is_string(v) ||
              time_parse(json_string_value(v), json_string_length(v), out) != 0)) {
        return bad(err, name, "must be an RFC 3339 date-time string");
    }
    return 0;
}

static int body_range(json_t *root, struct parsed_query *pq, struct parse_error *err)
{
    struct engine_query *q = &pq->q;
    struct filter *f = &pq->filter;
    json_t *dir = json_object_get(root, "direction");
    const char *d = json_string_value(dir);
    if (dir && (!d || (strcmp(d, "forward") != 0 && strcmp(d, "backward") != 0))) {
        return bad(err, "direction", "direction is forward or backward");
    }
    q->backward = d && strcmp(d, "backward") == 0;
    bool has;
    uint64_t limit = LIMIT_READ_DEFAULT;
    int rc = body_u64(root, "limit", &has, &limit, err);
    if (!rc && (limit < 1 || limit > LIMIT_READ_MAX)) {
        rc = parse_fail(err, 400, "invalid_request", "limit", "limit must be between 1 and %d",
                        LIMIT_READ_MAX);
    }
    q->limit = (size_t)limit;
    if (!rc) rc = body_u64(root, "from", &q->has_from, &q->from, err);
    if (!rc) rc = body_u64(root, "to", &q->has_to, &q->to, err);
    if (!rc && ((q->has_from && q->from == 0) || (q->has_to && q->to == 0))) {
        rc = parse_fail(err, 400, "invalid_request", q->has_from && !q->from ? "from" : "to",
                        "positions are integers from 1");
    }
    if (!rc) rc = body_u64(root, "asOf", &q->at.has_pos, &q->at.pos, err);
    if (!rc) rc = body_time(root, "asOfTime", &q->at.has_time, &q->at.time_us, err);
    if (!rc) rc = body_time(root, "recordedFrom", &q->has_recorded_from, &q->recorded_from_us,
                            err);
    if (!rc) rc = body_time(root, "recordedTo", &q->has_recorded_to, &q->recorded_to_us, err);
    if (!rc) rc = body_time(root, "timeFrom", &f->has_time_from, &f->time_from_us, err);
    if (!rc) rc = body_time(root, "timeTo", &f->has_time_to, &f->time_to_us, err);
    return rc;
}

static int check_members(json_t *root, struct parse_error *err)
{
    static const char *const ALLOWED[] = {
        "types",     "streams",    "categories", "tags",       "subjects", "items",
        "selector",  "from",       "to",         "direction",  "limit",    "recordedFrom",
        "recordedTo", "timeFrom",  "timeTo",     "asOf",       "asOfTime"};
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool ok = false;
        for (size_t k = 0; k < sizeof ALLOWED / sizeof ALLOWED[0]; k++) {
            ok = ok || strcmp(key, ALLOWED[k]) == 0;
        }
        if (!ok) {
            char field[64];
            snprintf(field, sizeof field, "%.60s", key);
            return bad(err, field, "unknown member");
        }
    }
    if (json_object_get(root, "items") && json_object_get(root, "selector")) {
        return bad(err, "selector", "give items or selector, not both");
    }
    return 0;
}

static int body_filter(json_t *root, struct parsed_query *pq, struct parse_error *err)
{
    int rc = body_clause(&pq->filter, root, "", err);
    json_t *items = json_object_get(root, "items");
    json_t *sel = json_object_get(root, "selector");
    if (rc || (!items && !sel)) {
        return rc;
    }
    struct filter alt;
    filter_init(&alt);
    rc = items ? body_items(items, &alt, err) : selector(sel, 1, "selector", &alt, err);
    if (!rc && filter_and(&pq->filter, &alt) != 0) {
        rc = bad(err, items ? "items" : "selector", "too many alternatives");
    }
    filter_fini(&alt);
    return rc;
}

int parse_query_body(struct slice body, struct parsed_query *out, struct parse_error *err)
{
    pq_init(out);
    json_t *root;
    int rc = parse_json_object(body, (void **)&root, err);
    if (rc) {
        return rc;
    }
    rc = check_members(root, err);
    if (!rc) rc = body_filter(root, out, err);
    if (!rc) rc = body_range(root, out, err);
    json_decref(root);
    return rc;
}

/* ---- filters inside append conditions ---- */

static int prefixed(int rc, const char *prefix, struct parse_error *err)
{
    if (rc) {
        char f[sizeof err->field];
        snprintf(f, sizeof f, "%.40s%s%.54s", prefix, err->field[0] ? "." : "", err->field);
        memcpy(err->field, f, sizeof f);
        err->code = "invalid_request";
    }
    return rc;
}

int parse_filter_text(struct slice text, const char *field, struct filter *out,
                      struct parse_error *err)
{
    static const char *const ALLOWED[] = {"types", "streams", "categories", "tags",
                                          "subjects", "items", "selector"};
    json_error_t je;
    json_t *root = json_loadb(text.ptr, text.len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return parse_fail(err, 400, "invalid_request", field,
                          "a query object (types, streams, categories, tags, subjects, items "
                          "or selector)");
    }
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        bool ok = false;
        for (size_t k = 0; k < sizeof ALLOWED / sizeof ALLOWED[0]; k++) {
            ok = ok || strcmp(key, ALLOWED[k]) == 0;
        }
        if (!ok && !rc) {
            char f[64];
            snprintf(f, sizeof f, "%.60s", key);
            rc = bad(err, f, "unknown member");
        }
    }
    if (!rc && json_object_get(root, "items") && json_object_get(root, "selector")) {
        rc = bad(err, "selector", "give items or selector, not both");
    }
    struct parsed_query pq;
    pq_init(&pq);
    if (!rc) rc = body_filter(root, &pq, err);
    json_decref(root);
    if (!rc) {
        *out = pq.filter;
    } else {
        parsed_query_fini(&pq);
    }
    return prefixed(rc, field, err);
}
