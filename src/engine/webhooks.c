#define _GNU_SOURCE /* pthread_setname_np */
#include "engine/webhooks.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/delivery.h"
#include "engine/cursor.h"
#include "engine/engine_int.h"
#include "engine/groups.h"
#include "query/filter.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

enum { SECRET_TEXT = DELIVERY_SECRET_TEXT };
_Static_assert((int)WEBHOOK_URL_BYTES == (int)DELIVERY_URL_BYTES, "the API checks this limit");

/* One delivery attempt's outcome, kept in the log. */
struct delivery {
    char id[UUID_TEXT_LEN + 1];  /* webhook-id: the same for every attempt of a batch */
    uint64_t first, last;        /* positions of the batch */
    uint32_t attempt;
    int status;                  /* HTTP status, 0 when none */
    char error[160];             /* "" on success */
    int64_t at_us;
};

struct webhook {
    struct db *db;
    char name[65];
    char *url;                         /* "" when record_only */
    const struct webhook_format *format; /* NULL: native */
    char *meta;                        /* its maker's JSON object, or NULL */
    bool record_only;                  /* nothing to deliver: no thread */
    char *filter_text;
    struct filter filter;
    char *headers[WEBHOOK_HEADERS_MAX];
    size_t nheaders;
    uint32_t max_attempts, backoff_ms;
    char secret[SECRET_TEXT], old_secret[SECRET_TEXT];
    int64_t old_until_us;              /* the old secret signs until then */
    uint64_t checkpoint;               /* every position <= it was delivered or parked */
    struct delivery log[WEBHOOK_LOG];  /* ring */
    size_t nlog, log_at;
    uint64_t (*parked)[2];             /* parked batches: first, last */
    size_t nparked;
    uint64_t delivered;                /* events delivered since start */
    struct engine_cursor *cur;         /* reads the log after the checkpoint (delivery thread
                                          only; opened by start, closed by stop) */
    pthread_t thread;
    bool running;
    bool stop;                         /* atomic: the thread must end */
    pthread_mutex_t wmu;               /* with cv: the thread's naps (never held for I/O) */
    pthread_cond_t cv;
};

/* ---- durability: webhooks.json ---- */

static json_t *hook_json(const struct webhook *w)
{
    json_t *headers = json_array(), *parked = json_array(), *log = json_array();
    for (size_t i = 0; i < w->nheaders; i++) {
        json_array_append_new(headers, json_string(w->headers[i]));
    }
    for (size_t i = 0; i < w->nparked; i++) {
        json_array_append_new(parked, json_pack("[I,I]", (json_int_t)w->parked[i][0],
                                                (json_int_t)w->parked[i][1]));
    }
    for (size_t i = 0; i < w->nlog; i++) {
        const struct delivery *d = &w->log[(w->log_at + WEBHOOK_LOG - w->nlog + i) % WEBHOOK_LOG];
        json_array_append_new(log, json_pack("{s:s,s:I,s:I,s:I,s:i,s:s,s:I}", "id", d->id,
                                             "first", (json_int_t)d->first, "last",
                                             (json_int_t)d->last, "attempt",
                                             (json_int_t)d->attempt, "status", d->status,
                                             "error", d->error, "atUs", (json_int_t)d->at_us));
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:s,s:s,s:I,s:I,s:o,s:o}", "name", w->name,
                          "url", w->url, "filter", w->filter_text, "headers", headers,
                          "maxAttempts", (json_int_t)w->max_attempts, "backoffMs",
                          (json_int_t)w->backoff_ms, "secret", w->secret, "oldSecret",
                          w->old_secret, "oldUntilUs", (json_int_t)w->old_until_us,
                          "checkpoint", (json_int_t)w->checkpoint, "parked", parked, "log", log);
    if (w->format) {
        json_object_set_new(o, "format", json_string(w->format->name));
    }
    if (w->meta) {
        json_object_set_new(o, "meta", json_loads(w->meta, 0, NULL));
    }
    if (w->record_only) {
        json_object_set_new(o, "recordOnly", json_true());
    }
    return o;
}

/* webhooks.json's document (statefile_render_fn; under hooks_mu). */
static json_t *render_hooks(void *arg)
{
    struct db *db = arg;
    json_t *arr = json_array();
    for (size_t i = 0; i < db->nhooks; i++) {
        json_array_append_new(arr, hook_json(db->hooks[i]));
    }
    return json_pack("{s:o}", "webhooks", arr);
}

/* Rewrites webhooks.json (caller holds hooks_mu). */
static int save(struct db *db)
{
    return statefile_save(&db->hooks_file);
}

static void save_undone(struct db *db)
{
    statefile_save_undone(&db->hooks_file);
}

/* ---- delivery ---- */

static void add_log(struct webhook *w, const struct delivery *d)
{
    w->log[w->log_at] = *d;
    w->log_at = (w->log_at + 1) % WEBHOOK_LOG;
    w->nlog += w->nlog < WEBHOOK_LOG;
}

struct batch {
    struct db *db;
    const struct webhook_format *format; /* the webhook's, or NULL */
    const char *meta;   /* the webhook's meta text, or NULL */
    struct buf events;  /* JSON objects, comma-separated */
    size_t n;
    uint64_t first, last;
};

static int on_batch_event(void *arg, const struct event_rec *ev)
{
    struct batch *b = arg;
    if (b->format && b->format->want &&
        !b->format->want((struct slice){b->meta, b->meta ? strlen(b->meta) : 0}, ev)) {
        return 0; /* passed over: the checkpoint moves past it */
    }
    if (b->n++) {
        buf_addc(&b->events, ',');
    } else {
        b->first = ev->position;
    }
    b->last = ev->position;
    if (b->format) {
        b->format->event(&b->events, ev);
    } else {
        b->db->e->format_event(&b->events, ev);
    }
    return 0;
}

/* The signing secrets as of one attempt (copied under the lock: a rotation may run). */
struct secrets {
    char now[SECRET_TEXT], old[SECRET_TEXT];
    int64_t old_until_us;
};

/* One POST of body (delivery/delivery.h) with w's URL, headers and signing. */
static void post_once(struct webhook *w, const struct secrets *keys, const struct buf *body,
                      const char *id, uint32_t attempt, struct delivery_result *res)
{
    char attempt_line[48];
    snprintf(attempt_line, sizeof attempt_line, "X-Annals-Attempt: %u", attempt);
    const char *headers[WEBHOOK_HEADERS_MAX + 1] = {attempt_line};
    for (size_t i = 0; i < w->nheaders; i++) {
        headers[i + 1] = w->headers[i];
    }
    bool old_valid = keys->old[0] && time_now_us() < keys->old_until_us;
    struct delivery_request rq = {
        .url = w->url, .allow = w->db->e->webhook_allow,
        .body = {body->ptr, body->len}, .headers = headers, .nheaders = w->nheaders + 1,
        .signing = !w->format || w->format->sign ? DELIVERY_STANDARD_WEBHOOKS
                   : w->format->signature_header ? DELIVERY_HMAC_HEX
                                                 : DELIVERY_UNSIGNED,
        .signature_header = w->format ? w->format->signature_header : NULL,
        .msg_id = id, .secret = keys->now, .old_secret = old_valid ? keys->old : NULL,
        .cancel = &w->stop};
    delivery_post(&rq, res);
}

static bool stopping(const struct webhook *w)
{
    return __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
}

/* Waits up to ms, or until stopped (commits do not end it: backoffs and pauses after a
 * storage error). Takes no lock but w->wmu, so the writer thread telling of the database's
 * deletion never waits for a delivery or a file write. */
static void nap(struct webhook *w, uint64_t ms)
{
    struct timespec ts = time_deadline_ms(ms);
    pthread_mutex_lock(&w->wmu);
    while (!stopping(w)) {
        if (pthread_cond_timedwait(&w->cv, &w->wmu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&w->wmu);
}

/* Parks batch b (caller holds hooks_mu). */
static void park_batch(struct webhook *w, const struct batch *b, uint32_t attempts)
{
    if (w->nparked == WEBHOOK_PARKED_MAX) {
        memmove(w->parked, w->parked + 1, (w->nparked - 1) * sizeof(*w->parked));
        w->nparked--;
    }
    w->parked = xrealloc(w->parked, (w->nparked + 1) * sizeof(*w->parked));
    w->parked[w->nparked][0] = b->first;
    w->parked[w->nparked++][1] = b->last;
    log_warn("webhook %s: events %llu..%llu parked after %u attempts", w->name,
             (unsigned long long)b->first, (unsigned long long)b->last, attempts);
}

/* Delivers one batch with retries; true when delivered, false when parked or stopping. */
static bool deliver(struct webhook *w, struct batch *b)
{
    char id[UUID_TEXT_LEN + 1];
    uint8_t raw[16];
    uuid_v7(time_now_us(), raw);
    uuid_format(raw, id);
    struct db *db = w->db;
    for (uint32_t attempt = 1;; attempt++) {
        struct buf body;
        buf_init(&body);
        if (w->format) {
            w->format->body(&body, db->name, w->name, (struct slice){b->events.ptr, b->events.len},
                            attempt);
        } else {
            buf_printf(&body, "{\"webhook\":\"%s\",\"deliveryId\":\"%s\",\"attempt\":%u,"
                       "\"events\":[", w->name, id, attempt);
            buf_add(&body, b->events.ptr, b->events.len);
            buf_adds(&body, "]}");
        }
        struct delivery d = {.first = b->first, .last = b->last, .attempt = attempt,
                             .at_us = time_now_us()};
        snprintf(d.id, sizeof d.id, "%s", id);
        struct secrets keys;
        pthread_mutex_lock(&db->hooks_mu); /* a rotation may change them meanwhile */
        memcpy(keys.now, w->secret, sizeof keys.now);
        memcpy(keys.old, w->old_secret, sizeof keys.old);
        keys.old_until_us = w->old_until_us;
        pthread_mutex_unlock(&db->hooks_mu);
        struct delivery_result res;
        post_once(w, &keys, &body, id, attempt, &res);
        buf_fini(&body);
        d.status = res.status;
        snprintf(d.error, sizeof d.error, "%s", res.error);
        bool ok = res.ok;
        bool give_up = !ok && !stopping(w) && (!res.retry || attempt >= w->max_attempts);
        pthread_mutex_lock(&db->hooks_mu);
        add_log(w, &d);
        if (give_up) {
            park_batch(w, b, attempt);
        }
        pthread_mutex_unlock(&db->hooks_mu);
        if (ok || give_up || stopping(w)) {
            return ok;
        }
        nap(w, w->format && w->format->backoff_factor
                   ? delivery_backoff_factor_ms(w->backoff_ms, w->format->backoff_factor, attempt)
                   : delivery_backoff_ms(w->backoff_ms, attempt));
        if (stopping(w)) {
            return false;
        }
    }
}

/* Moves the checkpoint to done after a batch of n events (delivered, or parked), saving it
 * when the batch had events. */
static void advance(struct webhook *w, uint64_t done, size_t n, bool delivered)
{
    struct db *db = w->db;
    pthread_mutex_lock(&db->hooks_mu);
    if (done > w->checkpoint) {
        w->checkpoint = done;
        w->delivered += delivered ? n : 0;
        if (n) {
            save(db); /* the batch is delivered or parked */
        }
    }
    pthread_mutex_unlock(&db->hooks_mu);
}

/* The delivery thread: the catch-up loop over w's cursor (engine/cursor.h). */
static void *hook_main(void *arg)
{
    struct webhook *w = arg;
    pthread_setname_np(pthread_self(), "annals-webhook");
    while (!stopping(w)) {
        struct batch b = {.db = w->db, .format = w->format, .meta = w->meta};
        buf_init(&b.events);
        struct engine_cursor_page pg;
        int rc = engine_cursor_next(w->cur, w->format ? w->format->batch : WEBHOOK_BATCH,
                                    on_batch_event, &b, &pg);
        bool delivered = !rc && b.n && deliver(w, &b);
        if (rc == ERR_GONE || (b.n && !delivered && stopping(w))) {
            buf_fini(&b.events);
            break; /* stopping mid-batch: it is delivered again after the restart */
        }
        buf_fini(&b.events);
        if (rc) {
            nap(w, 1000); /* a storage error: the cursor did not move; try again */
            continue;
        }
        advance(w, pg.position - 1, b.n, delivered);
        if (pg.caught_up) {
            engine_cursor_wait(w->cur, 1000); /* until the next commit */
        }
    }
    return NULL;
}

/* Writer thread: the database's deletion stops the delivery (a commit needs nothing here:
 * the cursor's wait wakes for it). */
static void on_hook_commit(void *arg, bool gone)
{
    struct webhook *w = arg;
    if (!gone) {
        return;
    }
    pthread_mutex_lock(&w->wmu);
    __atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->wmu);
}

/* ---- lifecycle ---- */

static void hook_free(struct webhook *w)
{
    filter_fini(&w->filter);
    free(w->url);
    free(w->meta);
    free(w->filter_text);
    for (size_t i = 0; i < w->nheaders; i++) {
        free(w->headers[i]);
    }
    free(w->parked);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->wmu);
    free(w);
}

/* Opens w's cursor after its checkpoint and starts its delivery thread. Returns 0, ERR_GONE
 * (the database is being deleted) or ERR_IO. */
static int start(struct webhook *w)
{
    if (w->record_only) {
        return 0; /* nothing to deliver */
    }
    struct engine_cursor_opts o = {.filter = &w->filter, .from = w->checkpoint + 1,
                                   .wait = true, .on_commit = on_hook_commit, .on_commit_arg = w};
    int rc = engine_cursor_open(w->db, &o, &w->cur);
    if (rc) {
        return rc;
    }
    if (pthread_create(&w->thread, NULL, hook_main, w) != 0) {
        engine_cursor_close(w->cur);
        w->cur = NULL;
        return ERR(ERR_IO);
    }
    w->running = true;
    return 0;
}

/* Stops w's thread (caller does not hold hooks_mu). */
static void stop(struct webhook *w)
{
    pthread_mutex_lock(&w->wmu);
    __atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->wmu);
    if (w->cur) {
        engine_cursor_interrupt(w->cur); /* ends a wait for commits */
    }
    if (w->running) {
        pthread_join(w->thread, NULL);
        w->running = false;
    }
    engine_cursor_close(w->cur);
    w->cur = NULL;
}

static struct webhook *hook_new(struct db *db, const char *name, const char *url,
                                const char *filter_text)
{
    struct webhook *w = xcalloc(1, sizeof(*w));
    w->db = db;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->url = xstrndup(url, strlen(url));
    w->filter_text = xstrndup(filter_text, strlen(filter_text));
    pthread_mutex_init(&w->wmu, NULL);
    pthread_cond_init(&w->cv, NULL);
    return w;
}

/* The registered format named name, or NULL. */
static const struct webhook_format *find_format(const struct engine *e, const char *name)
{
    for (size_t i = 0; name && e->webhook_formats && e->webhook_formats[i]; i++) {
        if (!strcmp(e->webhook_formats[i]->name, name)) {
            return e->webhook_formats[i];
        }
    }
    return NULL;
}

/* Sets the format, meta and record_only of a new or loaded webhook. Returns 0 or
 * ERR_INVALID (an unknown format, or a meta that is no JSON object or too large). */
static int set_kind(struct webhook *w, const char *format, struct slice meta, bool record_only)
{
    w->format = find_format(w->db->e, format);
    if (format && !w->format) {
        return ERR_INVALID;
    }
    if (meta.ptr) {
        json_t *m = meta.len <= WEBHOOK_META_BYTES ? json_loadb(meta.ptr, meta.len, 0, NULL) : NULL;
        bool ok = json_is_object(m);
        json_decref(m);
        if (!ok) {
            return ERR_INVALID;
        }
        w->meta = xstrndup(meta.ptr, meta.len);
    }
    w->record_only = record_only;
    return 0;
}

static int parse_hook_filter(struct db *db, struct webhook *w)
{
    if (!w->filter_text[0]) {
        filter_init(&w->filter);
        return 0;
    }
    filter_init(&w->filter);
    return db->e->parse_filter
               ? db->e->parse_filter((struct slice){w->filter_text, strlen(w->filter_text)},
                                     &w->filter)
               : ERR_INVALID;
}

static struct webhook *find(struct db *db, const char *name)
{
    for (size_t i = 0; i < db->nhooks; i++) {
        if (strcmp(db->hooks[i]->name, name) == 0) {
            return db->hooks[i];
        }
    }
    return NULL;
}

_Static_assert((int)WEBHOOK_SECRET_TEXT == (int)DELIVERY_SECRET_TEXT, "one secret size");

int engine_webhook_url_check(struct engine *e, const char *url, char *why, size_t why_len)
{
    return delivery_check_url(e->webhook_allow, url, why, why_len);
}

bool engine_webhook_signs_with(struct db *db, const char *name, const char *secret)
{
    size_t n = strlen(secret);
    pthread_mutex_lock(&db->hooks_mu);
    const struct webhook *w = find(db, name);
    bool same = w && n < sizeof w->secret && strlen(w->secret) == n &&
                CRYPTO_memcmp(w->secret, secret, n) == 0;
    pthread_mutex_unlock(&db->hooks_mu);
    return same;
}

int engine_webhook_create(struct db *db, const struct webhook_def *def, char *secret_out,
                          char *why, size_t why_len)
{
    int rc = def->record_only
                 ? 0
                 : delivery_check_url(db->e->webhook_allow, def->url, why, why_len);
    if (rc) {
        return rc;
    }
    char *ft = xstrndup(def->filter.ptr ? def->filter.ptr : "", def->filter.len);
    struct webhook *w = hook_new(db, def->name, def->record_only ? "" : def->url, ft);
    free(ft);
    if (parse_hook_filter(db, w) != 0) {
        hook_free(w);
        snprintf(why, why_len, "the filter does not parse");
        return ERR_INVALID;
    }
    if (set_kind(w, def->format, def->meta, def->record_only) != 0) {
        hook_free(w);
        snprintf(why, why_len, "an unknown format, or a meta object that does not fit");
        return ERR_INVALID;
    }
    for (size_t i = 0; i < def->nheaders; i++) {
        w->headers[w->nheaders++] = xstrndup(def->headers[i], strlen(def->headers[i]));
    }
    w->max_attempts = def->max_attempts;
    w->backoff_ms = def->backoff_ms;
    w->checkpoint = def->start ? def->start - 1 : 0;
    if (def->secret && (!def->secret[0] || strlen(def->secret) >= sizeof w->secret)) {
        hook_free(w);
        snprintf(why, why_len, "a secret is 1 to %zu bytes", sizeof w->secret - 1);
        return ERR_INVALID;
    }
    if (def->secret) {
        snprintf(w->secret, sizeof w->secret, "%s", def->secret);
    } else {
        delivery_secret_new(w->secret);
    }
    pthread_mutex_lock(&db->hooks_mu);
    rc = find(db, def->name) ? ERR_EXISTS : db->nhooks >= WEBHOOKS_MAX ? ERR_TOOBIG : 0;
    if (!rc) {
        db->hooks = xrealloc(db->hooks, (db->nhooks + 1) * sizeof(*db->hooks));
        db->hooks[db->nhooks++] = w;
        rc = save(db);
        if (rc) {
            db->nhooks--;
            save_undone(db);
        }
    }
    /* started before the lock is let go: a delete that finds it finds it running (the
     * writer's commit callbacks take only the cursor's lock and w->wmu, so holding hooks_mu
     * here cannot block it) */
    if (!rc && start(w) != 0) {
        log_error("webhook %s: cannot start its delivery (the database is going away?)", w->name);
    }
    pthread_mutex_unlock(&db->hooks_mu);
    if (rc) {
        hook_free(w);
        return rc;
    }
    snprintf(secret_out, SECRET_TEXT, "%s", w->secret);
    return 0;
}

int engine_webhook_delete(struct db *db, const char *name)
{
    pthread_mutex_lock(&db->hooks_mu);
    struct webhook *w = NULL;
    int rc = ERR_NOTFOUND;
    for (size_t i = 0; i < db->nhooks; i++) {
        if (strcmp(db->hooks[i]->name, name) == 0) {
            w = db->hooks[i];
            db->hooks[i] = db->hooks[--db->nhooks];
            rc = save(db);
            if (rc) {
                db->hooks[db->nhooks++] = w;
                w = NULL;
                save_undone(db);
            }
            break;
        }
    }
    pthread_mutex_unlock(&db->hooks_mu);
    if (w) {
        stop(w);
        hook_free(w);
    }
    return rc;
}

int engine_webhook_rotate(struct db *db, const char *name, uint32_t grace_s, char *secret_out)
{
    pthread_mutex_lock(&db->hooks_mu);
    struct webhook *w = find(db, name);
    int rc = w ? 0 : ERR_NOTFOUND;
    if (w) {
        char secret[sizeof w->secret], old[sizeof w->old_secret];
        int64_t old_until = w->old_until_us;
        memcpy(secret, w->secret, sizeof secret);
        memcpy(old, w->old_secret, sizeof old);
        memcpy(w->old_secret, w->secret, sizeof w->secret);
        w->old_until_us = time_now_us() + (int64_t)grace_s * 1000000;
        delivery_secret_new(w->secret);
        rc = save(db);
        if (rc) { /* the client gets no new secret: deliveries keep the one it has */
            memcpy(w->secret, secret, sizeof secret);
            memcpy(w->old_secret, old, sizeof old);
            w->old_until_us = old_until;
            save_undone(db);
        } else {
            snprintf(secret_out, SECRET_TEXT, "%s", w->secret);
        }
    }
    pthread_mutex_unlock(&db->hooks_mu);
    return rc;
}

static void describe_one(const struct webhook *w, bool with_log, struct buf *b)
{
    buf_adds(b, "{\"name\":");
    buf_add_json_str(b, w->name, strlen(w->name));
    buf_adds(b, ",\"url\":");
    buf_add_json_str(b, w->url, strlen(w->url));
    buf_adds(b, ",\"filter\":");
    buf_adds(b, w->filter_text[0] ? w->filter_text : "{}");
    buf_adds(b, ",\"headers\":[");
    for (size_t i = 0; i < w->nheaders; i++) {
        buf_adds(b, i ? "," : "");
        buf_add_json_str(b, w->headers[i], strlen(w->headers[i]));
    }
    buf_printf(b, "],\"maxAttempts\":%u,\"backoffMs\":%u,\"checkpoint\":%llu,\"delivered\":%llu,"
               "\"parked\":%zu", w->max_attempts, w->backoff_ms,
               (unsigned long long)w->checkpoint, (unsigned long long)w->delivered, w->nparked);
    if (w->format) {
        buf_adds(b, ",\"format\":");
        buf_add_json_str(b, w->format->name, strlen(w->format->name));
    }
    if (w->meta) {
        buf_adds(b, ",\"meta\":");
        buf_adds(b, w->meta);
    }
    if (w->record_only) {
        buf_adds(b, ",\"recordOnly\":true");
    }
    if (with_log) {
        buf_adds(b, ",\"parkedBatches\":[");
        for (size_t i = 0; i < w->nparked; i++) {
            buf_printf(b, "%s{\"first\":%llu,\"last\":%llu}", i ? "," : "",
                       (unsigned long long)w->parked[i][0], (unsigned long long)w->parked[i][1]);
        }
        buf_adds(b, "],\"deliveries\":[");
        for (size_t i = 0; i < w->nlog; i++) { /* newest first */
            const struct delivery *d = &w->log[(w->log_at + WEBHOOK_LOG - 1 - i) % WEBHOOK_LOG];
            buf_printf(b, "%s{\"id\":\"%s\",\"first\":%llu,\"last\":%llu,\"attempt\":%u,"
                       "\"status\":%d,\"error\":", i ? "," : "", d->id,
                       (unsigned long long)d->first, (unsigned long long)d->last, d->attempt,
                       d->status);
            if (d->error[0]) {
                buf_add_json_str(b, d->error, strlen(d->error));
            } else {
                buf_adds(b, "null");
            }
            char at[40];
            time_format(d->at_us, at);
            buf_printf(b, ",\"at\":\"%s\"}", at);
        }
        buf_addc(b, ']');
    }
    buf_addc(b, '}');
}

int engine_webhook_describe(struct db *db, const char *only, bool with_log, struct buf *out)
{
    pthread_mutex_lock(&db->hooks_mu);
    int rc = only ? ERR_NOTFOUND : 0;
    size_t n = 0;
    for (size_t i = 0; i < db->nhooks; i++) {
        if (only && strcmp(db->hooks[i]->name, only) != 0) {
            continue;
        }
        if (n++) {
            buf_addc(out, ',');
        }
        describe_one(db->hooks[i], with_log, out);
        rc = 0;
    }
    pthread_mutex_unlock(&db->hooks_mu);
    return rc;
}

static int load_one(void *arg, json_t *o)
{
    struct db *db = arg;
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *ft = json_string_value(json_object_get(o, "filter"));
    const char *secret = json_string_value(json_object_get(o, "secret"));
    const char *old = json_string_value(json_object_get(o, "oldSecret"));
    if (!name || !url || !ft || !secret || !old || strlen(secret) >= SECRET_TEXT ||
        strlen(old) >= SECRET_TEXT) {
        return ERR(ERR_CORRUPT);
    }
    struct webhook *w = hook_new(db, name, url, ft);
    json_t *meta = json_object_get(o, "meta");
    char *mt = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    int krc = set_kind(w, json_string_value(json_object_get(o, "format")),
                       (struct slice){mt, mt ? strlen(mt) : 0},
                       json_is_true(json_object_get(o, "recordOnly")));
    free(mt);
    if (krc || parse_hook_filter(db, w) != 0) {
        hook_free(w);
        return ERR(ERR_CORRUPT);
    }
    snprintf(w->secret, sizeof w->secret, "%s", secret);
    snprintf(w->old_secret, sizeof w->old_secret, "%s", old);
    w->old_until_us = json_integer_value(json_object_get(o, "oldUntilUs"));
    w->max_attempts = (uint32_t)json_integer_value(json_object_get(o, "maxAttempts"));
    w->backoff_ms = (uint32_t)json_integer_value(json_object_get(o, "backoffMs"));
    w->checkpoint = (uint64_t)json_integer_value(json_object_get(o, "checkpoint"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "headers"), i, v) {
        if (json_is_string(v) && w->nheaders < WEBHOOK_HEADERS_MAX) {
            w->headers[w->nheaders++] = xstrndup(json_string_value(v), json_string_length(v));
        }
    }
    json_array_foreach(json_object_get(o, "parked"), i, v) {
        w->parked = xrealloc(w->parked, (w->nparked + 1) * sizeof(*w->parked));
        w->parked[w->nparked][0] = (uint64_t)json_integer_value(json_array_get(v, 0));
        w->parked[w->nparked++][1] = (uint64_t)json_integer_value(json_array_get(v, 1));
    }
    json_array_foreach(json_object_get(o, "log"), i, v) {
        struct delivery d = {0};
        snprintf(d.id, sizeof d.id, "%s", json_string_value(json_object_get(v, "id")) ?: "");
        d.first = (uint64_t)json_integer_value(json_object_get(v, "first"));
        d.last = (uint64_t)json_integer_value(json_object_get(v, "last"));
        d.attempt = (uint32_t)json_integer_value(json_object_get(v, "attempt"));
        d.status = (int)json_integer_value(json_object_get(v, "status"));
        snprintf(d.error, sizeof d.error, "%s",
                 json_string_value(json_object_get(v, "error")) ?: "");
        d.at_us = json_integer_value(json_object_get(v, "atUs"));
        add_log(w, &d);
    }
    db->hooks = xrealloc(db->hooks, (db->nhooks + 1) * sizeof(*db->hooks));
    db->hooks[db->nhooks++] = w;
    return 0;
}

int webhooks_load(struct db *db)
{
    statefile_init(&db->hooks_file, db->dir, "webhooks.json", db->name, 0600, 0, render_hooks,
                   db);
    int rc = statefile_load(db->dir, "webhooks.json", "webhooks", db->name, load_one, db);
    for (size_t k = 0; !rc && k < db->nhooks; k++) {
        rc = start(db->hooks[k]);
    }
    return rc;
}

void webhooks_fini(struct db *db)
{
    for (size_t i = 0; i < db->nhooks; i++) {
        stop(db->hooks[i]);
    }
    /* no save here: every change was written when it was made, and a store that failed to
     * load must keep its file as it is */
    for (size_t i = 0; i < db->nhooks; i++) {
        hook_free(db->hooks[i]);
    }
    free(db->hooks);
    db->hooks = NULL;
    db->nhooks = 0;
}
