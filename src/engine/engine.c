/* Databases and the group-commit write path.
 *
 * Each open database has one writer thread. Appends are pushed on the database's queue; the
 * writer takes everything queued, checks each request's expected version in order against the
 * streams as the batch leaves them, lays out the events of the requests that pass, hands them
 * to the store as one durable write (one fdatasync), and only then runs every request's done
 * callback. A request that fails its check fails alone; a storage error or failed sync fails
 * every request of the batch, and nothing of it is visible.
 *
 * Database life:  (open) --engine_db_delete()--> DELETING: out of the registry, queue closed,
 * writer drained and joined --last engine_db_release()--> files removed, deleter told, freed.
 * Invariant: only the writer thread appends to a database's store. */
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/file.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine_int.h"
#include "store/store.h"
#include "util/assert.h"
#include "util/errors.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/uuid.h"

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

uint64_t engine_db_id(const struct db *db)
{
    return db->id;
}

uint64_t engine_db_lifecycle_changes(struct db *db)
{
    return __atomic_load_n(&db->meta_changes, __ATOMIC_ACQUIRE);
}

struct engine *engine_db_engine(const struct db *db)
{
    return db->e;
}

/* ---- databases ---- */

static void finish_delete(struct db *db);

static void db_free(struct db *db)
{
    compactor_stop(db); /* it reads and rewrites the store */
    webhooks_fini(db); /* their threads read the store */
    pthread_mutex_destroy(&db->hooks_mu);
    groups_fini(db);
    pthread_mutex_destroy(&db->groups_mu);
    derived_close(db, false);
    pthread_mutex_destroy(&db->derived_mu);
    store_close(db->st);
    free(db->evs);
    free(db->evs_src);
    strmap_fini(&db->batch_states);
    strmap_fini(&db->batch_ids);
    strmap_fini(&db->metas);
    strmap_fini(&db->batch_metas);
    strmap_fini(&db->batch_idem);
    free(db->idems);
    pthread_mutex_destroy(&db->watch_mu);
    pthread_rwlock_destroy(&db->meta_lock);
    pthread_mutex_destroy(&db->settings_mu);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db->dir);
    free(db);
}

static int take_recorded(void *arg, const struct event_rec *ev)
{
    *(int64_t *)arg = ev->recorded_us;
    return 1;
}

/* Reads the head event's recorded time (the writer's floor for the next commit time). */
static int load_last_recorded(struct db *db)
{
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    uint64_t head = store_reader_head(r);
    rc = head ? store_get_record(r, head, take_recorded, &db->last_recorded_us) : 0;
    store_read_end(r);
    return rc;
}

/* Settings are kept with the store as JSON text. */
static void settings_format(const struct db_settings *s, struct buf *out)
{
    buf_adds(out, "{\"description\":");
    buf_add_json_str(out, s->description, strlen(s->description));
    buf_printf(out, ",\"retentionPeriodDays\":%llu,\"maxStreamSizeBytes\":%llu,\"rateLimit\":%u,"
               "\"idempotencyTtlSeconds\":%llu,\"updatedUs\":%lld,\"region\":",
               (unsigned long long)s->retention_days, (unsigned long long)s->max_stream_bytes,
               s->rate_limit, (unsigned long long)s->idem_ttl_s, (long long)s->updated_us);
    buf_add_json_str(out, s->region, strlen(s->region));
    buf_addc(out, '}');
}

static int settings_load(struct db *db)
{
    struct buf b;
    buf_init(&b);
    int rc = store_settings(db->st, &b);
    json_t *root = !rc && b.len ? json_loadb(b.ptr, b.len, 0, NULL) : NULL;
    if (root) {
        const char *d = json_string_value(json_object_get(root, "description"));
        snprintf(db->settings.description, sizeof db->settings.description, "%s", d ? d : "");
        db->settings.retention_days =
            (uint64_t)json_integer_value(json_object_get(root, "retentionPeriodDays"));
        db->settings.max_stream_bytes =
            (uint64_t)json_integer_value(json_object_get(root, "maxStreamSizeBytes"));
        db->settings.rate_limit = (uint32_t)json_integer_value(json_object_get(root, "rateLimit"));
        db->settings.idem_ttl_s =
            (uint64_t)json_integer_value(json_object_get(root, "idempotencyTtlSeconds"));
        db->settings.updated_us = json_integer_value(json_object_get(root, "updatedUs"));
        const char *rg = json_string_value(json_object_get(root, "region"));
        snprintf(db->settings.region, sizeof db->settings.region, "%s", rg ? rg : "");
    } else if (!rc && b.len) {
        rc = ERR(ERR_CORRUPT);
    }
    json_decref(root);
    buf_fini(&b);
    return rc;
}

void engine_db_settings(struct db *db, struct db_settings *out)
{
    pthread_mutex_lock(&db->settings_mu);
    *out = db->settings;
    pthread_mutex_unlock(&db->settings_mu);
}

uint32_t engine_db_rate_limit(const struct db *db)
{
    return __atomic_load_n(&db->settings.rate_limit, __ATOMIC_ACQUIRE);
}

/* Gives the store the idempotency TTL of db's settings (or the server's). */
static void apply_idem_ttl(struct db *db)
{
    uint64_t ttl_s = __atomic_load_n(&db->settings.idem_ttl_s, __ATOMIC_ACQUIRE);
    ttl_s = ttl_s ? ttl_s : db->limits->idem_ttl_s ? db->limits->idem_ttl_s
                                                   : LIMIT_DEFAULT_IDEM_TTL_S;
    store_set_idem_ttl(db->st, ttl_s * 1000000u);
}

int engine_db_set_settings(struct db *db, const struct db_settings *given)
{
    struct db_settings copy = *given;
    const struct db_settings *s = &copy;
    copy.updated_us = time_now_us();
    struct buf text;
    buf_init(&text);
    settings_format(s, &text);
    pthread_mutex_lock(&db->settings_mu);
    int rc = store_set_settings(db->st, (struct slice){text.ptr, text.len});
    if (!rc) {
        struct db_settings *d = &db->settings;
        memcpy(d->description, s->description, sizeof d->description);
        memcpy(d->region, s->region, sizeof d->region);
        d->updated_us = s->updated_us;
        __atomic_store_n(&d->retention_days, s->retention_days, __ATOMIC_RELEASE);
        __atomic_store_n(&d->max_stream_bytes, s->max_stream_bytes, __ATOMIC_RELEASE);
        __atomic_store_n(&d->rate_limit, s->rate_limit, __ATOMIC_RELEASE);
        __atomic_store_n(&d->idem_ttl_s, s->idem_ttl_s, __ATOMIC_RELEASE);
        apply_idem_ttl(db);
        /* after the new retention: a compaction planned under the old one gives up */
        __atomic_add_fetch(&db->meta_changes, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&db->settings_mu);
    buf_fini(&text);
    return rc;
}

static int db_open(struct engine *e, const char *name, bool create,
                   const struct db_settings *settings, struct db **out)
{
    struct db *db = xcalloc(1, sizeof(*db));
    snprintf(db->name, sizeof db->name, "%s", name);
    size_t dlen = strlen(e->data_dir) + strlen(name) + 16;
    db->dir = xmalloc(dlen);
    snprintf(db->dir, dlen, "%s/dbs/%s", e->data_dir, name);
    db->e = e;
    db->id = __atomic_add_fetch(&e->next_db_id, 1, __ATOMIC_RELAXED);
    db->limits = &e->limits;
    db->refs = 1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    strmap_init(&db->batch_states, sizeof(struct stream_rec));
    strmap_init(&db->batch_ids, sizeof(size_t));
    strmap_init(&db->metas, sizeof(struct stream_meta));
    strmap_init(&db->batch_metas, sizeof(struct stream_meta));
    strmap_init(&db->batch_idem, sizeof(struct append_req *));
    pthread_mutex_init(&db->watch_mu, NULL);
    pthread_mutex_init(&db->groups_mu, NULL);
    pthread_mutex_init(&db->hooks_mu, NULL);
    pthread_mutex_init(&db->derived_mu, NULL);
    pthread_rwlock_init(&db->meta_lock, NULL);
    pthread_mutex_init(&db->settings_mu, NULL);
    struct buf text;
    buf_init(&text);
    if (create && settings) {
        settings_format(settings, &text);
    }
    int rc = store_open(db->dir, e->limits.map_bytes, create, (struct slice){text.ptr, text.len},
                        &db->st);
    buf_fini(&text);
    if (!rc) rc = settings_load(db);
    if (!rc) {
        apply_idem_ttl(db);
    }
    if (!rc) rc = load_last_recorded(db);
    if (!rc) rc = meta_load(db);
    if (!rc) rc = groups_load(db);
    if (!rc) rc = webhooks_load(db);
    if (!rc) rc = compactor_start(db);
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

int engine_db_create(struct engine *e, const char *name, size_t len,
                     const struct db_settings *settings)
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
        rc = db_open(e, nm, true, settings, &db);
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
    bool last = --db->refs == 0 && db->deleted;
    pthread_mutex_unlock(&db->mu);
    if (last) {
        finish_delete(db);
    }
}

/* Closes a deleted database's store, removes its files and tells the deleter. Runs on the
 * thread that let go of the last reference. */
static void finish_delete(struct db *db)
{
    compactor_stop(db); /* abandons a compaction under way */
    webhooks_fini(db); /* before the store goes: their threads read it */
    store_abandon(db->st);
    db->st = NULL;
    derived_close(db, true); /* its files go before the directory */
    statefile_remove(db->dir, "groups.json");
    statefile_remove(db->dir, "webhooks.json");
    int rc = store_remove_files(db->dir);
    log_info("database %s deleted", db->name);
    engine_deleted_fn *fn = db->deleted_fn;
    void *arg = db->deleted_arg;
    db_free(db);
    fn(arg, rc);
}

int engine_db_delete(struct engine *e, const char *name, size_t len, engine_deleted_fn *done,
                     void *arg)
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
    db->deleted_fn = done;
    db->deleted_arg = arg;
    pthread_mutex_unlock(&db->mu);
    db_stop_writer(db);     /* answers what was queued; never waits for I/O threads */
    watch_notify(db, true); /* live readers let go of it */
    engine_db_release(db);  /* the registry's reference */
    return 0;
}

/* ---- live fan-out ---- */

struct engine_watch {
    struct db *db;
    engine_commit_fn *fn;
    void *arg;
    struct engine_watch *prev, *next;
};

uint64_t engine_db_head(struct db *db)
{
    return store_published(db->st);
}

int engine_watch(struct db *db, engine_commit_fn *fn, void *arg, struct engine_watch **out)
{
    struct engine_watch *w = xcalloc(1, sizeof(*w));
    *w = (struct engine_watch){.db = db, .fn = fn, .arg = arg};
    pthread_mutex_lock(&db->watch_mu);
    bool gone = db->watch_gone;
    if (!gone) {
        w->next = db->watches;
        if (db->watches) {
            db->watches->prev = w;
        }
        db->watches = w;
    }
    pthread_mutex_unlock(&db->watch_mu);
    if (gone) {
        free(w);
        return ERR_GONE;
    }
    *out = w;
    return 0;
}

void engine_unwatch(struct engine_watch *w)
{
    if (!w) {
        return;
    }
    struct db *db = w->db;
    pthread_mutex_lock(&db->watch_mu);
    if (w->prev) {
        w->prev->next = w->next;
    } else if (db->watches == w) {
        db->watches = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&db->watch_mu);
    free(w);
}

void watch_notify(struct db *db, bool gone)
{
    pthread_mutex_lock(&db->watch_mu);
    for (struct engine_watch *w = db->watches; w; w = w->next) {
        w->fn(w->arg, gone);
    }
    if (gone) {
        db->watch_gone = true;
        for (struct engine_watch *w = db->watches, *next; w; w = next) {
            next = w->next;
            w->prev = w->next = NULL; /* detached: engine_unwatch only frees them */
        }
        db->watches = NULL;
    }
    pthread_mutex_unlock(&db->watch_mu);
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

/* The first start of a data directory makes the database "default", then records that it
 * did (<data>/INITIALIZED, durable): from then on a deleted "default" stays deleted. A crash
 * before the record leaves it to the next start, so "default" is never lost to one. */
static int first_start(struct engine *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/INITIALIZED", e->data_dir);
    if (access(path, F_OK) == 0) {
        return 0;
    }
    int rc = find_locked(e, "default", 7, NULL) ? 0 : engine_db_create(e, "default", 7, NULL);
    static const char NOTE[] = "the database default was made; a deleted default stays deleted\n";
    if (!rc && fs_write_atomic(e->data_dir, "INITIALIZED", NOTE, sizeof NOTE - 1, 0640) != 0) {
        rc = ERR(ERR_IO);
    }
    return rc;
}

/* Opens every database under <data>/dbs. */
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
        rc = db_open(e, de->d_name, false, NULL, &db);
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
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", cfg->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        log_error("data directory %s is in use by another annals process (or not writable)",
                  cfg->data_dir);
        if (fd >= 0) {
            close(fd);
        }
        return ERR(ERR_EXISTS);
    }
    struct engine *e = xcalloc(1, sizeof(*e));
    e->lock_fd = fd;
    e->data_dir = xstrndup(cfg->data_dir, strlen(cfg->data_dir));
    e->limits = cfg->limits;
    e->parse_filter = cfg->parse_filter;
    e->format_event = cfg->format_event;
    e->webhook_allow = cfg->webhook_allow;
    e->webhook_formats = cfg->webhook_formats;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->jobs_cv, NULL);
    int rc = workq_new("annals-work", cfg->workers ? cfg->workers : ENGINE_WORKERS,
                       ENGINE_WORK_QUEUE, &e->work);
    if (!rc) rc = open_existing(e);
    if (!rc) rc = first_start(e);
    if (rc) {
        engine_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

int engine_submit(struct engine *e, workq_fn *fn, void *arg)
{
    return workq_submit(e->work, fn, arg);
}

bool engine_job_begin(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool ok = !e->stopping;
    e->jobs += ok;
    pthread_mutex_unlock(&e->mu);
    return ok;
}

void engine_job_end(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (--e->jobs == 0) {
        pthread_cond_broadcast(&e->jobs_cv);
    }
    pthread_mutex_unlock(&e->mu);
}

void engine_stop(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_mutex_unlock(&e->mu);
    if (e->work) {
        workq_stop(e->work, WORKQ_DRAIN); /* queued jobs answer requests the server holds */
    }
    pthread_mutex_lock(&e->mu);
    while (e->jobs) { /* they answer requests the HTTP server still holds */
        pthread_cond_wait(&e->jobs_cv, &e->mu);
    }
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
    workq_free(e->work);
    pthread_cond_destroy(&e->jobs_cv);
    pthread_mutex_destroy(&e->mu);
    close(e->lock_fd); /* releases the lock */
    free(e->data_dir);
    free(e);
}

/* ---- reads ---- */

/* Copies one field of the event it is called with. */
struct edge {
    int64_t recorded_us;       /* recorded time */
    uint8_t hash[32];          /* chain hash */
};

static int read_edge(void *arg, const struct event_rec *ev)
{
    struct edge *e = arg;
    e->recorded_us = ev->recorded_us;
    memcpy(e->hash, ev->hash, sizeof e->hash);
    return 1;
}

int engine_db_info(struct db *db, struct db_info *out)
{
    memset(out, 0, sizeof(*out));
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    out->head = store_reader_head(r);
    struct edge first = {0}, last = {0};
    if (out->head) {
        rc = store_get_record(r, 1, read_edge, &first); /* a header: compacted away or not */
        if (!rc) rc = store_get_record(r, out->head, read_edge, &last);
    }
    store_read_end(r);
    struct store_stats ss;
    if (!rc) rc = store_stats(db->st, &ss);
    if (rc) {
        return rc;
    }
    out->streams = ss.streams;
    out->events = out->head;
    memcpy(out->head_hash, last.hash, sizeof last.hash);
    out->created_us = ss.created_us;
    out->oldest_us = first.recorded_us;
    out->newest_us = last.recorded_us;
    out->file_bytes = ss.file_bytes;
    out->used_bytes = ss.used_bytes;
    out->indexed = ss.indexed;
    out->syncs = ss.syncs;
    out->sync_ns = ss.sync_ns;
    out->index_commits = ss.index_commits;
    out->index_ns = ss.index_ns;
    out->idem_keys = ss.idem_keys;
    out->commits = __atomic_load_n(&db->commits, __ATOMIC_RELAXED);
    out->appends = __atomic_load_n(&db->appends, __ATOMIC_RELAXED);
    out->commit_ns = __atomic_load_n(&db->commit_ns, __ATOMIC_RELAXED);
    pthread_mutex_lock(&db->mu);
    out->queue_depth = db->queue_len;
    pthread_mutex_unlock(&db->mu);
    return 0;
}

/* The newest position a read as of at sees in r's view: the head, lowered by at. */
static int view_head(struct store_reader *r, const struct as_of *at, uint64_t *out)
{
    *out = store_reader_head(r);
    if (at && at->has_pos && at->pos < *out) {
        *out = at->pos;
    }
    if (at && at->has_time) {
        uint64_t p;
        int rc = store_position_at_time(r, at->time_us, false, &p);
        if (rc) {
            return rc;
        }
        if (p < *out) {
            *out = p;
        }
    }
    return 0;
}

/* The oldest visible version of stream (row s of r's view) under its lifecycle settings.
 * Returns 0, ERR_DELETED (tombstone), ERR_NOTFOUND (nothing visible: deleted or expired) or a
 * storage error. */
static int visible_from(struct db *db, struct store_reader *r, struct slice stream,
                        const struct stream_rec *s, uint64_t *out)
{
    struct stream_meta m = {0};
    *out = 1;
    bool has = meta_get(db, stream, &m);
    if (has && m.tombstone) {
        return ERR_DELETED;
    }
    uint64_t retention_us = engine_retained(stream) ? db_retention_us(db) : 0;
    if (retention_us && (!m.max_age_us || m.max_age_us > retention_us)) {
        m.max_age_us = retention_us; /* the database's retention caps every stream's age */
        has = true;
    }
    int rc = has ? meta_min_version(r, &m, s, time_now_us(), out) : 0;
    return rc ? rc : *out > s->version ? ERR_NOTFOUND : 0;
}

bool engine_retained(struct slice stream)
{
    return !(stream.len == sizeof ENGINE_LOGIC_STREAM - 1 &&
             !memcmp(stream.ptr, ENGINE_LOGIC_STREAM, stream.len));
}

bool engine_stream_settings(struct db *db, struct slice stream, struct stream_meta *out)
{
    memset(out, 0, sizeof(*out));
    return meta_get(db, stream, out);
}

int engine_stream_info(struct db *db, struct slice stream, const struct as_of *at,
                       struct stream_rec *out)
{
    return engine_read_stream(db, stream, at, 1, false, 0, NULL, NULL, out, NULL);
}

int engine_read_stream(struct db *db, struct slice stream, const struct as_of *at,
                       uint64_t from, bool backward, size_t limit, engine_event_fn *fn,
                       void *arg, struct stream_rec *out_stream, uint64_t *out_first_visible)
{
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    uint64_t head, vmin = 1;
    rc = view_head(r, at, &head);
    struct stream_meta m;
    if (!rc && meta_get(db, stream, &m) && m.tombstone) {
        rc = ERR_DELETED; /* also when it never had events */
    }
    if (!rc) rc = store_reader_stream_at(r, stream, head, out_stream);
    if (!rc) rc = visible_from(db, r, stream, out_stream, &vmin);
    if (!rc && limit) {
        rc = store_scan_stream(r, stream, out_stream, from, vmin, backward, limit, fn, arg);
    }
    if (out_first_visible) {
        *out_first_visible = vmin;
    }
    store_read_end(r);
    return rc;
}

void vis_init(struct visibility *vis, struct db *db, struct store_reader *r, uint64_t head,
              int64_t now_us)
{
    *vis = (struct visibility){.db = db, .r = r, .head = head, .now_us = now_us};
    strmap_init(&vis->vmin, sizeof(uint64_t));
}

void vis_fini(struct visibility *vis)
{
    strmap_fini(&vis->vmin);
}

bool vis_accept(void *arg, const struct event_rec *ev)
{
    struct visibility *vis = arg;
    uint64_t retention_us = db_retention_us(vis->db); /* ranges start past it: a backstop */
    if (retention_us && ev->recorded_us < vis->now_us - (int64_t)retention_us &&
        engine_retained(ev->stream)) {
        return false;
    }
    if (__atomic_load_n(&vis->db->nmetas, __ATOMIC_ACQUIRE) == 0) {
        return true;
    }
    bool is_new;
    uint64_t *v = strmap_put(&vis->vmin, ev->stream.ptr, ev->stream.len, &is_new);
    if (is_new) {
        struct stream_meta m;
        struct stream_rec s;
        *v = 1;
        if (meta_get(vis->db, ev->stream, &m)) {
            int rc = m.tombstone ? 0 : store_reader_stream_at(vis->r, ev->stream, vis->head, &s);
            if (!rc) rc = m.tombstone ? 0 : meta_min_version(vis->r, &m, &s, vis->now_us, v);
            *v = m.tombstone ? UINT64_MAX : *v;
            vis->err = vis->err ? vis->err : rc;
        }
    }
    return ev->version >= *v;
}

int vis_first_position(struct db *db, struct store_reader *r, int64_t now_us, uint64_t *out)
{
    *out = 1;
    uint64_t retention_us = db_retention_us(db);
    return retention_us ? store_position_at_time(r, now_us - (int64_t)retention_us, true, out) : 0;
}

int vis_query(struct db *db, struct store_reader *r, uint64_t head, int64_t now_us,
              struct store_query *q, store_event_fn *fn, void *arg, struct store_query_result *res)
{
    memset(res, 0, sizeof(*res));
    uint64_t first;
    int rc = vis_first_position(db, r, now_us, &first);
    uint64_t *low = q->backward ? &q->to : &q->from;
    if (*low < first) {
        *low = first; /* events past the retention period are hidden: start at the first kept */
    }
    if (rc || (q->backward ? q->from < q->to : q->from > q->to)) {
        return rc;
    }
    struct visibility vis;
    vis_init(&vis, db, r, head, now_us);
    q->accept = vis_accept;
    q->accept_arg = &vis;
    rc = store_query(r, q, fn, arg, res);
    rc = rc ? rc : vis.err;
    vis_fini(&vis);
    return rc;
}

int engine_query(struct db *db, const struct engine_query *q, engine_event_fn *fn, void *arg,
                 struct engine_query_result *out)
{
    memset(out, 0, sizeof(*out));
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    uint64_t head, lo = 1, hi;
    rc = view_head(r, &q->at, &head);
    hi = head;
    out->head = head;
    if (q->backward) {
        if (q->has_from && q->from < hi) hi = q->from;
        if (q->has_to && q->to > lo) lo = q->to;
    } else {
        if (q->has_from && q->from > lo) lo = q->from;
        if (q->has_to && q->to < hi) hi = q->to;
    }
    if (!rc && q->has_recorded_from) {
        uint64_t p;
        rc = store_position_at_time(r, q->recorded_from_us, true, &p);
        if (p > lo) lo = p;
    }
    if (!rc && q->has_recorded_to) {
        uint64_t p;
        rc = store_position_at_time(r, q->recorded_to_us, false, &p);
        if (p < hi) hi = p;
    }
    if (!rc && lo <= hi) {
        struct store_query sq = {.filter = q->filter, .from = q->backward ? hi : lo,
                                 .to = q->backward ? lo : hi, .backward = q->backward,
                                 .limit = q->limit, .budget = q->budget};
        struct store_query_result res;
        rc = vis_query(db, r, head, time_now_us(), &sq, fn, arg, &res);
        out->next = res.next;
        out->delivered = res.delivered;
        out->examined = res.examined;
    }
    store_read_end(r);
    return rc;
}

/* Skips deleted and expired streams, and the reserved ones unless asked for by prefix. */
struct listing {
    struct db *db;
    struct store_reader *r;
    bool reserved;
    engine_stream_fn *fn;
    void *arg;
};

static int list_visible(void *arg, struct slice name, const struct stream_rec *s)
{
    struct listing *ls = arg;
    if (name.ptr[0] == '$' && !ls->reserved) {
        return 0;
    }
    uint64_t vmin;
    int rc = visible_from(ls->db, ls->r, name, s, &vmin);
    if (rc == ERR_DELETED || rc == ERR_NOTFOUND) {
        return 0;
    }
    return rc ? rc : ls->fn(ls->arg, name, s);
}

int engine_list_streams(struct db *db, struct slice prefix, struct slice after,
                        const struct as_of *at, engine_stream_fn *fn, void *arg)
{
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    uint64_t head;
    struct listing ls = {.db = db, .r = r, .reserved = prefix.len && prefix.ptr[0] == '$',
                         .fn = fn, .arg = arg};
    rc = view_head(r, at, &head);
    if (!rc) rc = store_list_streams(r, prefix, after, head, list_visible, &ls);
    store_read_end(r);
    return rc;
}

/* One event read by position: delivered only when visible. */
struct hidden_check {
    struct db *db;
    struct store_reader *r;
    struct visibility vis;
    engine_event_fn *fn;
    void *arg;
    bool hidden;
};

static int emit_if_visible(void *arg, const struct event_rec *ev)
{
    struct hidden_check *hc = arg;
    if (!vis_accept(&hc->vis, ev)) {
        hc->hidden = true;
        return 1;
    }
    return hc->fn(hc->arg, ev);
}

int engine_read_event(struct db *db, uint64_t position, engine_event_fn *fn, void *arg)
{
    struct store_reader *r;
    int rc = store_read_begin(db->st, &r);
    if (rc) {
        return rc;
    }
    struct hidden_check hc = {.db = db, .r = r, .fn = fn, .arg = arg};
    vis_init(&hc.vis, db, r, store_reader_head(r), time_now_us());
    rc = store_get_event(r, position, emit_if_visible, &hc);
    rc = rc ? rc : hc.vis.err ? hc.vis.err : hc.hidden ? ERR_NOTFOUND : 0;
    vis_fini(&hc.vis);
    store_read_end(r);
    return rc;
}
