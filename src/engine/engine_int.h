/* Internals of the engine shared by its files (engine.c: databases and reads; writer.c: the
 * group-commit write path). Not for use outside src/engine/. */
#ifndef ENGINE_ENGINE_INT_H
#define ENGINE_ENGINE_INT_H

#include <pthread.h>

#include "engine/engine.h"
#include "store/store.h"
#include "util/strmap.h"

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
    struct strmap batch_states;         /* writer only: name -> stream_rec changed in batch */
    struct strmap batch_ids;            /* writer only: client event id -> index in evs */
    uint64_t commits;                   /* atomic: committed write transactions */
    uint64_t appends;                   /* atomic: acknowledged append requests */
    uint64_t commit_ns;                 /* atomic: time spent in durable commits */
    int64_t last_recorded_us;           /* writer only: recorded time of the head */
};

struct engine {
    char *data_dir;          /* owned copy */
    int lock_fd;             /* holds the exclusive lock on <data>/LOCK */
    struct limits limits;    /* configured limits */
    pthread_mutex_t mu;      /* guards dbs and count */
    struct db **dbs;         /* owned array of open databases */
    size_t count;            /* entries in dbs */
};

/* The writer thread of a database (arg: struct db *). */
void *writer_main(void *arg);

#endif
