/* The Tick runtime (LOGIC_LANG_TICK): j17's declarative handlers as logic-layer reducers
 * (docs/design/logic.md, "Tick runtime").
 *
 * A module's source is a JSON object {"<event type>": <handler>, ...}, each handler what
 * tick_compile takes (logic/tick.h: an array of operations, or one). Load compiles every
 * handler once; the module defines one entry, reduce(state, event): the handler of the
 * event's "type" member applied to the state (no handler: the state unchanged, {} for null).
 * The event is the JSON object the component's event format renders; Tick's $ paths read its
 * "type", "key", "id", "data" and "metadata" members (json/jpath.h, jpath_event_new's shape).
 *
 * Reached through logic/runtime.h (logic_load with LOGIC_LANG_TICK); nothing else is
 * exported. The environment may be NULL. No ctx calls, no batches of its own (runtime.c's
 * fallbacks serve logic_map and logic_fold_keyed), no logs. A module is used by one thread at
 * a time; its compiled plans are immutable. Pure: no I/O; the CPU guard reads the calling
 * thread's CPU clock.
 */
#ifndef LOGIC_TICK_RT_H
#define LOGIC_TICK_RT_H

#include "logic/runtime.h"

enum {
    TICK_RT_CPU_CHECK_EVENTS = 32, /* events of a fold between two reads of the thread's CPU
                                      clock (each event is bounded by Tick's step budget) */
    TICK_RT_NODE_BYTES = 64,       /* what one JSON value of a state is reckoned to cost: the
                                      memory budget over this is the state's node limit
                                      (capped by LIMIT_TICK_STATE_NODES) */
};

extern const struct logic_runtime logic_tick_runtime;

#endif
