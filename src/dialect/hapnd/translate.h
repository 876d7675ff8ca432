/* Hapnd dialect: pure translators between Hapnd's wire shapes and the native ones
 * (docs/dialects/hapnd.md). Bytes in, bytes out: no I/O, no engine calls, so each is
 * unit-tested on its own (tests/unit/hapnd_test.c).
 *
 * The mapping:
 *   - a tenant is an Annals database (the one the presented key is bound to);
 *   - an aggregate is the native stream named by its aggregateId; its versions are the
 *     stream's (from 1);
 *   - a Hapnd event is a native event: eventType is its type, data its data, and what Hapnd
 *     adds is kept under the metadata member "hapnd": {"aggregateType", "correlationId"?,
 *     "causationId"?, "metadata"?} (the caller's own metadata object sits in "metadata");
 *   - eventId is "evt_" and the native id's 32 hex digits. */
#ifndef DIALECT_HAPND_TRANSLATE_H
#define DIALECT_HAPND_TRANSLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "model/event.h"
#include "ops/parse.h"
#include "util/buf.h"
#include "util/limits.h"

/* The metadata member holding what Hapnd adds to an event. */
#define HAPND_MEMBER "hapnd"

enum {
    HAPND_TYPE_BYTES = 48,       /* an aggregate type (it names a reducer binding) */
    HAPND_ID_TEXT_BYTES = 4 + 32, /* "evt_" and 32 hex digits */
    HAPND_CORRELATION_BYTES = 1024, /* correlationId, causationId */
};

/* Hapnd's error envelope (a gate_error_fn): {"error":"<text>","errorCode":"SNAKE_CASE"} with
 * the context of a conflict (expectedVersion, actualVersion). A code already in upper case is
 * the dialect's own and kept; native codes are mapped (docs/dialects/hapnd.md). */
unsigned hapnd_error(const struct gate_error *e, struct buf *out);

/* The aggregate type Hapnd infers from an aggregate id: everything before its first '_' or
 * '-'. False when the id has neither, or starts with one (no type can be inferred). */
bool hapnd_infer_type(struct slice id, struct slice *type);

/* True for an aggregate type Annals keeps: 1..HAPND_TYPE_BYTES bytes of [A-Za-z0-9_.-]. */
bool hapnd_type_ok(struct slice type);

/* The parts of an append request (POST /events or /events/batch) that do not depend on the
 * store, validated. Not to be copied (slices point into it). */
struct hapnd_append {
    struct slice aggregate_id;   /* decoded, in id_text */
    struct slice aggregate_type; /* decoded, in type_text; ptr NULL when absent */
    bool has_expected;
    uint64_t expected;           /* expectedVersion */
    struct buf events;           /* owned: the native events array's items, comma-separated,
                                    without aggregateType (hapnd_native_body adds it) */
    size_t count;
    char id_text[LIMIT_STREAM_NAME_BYTES + 1];
    char type_text[HAPND_TYPE_BYTES + 1];
};

void hapnd_append_init(struct hapnd_append *a);
void hapnd_append_fini(struct hapnd_append *a);

/* Reads a POST /events body (batch false: one event, its eventType and data at the top) or a
 * POST /events/batch body (an "events" array of {eventType, data, metadata?, correlationId?,
 * causationId?}; the top-level correlationId, causationId and metadata apply to every event
 * that gives none), checking it: 0, or ERR_INVALID with *pe (code INVALID_REQUEST for text
 * that is not a JSON object, VALIDATION_ERROR otherwise, field named in Hapnd's terms).
 * Member names may be escaped; unknown members are ignored; data and metadata are kept as
 * sent (numbers of any size), minified. max_events bounds a batch. */
int hapnd_append_parse(struct slice body, bool batch, size_t max_events,
                       struct hapnd_append *out, struct parse_error *pe);

/* The native append body of a: {"events":[...],"expectedVersion"?} with each event's
 * metadata member "hapnd" holding type. */
void hapnd_native_body(const struct hapnd_append *a, struct slice type, struct buf *out);

/* The aggregate type an event was written with: its metadata's hapnd.aggregateType, else
 * the type inferred from its stream (an event written through another API). False when
 * neither gives one. *out is a slice of ev's metadata or of its stream. */
bool hapnd_event_type(const struct event_rec *ev, struct slice *out);

/* "evt_" and the 32 hex digits of id, NUL-terminated (out: HAPND_ID_TEXT_BYTES + 1). */
void hapnd_event_id(const uint8_t id[16], char *out);

/* A time as Hapnd writes it: RFC 3339 UTC with milliseconds ("2026-03-15T18:30:00.000Z"). */
enum { HAPND_TIME_BYTES = 25 };
void hapnd_time(int64_t us, char out[HAPND_TIME_BYTES]);

/* Appends ev as Hapnd shows an event: {"eventId","aggregateId","aggregateType"?,"eventType",
 * "data","version","position","timestamp","metadata"?,"correlationId"?,"causationId"?}.
 * Also the event format user code sees (an engine_event_json_fn). */
void hapnd_event_json(struct buf *out, const struct event_rec *ev);

/* Turns the native answer of a single-stream append (with its "state" or "stateError" when
 * a reducer was asked for) into Hapnd's 201 answer: batch false {"eventId","aggregateId",
 * "aggregateType","version","timestamp","state"?}, batch true {"aggregateId",
 * "aggregateType","startVersion","endVersion","eventIds","timestamp","state"?}. state is
 * shown when the reducer computed one; when it failed, "stateError" {"errorCode","error"}.
 * Returns 0 or ERR_INVALID (native is not such an answer). */
int hapnd_append_answer(struct slice native, struct slice type, bool batch, struct buf *out);

/* Appends one state change of a projection as Hapnd shows it: {"type"? (when type is not
 * NULL: "projection.state_changed" in webhooks, "state_changed" on a stream), "sequence",
 * "projectionId", "stateKey", "aggregateId", "aggregateType", "version", "state",
 * "triggeredBy", "timestamp"}; the aggregate members, triggeredBy (its eventId) and timestamp
 * (its commit time) come from ev, the event that made the change (NULL when it cannot be read:
 * they are left out). */
void hapnd_change_json(struct buf *out, const char *type, struct slice projection_id,
                       uint64_t sequence, struct slice key, struct slice state,
                       const struct event_rec *ev);

#endif
