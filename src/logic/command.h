/* Command handlers (docs/api.md, "Command handlers"): decide(command, ctx) -> {events,
 * conditions?} | {error}. The handler reads through ctx (reducer state, projection state,
 * views, bounded queries); the server appends its events with the conditions it returned plus
 * one condition per read (the DCB pattern: no event the read would have seen after the position
 * it saw), retries the whole decision a bounded number of times when a condition fails, and
 * answers the committed events, or the handler's own rejection without writing anything.
 *
 * ctx functions (each reads the database as it is now):
 *   ctx.state(stream)           the stream's reducer state, or nil (no events / no reducer)
 *   ctx.projection(name, key)   a projection's state under key, or nil
 *   ctx.view(name, params)      a view's state for params (an object of strings)
 *   ctx.query(filter[, limit])  the events of a query filter, oldest first, at most limit
 *                               (default and most COMMAND_QUERY_MAX)
 *   ctx.metadata()              what the API surface passed about the command (an object:
 *                               a dialect's effective time, principal, ...) with "revision",
 *                               the database's newest position now (no condition: it reads
 *                               no events)
 *
 * A handler deployed with an eventFormat (logic/logic.h, struct logic_event_format) sees
 * events in that format (ctx.query's answers), returns them in it (each made native by the
 * format's parse before the engine's), and may give ctx.query and its conditions in the
 * format's forms (its filter and condition translators); its conditions may also be named
 * "constraints".
 *
 * The events a handler returns are native event objects with a "stream" member: {stream, type,
 * data, metadata?, tags?, id?, time?, subject?}. Conditions: {"failIfEventsMatch": <filter>,
 * "after": <position>} (no event of the filter after that position) and {"stream",
 * "expectedVersion": n | "no_stream" | "exists" | "any"} for a stream it writes to.
 *
 * Threads: workers only (it runs user code and waits for commits). */
#ifndef LOGIC_COMMAND_H
#define LOGIC_COMMAND_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "logic/runtime.h"
#include "util/buf.h"

enum {
    COMMAND_TRIES = 5,        /* decisions run for one command at most (a condition failed),
                                 by default (logic_config.command_tries; at most
                                 COMMAND_TRIES_MAX) */
    COMMAND_TRIES_MAX = 100,
    COMMAND_QUERY_MAX = 1000, /* events one ctx.query returns at most */
    COMMAND_READS_MAX = 64,   /* ctx reads in one decision (each becomes a condition) */
    COMMAND_EVENTS_MAX = 1000, /* events one decision may return */
};

struct logic;

/* What a command did. */
struct command_result {
    bool rejected;            /* the handler returned {error}: nothing was written */
    struct buf rejection;     /* then: its error object's JSON */
    struct buf events;        /* the JSON array of the events: written (with position, version
                                 and id) or, for a dry run, those that would be */
    struct buf conditions;    /* dry run: the JSON array of the conditions it would append with */
    uint64_t last_position;   /* written: the newest position */
    unsigned attempts;        /* decisions run */
    enum append_conflict refusal; /* with ERR_DENIED: what the engine refused the append for */
};

void command_result_init(struct command_result *r);
void command_result_fini(struct command_result *r);

/* Runs the command handler name of db on command (JSON text) and appends what it decides
 * (dry_run: only says what it would). Returns 0 (see *out), ERR_NOTFOUND (no such command
 * handler), ERR_INVALID with *err (the code failed, or returned something that is not a
 * decision; err->message says what), ERR_CONFLICT (its conditions still failed after
 * the configured number of decisions), ERR_DENIED (the engine refused the append for another
 * reason: out->refusal, e.g. CONFLICT_DELETED), ERR_TOOBIG (too many events, or one too large)
 * or another engine error. */
int logic_command(struct logic *lg, struct db *db, const char *name, struct slice command,
                  bool dry_run, struct command_result *out, struct logic_error *err);

/* How a command runs (logic_command_with). */
struct command_opts {
    bool dry_run;          /* only say what it would append */
    struct slice metadata; /* a JSON object ctx.metadata() answers ("revision" added), ptr
                              NULL: {}; borrowed for the call */
};

/* logic_command with opts. Returns as logic_command. */
int logic_command_with(struct logic *lg, struct db *db, const char *name, struct slice command,
                       const struct command_opts *opts, struct command_result *out,
                       struct logic_error *err);

#endif
