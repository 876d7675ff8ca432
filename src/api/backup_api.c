/* The backup route's transport: a producer thread (engine_backup) and the connection's stream
 * pump share a job; frames pass through its queue, bounded by BACKUP_API_BUFFER_BYTES.
 *
 *   producing --engine_backup returns--> done (the pump sends what is queued, then ends)
 *   any --the connection closes (cleanup)--> closed: the producer's next frame fails with
 *   ERR_GONE, engine_backup unwinds (unpin, release) and the thread ends
 *
 * The job is freed by whichever of the producer and the connection lets go last (refs). The
 * producer calls http_stream_wake only under the job's lock and only while !closed, and the
 * cleanup sets closed under that lock: no wake follows the cleanup.
 *
 * The producer has a thread of its own (an engine job, engine_job_begin), not a worker of the
 * engine's pool (engine_submit): a backup lasts as long as its client takes to read every
 * database, minutes or hours, waiting on the client between frames; on the pool it would hold
 * one of the few workers for all that time and queue every short job (webhook creations)
 * behind it. */
#include "api/backup_api.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/out.h"
#include "backup/frame.h"
#include "engine/backup.h"
#include "util/errors.h"
#include "util/log.h"
#include "util/timeutil.h"

/* One backup answer. Fields are guarded by mu unless noted. */
struct backup_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* the queue has room, or the connection closed */
    struct engine *e;           /* borrowed; the job holds an engine job (engine_job_begin) */
    const char *version;        /* static */
    struct http_req *req;       /* the stream; NULL once closed */
    struct buf q;               /* frames waiting for the connection, from q_off */
    size_t q_off;               /* bytes of q already written to the connection */
    bool closed;                /* the connection closed: nothing more goes out */
    bool done;                  /* the producer finished: q holds the last frames */
    unsigned refs;              /* the producer's and the connection's */
    uint64_t last_out_ms;       /* pump only: when it last wrote (keepalives) */
};

static void job_unref(struct backup_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        buf_fini(&j->q);
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
    }
}

static size_t queued(const struct backup_job *j)
{
    return j->q.len - j->q_off;
}

/* Queues a frame and wakes the pump when the queue was empty (it waits for a wake then). */
static void enqueue(struct backup_job *j, const uint8_t *p, size_t n)
{
    bool was_empty = queued(j) == 0;
    buf_add(&j->q, p, n);
    if (was_empty && !j->closed) {
        http_stream_wake(j->req);
    }
}

/* The producer's sink: waits for room, then queues the frame. */
static int on_frame(void *arg, const uint8_t *p, size_t n)
{
    struct backup_job *j = arg;
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    while (!j->closed && queued(j) > 0 && queued(j) + n > BACKUP_API_BUFFER_BYTES) {
        if (engine_backup_stopping(j->e)) {
            break;
        }
        struct timespec ts = time_deadline_ms(BACKUP_API_WAIT_MS);
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    if (j->closed) {
        rc = ERR_GONE;
    } else if (engine_backup_stopping(j->e)) {
        rc = ERR_SHUTDOWN; /* engine_stop waits for this job: do not keep it waiting */
    } else {
        enqueue(j, p, n);
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* Queues an ERROR frame saying why the backup stopped (past the buffer's bound: it is small
 * and the last). */
static void enqueue_error(struct backup_job *j, int rc)
{
    const char *msg = rc == ERR_SHUTDOWN ? "the server is shutting down"
                      : rc == ERR_CORRUPT ? "a database failed its checks (see the server log)"
                                          : "a storage error stopped the backup (see the server "
                                            "log)";
    struct buf text, frame;
    buf_init(&text);
    buf_init(&frame);
    buf_printf(&text, "{\"code\":\"%s\",\"message\":\"%s\"}",
               rc == ERR_SHUTDOWN ? "shutting_down" : err_name(rc), msg);
    backup_frame_encode(&frame, BACKUP_ERROR, text.ptr, text.len);
    enqueue(j, (const uint8_t *)frame.ptr, frame.len);
    buf_fini(&frame);
    buf_fini(&text);
}

static void *producer_main(void *arg)
{
    struct backup_job *j = arg;
    struct engine *e = j->e;
    int rc = engine_backup(e, j->version, on_frame, j);
    pthread_mutex_lock(&j->mu);
    if (rc && !j->closed) {
        enqueue_error(j, rc);
    }
    j->done = true;
    if (!j->closed) {
        http_stream_wake(j->req);
    }
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    engine_job_end(e); /* last: engine_stop may go on and free what the job used */
    return NULL;
}

/* Moves queued bytes to the connection while it has room. Returns true when it stopped for
 * lack of room (call again once the output drained). */
static bool on_pump(void *arg, struct http_req *req, enum http_pump_reason why)
{
    struct backup_job *j = arg;
    uint64_t now_ms = time_mono_ns() / 1000000;
    pthread_mutex_lock(&j->mu);
    size_t room;
    while (queued(j) > 0 && (room = http_stream_room(req)) > 0) {
        size_t n = queued(j) < room ? queued(j) : room;
        http_stream_write(req, j->q.ptr + j->q_off, n);
        j->q_off += n;
        j->last_out_ms = now_ms;
    }
    bool more = queued(j) > 0;
    if (!more) {
        buf_reset(&j->q);
        j->q_off = 0;
    } else if (j->q_off >= BACKUP_API_BUFFER_BYTES / 2) {
        memmove(j->q.ptr, j->q.ptr + j->q_off, queued(j));
        j->q.len = queued(j);
        j->q_off = 0;
    }
    pthread_cond_broadcast(&j->cv); /* room for the producer */
    if (!more && j->done) {
        http_stream_end(req);
    } else if (!more && why == HTTP_PUMP_TICK &&
               now_ms - j->last_out_ms >= BACKUP_API_KEEPALIVE_S * 1000ull) {
        uint8_t ka[BACKUP_FRAME_HEADER] = {BACKUP_KEEPALIVE}; /* between frames: q is empty */
        http_stream_write(req, ka, sizeof ka);
        j->last_out_ms = now_ms;
    }
    pthread_mutex_unlock(&j->mu);
    return more;
}

/* The connection closed: the producer stops at its next frame. */
static void on_closed(void *user)
{
    struct backup_job *j = user;
    pthread_mutex_lock(&j->mu);
    j->closed = true;
    j->req = NULL;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

void backup_api_start(struct http_req *req, struct engine *e, const char *version)
{
    if (strcmp(http_req_method(req), "HEAD") == 0) {
        struct buf none;
        buf_init(&none);
        http_respond(req, 200, &none, BACKUP_CONTENT_TYPE); /* no backup for a HEAD */
        return;
    }
    if (!engine_job_begin(e)) {
        out_error(req, 503, "shutting_down", "the server is shutting down", NULL);
        return;
    }
    struct backup_job *j = xcalloc(1, sizeof(*j));
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    buf_init(&j->q);
    j->e = e;
    j->version = version;
    j->req = req;
    j->refs = 2;
    j->last_out_ms = time_mono_ns() / 1000000;
    http_set_user(req, j, on_closed);
    http_add_header(req, "Cache-Control", "no-store");
    http_stream_start(req, 200, BACKUP_CONTENT_TYPE, on_pump, j);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    if (pthread_create(&t, &attr, producer_main, j) != 0) {
        log_error("backup: cannot start its thread");
        pthread_mutex_lock(&j->mu);
        enqueue_error(j, ERR_IO);
        j->done = true;
        j->refs--; /* no producer: the connection's reference is the last */
        pthread_mutex_unlock(&j->mu);
        engine_job_end(e);
    }
    pthread_attr_destroy(&attr);
}
