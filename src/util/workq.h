/* A worker pool: a fixed set of threads taking jobs (fn, arg) from a bounded FIFO queue.
 *
 * It is for work that must not run on an I/O thread (it would stall every connection of that
 * thread) or on a writer thread (it would stall every commit of a database): host name
 * resolution, file syncs of slow state, and later user code. docs/design/architecture.md,
 * "Threads", says which work goes where.
 *
 * Contract:
 *   - A job whose workq_submit returned 0 runs exactly once, on one of the pool's threads
 *     (never on the submitting thread), with cancelled false, or with cancelled true when the
 *     pool was stopped with WORKQ_CANCEL before the job began (it must then only release what
 *     it holds). A job whose submission failed never runs.
 *   - Jobs start in submission order; with more than one thread they may run concurrently
 *     and end in any order.
 *   - A job may submit further jobs; it must not call workq_stop or workq_free on its pool.
 *
 *   RUNNING --workq_stop(WORKQ_DRAIN)--> DRAINING (submissions refused; queued jobs run as
 *           usual) --queue empty, threads joined--> STOPPED
 *   RUNNING --workq_stop(WORKQ_CANCEL)--> CANCELLING (submissions refused; queued jobs run
 *           with cancelled true) --queue empty, threads joined--> STOPPED
 *
 * Threads: workq_submit and workq_queued from any thread; workq_stop and workq_free from any
 * thread but the pool's own. */
#ifndef UTIL_WORKQ_H
#define UTIL_WORKQ_H

#include <stdbool.h>
#include <stddef.h>

struct workq;

/* A job. arg is the submitter's, handed over with the job: the job frees what it owns. */
typedef void workq_fn(void *arg, bool cancelled);

enum workq_stop_mode {
    WORKQ_DRAIN,  /* queued jobs run normally before the threads end */
    WORKQ_CANCEL, /* queued jobs that have not begun run with cancelled true */
};

/* Starts a pool of threads threads (named name, at most 15 bytes, in tools like top) and a
 * queue holding at most cap jobs waiting for a thread. Returns 0 with *out set, ERR_INVALID
 * (threads or cap is 0) or ERR_IO (a thread could not start; none is left running). */
int workq_new(const char *name, unsigned threads, size_t cap, struct workq **out);

/* Queues fn(arg, ...). Returns 0 (it runs exactly once), ERR_TOOBIG (cap jobs are waiting
 * already: try later or refuse the request) or ERR_SHUTDOWN (the pool is stopping). Never
 * blocks on a job. */
int workq_submit(struct workq *q, workq_fn *fn, void *arg);

/* Jobs waiting for a thread now (not counting running ones). */
size_t workq_queued(struct workq *q);

/* Refuses new jobs, lets the queued ones run (mode says how), waits for the running ones and
 * joins the threads. Idempotent: a later call (any mode) returns once the pool has stopped. */
void workq_stop(struct workq *q, enum workq_stop_mode mode);

/* Stops the pool (WORKQ_DRAIN, when not stopped already) and frees it. NULL is a no-op. */
void workq_free(struct workq *q);

#endif
