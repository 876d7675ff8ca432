/* j17 listeners (docs/dialects/j17.md, "Listeners"): each listener of a spec is a webhook of
 * the environment's database (engine/webhooks.h) named "j17.l.<listener>", in the webhook
 * format "j17": one event per POST, signed with HMAC-SHA256 of the body under the listener's
 * secret in X-J17-Signature (hex), retried after 5 s, 25 s and 125 s. Its meta object keeps
 * the listener's definition: a deploy keeps a listener whose definition did not change (its
 * checkpoint with it), replaces one that changed and deletes those the spec dropped. */
#include "dialect/j17/j_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/webhooks.h"
#include "json/jsonx.h"
#include "util/errors.h"
#include "util/log.h"

#define HOOK_PREFIX "j17.l."

enum {
    LISTENER_RETRIES = 3,          /* after the first POST */
    LISTENER_BACKOFF_MS = 5000,    /* then 25 s, 125 s */
    LISTENER_BACKOFF_FACTOR = 5,
};

/* ---- the format ---- */

/* True when the JSON array arr (ptr NULL: absent, any) holds the string want. */
static bool listed(struct slice arr, const char *want, size_t n)
{
    if (!arr.ptr) {
        return true;
    }
    struct slice item;
    size_t pos = 0;
    struct buf s;
    buf_init(&s);
    bool found = false;
    while (!found && jsonx_next_item(arr, &pos, &item)) {
        buf_reset(&s);
        found = jsonx_string(item, &s) == 0 && s.len == n && !memcmp(s.ptr, want, n);
    }
    buf_fini(&s);
    return found;
}

static bool want(struct slice meta, const struct event_rec *ev)
{
    const char *colon = memchr(ev->stream.ptr, ':', ev->stream.len);
    if (!meta.ptr || !colon || colon == ev->stream.ptr) {
        return false; /* not an aggregate's event */
    }
    size_t tlen = (size_t)(colon - ev->stream.ptr);
    char pair[2 * J17_NAME_BYTES + 2];
    if (tlen > J17_NAME_BYTES || ev->type.len > J17_NAME_BYTES) {
        return false;
    }
    struct slice aggs, evts;
    if (!jsonx_member(meta, "aggregate_types", &aggs)) {
        aggs.ptr = NULL;
    }
    if (!jsonx_member(meta, "event_types", &evts)) {
        evts.ptr = NULL;
    }
    int n = snprintf(pair, sizeof pair, "%.*s.%.*s", (int)tlen, ev->stream.ptr,
                     (int)ev->type.len, ev->type.ptr);
    return listed(aggs, ev->stream.ptr, tlen) && listed(evts, pair, (size_t)n);
}

static void hook_body(struct buf *out, const char *database, const char *webhook,
                      struct slice events, uint32_t attempt)
{
    const char *name = strncmp(webhook, HOOK_PREFIX, strlen(HOOK_PREFIX)) == 0
                           ? webhook + strlen(HOOK_PREFIX) : webhook;
    char instance[LIMIT_DB_NAME_BYTES + 1];
    enum j17_env env = j_db_env(database, instance, sizeof instance);
    buf_adds(out, "{\"listener\":");
    buf_add_json_str(out, name, strlen(name));
    buf_adds(out, ",\"instance\":");
    buf_add_json_str(out, instance, strlen(instance));
    buf_printf(out, ",\"environment\":\"%s\"", j_env_name(env));
    buf_printf(out, ",\"attempt\":%u,\"event\":", attempt);
    buf_add(out, events.ptr, events.len); /* batch 1: one event */
    buf_addc(out, '}');
}

const struct webhook_format j17_webhook_format = {
    .name = "j17",
    .batch = 1,
    .sign = false,
    .event = j17_event_json,
    .body = hook_body,
    .want = want,
    .signature_header = "X-J17-Signature",
    .backoff_factor = LISTENER_BACKOFF_FACTOR,
};

/* ---- deploys ---- */

/* The meta object of listener l: what it delivers and where (the secret is the webhook's
 * alone; engine_webhook_signs_with tells whether it changed). */
static void listener_meta(const struct j17_listener *l, struct buf *out)
{
    json_t *m = json_object();
    json_object_set_new(m, "url", json_string(j17_listener_url(l)));
    const json_t *aggs = j17_listener_aggregate_types(l);
    const json_t *evts = j17_listener_event_types(l);
    if (aggs) {
        json_object_set_new(m, "aggregate_types", json_deep_copy(aggs));
    }
    if (evts) {
        json_object_set_new(m, "event_types", json_deep_copy(evts));
    }
    char *t = json_dumps(m, JSON_COMPACT);
    buf_adds(out, t);
    free(t);
    json_decref(m);
}

int j_listeners_check(const struct j17_spec *s, struct engine *e, struct j17_problems *pr)
{
    memset(pr, 0, sizeof *pr);
    for (size_t i = 0; i < j17_spec_listener_count(s); i++) {
        const struct j17_listener *l = j17_spec_listener_at(s, i);
        const char *secret = j17_listener_secret(l);
        char why[160] = "";
        if (!secret || strlen(secret) >= WEBHOOK_SECRET_TEXT) {
            snprintf(why, sizeof why, "a listener needs a secret of 1 to %d bytes (deliveries "
                     "are signed with it)", WEBHOOK_SECRET_TEXT - 1);
        } else if (engine_webhook_url_check(e, j17_listener_url(l), why, sizeof why) == 0) {
            continue;
        }
        if (pr->count < J17_PROBLEMS_MAX) {
            struct j17_problem *p = &pr->items[pr->count++];
            snprintf(p->path, sizeof p->path, "listeners.%s.%s", j17_listener_name(l),
                     !secret || strlen(secret) >= WEBHOOK_SECRET_TEXT ? "secret" : "url");
            snprintf(p->msg, sizeof p->msg, "%s", why);
        }
    }
    return pr->count ? ERR_INVALID : 0;
}

/* The names and meta texts of db's j17 webhooks, from their description. */
struct hooks {
    json_t *list; /* owned: the described array */
};

/* The description of webhook name in h (borrowed), or NULL; *text gets its meta's text
 * (owned, NULL when it has none). */
static const json_t *find_hook(const struct hooks *h, const char *name, char **text)
{
    size_t i;
    json_t *w;
    *text = NULL;
    json_array_foreach(h->list, i, w) {
        const char *n = json_string_value(json_object_get(w, "name"));
        if (n && !strcmp(n, name)) {
            json_t *m = json_object_get(w, "meta");
            *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
            return w;
        }
    }
    return NULL;
}

static void hooks_read(struct db *db, struct hooks *h)
{
    struct buf b;
    buf_init(&b);
    buf_addc(&b, '['); /* the description is the objects, comma-separated */
    h->list = NULL;
    if (engine_webhook_describe(db, NULL, false, &b) == 0) {
        buf_addc(&b, ']');
        h->list = json_loadb(b.ptr, b.len, 0, NULL);
    }
    if (!json_is_array(h->list)) {
        json_decref(h->list);
        h->list = json_array();
    }
    buf_fini(&b);
}

/* Creates listener l's webhook delivering from position start (0: the database's next);
 * false with a warning appended when it could not. */
static bool create(struct db *db, const struct j17_listener *l, const char *name,
                   struct slice meta, uint64_t start, struct buf *warn)
{
    struct db_info in = {0};
    engine_db_info(db, &in);
    struct webhook_def d = {.url = j17_listener_url(l), .format = "j17", .meta = meta,
                            .max_attempts = 1 + LISTENER_RETRIES,
                            .backoff_ms = LISTENER_BACKOFF_MS,
                            .start = start ? start : in.head + 1,
                            .secret = j17_listener_secret(l)};
    snprintf(d.name, sizeof d.name, "%.*s", (int)sizeof d.name - 1, name);
    char secret[WEBHOOK_SECRET_TEXT], why[160] = "", msg[300];
    int rc = engine_webhook_create(db, &d, secret, why, sizeof why);
    if (rc) {
        snprintf(msg, sizeof msg, "listener %s not made: %s%s%s", j17_listener_name(l),
                 err_name(rc), why[0] ? ": " : "", why);
        log_warn("j17 %s of %s", msg, engine_db_name(db));
        buf_adds(warn, warn->len ? "," : "");
        buf_add_json_str(warn, msg, strlen(msg));
    }
    return rc == 0;
}

/* The next position webhook w (its description) would deliver: its checkpoint + 1. */
static uint64_t next_of(const json_t *w)
{
    json_t *c = json_object_get(w, "checkpoint");
    return json_is_integer(c) ? (uint64_t)json_integer_value(c) + 1 : 0;
}

size_t j_listeners_sync(struct db *db, const struct j17_spec *s, struct buf *warn)
{
    struct hooks h;
    hooks_read(db, &h);
    char name[80];
    size_t failed = 0;
    for (size_t i = 0; i < j17_spec_listener_count(s); i++) {
        const struct j17_listener *l = j17_spec_listener_at(s, i);
        snprintf(name, sizeof name, "%s%s", HOOK_PREFIX, j17_listener_name(l));
        struct buf meta;
        buf_init(&meta);
        listener_meta(l, &meta);
        char *old;
        const json_t *w = find_hook(&h, name, &old);
        uint64_t start = 0;
        const char *secret = j17_listener_secret(l);
        if (w && (!old || strcmp(old, meta.ptr) != 0 ||
                  (secret && !engine_webhook_signs_with(db, name, secret)))) {
            start = next_of(w); /* the changed one goes on where the old one stood */
            engine_webhook_delete(db, name);
            w = NULL;
        }
        if (!w && !create(db, l, name, (struct slice){meta.ptr, meta.len}, start, warn)) {
            failed++;
        }
        free(old);
        buf_fini(&meta);
    }
    size_t k;
    json_t *hw;
    json_array_foreach(h.list, k, hw) { /* the listeners the spec dropped */
        const char *n = json_string_value(json_object_get(hw, "name"));
        if (n && !strncmp(n, HOOK_PREFIX, strlen(HOOK_PREFIX)) &&
            !j17_spec_listener(s, (struct slice){n + strlen(HOOK_PREFIX),
                                                 strlen(n + strlen(HOOK_PREFIX))})) {
            engine_webhook_delete(db, n);
        }
    }
    json_decref(h.list);
    return failed;
}
