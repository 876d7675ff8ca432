/* Projection webhooks: the secrets, the delivery thread and its checkpoint, the native shape
 * (logic/proj_hooks.h). */
#define _GNU_SOURCE /* pthread_setname_np */
#include "logic/proj_hooks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/derived.h"
#include "logic/component.h"
#include "logic/logic.h"
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
    char id[PHOOK_ID_BYTES];
    uint64_t first, last;
    uint32_t attempt;
    int status;
    char error[DELIVERY_ERROR_BYTES];
    int64_t at_us;
};

struct phook {
    struct db *db;                 /* the thread's reference */
    struct comp_def def;           /* owned copy: the projection version delivered */
    const struct logic_hook_style *style; /* static: the shape of its POSTs (never NULL) */
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

/* Reads the changes after the checkpoint into b (one delivery's). Returns 0 or ERR_*. */
static int read_batch(struct phook *h, struct proj_change_list *b)
{
    pthread_mutex_lock(&h->mu);
    uint64_t after = h->delivered;
    pthread_mutex_unlock(&h->mu);
    struct derived_txn *t;
    int rc = derived_begin(h->db, false, &t);
    if (rc) {
        return rc;
    }
    rc = proj_change_list_read(t, h->t_changes, after, b);
    derived_abort(t);
    return rc;
}

/* ---- the native shape ---- */

static int native_payload(struct db *db, const struct comp_def *def,
                          const struct proj_change *ch, size_t n, const char *id,
                          uint32_t attempt, struct buf *out)
{
    buf_adds(out, "{\"type\":\"projection.changes\",\"database\":");
    buf_add_json_str(out, engine_db_name(db), strlen(engine_db_name(db)));
    buf_adds(out, ",\"projection\":");
    buf_add_json_str(out, def->name, strlen(def->name));
    buf_printf(out, ",\"version\":%llu,\"deliveryId\":", (unsigned long long)def->version);
    buf_add_json_str(out, id, strlen(id));
    buf_printf(out, ",\"attempt\":%u,\"changes\":[", attempt);
    for (size_t i = 0; i < n; i++) {
        buf_adds(out, i ? "," : "");
        proj_change_json(out, &ch[i]);
    }
    buf_adds(out, "]}");
    return 0;
}

/* "<projection>.<version>.<first>-<last>" */
static void native_message_id(const struct comp_def *def, const struct proj_change *ch,
                              size_t n, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%llu.%llu-%llu", def->name, (unsigned long long)def->version,
             (unsigned long long)ch[0].sequence, (unsigned long long)ch[n - 1].sequence);
}

static const struct logic_hook_style NATIVE = {
    .batch_max = PHOOK_BATCH,
    .signing = DELIVERY_STANDARD_WEBHOOKS,
    .attempt_header = "X-Annals-Attempt",
    .payload = native_payload,
    .message_id = native_message_id,
};

static void add_log(struct phook *h, const struct attempt *a)
{
    pthread_mutex_lock(&h->mu);
    h->log[h->next] = *a;
    h->next = (h->next + 1) % PHOOK_LOG;
    h->nlog += h->nlog < PHOOK_LOG;
    pthread_mutex_unlock(&h->mu);
}

/* True when line ("Name: value") is a header called name. */
static bool header_named(const char *line, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The header lines of one attempt into lines (at most 2 + COMP_WEBHOOK_HEADERS): the style's
 * id and attempt headers (their text in id_line and attempt_line), then the webhook's own
 * but those the style's headers name (the server's win). Returns their count. */
static size_t make_headers(const struct phook *h, const char *id, uint32_t attempt,
                           char *id_line, char *attempt_line, size_t line_cap,
                           const char **lines)
{
    const struct logic_hook_style *st = h->style;
    size_t n = 0;
    if (st->id_header) {
        snprintf(id_line, line_cap, "%s: %s", st->id_header, id);
        lines[n++] = id_line;
    }
    if (st->attempt_header) {
        snprintf(attempt_line, line_cap, "%s: %u", st->attempt_header, attempt);
        lines[n++] = attempt_line;
    }
    for (size_t i = 0; i < h->cfg.nheaders; i++) {
        const char *l = h->cfg.headers[i];
        if (!header_named(l, st->signature_header) && !header_named(l, st->id_header) &&
            !header_named(l, st->attempt_header)) {
            lines[n++] = l;
        }
    }
    return n;
}

/* An attempt that failed before its POST: retried as a refused POST is. */
static void fail_early(struct delivery_result *res, const char *what, int rc)
{
    *res = (struct delivery_result){.retry = true};
    snprintf(res->error, sizeof res->error, "%s (%s)", what, err_name(rc));
}

static void post_once(struct phook *h, const struct proj_change_list *b, const char *id,
                      uint32_t attempt, struct delivery_result *res)
{
    struct secret_rec keys;
    char kb[COMP_NAME_BYTES + 8];
    int rc = secret_rec(h->db, secret_key(h->def.name, h->cfg.isolate, kb, sizeof kb), false,
                        0, &keys);
    if (rc) {
        fail_early(res, "the signing secret could not be read", rc);
        return;
    }
    struct buf body;
    buf_init(&body);
    rc = h->style->payload(h->db, &h->def, b->ch, b->n, id, attempt, &body);
    if (rc) {
        buf_fini(&body);
        fail_early(res, "the body could not be made", rc);
        return;
    }
    char id_line[DELIVERY_HEADER_BYTES], attempt_line[DELIVERY_HEADER_BYTES];
    const char *headers[COMP_WEBHOOK_HEADERS + 2];
    size_t nheaders = make_headers(h, id, attempt, id_line, attempt_line, sizeof id_line,
                                   headers);
    bool old_valid = keys.old[0] && time_now_us() < keys.old_until_us;
    struct delivery_request rq = {
        .url = h->cfg.url, .allow = h->allow, .body = {body.ptr, body.len},
        .headers = headers, .nheaders = nheaders, .signing = h->style->signing,
        .msg_id = id, .signature_header = h->style->signature_header, .secret = keys.now,
        .old_secret = old_valid ? keys.old : NULL, .cancel = &h->stop};
    delivery_post(&rq, res);
    buf_fini(&body);
}

/* Sets first..last aside for good (the oldest parked range goes when there are too many). */
static void park(struct phook *h, uint64_t first, uint64_t last, uint32_t attempts)
{
    pthread_mutex_lock(&h->mu);
    if (h->nparked == PHOOK_PARKED_MAX) {
        memmove(h->parked, h->parked + 1, (PHOOK_PARKED_MAX - 1) * sizeof h->parked[0]);
        h->nparked--;
    }
    h->parked[h->nparked][0] = first;
    h->parked[h->nparked++][1] = last;
    pthread_mutex_unlock(&h->mu);
    log_warn("projection %s of %s: webhook changes %llu..%llu parked after %u attempts",
             h->def.name, engine_db_name(h->db), (unsigned long long)first,
             (unsigned long long)last, attempts);
}

/* Delivers b with retries; false only when stopping before it was delivered or parked. */
static bool deliver(struct phook *h, const struct proj_change_list *b)
{
    char id[PHOOK_ID_BYTES];
    h->style->message_id(&h->def, b->ch, b->n, id, sizeof id);
    uint64_t first = b->ch[0].sequence, last = b->ch[b->n - 1].sequence;
    for (uint32_t attempt = 1;; attempt++) {
        struct delivery_result res;
        post_once(h, b, id, attempt, &res);
        struct attempt a = {.first = first, .last = last, .attempt = attempt,
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
            park(h, first, last, attempt);
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
    size_t max = h->style->batch_max;
    struct proj_change_list batch;
    struct proj_change_list *b = &batch;
    proj_change_list_init(b, max && max < PHOOK_BATCH ? max : PHOOK_BATCH, PHOOK_BATCH_BYTES);
    while (!stopping(h)) {
        int rc = read_batch(h, b);
        if (rc || b->n == 0) {
            nap(h, rc == ERR_GONE ? 10 * PHOOK_IDLE_MS : PHOOK_IDLE_MS, rc == 0);
            continue;
        }
        if (!deliver(h, b)) {
            break;
        }
        pthread_mutex_lock(&h->mu);
        h->delivered = b->ch[b->n - 1].sequence;
        pthread_mutex_unlock(&h->mu);
        while (save_checkpoint(h) != 0 && !stopping(h)) {
            nap(h, PHOOK_IDLE_MS, false); /* the store refused: try again, deliver nothing new */
        }
    }
    proj_change_list_fini(b);
    return NULL;
}

/* Frees what phook_start made of h (not its thread). */
static void hook_free(struct phook *h)
{
    if (h->db) {
        engine_db_release(h->db);
    }
    comp_def_fini(&h->def);
    free(h->allow);
    free(h);
}

struct phook *phook_start(const struct phook_spec *s)
{
    const char *hook = s->def->webhook;
    struct phook *h = xcalloc(1, sizeof(*h));
    struct comp_error err;
    if (!hook || comp_webhook_parse((struct slice){hook, strlen(hook)}, &h->cfg, &err) != 0) {
        log_warn("projection %s: its webhook is not valid (%s)", s->def->name,
                 hook ? err.message : "none");
        free(h);
        return NULL;
    }
    comp_def_copy(&h->def, s->def);
    free(h->def.source); /* (the deliveries need no code) */
    h->def.source = NULL;
    h->def.source_len = 0;
    h->style = s->style ? s->style : &NATIVE;
    h->allow = s->allow ? xstrndup(s->allow, strlen(s->allow)) : NULL;
    const char *name = engine_db_name(s->db);
    if (engine_db_acquire(engine_db_engine(s->db), name, strlen(name), &h->db) != 0) {
        h->db = NULL;
        hook_free(h);
        return NULL;
    }
    snprintf(h->t_changes, sizeof h->t_changes, "%s", s->t_changes);
    snprintf(h->t_meta, sizeof h->t_meta, "%s", s->t_meta);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, hook_main, h) != 0) {
        log_warn("projection %s: no thread for its webhook", s->def->name);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        hook_free(h);
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
    hook_free(h);
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
