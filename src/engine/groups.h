/* Durable subscriptions with consumer groups (server-side, pull): a named subscription of a
 * database has a filter and a start position; consumers pull batches of matching events, each
 * leased to the consumer for the ack timeout; they acknowledge or reject each event. An event
 * not acknowledged in time (or rejected) is delivered again, up to max_retries more times,
 * then parked (a dead-letter list that can be read and replayed). Events of one stream go to
 * one consumer at a time and in order: while a consumer holds unacknowledged events of a
 * stream, later events of that stream go to it alone. The checkpoint (every position at or
 * below it is acknowledged or parked), the definitions and the parked lists are durable, in
 * the database directory's groups.json (rewritten atomically); after a restart delivery
 * resumes after the checkpoint (at least once: what was acknowledged past it is delivered
 * again). Each subscription reads the log with its own catch-up cursor (engine/cursor.h),
 * under the database's groups mutex. Any thread; one mutex per database.
 *
 * Filters are kept as the client's JSON text and parsed with the engine's filter parser
 * (engine_config.parse_filter). */
#ifndef ENGINE_GROUPS_H
#define ENGINE_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

enum {
    GROUP_NAME_BYTES = 64,       /* [A-Za-z0-9_.-]{1,64} */
    GROUP_CONSUMER_BYTES = 64,   /* consumer ids: the same alphabet */
    GROUPS_MAX = 100,            /* subscriptions per database */
    GROUP_PENDING_MAX = 10000,   /* events read and not yet acknowledged, per subscription */
    GROUP_PARKED_MAX = 10000,    /* parked events kept per subscription (oldest dropped) */
    GROUP_FILTER_BYTES = 16384,  /* a filter's JSON text */
    GROUP_PULL_MAX = 1000,       /* events per pull */
    GROUP_SAVE_MS = 100,         /* checkpoints are written at most this often */
    GROUP_FILL_PAGES = 4,        /* query pages (65,536 candidates each) read per pull */
};

struct group_def {
    char name[GROUP_NAME_BYTES + 1];
    struct slice filter;       /* JSON text of the filter ("" or "{}": every event) */
    uint64_t start;            /* first position to deliver (head + 1: only new events) */
    uint32_t ack_timeout_s;    /* lease length */
    uint32_t max_retries;      /* deliveries after the first before an event is parked */
};

struct group_info {
    char name[GROUP_NAME_BYTES + 1];
    const char *filter;        /* borrowed during the callback */
    uint32_t ack_timeout_s, max_retries;
    uint64_t checkpoint;       /* every position <= it is acknowledged or parked */
    uint64_t read_to;          /* positions below this were read into pending */
    size_t pending;            /* read and not acknowledged */
    size_t leased;             /* of those, leased to a consumer now */
    size_t parked;
    int64_t created_us;
};

/* True for a valid subscription name or consumer id. */
bool group_name_ok(const char *s, size_t len);

/* Creates a subscription. Returns 0, ERR_EXISTS, ERR_INVALID (the filter does not parse),
 * ERR_TOOBIG (GROUPS_MAX) or ERR_IO (groups.json could not be written; nothing changed). */
int engine_group_create(struct db *db, const struct group_def *def);
/* Returns 0, ERR_NOTFOUND or ERR_IO. */
int engine_group_delete(struct db *db, const char *name);
typedef void group_info_fn(void *arg, const struct group_info *g);
/* Calls fn for each subscription (name order) or the named one. Returns 0 or ERR_NOTFOUND. */
int engine_group_list(struct db *db, const char *only, group_info_fn *fn, void *arg);

/* Called per leased event with its delivery attempt (1 = first). Return 0 to go on, 1 to
 * stop (the answer is full): the events not passed to fn are not leased. */
typedef int group_event_fn(void *arg, const struct event_rec *ev, uint32_t attempt);
/* Leases up to max events to consumer and calls fn for each, in position order. Returns 0,
 * ERR_NOTFOUND, or a storage error. */
int engine_group_pull(struct db *db, const char *name, const char *consumer, size_t max,
                      group_event_fn *fn, void *arg);
/* How many events consumer holds leases on now. Returns 0 or ERR_NOTFOUND. */
int engine_group_leased(struct db *db, const char *name, const char *consumer, size_t *out);
/* Acknowledges positions (pending ones; others are ignored); *done gets how many were
 * pending. Returns 0 or ERR_NOTFOUND. */
int engine_group_ack(struct db *db, const char *name, const uint64_t *pos, size_t n,
                     size_t *done);
/* Rejects positions: delivered again at once, or parked when park (or out of retries). */
int engine_group_nack(struct db *db, const char *name, const uint64_t *pos, size_t n, bool park,
                      size_t *done);
/* Calls fn for the parked events (oldest first, from position from, at most limit). */
int engine_group_parked(struct db *db, const char *name, uint64_t from, size_t limit,
                        engine_event_fn *fn, void *arg);
/* Puts parked positions (all when n == 0) back for delivery, attempts reset. */
int engine_group_replay(struct db *db, const char *name, const uint64_t *pos, size_t n,
                        size_t *done);

#endif
