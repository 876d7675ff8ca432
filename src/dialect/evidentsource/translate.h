/* EvidentSource dialect: pure translators between EvidentSource's wire shapes and the native
 * ones (docs/dialects/evidentsource.md). Bytes in, bytes out: no I/O, no engine calls, so each
 * is unit-tested on its own (tests/unit/evidentsource_test.c).
 *
 * The mapping:
 *   - a database is an Annals database (names [a-z0-9][a-z0-9-]{0,62});
 *   - a CloudEvent is a native event of the stream named by its `source`, with its `type`, its
 *     `subject`, its `time` as the effective time and `data` as data; every attribute but
 *     `data` / `data_base64` is kept as sent under the metadata member "cloudevents" (so the
 *     event comes back exactly as sent, `time` string unchanged); `data_base64` is kept there
 *     too (data is then null);
 *   - its native id is derived from (source, id), a UUID version 8 made of SHA-256: sending the
 *     same CloudEvent again is acknowledged without writing it twice, and another event under
 *     a (source, id) already stored is refused (409);
 *   - a revision is the event's global position. */
#ifndef DIALECT_EVIDENTSOURCE_TRANSLATE_H
#define DIALECT_EVIDENTSOURCE_TRANSLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "model/event.h"
#include "ops/parse.h"
#include "util/buf.h"
#include "util/limits.h"

/* The metadata member holding a CloudEvent's attributes. */
#define ES_CE_MEMBER "cloudevents"
/* A metadata member set (true) when the CloudEvent had neither data nor data_base64, so that
 * it comes back without data (a stored event always has data: null then). */
#define ES_CE_NO_DATA "cloudevents_no_data"

enum {
    ES_EXT_NAME_BYTES = 20,  /* an extension attribute's name: [a-z0-9]{1,20} (CloudEvents) */
    ES_ID_BYTES = 1024,      /* a CloudEvent's id */
    ES_ATTR_BYTES = 4096,    /* any other string attribute but source (a stream name) */
    ES_TIME_BYTES = 64,      /* a time attribute or parameter (RFC 3339) */
    ES_CONSTRAINTS_MAX = LIMIT_APPEND_CONDS, /* constraints on one append */
    ES_SELECTORS_MAX = 64,   /* selectors (OR-ed) of one query */
    ES_SELECTOR_DEPTH = 8,   /* nesting of and/or selectors */
    ES_PAGE_DEFAULT = LIMIT_READ_DEFAULT, /* events per query answer by default */
    ES_PAGE_MAX = LIMIT_READ_MAX,         /* ... at most */
};

/* EvidentSource's error envelope (a gate_error_fn): {"error":{"code","message","details"}}
 * with the codes NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION,
 * RESOURCE_EXHAUSTED, UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL, UNAVAILABLE; details
 * {"field"?, "value"?, ...the native details}. */
unsigned es_error(const struct gate_error *e, struct buf *out);

/* The native id of the CloudEvent (source, id): UUID v8 from SHA-256("cloudevents\0" source
 * "\0" id). */
void es_event_id(struct slice source, struct slice id, uint8_t out[16]);

/* Translates one CloudEvent (a JSON object, valid JSON text) into a native event object
 * {"id","type","data","subject"?,"time"?,"metadata":{"cloudevents":{...},
 * "cloudevents_no_data"?:true}} appended to native,
 * and its stream (the source: a CloudEvent must have one) into stream
 * (reset first). Checks: specversion "1.0"; id, source and type non-empty strings; subject,
 * datacontenttype, dataschema strings; time RFC 3339; not both data and data_base64 (a
 * string); extension names [a-z0-9]{1,20} with string, number or boolean values. Returns 0
 * or ERR_INVALID with *err filled (field "events[i].<attr>", i = index). */
int es_ce_to_native(struct slice ce, size_t index, struct buf *native, struct buf *stream,
                    struct parse_error *err);

/* Appends a stored event as a CloudEvent: the attributes kept as sent (or, for an event
 * appended otherwise, specversion "1.0", id = the native id, source = the stream, type,
 * subject, time = its effective time, datacontenttype "application/json"), then "data" (or
 * "data_base64"), "revision" (its position) and "recordedtime". */
void es_event(struct buf *out, const struct event_rec *ev);

/* Turns a selector into a native selector object (docs/api.md, "Querying the log": the
 * "selector" member of a query or condition), appended to out: the flat form {"stream" |
 * "source", "event_type", "subject"} (given attributes AND-ed) and the nested form
 * {"type":"and"|"or","selectors":[...]} / {"type":"equals"|"starts_with","attr":{...}} (attr
 * one member: stream, source, event_type or subject; values non-empty strings of at most 256
 * bytes, subject null = "has no subject" with equals), nested at most ES_SELECTOR_DEPTH deep.
 * sel must be valid JSON text. Returns 0 or ERR_INVALID with *err (400 invalid_request, the
 * field under the prefix given: "selectors[0].selectors[1]"). out may hold a partial
 * selector on error. */
int es_selector(struct slice sel, const char *field, struct buf *out, struct parse_error *err);

/* ---- requests and answers of the event routes (pure) ---- */

/* Translates an append body {"events":[CloudEvent, ...], "constraints"?:[...]} into a native
 * multi-stream append body (docs/api.md, "Atomic appends across streams, and conditions")
 * appended to native: one part per run of consecutive events with the same source, in
 * request order (A,A,B -> parts A,B; A,B,A -> parts A,B,A), so that the events get
 * consecutive revisions in request order; each constraint one native condition. Checks: the
 * body is JSON (400 invalid_json with the offset), an object with only those members;
 * events a non-empty array of at most max_events (413 too_many_events) valid CloudEvents
 * (es_ce_to_native) of at most LIMIT_APPEND_PARTS runs; no (source, id) twice. Returns 0, or
 * ERR_INVALID / ERR_TOOBIG with *err filled (fields in the request's shape: "events[3].time",
 * "constraints[1].revision"). */
int es_append_request(struct slice body, size_t max_events, struct buf *native,
                      struct parse_error *err);

/* Translates constraint `index` (valid JSON text) into a native append condition
 * {"query":{"selector"?},"min"?,"max"?} appended to out:
 *   {"type":"min_revision","revision":N,"selector"?}  latest revision (of matching events) >= N
 *   {"type":"min","selector","revision":N}            newest matching event's revision >= N
 *   {"type":"max","selector","revision":N}            ... <= N (0: no matching event exists)
 *   {"type":"max_revision","selector","revision":N}   the same
 *   {"type":"range","selector","min":a,"max":b}       ... within [a, b]
 *   {"type":"fail_if_events_match","selector","after"?:N}  ... <= N (absent: 0; DCB)
 *   EvidentDB's stream_exists / stream_does_not_exist / stream_max_revision {stream,
 *   revision}, subject_exists / subject_does_not_exist / subject_max_revision {subject,
 *   revision}, and subject_*_on_stream {stream, subject, revision}: min 1, max 0 and max N
 *   over the stream's (subject's) events.
 * Unknown types and members, and missing ones, are 400 invalid_request naming the member.
 * Returns 0 or ERR_INVALID with *err. */
int es_constraint(struct slice c, size_t index, struct buf *out, struct parse_error *err);

/* The append answer {"revision": the request's last event's revision, "events_count": n}
 * made from a native multi-stream append answer (201, or 200 for a re-sent batch), appended
 * to out. Returns 0, or ERR_INVALID when native is not such an answer. */
int es_append_answer(struct slice native, struct buf *out);

/* Translates a query body {"selectors"?, "revision_range"?:{start,end},
 * "effective_time_range"?:{start,end}, "direction"?, "limit"?, "as_of_transaction_time"?,
 * "as_of_effective_time"?, "as_of_revision"?} into a native POST /query body appended to
 * native: selectors OR-ed into "selector", revision_range into from/to (in the direction of
 * travel), effective_time_range into timeFrom/timeTo, as_of_effective_time into timeTo (the
 * earlier of the two), as_of_transaction_time into asOfTime, as_of_revision into asOf.
 * *nothing is set when no event can match (a range ending at revision 0). Returns 0, or
 * ERR_INVALID with *err naming the member (400 invalid_json / invalid_request). */
int es_query_request(struct slice body, struct buf *native, bool *nothing,
                     struct parse_error *err);

/* The query parameters of GET /v1/events (each NULL when absent; decoded text). */
struct es_v1_params {
    const char *stream, *subject, *type;  /* exact matches */
    const char *as_of_transaction_time;   /* RFC 3339 */
    const char *as_of_effective_time;     /* RFC 3339 */
    const char *as_of_revision;           /* from 1 */
    const char *after;                    /* a revision, exclusive */
    const char *limit;                    /* 1..ES_PAGE_MAX */
    bool live;                            /* a subscription: no as-of transaction time or
                                             revision (400), no limit or after (the caller
                                             reads them) */
};

/* Translates them into a native POST /query body appended to native. Returns 0 or
 * ERR_INVALID with *err (400 invalid_parameter naming the parameter). */
int es_v1_query(const struct es_v1_params *p, struct buf *native, struct parse_error *err);

/* Reads a revision parameter: a decimal integer, from 1 when positive, else from 0. Returns
 * 0 or ERR_INVALID. */
int es_parse_revision(const char *s, bool positive, uint64_t *out);

#endif
