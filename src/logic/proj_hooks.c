/* Projection webhooks: the secrets, the delivery thread and its checkpoint
 * (logic/proj_hooks.h). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "logic/proj_hooks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/derived.h"
#include "logic/component.h"
#include "logic/projection.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

static const char SECRETS_TABLE[] = "phs";
static const char HOOK_KEY[] = "hook";

/* ---- secrets ---- */

/* A secret as stored: the one that signs, the one that also signs until old_until_us. */
struct secret_rec {
    char now[DELIVERY_SECRET_TEXT];
    char old[DELIVERY_SECRET_TEXT];
    int64_t old_until_us;
};

static struct slice secret_key(const char *projection, bool isolated, char *buf, size_t n)
{
    if (!isolated) {
        snprintf(buf, n, "shared");
    } else {
        snprintf(buf, n, "p:%s", projection);
    }
    return (struct slice){buf, strlen(buf)};
}

static int read_secret(struct derived_txn *t, struct slice key, struct secret_rec *out)
{
    struct slice v;
    int rc = derived_get(t, SECRETS_TABLE, key, &v);
    if (!rc && v.len != sizeof(*out)) {
        rc = ERR_CORRUPT;
    }
    if (!rc) {
        memcpy(out, v.ptr, sizeof(*out));
        out->now[DELIVERY_SECRET_TEXT - 1] = out->old[DELIVERY_SECRET_TEXT - 1] = '\0';
    }
    return rc;
}

/* Reads the secret record under key, making one (rotating it when rotate) in a write
 * transaction when there is none. */
static int secret_rec(struct db *db, struct slice key, bool rotate, uint32_t grace_s,
                      struct secret_rec *out)
{
    struct derived_txn *t;
    int rc = derived_begin(db, false, &t);
    if (!rc) {
        rc = read_secret(t, key, out);
        derived_abort(t);
        if (rc != ERR_NOTFOUND && (rc || !rotate)) {
            return rc;
        }
    }
    rc = derived_begin(db, true, &t); /* the store's one writer: no two makers race */
    if (rc) {
        return rc;
    }
    rc = read_secret(t, key, out);
    if (rc == ERR_NOTFOUND || (!rc && rotate)) {
        bool had = rc == 0;
        struct secret_rec next = {.old_until_us = 0};
        if (had && grace_s) {
            memcpy(next.old, out->now, sizeof next.old);
            next.old_until_us = time_now_us() + (int64_t)grace_s * 1000000;
        }
        delivery_secret_new(next.now);
        *out = next;
        rc = derived_put(t, SECRETS_TABLE, key, (struct slice){(const char *)&next,
                                                               sizeof next});
        if (!rc) {
            rc = derived_commit(t);
            t = NULL;
        }
    }
    derived_abort(t);
    return rc;
}

int phook_secret(struct db *db, const char *projection, bool isolated,
                 char out[DELIVERY_SECRET_TEXT])
{
    char kb[COMP_NAME_BYTES + 8];
    struct secret_rec r;
    int rc = secret_rec(db, secret_key(projection, isolated, kb, sizeof kb), false, 0, &r);
    if (!rc) {
        memcpy(out, r.now, DELIVERY_SECRET_TEXT);
    }
    return rc;
}

int phook_rotate(struct db *db, const char *projection, bool isolated, uint32_t grace_s,
                 char out[DELIVERY_SECRET_TEXT])
{
    char kb[COMP_NAME_BYTES + 8];
    struct secret_rec r;
    int rc = secret_rec(db, secret_key(projection, isolated, kb, sizeof kb), true, grace_s, &r);
    if (!rc) {
        memcpy(out, r.now, DELIVERY_SECRET_TEXT);
    }
    return rc;
}

/* ---- the delivery thread ---- */

struct attempt {
    char id[COMP_NAME_BYTES + 64];
    uint64_t first, last;
    uint32_t attempt;
    int status;
    char error[DELIVERY_ERROR_BYTES];
    int64_t at_us;
};

struct phook {
    struct db *db;                 /* the thread's reference */
    char projection[COMP_NAME_BYTES + 1];
    uint64_t version;
    struct comp_webhook cfg;
    char t_changes[DERIVED_TABLE_BYTES + 1];
    char t_meta[DERIVED_TABLE_BYTES + 1];
    char *allow;
    pthread_t thread;
    bool stop;                     /* read and written atomically */
    pthread_mutex_t mu;            /* guards what follows */
    pthread_cond_t cv;
    bool kicked;
    uint64_t delivered;            /* the checkpoint: changes up to it are delivered or parked */
    uint64_t parked[PHOOK_PARKED_MAX][2];
    size_t nparked;
    struct attempt log[PHOOK_LOG]; /* a ring: next is the slot of the next entry */
    size_t nlog, next;
};

static bool stopping(const struct phook *h)
{
    return __atomic_load_n(&h->stop, __ATOMIC_ACQUIRE);
}

/* Waits up to ms, until stopped, or (when kickable) until new changes are told of. */
static void nap(struct phook *h, uint64_t ms, bool kickable)
{
    struct timespec until = time_deadline_ms(ms);
    pthread_mutex_lock(&h->mu);
    while (!stopping(h) && !(kickable && h->kicked) &&
           pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0) {
    }
    if (kickable) {
        h->kicked = false;
    }
    pthread_mutex_unlock(&h->mu);
}

static void put_be64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (char)(v >> (56 - 8 * i));
    }
}

static uint64_t get_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | (unsigned char)p[i];
    }
    return v;
}

/* The checkpoint as stored: the delivered sequence, then each parked batch's first and last. */
static void load_checkpoint(struct phook *h)
{
    struct derived_txn *t;
    if (derived_begin(h->db, false, &t) != 0) {
        return;
    }
    struct slice v;
    if (derived_get(t, h->t_meta, (struct slice){HOOK_KEY, sizeof HOOK_KEY - 1}, &v) == 0 &&
        v.len >= 8 && (v.len - 8) % 16 == 0 && (v.len - 8) / 16 <= PHOOK_PARKED_MAX) {
        pthread_mutex_lock(&h->mu);
        h->delivered = get_be64(v.ptr);
        h->nparked = (v.len - 8) / 16;
        for (size_t i = 0; i < h->nparked; i++) {
            h->parked[i][0] = get_be64(v.ptr + 8 + 16 * i);
            h->parked[i][1] = get_be64(v.ptr + 16 + 16 * i);
        }
        pthread_mutex_unlock(&h->mu);
    }
    derived_abort(t);
}

static int save_checkpoint(struct phook *h)
{
    char v[8 + 16 * PHOOK_PARKED_MAX];
    pthread_mutex_lock(&h->mu);
    put_be64(v, h->delivered);
    size_t n = h->nparked;
    for (size_t i = 0; i < n; i++) {
        put_be64(v + 8 + 16 * i, h->parked[i][0]);
        put_be64(v + 16 + 16 * i, h->parked[i][1]);
    }
    pthread_mutex_unlock(&h->mu);
    struct derived_txn *t;
    int rc = derived_begin(h->db, true, &t);
    if (rc) {
        return rc;
    }
    rc = derived_put(t, h->t_meta, (struct slice){HOOK_KEY, sizeof HOOK_KEY - 1},
                     (struct slice){v, 8 + 16 * n});
    if (!rc) {
        return derived_commit(t);
    }
    derived_abort(t);
    return rc;
}

/* The changes of one delivery: their JSON objects, comma-separated. */
struct batch {
    struct buf changes;
    size_t n;
    uint64_t first, last;
};

static int on_change(void *arg, struct slice key, struct slice val)
{
    struct batch *b = arg;
    struct proj_change ch;
    if ((b->n && b->changes.len + val.len > PHOOK_BATCH_BYTES) ||
        !proj_change_decode(key, val, &ch)) {
        return 1;
    }
    buf_adds(&b->changes, b->n++ ? ",{\"sequence\":" : "{\"sequence\":");
    buf_add_u64(&b->changes, ch.sequence);
    buf_adds(&b->changes, ",\"key\":");
    buf_add_json_str(&b->changes, ch.key.ptr, ch.key.len);
    buf_adds(&b->changes, ",\"state\":");
    buf_add(&b->changes, ch.state.ptr, ch.state.len);
    buf_adds(&b->changes, ",\"position\":");
    buf_add_u64(&b->changes, ch.position);
    buf_addc(&b->changes, '}');
    b->first = b->n == 1 ? ch.sequence : b->first;
    b->last = ch.sequence;
    return 0;
}

/* Reads the changes after the checkpoint into b. Returns 0 or ERR_*. */
static int read_batch(struct phook *h, struct batch *b)
{
    pthread_mutex_lock(&h->mu);
    uint64_t after = h->delivered;
    pthread_mutex_unlock(&h->mu);
    struct derived_txn *t;
    int rc = derived_begin(h->db, false, &t);
    if (rc) {
        return rc;
    }
    char from[8];
    put_be64(from, after);
    rc = derived_scan(t, h->t_changes, (struct slice){NULL, 0},
                      after ? (struct slice){from, 8} : (struct slice){NULL, 0}, PHOOK_BATCH,
                      on_change, b);
    derived_abort(t);
    return rc;
}

static void add_log(struct phook *h, const struct attempt *a)
{
    pthread_mutex_lock(&h->mu);
    h->log[h->next] = *a;
    h->next = (h->next + 1) % PHOOK_LOG;
    h->nlog += h->nlog < PHOOK_LOG;
    pthread_mutex_unlock(&h->mu);
}

static void post_once(struct phook *h, const struct batch *b, const char *id, uint32_t attempt,
                      struct delivery_result *res)
{
    struct secret_rec keys;
    char kb[COMP_NAME_BYTES + 8];
    int rc = secret_rec(h->db, secret_key(h->projection, h->cfg.isolate, kb, sizeof kb), false,
                        0, &keys);
    if (rc) {
        *res = (struct delivery_result){.retry = true};
        snprintf(res->error, sizeof res->error, "the signing secret could not be read (%s)",
                 err_name(rc));
        return;
    }
    struct buf body;
    buf_init(&body);
    buf_adds(&body, "{\"type\":\"projection.changes\",\"database\":");
    buf_add_json_str(&body, engine_db_name(h->db), strlen(engine_db_name(h->db)));
    buf_adds(&body, ",\"projection\":");
    buf_add_json_str(&body, h->projection, strlen(h->projection));
    buf_printf(&body, ",\"version\":%llu,\"deliveryId\":", (unsigned long long)h->version);
    buf_add_json_str(&body, id, strlen(id));
    buf_printf(&body, ",\"attempt\":%u,\"changes\":[", attempt);
    buf_add(&body, b->changes.ptr, b->changes.len);
    buf_adds(&body, "]}");
    char attempt_line[48];
    snprintf(attempt_line, sizeof attempt_line, "X-Annals-Attempt: %u", attempt);
    const char *headers[COMP_WEBHOOK_HEADERS + 1] = {attempt_line};
    for (size_t i = 0; i < h->cfg.nheaders; i++) {
        headers[i + 1] = h->cfg.headers[i];
    }
    bool old_valid = keys.old[0] && time_now_us() < keys.old_until_us;
    struct delivery_request rq = {
        .url = h->cfg.url, .allow = h->allow, .body = {body.ptr, body.len},
        .headers = headers, .nheaders = h->cfg.nheaders + 1,
        .signing = DELIVERY_STANDARD_WEBHOOKS, .msg_id = id, .secret = keys.now,
        .old_secret = old_valid ? keys.old : NULL, .cancel = &h->stop};
    delivery_post(&rq, res);
    buf_fini(&body);
}

/* Delivers b with retries; false only when stopping before it was delivered or parked. */
static bool deliver(struct phook *h, const struct batch *b)
{
    char id[COMP_NAME_BYTES + 64];
    snprintf(id, sizeof id, "%s.%llu.%llu-%llu", h->projection, (unsigned long long)h->version,
             (unsigned long long)b->first, (unsigned long long)b->last);
    for (uint32_t attempt = 1;; attempt++) {
        struct delivery_result res;
        post_once(h, b, id, attempt, &res);
        struct attempt a = {.first = b->first, .last = b->last, .attempt = attempt,
                            .status = res.status, .at_us = time_now_us()};
        snprintf(a.id, sizeof a.id, "%s", id);
        snprintf(a.error, sizeof a.error, "%s", res.error);
        if (stopping(h) && !res.ok) {
            return false; /* abandoned: delivered again after the restart */
        }
        add_log(h, &a);
        if (res.ok) {
            return true;
        }
        if (!res.retry || attempt >= h->cfg.max_attempts) {
            pthread_mutex_lock(&h->mu);
            if (h->nparked == PHOOK_PARKED_MAX) {
                memmove(h->parked, h->parked + 1, (PHOOK_PARKED_MAX - 1) * sizeof h->parked[0]);
                h->nparked--;
            }
            h->parked[h->nparked][0] = b->first;
            h->parked[h->nparked++][1] = b->last;
            pthread_mutex_unlock(&h->mu);
            log_warn("projection %s of %s: webhook changes %llu..%llu parked after %u attempts",
                     h->projection, engine_db_name(h->db), (unsigned long long)b->first,
                     (unsigned long long)b->last, attempt);
            return true;
        }
        nap(h, delivery_backoff_ms(h->cfg.backoff_ms, attempt), false);
        if (stopping(h)) {
            return false;
        }
    }
}

static void *hook_main(void *arg)
{
    struct phook *h = arg;
    pthread_setname_np(pthread_self(), "annals-projhook");
    load_checkpoint(h);
    while (!stopping(h)) {
        struct batch b = {.n = 0};
        buf_init(&b.changes);
        int rc = read_batch(h, &b);
        if (rc || b.n == 0) {
            buf_fini(&b.changes);
            nap(h, rc == ERR_GONE ? 10 * PHOOK_IDLE_MS : PHOOK_IDLE_MS, rc == 0);
            continue;
        }
        bool done = deliver(h, &b);
        buf_fini(&b.changes);
        if (!done) {
            break;
        }
        pthread_mutex_lock(&h->mu);
        h->delivered = b.last;
        pthread_mutex_unlock(&h->mu);
        while (save_checkpoint(h) != 0 && !stopping(h)) {
            nap(h, PHOOK_IDLE_MS, false); /* the store refused: try again, deliver nothing new */
        }
    }
    return NULL;
}

struct phook *phook_start(const struct phook_spec *s)
{
    struct phook *h = xcalloc(1, sizeof(*h));
    struct comp_error err;
    if (comp_webhook_parse((struct slice){s->webhook, strlen(s->webhook)}, &h->cfg, &err) != 0) {
        log_warn("projection %s: its webhook is not valid (%s)", s->projection, err.message);
        free(h);
        return NULL;
    }
    const char *name = engine_db_name(s->db);
    if (engine_db_acquire(engine_db_engine(s->db), name, strlen(name), &h->db) != 0) {
        free(h);
        return NULL;
    }
    snprintf(h->projection, sizeof h->projection, "%s", s->projection);
    snprintf(h->t_changes, sizeof h->t_changes, "%s", s->t_changes);
    snprintf(h->t_meta, sizeof h->t_meta, "%s", s->t_meta);
    h->version = s->version;
    h->allow = s->allow ? xstrndup(s->allow, strlen(s->allow)) : NULL;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, hook_main, h) != 0) {
        log_warn("projection %s: no thread for its webhook", s->projection);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        engine_db_release(h->db);
        free(h->allow);
        free(h);
        return NULL;
    }
    return h;
}

void phook_kick(struct phook *h)
{
    if (!h) {
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->kicked = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void phook_stop(struct phook *h)
{
    if (!h) {
        return;
    }
    pthread_mutex_lock(&h->mu);
    __atomic_store_n(&h->stop, true, __ATOMIC_RELEASE);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    engine_db_release(h->db);
    free(h->allow);
    free(h);
}

void phook_describe(struct phook *h, struct buf *out)
{
    pthread_mutex_lock(&h->mu);
    buf_adds(out, "{\"url\":");
    buf_add_json_str(out, h->cfg.url, strlen(h->cfg.url));
    buf_adds(out, ",\"isolateSecret\":");
    buf_adds(out, h->cfg.isolate ? "true" : "false");
    buf_adds(out, ",\"delivered\":");
    buf_add_u64(out, h->delivered);
    buf_adds(out, ",\"parked\":[");
    for (size_t i = 0; i < h->nparked; i++) {
        buf_printf(out, "%s[%llu,%llu]", i ? "," : "", (unsigned long long)h->parked[i][0],
                   (unsigned long long)h->parked[i][1]);
    }
    buf_adds(out, "],\"deliveries\":[");
    for (size_t i = 0; i < h->nlog; i++) {
        const struct attempt *a = &h->log[(h->next + PHOOK_LOG - 1 - i) % PHOOK_LOG];
        buf_adds(out, i ? ",{\"id\":" : "{\"id\":");
        buf_add_json_str(out, a->id, strlen(a->id));
        buf_printf(out, ",\"first\":%llu,\"last\":%llu,\"attempt\":%u,\"status\":%d,\"error\":",
                   (unsigned long long)a->first, (unsigned long long)a->last, a->attempt,
                   a->status);
        if (a->error[0]) {
            buf_add_json_str(out, a->error, strlen(a->error));
        } else {
            buf_adds(out, "null");
        }
        char at[40];
        time_format(a->at_us, at);
        buf_printf(out, ",\"at\":\"%s\"}", at);
    }
    buf_adds(out, "]}");
    pthread_mutex_unlock(&h->mu);
}
