/* Internals of the engine shared by its files (engine.c: databases and reads; writer.c: the
 * group-commit write path). Not for use outside src/engine/. */
#ifndef ENGINE_ENGINE_INT_H
#define ENGINE_ENGINE_INT_H

#include <pthread.h>

#include "engine/engine.h"
#include "engine/statefile.h"
#include "store/store.h"
#include "util/strmap.h"
#include "util/workq.h"

struct kv;

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
    engine_deleted_fn *deleted_fn;      /* called once a deleted database is gone */
    void *deleted_arg;                  /* its argument */
    struct event_rec *evs;              /* writer only: the batch's events */
    size_t evs_cap;                     /* entries allocated in evs */
    struct append_event **evs_src;      /* writer only: the append event of each of evs */
    struct strmap batch_states;         /* writer only: name -> stream_rec changed in batch */
    struct strmap batch_ids;            /* writer only: client event id -> index in evs */
    uint64_t commits;                   /* atomic: committed write transactions */
    uint64_t appends;                   /* atomic: acknowledged append requests */
    uint64_t commit_ns;                 /* atomic: time spent in durable commits */
    int64_t last_recorded_us;           /* writer only: recorded time of the head */
    pthread_mutex_t settings_mu;        /* guards settings.description; serializes changes */
    struct db_settings settings;        /* the numbers are atomic (read without the lock) */
    pthread_rwlock_t meta_lock;         /* guards metas */
    struct strmap metas;                /* stream name -> struct stream_meta (meta.c) */
    size_t nmetas;                      /* atomic: metas.count, read without the lock */
    struct strmap batch_metas;          /* writer only: metadata changed in this batch */
    struct strmap batch_idem;           /* writer only: idempotency key -> request (struct
                                           append_req *) storing it in this batch */
    struct idem_rec *idems;             /* writer only: the batch's idempotency records */
    pthread_mutex_t watch_mu;           /* guards watches, watch_gone; held while notifying */
    struct engine_watch *watches;       /* told of commits (engine_watch) */
    bool watch_gone;                    /* the database was deleted: no new watches */
    pthread_mutex_t groups_mu;          /* guards the durable subscriptions (groups.c) */
    struct group **groups;              /* owned */
    size_t ngroups;
    struct statefile groups_file;       /* groups.json (guarded by groups_mu) */
    pthread_mutex_t hooks_mu;           /* guards the webhooks (webhooks.c) */
    struct webhook **hooks;             /* owned */
    size_t nhooks;
    struct statefile hooks_file;        /* webhooks.json (guarded by hooks_mu) */
    size_t idems_cap;                   /* entries allocated in idems */
    uint64_t meta_changes;              /* atomic: lifecycle changes laid out by the writer
                                           (a compaction planned before one is abandoned) */
    pthread_t compactor;                /* compactor.c */
    bool has_compactor;                 /* the thread runs */
    pthread_mutex_t compact_mu;         /* guards the fields below */
    pthread_cond_t compact_cv;          /* wakes the compactor */
    bool compact_asked;                 /* a compaction was requested */
    bool compact_stop;                  /* atomic: the database closes */
    struct compact_status compact;      /* what it did */
    uint64_t id;                        /* unique among the databases this process opened */
    pthread_mutex_t derived_mu;         /* guards derived's opening */
    struct kv *derived;                 /* derived-state store (derived.c), opened lazily */
};

/* Closes db's derived-state store (the database is closing and unused), removing its files
 * when remove (a deleted database). */
void derived_close(struct db *db, bool remove);

struct engine {
    char *data_dir;          /* owned copy */
    int lock_fd;             /* holds the exclusive lock on <data>/LOCK */
    struct limits limits;    /* configured limits */
    engine_filter_parse_fn *parse_filter; /* from the config */
    engine_event_json_fn *format_event;   /* from the config */
    const char *webhook_allow;            /* from the config */
    const struct webhook_format *const *webhook_formats; /* from the config */
    struct workq *work;      /* owned: the worker pool (engine_submit) */
    pthread_mutex_t mu;      /* guards dbs and count, jobs, stopping */
    pthread_cond_t jobs_cv;  /* signalled when jobs falls to 0 */
    unsigned jobs;           /* background jobs running (engine_job_begin) */
    bool stopping;           /* engine_stop has begun: no new jobs */
    struct db **dbs;         /* owned array of open databases */
    size_t count;            /* entries in dbs */
    uint64_t next_db_id;     /* atomic: the last id given to an opened database */
};

/* The metadata stream's event type and name prefix. */
#define META_EVENT_TYPE "$metadata"
#define META_STREAM_PREFIX "$$"

/* Parses a "$metadata" event's data. Returns 0 or ERR_CORRUPT. */
int meta_parse(struct slice data, struct stream_meta *out);
/* Appends the JSON text of m (only its set fields) to out. */
void meta_format(const struct stream_meta *m, struct buf *out);
/* The published settings of stream; false when it has none. Any thread. */
bool meta_get(struct db *db, struct slice stream, struct stream_meta *out);
/* Publishes new settings of stream (writer, after the commit holding them). */
void meta_publish(struct db *db, struct slice stream, const struct stream_meta *m);
/* (Re)loads every stream's settings from the store. */
int meta_load(struct db *db);
/* The oldest visible version of stream s under m in r's view at now_us (s->version + 1 when
 * nothing is visible). Returns 0 or a storage error. */
int meta_min_version(struct store_reader *r, const struct stream_meta *m,
                     const struct stream_rec *s, int64_t now_us, uint64_t *out);

/* The database's retention period in µs (0 = none): events recorded longer ago are hidden
 * from reads and conditions, and compaction reclaims them. */
static inline uint64_t db_retention_us(const struct db *db)
{
    return __atomic_load_n(&db->settings.retention_days, __ATOMIC_ACQUIRE) * 86400ull *
           1000000ull;
}

/* Tells every watcher of db of a commit (gone false) or of its deletion (gone true). */
void watch_notify(struct db *db, bool gone);

/* Loads the durable subscriptions of db (groups.json, engine/statefile.h). Returns 0 or
 * ERR_CORRUPT. */
int groups_load(struct db *db);
/* Saves moved checkpoints (unless the database was deleted) and frees the subscriptions. */
void groups_fini(struct db *db);
/* Starts / stops the webhooks of db (webhooks.c). */
int webhooks_load(struct db *db);
void webhooks_fini(struct db *db);

/* Starts / stops the compactor thread of db (compactor.c). */
int compactor_start(struct db *db);
void compactor_stop(struct db *db);

/* Which stored events readers see (engine.c): events of deleted and expired streams and events
 * past the database's retention period are hidden; the oldest visible version of each stream
 * with settings is computed once per use. vis_accept is a store_query accept function; err
 * keeps the first storage error it met. */
struct visibility {
    struct db *db;
    struct store_reader *r;
    uint64_t head;      /* the view's head (asOf): streams are judged as of it */
    int64_t now_us;
    struct strmap vmin; /* stream name -> uint64_t oldest visible version */
    int err;            /* first storage error */
};
void vis_init(struct visibility *vis, struct db *db, struct store_reader *r, uint64_t head,
              int64_t now_us);
bool vis_accept(void *arg, const struct event_rec *ev);
void vis_fini(struct visibility *vis);
/* The oldest position past the database's retention period as of now_us (1 without one).
 * Returns 0 or a storage error. */
int vis_first_position(struct db *db, struct store_reader *r, int64_t now_us, uint64_t *out);
/* Runs q (filter, range, limit, budget set) over the events readers see in r's view as of
 * head (asOf) and now_us: the range starts no earlier than vis_first_position, and vis_accept
 * judges each match. res is zeroed for an empty range. Returns 0 or a storage error. */
int vis_query(struct db *db, struct store_reader *r, uint64_t head, int64_t now_us,
              struct store_query *q, store_event_fn *fn, void *arg, struct store_query_result *res);

/* The writer thread of a database (arg: struct db *). */
void *writer_main(void *arg);

#endif
