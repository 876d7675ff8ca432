/* Consistent copies of a live store (snapshot.h) and the pin that keeps compactions from
 * switching log generations under them.
 *
 * Pins and compactions, guarded by pin_mu:
 *
 *   idle --store_pin--> pinned (pins > 0) --store_unpin (last)--> idle
 *   idle --st_compact_enter--> rewriting --st_compact_leave--> idle
 *
 * store_pin waits while rewriting; st_compact_enter waits while pins > 0 (checking its
 * cancellation every COMPACT_WAIT_MS). Neither holds another lock while it waits, and nothing
 * a pinned backup does waits for a compaction, so the two cannot deadlock.
 *
 * The index copy: LMDB writes the copy (mdb_env_copyfd2, which takes a read transaction, and
 * the writer lock only while it writes the two meta pages, which fit in the empty pipe) into
 * a pipe from a thread of its own; this thread reads the pipe and hands the bytes on. If the
 * consumer stops, closing the read end makes the copier's next write fail (EPIPE; SIGPIPE is
 * blocked on the copier thread) and it ends. env_copies keeps st_reopen_env from closing the
 * environment under the copy. */
#define _GNU_SOURCE /* pipe2, F_SETPIPE_SZ */
#include "store/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/errors.h"
#include "util/timeutil.h"
#include "util/log.h"

enum {
    SNAPSHOT_CHUNK = 256 * 1024,  /* bytes read per copy step */
    PIPE_BYTES = 1 << 20,         /* asked-for pipe capacity (best effort) */
    COMPACT_WAIT_MS = 100,        /* a compaction waiting for pins checks its cancellation */
};

/* ---- pins ---- */

void store_pin(struct store *st)
{
    pthread_mutex_lock(&st->pin_mu);
    while (st->rewriting) {
        pthread_cond_wait(&st->pin_cv, &st->pin_mu);
    }
    st->pins++;
    pthread_mutex_unlock(&st->pin_mu);
}

void store_unpin(struct store *st)
{
    pthread_mutex_lock(&st->pin_mu);
    if (--st->pins == 0) {
        pthread_cond_broadcast(&st->pin_cv);
    }
    pthread_mutex_unlock(&st->pin_mu);
}

int st_compact_enter(struct store *st, bool (*cancelled)(void *arg), void *arg)
{
    pthread_mutex_lock(&st->pin_mu);
    bool logged = false;
    while (st->pins > 0) {
        if (cancelled && cancelled(arg)) {
            pthread_mutex_unlock(&st->pin_mu);
            return ERR_SHUTDOWN;
        }
        if (!logged) {
            log_info("%s: compaction waits for a backup of this database to finish", st->dir);
            logged = true;
        }
        struct timespec ts = time_deadline_ms(COMPACT_WAIT_MS);
        pthread_cond_timedwait(&st->pin_cv, &st->pin_mu, &ts);
    }
    st->rewriting = true;
    pthread_mutex_unlock(&st->pin_mu);
    return 0;
}

void st_compact_leave(struct store *st)
{
    pthread_mutex_lock(&st->pin_mu);
    st->rewriting = false;
    pthread_cond_broadcast(&st->pin_cv);
    pthread_mutex_unlock(&st->pin_mu);
}

/* ---- the index ---- */

/* The copier thread's work. */
struct index_copy {
    MDB_env *env;  /* borrowed: kept open by env_copies */
    int fd;        /* owned: the pipe's write end, closed when the copy ends */
    int rc;        /* mdb_env_copyfd2's answer */
};

static void *copy_main(void *arg)
{
    struct index_copy *c = arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, NULL); /* a reader gone: EPIPE, not a signal */
    c->rc = mdb_env_copyfd2(c->env, c->fd, 0);
    close(c->fd);
    return NULL;
}

/* Reads the pipe to its end, handing each chunk to fn. */
static int drain_pipe(int fd, store_copy_fn *fn, void *arg, uint64_t *out_bytes)
{
    uint8_t *buf = xmalloc(SNAPSHOT_CHUNK);
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, SNAPSHOT_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? ERR(ERR_IO) : 0;
            break;
        }
        *out_bytes += (uint64_t)n;
        rc = fn(arg, buf, (size_t)n);
        if (rc) {
            break;
        }
    }
    free(buf);
    return rc;
}

int store_snapshot_index(struct store *st, store_copy_fn *fn, void *arg, uint64_t *out_bytes)
{
    *out_bytes = 0;
    pthread_rwlock_rdlock(&st->tail_lock); /* st_reopen_env changes env under it exclusively */
    MDB_env *env = st->env;
    if (env) {
        __atomic_add_fetch(&st->env_copies, 1, __ATOMIC_ACQ_REL);
    }
    pthread_rwlock_unlock(&st->tail_lock);
    if (!env) {
        return ERR(ERR_IO); /* a failed reopen left no index */
    }
    int fds[2];
    int rc = pipe2(fds, O_CLOEXEC) == 0 ? 0 : ERR(ERR_IO);
    if (rc) {
        goto out_uncount;
    }
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES); /* fewer switches; the default works too */
    struct index_copy c = {.env = env, .fd = fds[1]};
    pthread_t t;
    if (pthread_create(&t, NULL, copy_main, &c) != 0) {
        close(fds[0]);
        close(fds[1]);
        rc = ERR(ERR_IO);
        goto out_uncount;
    }
    rc = drain_pipe(fds[0], fn, arg, out_bytes);
    close(fds[0]); /* a copier still writing fails with EPIPE and ends */
    pthread_join(t, NULL);
    if (!rc && c.rc) {
        log_error("%s: copying the index failed: %s", st->dir, mdb_strerror(c.rc));
        rc = st_map_err(c.rc);
    }
out_uncount:
    __atomic_sub_fetch(&st->env_copies, 1, __ATOMIC_ACQ_REL);
    return rc;
}

/* ---- the log ---- */

static int copy_hash(void *arg, const struct event_rec *ev)
{
    memcpy(arg, ev->hash, HASH_SHA256_LEN);
    return 1;
}

int store_snapshot_point(struct store *st, struct store_snapshot_point *out)
{
    memset(out, 0, sizeof(*out));
    struct store_reader *r;
    int rc = store_read_begin(st, &r); /* holds the tail lock (shared) until read_end */
    if (rc) {
        return rc;
    }
    struct head_rec h;
    rc = st_get_head(r->txn, st, &h);
    out->position = r->head;
    out->generation = __atomic_load_n(&st->generation, __ATOMIC_ACQUIRE);
    if (!rc && h.generation != out->generation) {
        log_error("%s: the index names log generation %llu, the store %llu", st->dir,
                  (unsigned long long)h.generation, (unsigned long long)out->generation);
        rc = ERR(ERR_IO);
    }
    if (!rc && r->head > r->indexed) {
        const struct tail_entry *e = entry_at(st, r->head); /* written before published */
        out->log_end = e->offset + e->len + e->aux_len;
    } else if (!rc) {
        out->log_end = h.log_end;
    }
    if (!rc && r->head) {
        rc = store_get_record(r, r->head, copy_hash, out->hash);
    }
    store_read_end(r);
    return rc;
}

int store_snapshot_log(struct store *st, const struct store_snapshot_point *pt,
                       store_copy_fn *fn, void *arg)
{
    char path[4096];
    st_log_path(st->dir, pt->generation, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        log_error("%s: cannot open %s for a backup: %s", st->dir, path, strerror(errno));
        return ERR(ERR_IO);
    }
    (void)posix_fadvise(fd, 0, (off_t)pt->log_end, POSIX_FADV_SEQUENTIAL);
    uint8_t *buf = xmalloc(SNAPSHOT_CHUNK);
    uint64_t off = 0;
    int rc = 0;
    while (!rc && off < pt->log_end) {
        size_t want = pt->log_end - off < SNAPSHOT_CHUNK ? (size_t)(pt->log_end - off)
                                                         : SNAPSHOT_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) { /* shorter than its published end: cannot be while pinned */
            log_error("%s: reading %s for a backup failed at offset %llu", st->dir, path,
                      (unsigned long long)off);
            rc = ERR(ERR_IO);
            break;
        }
        rc = fn(arg, buf, (size_t)n);
        off += (uint64_t)n;
    }
    free(buf);
    close(fd);
    return rc;
}

void store_log_name(uint64_t gen, char *out, size_t n)
{
    if (gen == 0) {
        snprintf(out, n, "events.log");
    } else {
        snprintf(out, n, "events.%llu.log", (unsigned long long)gen);
    }
}
