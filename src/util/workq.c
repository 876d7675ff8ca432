/* The worker pool (workq.h): a ring of at most cap jobs under one mutex; idle workers wait on
 * a condition variable. Invariants: count <= cap; once stopping is set no job is added; a
 * worker ends only when stopping is set and the ring is empty, so every queued job runs. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "util/workq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/assert.h"
#include "util/buf.h"
#include "util/errors.h"

struct job {
    workq_fn *fn;
    void *arg;
};

struct workq {
    pthread_mutex_t mu;      /* guards every field below but threads and nthreads */
    pthread_cond_t work_cv;  /* a job was queued, or the pool stops */
    pthread_cond_t done_cv;  /* the pool has stopped (for a second workq_stop) */
    struct job *ring;        /* cap entries; count of them from head */
    size_t cap, head, count;
    bool stopping;           /* no more submissions; workers end once the ring is empty */
    bool cancel;             /* queued jobs run with cancelled true */
    bool stopped;            /* the threads are joined */
    pthread_t *threads;      /* nthreads; joined by the first workq_stop */
    unsigned nthreads;
    char name[16];
};

static bool workq_check(const struct workq *q)
{
    return q->count <= q->cap && q->head < q->cap && (!q->stopped || q->count == 0);
}

static void *worker_main(void *arg)
{
    struct workq *q = arg;
    pthread_setname_np(pthread_self(), q->name);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->count == 0 && !q->stopping) {
            pthread_cond_wait(&q->work_cv, &q->mu);
        }
        if (q->count == 0) {
            break; /* stopping, and nothing left to run */
        }
        struct job j = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        bool cancelled = q->cancel;
        pthread_mutex_unlock(&q->mu);
        j.fn(j.arg, cancelled);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Frees q's memory (its threads are joined or were never started). */
static void destroy(struct workq *q)
{
    pthread_cond_destroy(&q->done_cv);
    pthread_cond_destroy(&q->work_cv);
    pthread_mutex_destroy(&q->mu);
    free(q->threads);
    free(q->ring);
    free(q);
}

int workq_new(const char *name, unsigned threads, size_t cap, struct workq **out)
{
    if (threads == 0 || cap == 0) {
        return ERR_INVALID;
    }
    struct workq *q = xcalloc(1, sizeof(*q));
    snprintf(q->name, sizeof q->name, "%s", name);
    q->ring = xcalloc(cap, sizeof(*q->ring));
    q->cap = cap;
    q->threads = xcalloc(threads, sizeof(*q->threads));
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work_cv, NULL);
    pthread_cond_init(&q->done_cv, NULL);
    for (; q->nthreads < threads; q->nthreads++) {
        if (pthread_create(&q->threads[q->nthreads], NULL, worker_main, q) != 0) {
            workq_stop(q, WORKQ_DRAIN); /* the ring is empty: the started ones just end */
            destroy(q);
            return ERR(ERR_IO);
        }
    }
    *out = q;
    return 0;
}

int workq_submit(struct workq *q, workq_fn *fn, void *arg)
{
    pthread_mutex_lock(&q->mu);
    ASSERT(workq_check(q));
    int rc = q->stopping ? ERR_SHUTDOWN : q->count == q->cap ? ERR_TOOBIG : 0;
    if (!rc) {
        q->ring[(q->head + q->count) % q->cap] = (struct job){fn, arg};
        q->count++;
        pthread_cond_signal(&q->work_cv);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t workq_queued(struct workq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void workq_stop(struct workq *q, enum workq_stop_mode mode)
{
    pthread_mutex_lock(&q->mu);
    if (q->stopping) { /* another call stops it: wait for that one */
        while (!q->stopped) {
            pthread_cond_wait(&q->done_cv, &q->mu);
        }
        pthread_mutex_unlock(&q->mu);
        return;
    }
    q->stopping = true;
    q->cancel = mode == WORKQ_CANCEL;
    pthread_cond_broadcast(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->nthreads; i++) {
        pthread_join(q->threads[i], NULL);
    }
    pthread_mutex_lock(&q->mu);
    ASSERT(q->count == 0);
    q->stopped = true;
    pthread_cond_broadcast(&q->done_cv);
    ASSERT(workq_check(q));
    pthread_mutex_unlock(&q->mu);
}

void workq_free(struct workq *q)
{
    if (!q) {
        return;
    }
    workq_stop(q, WORKQ_DRAIN);
    destroy(q);
}
