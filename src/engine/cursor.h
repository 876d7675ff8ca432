/* The catch-up cursor: the one way a consumer follows a database's log. It reads the committed
 * events that match a filter, in position order, from a start position on, a batch at a time,
 * and waits for (or is told of) new commits; catch-up and live are the same loop. SSE and
 * WebSocket subscribers (ops/live.c), consumer groups (groups.c), webhooks (webhooks.c) and,
 * next, projections use it.
 *
 *     engine_cursor_open(db, &(struct engine_cursor_opts){filter, from, .wait = true}, &c);
 *     while (!stopping) {
 *         rc = engine_cursor_next(c, max, fn, arg, &page);   // fn gets the batch
 *         if (rc) break;                                     // ERR_GONE, or storage
 *         if (page.caught_up) engine_cursor_wait(c, 1000);   // until a commit (or 1 s)
 *     }
 *     engine_cursor_close(c);
 *
 * Exactly which events: every event at or after the cursor's position that
 *   - is committed and durable (at or below the database's head when it is read),
 *   - matches the filter (query/filter.h; NULL: every event), and
 *   - is visible to reads when the cursor reads it: not in a deleted stream, not truncated
 *     or expired by its stream's settings, not past the database's retention period (the
 *     visibility of engine_query). An event hidden when the cursor passes it is skipped for
 *     good.
 * Order and repetition: ascending positions, each event at most once per cursor (a second
 * cursor from the same position sees the same events again), no matching visible event left
 * out between two that were given. The position only moves forward, except by
 * engine_cursor_reset.
 *
 * Compaction never changes positions (it reclaims the space of events that are hidden
 * already), so a position stays valid across it and a cursor needs no care; each
 * engine_cursor_next reads one consistent snapshot. Deletion of the database: the cursor does
 * not keep the database alive (db is borrowed: the caller holds a reference, or the database
 * owns the caller and closes its cursors before it is freed); once the database is deleted,
 * engine_cursor_next returns ERR_GONE and reads nothing, and engine_cursor_wait returns
 * ERR_GONE at once.
 *
 * Threads: a cursor is used by one thread at a time (open, next, wait, reset, close: the
 * owner serializes them, by its lock or by being one thread); engine_cursor_position,
 * engine_cursor_gone and engine_cursor_interrupt may be called from any thread while it is
 * open. engine_cursor_next reads storage in a read transaction (it never waits for the
 * writer): any thread. engine_cursor_wait blocks: workers and the engine's own threads only,
 * never an I/O thread, which asks for on_commit instead and reads when woken. */
#ifndef ENGINE_CURSOR_H
#define ENGINE_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

enum { ENGINE_CURSOR_BUDGET = 65536 }; /* candidates examined per engine_cursor_next */

struct engine_cursor;

struct engine_cursor_opts {
    const struct filter *filter;   /* borrowed until close or the next reset; NULL = every
                                      event */
    uint64_t from;                 /* the first position to read (1-based; 0 is taken as 1;
                                      past the head: only events committed later) */
    size_t budget;                 /* candidates examined per next (0: ENGINE_CURSOR_BUDGET):
                                      a filter no index narrows must not scan a large log in
                                      one call */
    bool wait;                     /* engine_cursor_wait will be used (registers for commits) */
    engine_commit_fn *on_commit;   /* NULL, or called on the writer thread after each commit
                                      (gone false) and once when the database is deleted
                                      (gone true): quick, no engine calls (engine_watch's
                                      rules); for owners that cannot block */
    void *on_commit_arg;
};

/* What one engine_cursor_next did. */
struct engine_cursor_page {
    size_t delivered;   /* events passed to fn (the last one counted even when fn stopped) */
    bool stopped;       /* fn returned 1: the cursor goes on after the last event it got */
    bool caught_up;     /* nothing more matches up to head now: wait for a commit. False with
                           delivered 0: the budget ran out on candidates that did not match
                           (call again, after letting others run) */
    uint64_t head;      /* the head of the snapshot read */
    uint64_t position;  /* the cursor's position now: the next position to read */
};

/* Opens a cursor on db. Returns 0 with *out set, or ERR_GONE (db is deleted already). */
int engine_cursor_open(struct db *db, const struct engine_cursor_opts *opts,
                       struct engine_cursor **out);

/* Reads the next matching events, at most max (>= 1), calling fn for each in order (ev is
 * valid during the call only; fn returns 0 to go on, 1 to stop after this event), and moves
 * the cursor past what it examined (after the last event given, when fn stopped). Returns 0,
 * ERR_GONE (the database was deleted; nothing read) or a storage error (ERR_IO, ERR_CORRUPT;
 * the position did not move: call again later). A commit that lands while it reads counts
 * for the next engine_cursor_wait. */
int engine_cursor_next(struct engine_cursor *c, size_t max, engine_event_fn *fn, void *arg,
                       struct engine_cursor_page *out);

/* Blocks until a commit since the last engine_cursor_next began, the database is deleted,
 * the cursor is interrupted, or timeout_ms pass. Returns 0 (read again: a commit, or the time
 * ran out), ERR_GONE (deleted), ERR_SHUTDOWN (interrupted) or ERR_INVALID (opened without
 * opts.wait). Never on an I/O thread. */
int engine_cursor_wait(struct engine_cursor *c, uint64_t timeout_ms);

/* Makes a wait under way, and every later one, return ERR_SHUTDOWN at once (the owner is
 * stopping). Any thread. */
void engine_cursor_interrupt(struct engine_cursor *c);

/* The next position the cursor reads (every matching visible event before it was given or
 * skipped). Any thread. */
uint64_t engine_cursor_position(const struct engine_cursor *c);

/* True once the database was deleted. Any thread. */
bool engine_cursor_gone(const struct engine_cursor *c);

/* Starts over with another filter (borrowed as in opts; NULL: every event) from position from
 * (a new subscription on the same connection). */
void engine_cursor_reset(struct engine_cursor *c, const struct filter *filter, uint64_t from);

/* Closes the cursor; on return its on_commit is not running and will not run again. NULL is
 * a no-op. */
void engine_cursor_close(struct engine_cursor *c);

#endif
