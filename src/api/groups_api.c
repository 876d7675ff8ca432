#include "api/groups_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/out.h"
#include "ops/parse.h"
#include "ops/qparse.h"
#include "engine/groups.h"
#include "util/errors.h"

enum {
    GROUP_ACK_MAX = 1000,          /* positions per ack / nack / replay request */
    GROUP_ACK_TIMEOUT_DEFAULT = 30,
    GROUP_ACK_TIMEOUT_MAX = 3600,
    GROUP_RETRIES_DEFAULT = 5,
    GROUP_RETRIES_MAX = 100,
    GROUP_ANSWER_BYTES = 4 * 1024 * 1024, /* a pull answer stops growing past this */
};

int groups_parse_filter(struct slice text, struct filter *out)
{
    struct parse_error pe;
    return parse_filter_text(text, "filter", out, &pe) == 0 ? 0 : ERR_INVALID;
}

/* An optional whole number in [min, max] (dflt when absent). Answers 400 when bad. */
static bool member_u64(struct http_req *req, json_t *o, const char *name, uint64_t min,
                       uint64_t max, uint64_t dflt, uint64_t *out)
{
    json_t *v = json_object_get(o, name);
    if (!v) {
        *out = dflt;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
        (uint64_t)json_integer_value(v) > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "a whole number from %llu to %llu", (unsigned long long)min,
                 (unsigned long long)max);
        out_error(req, 400, "invalid_request", msg, name);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static void answer_group_error(struct http_req *req, int rc)
{
    if (rc == ERR_NOTFOUND) {
        out_error(req, 404, "subscription_not_found", "no such subscription", "subscription");
    } else {
        out_engine_error(req, rc);
    }
}

/* ---- definitions ---- */

/* The filter member as JSON text (validated); "" when absent. Answers 400 when bad. */
static bool take_filter(struct http_req *req, json_t *root, char **out)
{
    json_t *f = json_object_get(root, "filter");
    *out = NULL;
    if (!f || json_is_null(f)) {
        *out = xstrndup("", 0);
        return true;
    }
    char *text = json_is_object(f) ? json_dumps(f, JSON_COMPACT) : NULL;
    struct filter parsed;
    struct parse_error pe;
    if (!text || strlen(text) > GROUP_FILTER_BYTES) {
        out_error(req, 400, "invalid_request", "filter is an object as in POST /query (at most "
                  "16 KiB)", "filter");
        free(text);
        return false;
    }
    if (parse_filter_text((struct slice){text, strlen(text)}, "filter", &parsed, &pe) != 0) {
        out_parse_error(req, &pe);
        free(text);
        return false;
    }
    filter_fini(&parsed);
    *out = text;
    return true;
}

/* `from`: a position from 1, or "latest" (only new events); default 1. */
static bool take_start(struct http_req *req, struct db *db, json_t *root, uint64_t *out)
{
    json_t *v = json_object_get(root, "from");
    if (v && json_is_string(v) && strcmp(json_string_value(v), "latest") == 0) {
        *out = engine_db_head(db) + 1;
        return true;
    }
    if (v && !json_is_integer(v)) {
        out_error(req, 400, "invalid_request", "from is a position from 1 or \"latest\"",
                  "from");
        return false;
    }
    return member_u64(req, root, "from", 1, UINT64_MAX >> 1, 1, out);
}

void groups_api_create(struct http_req *req, struct db *db)
{
    static const char *const ALLOWED[] = {"name", "filter", "from", "ackTimeoutSeconds",
                                          "maxRetries"};
    json_t *root = out_body_object(req);
    if (!root) {
        return;
    }
    struct group_def def = {0};
    const char *name = json_string_value(json_object_get(root, "name"));
    char *filter = NULL;
    uint64_t timeout, retries;
    bool ok = out_only_members(req, root, ALLOWED, sizeof ALLOWED / sizeof ALLOWED[0], "");
    if (ok && (!name || !group_name_ok(name, strlen(name)))) {
        out_error(req, 400, "invalid_name", "subscription names are 1 to 64 of A-Z a-z 0-9 _ - .",
                  "name");
        ok = false;
    }
    ok = ok && take_filter(req, root, &filter) && take_start(req, db, root, &def.start) &&
         member_u64(req, root, "ackTimeoutSeconds", 1, GROUP_ACK_TIMEOUT_MAX,
                    GROUP_ACK_TIMEOUT_DEFAULT, &timeout) &&
         member_u64(req, root, "maxRetries", 0, GROUP_RETRIES_MAX, GROUP_RETRIES_DEFAULT,
                    &retries);
    if (ok) {
        snprintf(def.name, sizeof def.name, "%s", name);
        def.filter = (struct slice){filter, strlen(filter)};
        def.ack_timeout_s = (uint32_t)timeout;
        def.max_retries = (uint32_t)retries;
        int rc = engine_group_create(db, &def);
        if (rc == ERR_EXISTS) {
            out_error(req, 409, "subscription_exists", "a subscription with this name exists",
                      "name");
        } else if (rc == ERR_TOOBIG) {
            out_error(req, 507, "too_many_subscriptions", "at most 100 subscriptions per "
                      "database", NULL);
        } else if (rc) {
            out_engine_error(req, rc);
        } else {
            groups_api_list(req, db, def.name);
            /* (answered 200 by the listing: make it 201) */
        }
    }
    free(filter);
    json_decref(root);
}

struct list_ctx {
    struct buf b;
    size_t n;
};

static void on_info(void *arg, const struct group_info *g)
{
    struct list_ctx *lc = arg;
    struct buf *b = &lc->b;
    if (lc->n++) {
        buf_addc(b, ',');
    }
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, g->name, strlen(g->name));
    buf_adds(b, ",\"filter\":");
    buf_adds(b, g->filter[0] ? g->filter : "{}");
    buf_printf(b, ",\"ackTimeoutSeconds\":%u,\"maxRetries\":%u,\"checkpoint\":%llu,"
               "\"readTo\":%llu,\"pending\":%zu,\"leased\":%zu,\"parked\":%zu,",
               g->ack_timeout_s, g->max_retries, (unsigned long long)g->checkpoint,
               (unsigned long long)g->read_to - 1, g->pending, g->leased, g->parked);
    out_time_field(b, "created", g->created_us, false);
    buf_addc(b, '}');
}

void groups_api_list(struct http_req *req, struct db *db, const char *only)
{
    struct list_ctx lc = {.n = 0};
    buf_init(&lc.b);
    if (!only) {
        buf_adds(&lc.b, "{\"subscriptions\":[");
    }
    int rc = engine_group_list(db, only, on_info, &lc);
    if (rc) {
        buf_fini(&lc.b);
        answer_group_error(req, rc);
        return;
    }
    if (!only) {
        buf_adds(&lc.b, "]}");
    }
    bool created = strcmp(http_req_method(req), "POST") == 0;
    out_json(req, created ? 201 : 200, &lc.b);
}

void groups_api_delete(struct http_req *req, struct db *db, const char *name)
{
    int rc = engine_group_delete(db, name);
    if (rc) {
        answer_group_error(req, rc);
        return;
    }
    struct buf b;
    buf_init(&b);
    http_respond(req, 204, &b, NULL);
}

/* ---- consuming ---- */

struct pull_ctx {
    struct buf b;
    size_t n;
};

static int on_pulled(void *arg, const struct event_rec *ev, uint32_t attempt)
{
    struct pull_ctx *pc = arg;
    buf_adds(&pc->b, pc->n++ ? ",{\"attempt\":" : "{\"attempt\":");
    buf_add_u64(&pc->b, attempt);
    buf_adds(&pc->b, ",\"event\":");
    out_event(&pc->b, ev);
    buf_addc(&pc->b, '}');
    return pc->b.len >= GROUP_ANSWER_BYTES ? 1 : 0; /* full: the rest stays unleased */
}

void groups_api_pull(struct http_req *req, struct db *db, const char *name)
{
    static const char *const ALLOWED[] = {"consumer", "max"};
    json_t *root = out_body_object(req);
    if (!root) {
        return;
    }
    const char *consumer = json_string_value(json_object_get(root, "consumer"));
    uint64_t max;
    bool ok = out_only_members(req, root, ALLOWED, 2, "");
    if (ok && (!consumer || !group_name_ok(consumer, strlen(consumer)))) {
        out_error(req, 400, "invalid_request",
                  "consumer is an id of 1 to 64 of A-Z a-z 0-9 _ - .", "consumer");
        ok = false;
    }
    if (ok && member_u64(req, root, "max", 1, GROUP_PULL_MAX, 100, &max)) {
        struct pull_ctx pc = {.n = 0};
        buf_init(&pc.b);
        buf_adds(&pc.b, "{\"events\":[");
        int rc = engine_group_pull(db, name, consumer, max, on_pulled, &pc);
        if (rc) {
            buf_fini(&pc.b);
            answer_group_error(req, rc);
        } else {
            buf_adds(&pc.b, "]}");
            out_json(req, 200, &pc.b);
        }
    }
    json_decref(root);
}

/* The positions member: 1..GROUP_ACK_MAX whole numbers (required unless optional). Returns a
 * malloc'd array (count in *n), or NULL after answering 400; *n = 0 and a non-NULL empty
 * array when optional and absent. */
static uint64_t *take_positions(struct http_req *req, json_t *root, bool optional, size_t *n)
{
    json_t *arr = json_object_get(root, "positions");
    *n = 0;
    if (!arr && optional) {
        return xmalloc(sizeof(uint64_t));
    }
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > GROUP_ACK_MAX) {
        out_error(req, 400, "invalid_request", "positions is an array of 1 to 1000 positions",
                  "positions");
        return NULL;
    }
    uint64_t *pos = xmalloc(json_array_size(arr) * sizeof(*pos));
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            char f[40];
            snprintf(f, sizeof f, "positions[%zu]", i);
            out_error(req, 400, "invalid_request", "positions are whole numbers from 1", f);
            free(pos);
            return NULL;
        }
        pos[i] = (uint64_t)json_integer_value(v);
    }
    *n = json_array_size(arr);
    return pos;
}

void groups_api_ack(struct http_req *req, struct db *db, const char *name, bool nack)
{
    static const char *const ALLOWED[] = {"positions", "park"};
    json_t *root = out_body_object(req);
    if (!root) {
        return;
    }
    size_t n = 0, done = 0;
    json_t *park = json_object_get(root, "park");
    uint64_t *pos = NULL;
    if (!out_only_members(req, root, ALLOWED, nack ? 2 : 1, "")) {
        /* answered */
    } else if (park && !json_is_boolean(park)) {
        out_error(req, 400, "invalid_request", "park is true or false", "park");
    } else if ((pos = take_positions(req, root, false, &n)) != NULL) {
        int rc = nack ? engine_group_nack(db, name, pos, n, json_is_true(park), &done)
                      : engine_group_ack(db, name, pos, n, &done);
        if (rc) {
            answer_group_error(req, rc);
        } else {
            struct buf b;
            buf_init(&b);
            buf_printf(&b, "{\"%s\":%zu}", nack ? "rejected" : "acknowledged", done);
            out_json(req, 200, &b);
        }
    }
    free(pos);
    json_decref(root);
}

struct parked_ctx {
    struct buf b;
    size_t n;
};

static int on_parked(void *arg, const struct event_rec *ev)
{
    struct parked_ctx *pc = arg;
    if (pc->n++) {
        buf_addc(&pc->b, ',');
    }
    out_event(&pc->b, ev);
    return 0;
}

void groups_api_parked(struct http_req *req, struct db *db, const char *name)
{
    uint64_t from = 1, limit = 100;
    const char *f = http_req_query(req, "from"), *l = http_req_query(req, "limit");
    if ((f && (parse_u64(f, &from) != 0 || from == 0)) ||
        (l && (parse_u64(l, &limit) != 0 || limit == 0 || limit > 1000))) {
        out_error(req, 400, "invalid_parameter", "from is a position; limit is 1 to 1000",
                  f && (parse_u64(f, &from) != 0 || from == 0) ? "from" : "limit");
        return;
    }
    struct parked_ctx pc = {.n = 0};
    buf_init(&pc.b);
    buf_adds(&pc.b, "{\"events\":[");
    int rc = engine_group_parked(db, name, from, (size_t)limit, on_parked, &pc);
    if (rc) {
        buf_fini(&pc.b);
        answer_group_error(req, rc);
        return;
    }
    buf_adds(&pc.b, "]}");
    out_json(req, 200, &pc.b);
}

void groups_api_replay(struct http_req *req, struct db *db, const char *name)
{
    static const char *const ALLOWED[] = {"positions"};
    json_t *root = out_body_object(req);
    if (!root) {
        return;
    }
    size_t n = 0, done = 0;
    uint64_t *pos = NULL;
    if (out_only_members(req, root, ALLOWED, 1, "") &&
        (pos = take_positions(req, root, true, &n)) != NULL) {
        int rc = engine_group_replay(db, name, pos, n, &done);
        if (rc) {
            answer_group_error(req, rc);
        } else {
            struct buf b;
            buf_init(&b);
            buf_printf(&b, "{\"replayed\":%zu}", done);
            out_json(req, 200, &b);
        }
    }
    free(pos);
    json_decref(root);
}
