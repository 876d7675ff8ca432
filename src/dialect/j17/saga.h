/* Running j17 sagas (docs/dialects/j17.md, "Running sagas"), the pure part: the records a saga
 * instance leaves in the stream J17_TIMER_STREAM and the state of the running instances of one
 * database, rebuilt by applying those records in stream order. No I/O, no clock: the timer
 * thread (timers.c, sagas.c) reads and writes the records; unit-tested in
 * tests/unit/j17_saga_test.c.
 *
 * Records (each an event of J17_TIMER_STREAM, data a JSON object). They hold positions, never
 * copies of events, so that no record can grow past --max-event-bytes or the JSON depth limit
 * with the events it names:
 *   J17_SAGA_START  {"saga", "instance", "trigger_offset", "depth"}: the trigger event is at
 *                   the record's position + trigger_offset (!= 0; both are in one commit);
 *                   depth 0 for an instance a client write or a fired timer started, the
 *                   starting instance's depth + 1 for one a saga's step or compensation
 *                   started (at most J17_SAGA_DEPTH_MAX); tags [J17_SAGA_TAG<id>]; written in
 *                   the commit of the trigger event
 *   J17_SAGA_STEP   {"instance", "step", "state": "skipped" | "done" | "awaiting", "at_ms",
 *                   awaiting: "events" (events of its append before it: the step's emitted
 *                   event is the first, at its position - events), "await": {"stream",
 *                   "event_types"}, "timeout_ms"?; done after an await: "prev_position" (the
 *                   awaited event's)}; tags [J17_SAGA_TAG<id>, J17_SAGA_STEP_TAG<id>:<i>] when
 *                   written with the step's emit, [J17_SAGA_TAG<id>, J17_SAGA_DONE_TAG<id>:<i>]
 *                   when an await completes
 *   J17_SAGA_ENDED  {"instance", "status": "completed" | "compensated" | "failed",
 *                   "failed_step"?, "reason"?, "compensated"?, "uncompensated"?};
 *                   tags [J17_SAGA_TAG<id>, J17_SAGA_END_TAG<id>]
 *
 * One instance (j_sagas_apply performs every transition; a record that does not fit the
 * instance's state is ignored, so applying a record twice changes nothing):
 *
 *   start --> RUN(0)
 *   RUN(i) --step i skipped | done--> RUN(i + 1)
 *   RUN(i) --step i awaiting--> AWAIT(i) --step i done with prev_position--> RUN(i + 1)
 *   any --ended--> ENDED --j_sagas_sweep, j_sagas_remove_ended--> freed
 */
#ifndef DIALECT_J17_SAGA_H
#define DIALECT_J17_SAGA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialect/j17/spec.h"
#include "util/buf.h"
#include "util/strmap.h"
#include "util/uuid.h"

#define J17_SAGA_START "j17.saga"
#define J17_SAGA_STEP "j17.saga_step"
#define J17_SAGA_ENDED "j17.saga_ended"
#define J17_SAGA_TAG "j17saga:"       /* every record of an instance */
#define J17_SAGA_STEP_TAG "j17step:"  /* <id>:<i>: step i ran (emitted or skipped) */
#define J17_SAGA_DONE_TAG "j17done:"  /* <id>:<i>: step i's await completed */
#define J17_SAGA_END_TAG "j17end:"    /* <id>: the instance ended */

enum {
    J17_SAGAS_LIVE_MAX = 100000,      /* running instances kept in memory per database */
    J17_SAGA_STARTS_MAX = 64,         /* instances one write may start */
    J17_SAGA_OVERFLOW_MAX = 100000,   /* instances over J17_SAGAS_LIVE_MAX waiting to be
                                         ended (then reading the stream pauses) */
    J17_SAGA_CHECKS_PER_TICK = 1000,  /* awaited-event reads per database per tick */
    J17_SAGA_AWAIT_BUDGET = 1000,     /* events one such read examines at most */
    J17_SAGA_WRITES_PER_TICK = 256,   /* appends of the saga runner per database per tick */
    J17_SAGA_DEPTH_MAX = 4,           /* an instance's depth (saga.h, J17_SAGA_START): a step
                                         of an instance this deep starts no saga */
    J17_SAGA_STREAM_BYTES = 2 * J17_NAME_BYTES + J17_ID_BYTES + 2, /* "<type>:<id>" + NUL */
};

enum j_saga_phase { J_SAGA_RUN, J_SAGA_AWAIT, J_SAGA_ENDED };
enum j_step_state { J_STEP_PENDING, J_STEP_SKIPPED, J_STEP_DONE };

/* One running instance. */
struct j_saga_inst {
    char id[UUID_TEXT_LEN + 1];         /* the instance's UUID */
    char saga[J17_NAME_BYTES + 1];      /* its saga's name */
    uint64_t trigger_pos;               /* the trigger event's position */
    json_t *trigger;                    /* owned: the trigger event object as read back, set
                                           by the timer thread while it advances the instance
                                           (NULL otherwise: instances keep no events) */
    unsigned depth;                     /* see J17_SAGA_START */
    enum j_saga_phase phase;
    size_t step;                        /* RUN: the step to run; AWAIT: the step awaiting */
    uint8_t states[J17_SAGA_STEPS_MAX]; /* enum j_step_state of each step */
    uint64_t awaited[J17_SAGA_STEPS_MAX]; /* the position of the event each step awaited, or 0 */
    /* AWAIT only: */
    uint64_t emit_pos;                  /* position of the event the step emitted */
    int64_t await_since_ms;             /* when it was emitted */
    uint64_t timeout_ms;                /* 0: none */
    char await_stream[J17_SAGA_STREAM_BYTES]; /* the aggregate awaited */
    json_t *await_types;                /* owned: the event types awaited (strings) */
    uint64_t scan_from;                 /* the timer thread's cursor: the next position to
                                           look at for the awaited event (0: emit_pos + 1) */
};

/* The running instances of one database. Owned by the timer thread. */
struct j_sagas {
    struct j_saga_inst **items;         /* owned, count of them */
    size_t count, cap;
    size_t ended;                       /* items in phase J_SAGA_ENDED (j_sagas_sweep frees) */
    size_t max;                         /* most items kept (J17_SAGAS_LIVE_MAX; tests lower) */
    size_t next;                        /* the timer thread's round robin: the item its next
                                           tick starts at */
    struct strmap by_id;                /* id -> size_t index in items */
    /* Instances whose start record found the table full, to be ended as failed (sagas.c);
       an id stays until its end is written or found written. */
    char (*overflow)[UUID_TEXT_LEN + 1]; /* owned, overflow_count of them */
    size_t overflow_count, overflow_cap;
};

void j_sagas_init(struct j_sagas *s, size_t max);
void j_sagas_fini(struct j_sagas *s);
/* The instance id, or NULL. */
struct j_saga_inst *j_sagas_find(const struct j_sagas *s, const char *id);
/* Frees the instances in phase J_SAGA_ENDED. Moves items: not while iterating them. */
void j_sagas_sweep(struct j_sagas *s);
/* Frees instance id if it is in phase J_SAGA_ENDED (in constant time). Same caveat. */
void j_sagas_remove_ended(struct j_sagas *s, const char *id);

enum j_apply {
    J_APPLY_IGNORED,  /* not a saga record, malformed, or it does not fit the state */
    J_APPLY_DONE,     /* the state changed */
    J_APPLY_FULL,     /* a start record while max instances run: not kept */
};

/* Applies one event of J17_TIMER_STREAM (type, its data parsed; position its position). */
enum j_apply j_sagas_apply(struct j_sagas *s, const char *type, const json_t *data,
                           uint64_t position);

/* The data of a start record (J17_SAGA_START): a new object. */
json_t *j_saga_start_rec(const char *saga, const char *instance, long trigger_offset,
                         unsigned depth);
/* The data of a step record without the state's extra members: a new object. */
json_t *j_saga_step_rec(const char *instance, size_t step, const char *state, int64_t at_ms);
/* The context of a step of g ("Running sagas"): a copy of g->trigger (an empty object when
 * it is not loaded) with "prev" set to prev (borrowed: the event the step before awaited,
 * read back by the caller), or null when prev is NULL. A new reference. */
json_t *j_saga_ctx(const struct j_saga_inst *g, const json_t *prev);
/* Keeps id aside as an instance to end as failed (the table was full). False when
 * J17_SAGA_OVERFLOW_MAX ids wait already (the caller reads the record again later). */
bool j_sagas_overflow_push(struct j_sagas *s, const char *id);
/* Appends the JSON array of tags of a record: J17_SAGA_TAG<id>, then (when kind is not NULL)
 * kind<id> and, when step >= 0, ":<step>". */
void j_saga_tags(struct buf *out, const char *id, const char *kind, long step);
/* The aggregate a step awaits: "<await_agg>:<id>" where id is the emitted event's
 * (emit_agg, emit_id) when await_agg equals emit_agg, else the trigger's "id". Into out
 * (J17_SAGA_STREAM_BYTES). */
void j_saga_await_stream(const char *await_agg, const char *emit_agg, const char *emit_id,
                         const json_t *trigger, char *out);

#endif
