/* DeltaBase dialect: pure translators between DeltaBase's wire shapes and the native ones
 * (docs/dialects/deltabase.md). Bytes in, bytes out: no I/O, no engine calls, so each is
 * unit-tested on its own (tests/unit/deltabase_test.c).
 *
 * Numbering: DeltaBase counts stream positions from 0 and calls a stream's version the
 * position of its last event; Annals counts versions from 1. So DeltaBase streamPosition =
 * native version - 1, and expectedStreamVersion n = native expectedVersion n + 1. */
#ifndef DIALECT_DELTABASE_TRANSLATE_H
#define DIALECT_DELTABASE_TRANSLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "gate/gate.h"
#include "model/event.h"
#include "engine/webhooks.h"
#include "ops/live.h"
#include "ops/parse.h"
#include "query/filter.h"
#include "util/buf.h"

/* The stream that holds stream-less (DCB) events, as DeltaBase names it. Refused as a
 * stream id on the stream routes. */
#define DLB_DCB_STREAM "__dcb__"

/* The DeltaBase error envelope (a gate_error_fn): {"error":{"code","message","details"}}
 * with DeltaBase's codes (UNAUTHORIZED, FORBIDDEN, NOT_FOUND, STREAM_NOT_FOUND,
 * VERSION_CONFLICT, RATE_LIMITED, VALIDATION_ERROR, ...), except a failed DCB condition:
 * {"error":"Append condition failed","details","conflictingPositions","afterPosition"}. */
unsigned dlb_error(const struct gate_error *e, struct buf *out);

/* Appends the DeltaBase JSON of a stored event: streamId, streamPosition, globalPosition,
 * eventId, type, data, metadata, tags (when any), schemaVersion, transactionId, createdAt. */
void dlb_event(struct buf *out, const struct event_rec *ev);

/* Translates an append body {"events":[{type,data,metadata?,tags?}],
 * "expectedStreamVersion"?: n|"any"|"no_stream"|"stream_exists"} into the native one
 * {"events":[...],"expectedVersion":...} (the events' bytes as sent). Returns 0, or
 * ERR_INVALID with *err filled (DeltaBase member names). */
int dlb_append_request(struct slice body, struct buf *native, struct parse_error *err);

/* The DeltaBase answer of an append from the native one: {"streamId","eventsAppended",
 * "currentStreamVersion","globalPosition"}. Returns 0 or ERR_INVALID (not a native append
 * answer). */
int dlb_append_answer(struct slice native, struct buf *out);

/* Translates a DCB append body {"events":[{type,data,tags?,metadata?}], "condition"?:
 * {"failIfEventsMatch":{"items":[...]}, "after"?: n}} into the native stream-less append
 * (the same members). A tag holding a comma is refused. Returns 0 or ERR_INVALID. */
int dlb_dcb_request(struct slice body, struct buf *native, struct parse_error *err);

/* The answer of a DCB append from the native one: {"lastPosition": n}. */
int dlb_dcb_answer(struct slice native, struct buf *out);

/* Translates a DCB query body {"query":{"items":[...]}, "after"?: n, "limit"?: n} into the
 * native query body {"items":[...], "from": after + 1, "limit": n}. Returns 0 or
 * ERR_INVALID. */
int dlb_dcb_query(struct slice body, struct buf *native, struct parse_error *err);

/* Reads an expected stream version given as a DeltaBase query or member value ("any",
 * "no_stream", "stream_exists", or an integer from -1) into the native expectation text
 * ("\"any\"", "\"no_stream\"", "\"exists\"", or the count). Returns 0 or ERR_INVALID. */
int dlb_expected_version(struct slice v, struct buf *native);

/* Reads a WebSocket message {"action":"subscribe","eventFilter"?,"position"?} |
 * {"action":"unsubscribe"} | {"action":"ping"} (a live_protocol's read): eventFilter is "*",
 * "prefix.*", "*.suffix" or an exact type (default "*"); position "latest" (default: only new
 * events), "earliest" (from the first) or a global position to continue after. */
enum live_msg dlb_ws_read(struct slice msg, uint64_t head, struct filter *filter,
                          uint64_t *first, char *desc, size_t cap, const char **why);
/* The server's WebSocket messages: {"type":"event","event":{...}}, {"type":"subscribed",
 * "position"}, {"type":"unsubscribed"}, {"type":"pong"}, {"type":"error","error":{"code",
 * "message"}}. */
void dlb_ws_event(struct buf *out, const struct event_rec *ev);
void dlb_ws_note(struct buf *out, enum live_note note, uint64_t position);
void dlb_ws_error(struct buf *out, const char *code, const char *message);

/* The envelope of DeltaBase webhook deliveries: one event per POST,
 * {"event":{...},"eventStoreId","subscriptionId"}, unsigned (DeltaBase documents no
 * signature; a subscription's own headers, e.g. Authorization, are sent). */
extern const struct webhook_format dlb_webhook_format;

/* Translates a subscribe body {"eventFilter","subscriberType","subscriberConfig"?,
 * "retryPolicy"?,"position"?} into a webhook definition (def->name gets a name derived from
 * the configuration, so the same configuration names the same subscription; the meta JSON,
 * kept with it, is written to meta and def->meta points into it; headers into hdrs). head is
 * the store's head for position "latest". Returns 0 or ERR_INVALID with *err filled. */
int dlb_subscribe_request(struct slice body, uint64_t head, int64_t now_us,
                          struct webhook_def *def, struct buf *meta, struct buf *filter,
                          struct buf *hdrs, struct parse_error *err);
/* A subscription's DeltaBase JSON from the native description of its webhook (one object of
 * engine_webhook_describe with the log). Returns 0, or ERR_NOTFOUND when it is not a
 * DeltaBase subscription. */
int dlb_subscription(struct slice described, struct buf *out);

/* The stream type of a stream id: the part before its first '-', '_' or ':' (the whole id
 * when it has none). */
struct slice dlb_stream_type(struct slice stream);

/* Parses an RFC 3339 time and moves it by delta_us; writes it back as RFC 3339 into out (at
 * least TIME_RFC3339_LEN bytes). Returns 0 or ERR_INVALID. */
int dlb_shift_time(const char *text, int64_t delta_us, char *out);

#endif
