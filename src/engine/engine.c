/* Databases and the group-commit write path.
 *
 * Each open database has one writer thread. Appends are pushed on the database's queue; the
 * writer takes everything queued, checks each request's expected version in order inside one
 * LMDB write transaction, writes the requests that pass, commits once (fsync), and only then
 * runs every request's done callback. A request that fails its check fails alone; a storage
 * error or failed commit fails every request of the batch, and nothing of it is visible.
 *
 * Database life:  (open) --engine_db_delete()--> DELETING: queue closed, writer drained and
 * joined, readers waited for --> files removed, freed.
 * Invariant: db->head mirrors the committed head record; only the writer changes it. */
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "util/assert.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/uuid.h"

struct db {
    char name[LIMIT_DB_NAME_BYTES + 1]; /* database name */
    char *dir;                          /* owned: directory of its store */
    struct store *st;                   /* owned */
    struct engine *e;                   /* borrowed back-pointer */
    const struct limits *limits;        /* borrowed from the engine */
    pthread_t writer;                   /* the writer thread */
    pthread_mutex_t mu;                 /* guards queue, stopping, refs */
    pthread_cond_t cv;                  /* signals the writer (queue/stopping) and deleters (refs) */
    struct append_req *queue;           /* pushed newest-first */
    uint64_t queue_len;                 /* requests queued */
    bool stopping;                      /* no more appends; writer exits once drained */
    bool deleted;                       /* removed from the registry */
    unsigned refs;                      /* registry's one + each acquire */
    struct head_rec head;               /* writer only: committed head */
    struct buf scratch;                 /* writer only: record encoding */
    uint64_t commits;                   /* atomic: committed write transactions */
    uint64_t appends;                   /* atomic: acknowledged append requests */
    uint64_t commit_ns;                 /* atomic: time spent in durable commits */
};

struct engine {
    char *data_dir;          /* owned copy */
    struct limits limits;    /* configured limits */
    pthread_mutex_t mu;      /* guards dbs and count */
    struct db **dbs;         /* owned array of open databases */
    size_t count;            /* entries in dbs */
};

bool engine_db_name_ok(const char *name, size_t len)
{
    if (len < 1 || len > LIMIT_DB_NAME_BYTES) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && c == '-');
        if (!ok) {
            return false;
        }
    }
    return true;
}

const char *engine_db_name(const struct db *db)
{
    return db->name;
}

/* ---- the writer ---- */

static int fill_event(struct db *db, struct store_txn *txn, struct append_req *req,
                      struct stream_rec *s, size_t i, int64_t now)
{
    struct append_event *ae = &req->events[i];
    if (!ae->has_id) {
        uuid_v7(now, ae->id);
        ae->has_id = true;
    }
    struct event_rec ev = {
        .position = db->head.position + 1,
        .version = s->version + 1,
        .time_us = ae->has_time ? ae->time_us : now,
        .recorded_us = now,
        .stream = req->stream,
        .type = ae->type,
        .data = ae->data,
        .metadata = ae->metadata,
        .tags = ae->tags,
    };
    memcpy(ev.id, ae->id, sizeof ev.id);
    size_t n = codec_record_size(&ev);
    buf_reset(&db->scratch);
    buf_reserve(&db->scratch, n);
    codec_record_encode(&ev, db->head.hash, (uint8_t *)db->scratch.ptr);
    int rc = store_put_event(txn, (uint8_t *)db->scratch.ptr, n, ev.position, s->id, ev.version);
    if (rc) {
        return rc;
    }
    db->head.position = ev.position;
    memcpy(db->head.hash, ev.hash, sizeof ev.hash);
    s->version = ev.version;
    s->last_pos = ev.position;
    s->updated_us = now;
    return 0;
}

/* Checks and writes one request inside txn. Returns 0, ERR_CONFLICT (nothing written for
 * this request) or a storage error (the transaction is poisoned). */
static int apply_request(struct db *db, struct store_txn *txn, struct append_req *req, int64_t now)
{
    struct stream_rec s;
    int rc = store_get_stream(txn, req->stream, &s);
    if (rc == ERR_NOTFOUND) {
        memset(&s, 0, sizeof s);
    } else if (rc) {
        return rc;
    }
    req->actual_version = s.version;
    if (!expect_ok(&req->expect, s.version)) {
        return ERR_CONFLICT;
    }
    if (s.version == 0) {
        s.id = ++db->head.stream_count;
        s.first_pos = db->head.position + 1;
        s.created_us = now;
    }
    req->first_version = s.version + 1;
    req->first_position = db->head.position + 1;
    req->recorded_us = now;
    for (size_t i = 0; i < req->count; i++) {
        rc = fill_event(db, txn, req, &s, i, now);
        if (rc) {
            return rc;
        }
    }
    db->head.event_count += req->count;
    return store_put_stream(txn, req->stream, &s);
}

/* Runs one batch. Sets each request's err; returns the number written. */
static size_t commit_batch(struct db *db, struct append_req *batch)
{
    struct head_rec saved = db->head;
    struct store_txn *txn = NULL;
    int fatal = store_txn_begin(db->st, true, &txn);
    size_t written = 0;
    int64_t now = time_now_us();
    for (struct append_req *r = batch; r && !fatal; r = r->next) {
        r->err = apply_request(db, txn, r, now);
        if (r->err == 0) {
            written++;
        } else if (r->err != ERR_CONFLICT) {
            fatal = r->err;
        }
    }
    if (!fatal && written) {
        fatal = store_put_head(txn, &db->head);
        if (!fatal) {
            uint64_t t0 = time_mono_ns();
            fatal = store_txn_commit(txn); /* ends txn either way */
            __atomic_add_fetch(&db->commit_ns, time_mono_ns() - t0, __ATOMIC_RELAXED);
            txn = NULL;
        }
    }
    store_txn_abort(txn);
    if (fatal) {
        log_error("database %s: commit failed: %s", db->name, err_name(fatal));
        db->head = saved;
        for (struct append_req *r = batch; r; r = r->next) {
            if (r->err != ERR_CONFLICT) {
                r->err = fatal;
            }
        }
        return 0;
    }
    if (written) {
        __atomic_add_fetch(&db->commits, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&db->appends, written, __ATOMIC_RELAXED);
    }
    return written;
}

static struct append_req *reverse(struct append_req *r)
{
    struct append_req *out = NULL;
    while (r) {
        struct append_req *next = r->next;
        r->next = out;
        out = r;
        r = next;
    }
    return out;
}

static void *writer_main(void *arg)
{
    struct db *db = arg;
    for (;;) {
        pthread_mutex_lock(&db->mu);
        while (!db->queue && !db->stopping) {
            pthread_cond_wait(&db->cv, &db->mu);
        }
        struct append_req *batch = reverse(db->queue);
        db->queue = NULL;
        db->queue_len = 0;
        bool stop = db->stopping;
        pthread_mutex_unlock(&db->mu);
        if (!batch) {
            if (stop) {
                break;
            }
            continue;
        }
        commit_batch(db, batch);
        while (batch) {
            struct append_req *next = batch->next;
            batch->next = NULL;
            batch->done(batch);
            batch = next;
        }
    }
    return NULL;
}

size_t engine_event_bytes(struct slice stream, const struct append_event *ae)
{
    struct event_rec ev = {.stream = stream, .type = ae->type, .data = ae->data,
                           .metadata = ae->metadata, .tags = ae->tags};
    return codec_record_size(&ev);
}

int engine_append(struct db *db, struct append_req *req)
{
    if (req->count == 0 || req->count > db->limits->batch_events) {
        return ERR_TOOBIG;
    }
    for (size_t i = 0; i < req->count; i++) {
        if (engine_event_bytes(req->stream, &req->events[i]) > db->limits->event_bytes) {
            return ERR_TOOBIG;
        }
    }
    req->err = 0;
    pthread_mutex_lock(&db->mu);
    int rc = db->deleted ? ERR_GONE : db->stopping ? ERR_SHUTDOWN : 0;
    if (!rc) {
        req->next = db->queue;
        db->queue = req;
        db->queue_len++;
        pthread_cond_broadcast(&db->cv);
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* ---- databases ---- */

static void db_free(struct db *db)
{
    store_close(db->st);
    buf_fini(&db->scratch);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db->dir);
    free(db);
}

static int db_open(struct engine *e, const char *name, bool create, struct db **out)
{
    struct db *db = xcalloc(1, sizeof(*db));
    snprintf(db->name, sizeof db->name, "%s", name);
    size_t dlen = strlen(e->data_dir) + strlen(name) + 16;
    db->dir = xmalloc(dlen);
    snprintf(db->dir, dlen, "%s/dbs/%s", e->data_dir, name);
    db->e = e;
    db->limits = &e->limits;
    db->refs = 1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    buf_init(&db->scratch);
    int rc = store_open(db->dir, e->limits.map_bytes, create, &db->st);
    struct store_txn *txn = NULL;
    if (!rc) rc = store_txn_begin(db->st, false, &txn);
    if (!rc) rc = store_get_head(txn, &db->head);
    store_txn_abort(txn);
    if (!rc && pthread_create(&db->writer, NULL, writer_main, db) != 0) {
        rc = ERR(ERR_IO);
    }
    if (rc) {
        db_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

/* Closes the queue, lets the writer answer what is queued, and joins it. */
static void db_stop_writer(struct db *db)
{
    pthread_mutex_lock(&db->mu);
    bool was = db->stopping;
    db->stopping = true;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
    if (!was) {
        pthread_join(db->writer, NULL);
    }
}

static struct db *find_locked(struct engine *e, const char *name, size_t len, size_t *out_idx)
{
    for (size_t i = 0; i < e->count; i++) {
        if (strlen(e->dbs[i]->name) == len && memcmp(e->dbs[i]->name, name, len) == 0) {
            if (out_idx) {
                *out_idx = i;
            }
            return e->dbs[i];
        }
    }
    return NULL;
}

static void add_locked(struct engine *e, struct db *db)
{
    e->dbs = xrealloc(e->dbs, (e->count + 1) * sizeof(*e->dbs));
    e->dbs[e->count++] = db;
}

int engine_db_create(struct engine *e, const char *name, size_t len)
{
    if (!engine_db_name_ok(name, len)) {
        return ERR_INVALID;
    }
    char nm[LIMIT_DB_NAME_BYTES + 1];
    memcpy(nm, name, len);
    nm[len] = '\0';
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    struct db *db = NULL;
    if (find_locked(e, name, len, NULL)) {
        rc = ERR_EXISTS;
    } else if (e->count >= LIMIT_DATABASES) {
        rc = ERR_TOOBIG;
    } else {
        rc = db_open(e, nm, true, &db);
    }
    if (!rc) {
        add_locked(e, db);
        log_info("database %s created", nm);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_db_acquire(struct engine *e, const char *name, size_t len, struct db **out)
{
    pthread_mutex_lock(&e->mu);
    struct db *db = find_locked(e, name, len, NULL);
    if (db) {
        pthread_mutex_lock(&db->mu);
        db->refs++;
        pthread_mutex_unlock(&db->mu);
    }
    pthread_mutex_unlock(&e->mu);
    *out = db;
    return db ? 0 : ERR_NOTFOUND;
}

void engine_db_release(struct db *db)
{
    if (!db) {
        return;
    }
    pthread_mutex_lock(&db->mu);
    ASSERT(db->refs > 0);
    db->refs--;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

int engine_db_delete(struct engine *e, const char *name, size_t len)
{
    pthread_mutex_lock(&e->mu);
    size_t idx;
    struct db *db = find_locked(e, name, len, &idx);
    if (db) {
        e->dbs[idx] = e->dbs[--e->count];
    }
    pthread_mutex_unlock(&e->mu);
    if (!db) {
        return ERR_NOTFOUND;
    }
    pthread_mutex_lock(&db->mu);
    db->deleted = true;
    pthread_mutex_unlock(&db->mu);
    db_stop_writer(db);
    pthread_mutex_lock(&db->mu);
    while (db->refs > 1) {
        pthread_cond_wait(&db->cv, &db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    store_close(db->st);
    db->st = NULL;
    int rc = store_remove_files(db->dir);
    log_info("database %s deleted", db->name);
    db_free(db);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **engine_db_names(struct engine *e, size_t *out_count)
{
    pthread_mutex_lock(&e->mu);
    char **names = xcalloc(e->count + 1, sizeof(*names));
    for (size_t i = 0; i < e->count; i++) {
        names[i] = xstrndup(e->dbs[i]->name, strlen(e->dbs[i]->name));
    }
    *out_count = e->count;
    pthread_mutex_unlock(&e->mu);
    qsort(names, *out_count, sizeof(*names), cmp_names);
    return names;
}

void engine_names_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}

static int open_existing(struct engine *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/dbs", e->data_dir);
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        return ERR(ERR_IO);
    }
    DIR *d = opendir(path);
    if (!d) {
        return ERR(ERR_IO);
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (!engine_db_name_ok(de->d_name, strlen(de->d_name))) {
            continue;
        }
        struct db *db;
        rc = db_open(e, de->d_name, false, &db);
        if (rc == ERR_NOTFOUND) {
            rc = 0; /* a directory without a store: not a database */
            continue;
        }
        if (rc) {
            log_error("database %s: cannot open: %s", de->d_name, err_name(rc));
        } else {
            add_locked(e, db);
        }
    }
    closedir(d);
    return rc;
}

int engine_open(const struct engine_config *cfg, struct engine **out)
{
    if (mkdir(cfg->data_dir, 0750) != 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        return ERR(ERR_IO);
    }
    struct engine *e = xcalloc(1, sizeof(*e));
    e->data_dir = xstrndup(cfg->data_dir, strlen(cfg->data_dir));
    e->limits = cfg->limits;
    pthread_mutex_init(&e->mu, NULL);
    int rc = open_existing(e);
    if (!rc && !find_locked(e, "default", 7, NULL)) {
        rc = engine_db_create(e, "default", 7);
    }
    if (rc) {
        engine_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

void engine_stop(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->count; i++) {
        db_stop_writer(e->dbs[i]);
    }
    pthread_mutex_unlock(&e->mu);
}

void engine_close(struct engine *e)
{
    if (!e) {
        return;
    }
    engine_stop(e);
    for (size_t i = 0; i < e->count; i++) {
        db_free(e->dbs[i]);
    }
    free(e->dbs);
    pthread_mutex_destroy(&e->mu);
    free(e->data_dir);
    free(e);
}

/* ---- reads ---- */

static int read_edge_time(void *arg, const struct event_rec *ev)
{
    *(int64_t *)arg = ev->recorded_us;
    return 1;
}

int engine_db_info(struct db *db, struct db_info *out)
{
    memset(out, 0, sizeof(*out));
    struct store_txn *txn;
    int rc = store_txn_begin(db->st, false, &txn);
    if (rc) {
        return rc;
    }
    struct head_rec h;
    rc = store_get_head(txn, &h);
    if (!rc) rc = store_scan_log(txn, 1, false, 1, read_edge_time, &out->oldest_us);
    if (!rc) rc = store_scan_log(txn, UINT64_MAX, true, 1, read_edge_time, &out->newest_us);
    store_txn_abort(txn);
    if (rc) {
        return rc;
    }
    struct store_stats ss;
    rc = store_stats(db->st, &ss);
    out->streams = h.stream_count;
    out->events = h.event_count;
    out->head = h.position;
    memcpy(out->head_hash, h.hash, sizeof h.hash);
    out->created_us = h.created_us;
    out->file_bytes = ss.file_bytes;
    out->used_bytes = ss.used_bytes;
    out->commits = __atomic_load_n(&db->commits, __ATOMIC_RELAXED);
    out->appends = __atomic_load_n(&db->appends, __ATOMIC_RELAXED);
    out->commit_ns = __atomic_load_n(&db->commit_ns, __ATOMIC_RELAXED);
    pthread_mutex_lock(&db->mu);
    out->queue_depth = db->queue_len;
    pthread_mutex_unlock(&db->mu);
    return rc;
}

int engine_stream_info(struct db *db, struct slice stream, struct stream_rec *out)
{
    struct store_txn *txn;
    int rc = store_txn_begin(db->st, false, &txn);
    if (rc) {
        return rc;
    }
    rc = store_get_stream(txn, stream, out);
    store_txn_abort(txn);
    return rc;
}

int engine_read_stream(struct db *db, struct slice stream, uint64_t from, bool backward,
                       size_t limit, engine_event_fn *fn, void *arg, struct stream_rec *out_stream)
{
    struct store_txn *txn;
    int rc = store_txn_begin(db->st, false, &txn);
    if (rc) {
        return rc;
    }
    rc = store_get_stream(txn, stream, out_stream);
    if (!rc) {
        if (backward && from > out_stream->version) {
            from = out_stream->version;
        }
        rc = store_scan_stream(txn, out_stream, from, backward, limit, fn, arg);
    }
    store_txn_abort(txn);
    return rc;
}

int engine_read_log(struct db *db, uint64_t from, bool backward, size_t limit,
                    engine_event_fn *fn, void *arg, uint64_t *out_head)
{
    struct store_txn *txn;
    int rc = store_txn_begin(db->st, false, &txn);
    if (rc) {
        return rc;
    }
    struct head_rec h;
    rc = store_get_head(txn, &h);
    if (!rc) {
        *out_head = h.position;
        rc = store_scan_log(txn, from, backward, limit, fn, arg);
    }
    store_txn_abort(txn);
    return rc;
}

int engine_read_event(struct db *db, uint64_t position, engine_event_fn *fn, void *arg)
{
    struct store_txn *txn;
    int rc = store_txn_begin(db->st, false, &txn);
    if (rc) {
        return rc;
    }
    rc = store_get_event(txn, position, fn, arg);
    store_txn_abort(txn);
    return rc;
}
